"""The restricted unpickler: numeric arrays and builtin containers in, nothing callable."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from bnn_shift.data import PickleContentError, load_pickled_arrays


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
