"""The restricted unpickler: numeric arrays and builtin containers in, nothing callable."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from bnn_shift.data import PickleContentError, load_pickled_arrays, safe_pickle


@pytest.mark.parametrize("protocol", range(6))
def test_round_trip_every_protocol(protocol: int) -> None:
    obj = {
        b"data": np.arange(24, dtype=np.uint8).reshape(4, 6),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(5, dtype=">i4"),
        "bools": np.array([True, False]),
        "scalar_array": np.array(1.5, np.float32),
        "numpy_scalar": np.int16(-7),
        "nested": [1, 2.5, "x", b"y", None, (3, np.zeros(2, np.int64))],
    }
    out = load_pickled_arrays(pickle.dumps(obj, protocol=protocol))
    assert set(out) == set(obj)
    for key in (b"data", "fortran", "big_endian", "bools", "scalar_array"):
        np.testing.assert_array_equal(out[key], obj[key])
        assert out[key].dtype == obj[key].dtype.newbyteorder("=")
        assert out[key].flags.writeable and out[key].flags.c_contiguous
    assert out["numpy_scalar"] == -7 and out["numpy_scalar"].dtype == np.int16
    assert out["nested"][:5] == [1, 2.5, "x", b"y", None]
    np.testing.assert_array_equal(out["nested"][5][1], np.zeros(2, np.int64))


class _Runs:
    def __reduce__(self):
        return (os.system, ("false",))


def test_rejects_arbitrary_callables() -> None:
    with pytest.raises(PickleContentError, match=r"system.*only numpy arrays"):
        load_pickled_arrays(pickle.dumps(_Runs()), "evil.pkl")


@pytest.mark.parametrize(
    "array",
    [
        np.array([1, "a"], dtype=object),
        np.zeros(2, dtype=[("a", "u1"), ("b", "f4")]),
        np.array(["ab", "cd"]),
    ],
    ids=["object", "structured", "unicode"],
)
def test_rejects_non_numeric_arrays(array: np.ndarray) -> None:
    with pytest.raises(PickleContentError, match=r"source\.pkl"):
        load_pickled_arrays(pickle.dumps(array, protocol=2), "source.pkl")


def test_rejects_payload_of_wrong_size() -> None:
    data = pickle.dumps(np.zeros(4, np.uint8), protocol=2)
    tampered = data.replace(b"\x00\x00\x00\x00", b"\x00\x00\x00", 1)
    with pytest.raises(PickleContentError):
        load_pickled_arrays(tampered)


def test_not_a_pickle() -> None:
    with pytest.raises(PickleContentError, match="not a readable pickle"):
        load_pickled_arrays(b"this is text", "t.txt")


# ------------------------------------------------------------------ hostile structure
# Built opcode by opcode (pickle protocol 2); only ever read with load_pickled_arrays.
_PROTO, _STOP = b"\x80\x02", b"."
_EMPTY_LIST, _MARK, _APPEND, _APPENDS, _POP = b"]", b"(", b"a", b"e", b"0"
_NONE, _EMPTY_DICT, _SETITEM, _TUPLE2, _BUILD = b"N", b"}", b"s", b"\x86", b"b"


def _put(i: int) -> bytes:  # LONG_BINPUT
    return b"r" + i.to_bytes(4, "little")


def _get(i: int) -> bytes:  # LONG_BINGET
    return b"j" + i.to_bytes(4, "little")


def _text(s: str) -> bytes:  # SHORT_BINUNICODE
    return b"\x8c" + bytes([len(s)]) + s.encode()


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


@pytest.mark.timeout(20)
def test_shared_references_are_rebuilt_once() -> None:
    """List k holds list k - 1 twice: 2**50 paths in about 800 bytes."""
    levels = 50
    data = _PROTO + _EMPTY_LIST + _put(0) + _POP
    for i in range(1, levels + 1):
        data += _EMPTY_LIST + _MARK + _get(i - 1) + _get(i - 1) + _APPENDS + _put(i) + _POP
    data += _get(levels) + _STOP
    assert len(data) < 1000
    out = load_pickled_arrays(data, "doubling.pkl")
    for _ in range(levels):
        assert len(out) == 2 and out[0] is out[1]  # still shared, not copied
        out = out[0]
    assert out == []


def test_self_containing_list_is_rebuilt() -> None:
    data = _PROTO + _EMPTY_LIST + _put(0) + _get(0) + _APPEND + _STOP  # l = []; l.append(l)
    out = load_pickled_arrays(data)
    assert out[0] is out


def test_deep_nesting_is_a_content_error() -> None:
    depth = 200_000
    data = _PROTO + _EMPTY_LIST * depth + _APPEND * (depth - 1) + _STOP
    with pytest.raises(PickleContentError, match=r"deep\.pkl: .*nested more than 200 deep"):
        load_pickled_arrays(data, "deep.pkl")
    ok = _PROTO + _EMPTY_LIST * 150 + _APPEND * 149 + _STOP  # moderate nesting still reads
    assert isinstance(load_pickled_arrays(ok), list)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    ],
)
def test_build_cannot_change_the_stand_ins(module: str, name: str) -> None:
    """BUILD with (None, {"__init__": None}) on a global would set a class attribute that
    breaks every later load of that global in the process."""
    stand_ins = {*safe_pickle._ALLOWED.values()}
    before = {id(c): dict(vars(c)) for c in stand_ins}
    state = _NONE + _EMPTY_DICT + _text("__init__") + _NONE + _SETITEM + _TUPLE2
    data = _PROTO + _global(module, name) + state + _BUILD + _STOP
    with pytest.raises(PickleContentError, match=r"evil\.pkl: pickle sets state on the global"):
        load_pickled_arrays(data, "evil.pkl")
    assert {id(c): dict(vars(c)) for c in stand_ins} == before
    obj = {"x": np.int16(-7), "a": np.arange(3.0), b"k": b"v"}
    for protocol in (2, 5):  # the next loads still work
        out = load_pickled_arrays(pickle.dumps(obj, protocol=protocol))
        assert out["x"] == -7 and out[b"k"] == b"v"
        np.testing.assert_array_equal(out["a"], obj["a"])


def test_build_on_a_stand_in_instance_is_refused() -> None:
    """numpy.core.multiarray.scalar(...) then BUILD: scalars never carry state."""
    raw = np.int16(5).tobytes()
    call = (
        _global("numpy.core.multiarray", "scalar")
        + _global("numpy", "dtype")
        + _text("i2")
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE: dtype("i2")
        + b"C" + bytes([len(raw)]) + raw  # SHORT_BINBYTES
        + _TUPLE2
        + b"R"  # REDUCE: scalar(dtype, raw)
    )  # fmt: skip
    assert load_pickled_arrays(_PROTO + call + _STOP) == 5
    evil = _PROTO + call + _EMPTY_DICT + _BUILD + _STOP
    with pytest.raises(PickleContentError, match="sets state on a Scalar stand-in"):
        load_pickled_arrays(evil)
