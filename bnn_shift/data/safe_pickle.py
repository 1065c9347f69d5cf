"""Reading third-party pickles of numpy arrays (CIFAR-10 batches, animal-mnist) safely.

Some datasets ship only as pickles. `load_pickled_arrays` reads plain containers (dict, list,
tuple), scalars, strings, bytes and numeric numpy arrays and scalars from them, nothing else.
Every numpy global the pickle names is replaced by an inert stand-in that only records its
arguments; the arrays are then rebuilt here from the recorded dtype, shape and raw bytes with
`np.frombuffer`. No function named in the file is ever called. bnn-shift itself never writes
pickles.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class PickleContentError(ValueError):
    """A pickle holds something other than containers, scalars and numeric numpy arrays."""


class _NdarrayType:
    """Stand-in for the global numpy.ndarray (only passed to _reconstruct)."""


class _Dtype:
    """Stand-in for numpy.dtype(spec, align, copy) plus its pickled state (byte order)."""

    def __init__(self, spec: Any, *_: Any) -> None:
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2:
            order = state[1]
            self.byteorder = order.decode("ascii") if isinstance(order, bytes) else str(order)


class _Array:
    """Stand-in for numpy's _reconstruct(ndarray, shape, typecode) plus its pickled state."""

    def __init__(self, *_: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _FromBuffer:
    """Stand-in for numpy's _frombuffer(buffer, dtype, shape, order) (pickle protocol 5)."""

    def __init__(self, buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> None:
        self.args = (buffer, dtype, shape, order)


class _Scalar:
    """Stand-in for numpy's scalar(dtype, raw bytes) (how numpy scalars pickle)."""

    def __init__(self, dtype: Any, raw: Any = b"") -> None:
        self.args = (dtype, raw)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise PickleContentError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy.core.multiarray", "scalar"): _Scalar,
    ("numpy._core.multiarray", "scalar"): _Scalar,
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer,
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer,
    ("_codecs", "encode"): _latin1_encode,
}


# a plain pickle.load runs any callable the file names; this one can reach only the stand-ins
class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise PickleContentError(
                f"pickle refers to {module}.{name}; only numpy arrays and builtin containers "
                "are allowed"
            ) from None


def _dtype(value: Any, byteorder: str = "=") -> np.dtype:
    if isinstance(value, _Dtype):
        value, byteorder = value.spec, value.byteorder
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise PickleContentError(f"unsupported dtype description {value!r}")
    try:
        dt = np.dtype(value)
    except TypeError as e:
        raise PickleContentError(f"unsupported dtype {value!r}") from e
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise PickleContentError(f"dtype {dt} is not a plain numeric type")
    return dt.newbyteorder(byteorder) if byteorder in "<>" else dt


def _array(raw: Any, dt: np.dtype, shape: Any, fortran: bool) -> np.ndarray:
    if isinstance(raw, str):  # Python 2 str payload decoded as latin1
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise PickleContentError(f"array payload is {type(raw).__name__}, expected bytes")
    shape = tuple(int(d) for d in shape)
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise PickleContentError(f"array payload of {len(raw)} bytes does not fit {dt}{shape}")
    flat = np.frombuffer(raw, dtype=dt)
    out = flat.reshape(shape, order="F" if fortran else "C")
    return np.array(out, dtype=dt.newbyteorder("="), order="C")  # writable, native order


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _Array):
        state = obj.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise PickleContentError("malformed numpy array state")
        _, shape, dtype, fortran, raw = state
        return _array(raw, _dtype(dtype), shape, bool(fortran))
    if isinstance(obj, _FromBuffer):
        raw, dtype, shape, order = obj.args
        fortran = (order.decode() if isinstance(order, bytes) else order) == "F"
        return _array(bytes(raw), _dtype(dtype), shape, fortran)
    if isinstance(obj, _Scalar):
        dtype, raw = obj.args
        return _array(raw, _dtype(dtype), (), False)[()]
    if isinstance(obj, dict):
        return {_materialise(k): _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes | bytearray):
        return obj
    raise PickleContentError(f"pickle holds an unsupported {type(obj).__name__}")


def load_pickled_arrays(data: bytes, source: str = "<bytes>") -> Any:
    """Decode pickle bytes holding containers, scalars, strings and numeric numpy arrays.

    Python 2 pickles (e.g. the CIFAR-10 batches) keep their str values as bytes. Anything else
    (other classes, object arrays, functions) raises PickleContentError naming `source`.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _materialise(obj)
    except PickleContentError as e:
        raise PickleContentError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as e:
        raise PickleContentError(f"{source}: not a readable pickle ({e})") from e
