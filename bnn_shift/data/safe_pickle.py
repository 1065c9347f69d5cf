"""Reading third-party pickles of numpy arrays (CIFAR-10 batches, animal-mnist) safely.

Some datasets ship only as pickles. `load_pickled_arrays` reads plain containers (dict, list,
tuple), scalars, strings, bytes and numeric numpy arrays and scalars from them, nothing else.
Every numpy global the pickle names is replaced by an inert stand-in that only records its
arguments; the arrays are then rebuilt here from the recorded dtype, shape and raw bytes with
`np.frombuffer`. No function named in the file is ever called. bnn-shift itself never writes
pickles.

Hostile structure is refused too: each global is handed out as a fresh wrapper that refuses
BUILD (so a pickle cannot set attributes on the stand-ins for later loads), shared objects are
rebuilt once (a few hundred bytes of memo references can describe 2**60 paths), and nesting
deeper than `MAX_DEPTH` is a `PickleContentError`, not a `RecursionError`.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_BYTE_ORDERS = ("<", ">", "=", "|")
MAX_DEPTH = 200  # containers nested deeper than this are refused (data pickles nest 2 or 3)


class PickleContentError(ValueError):
    """A pickle holds something other than containers, scalars and numeric numpy arrays."""


class _StandIn:
    """Base of the stand-ins: no instance dict, and no state unless a subclass takes it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise PickleContentError(f"pickle sets state on a {type(self).__name__[1:]} stand-in")


class _NdarrayType(_StandIn):
    """Stand-in for the global numpy.ndarray (only passed to _reconstruct)."""

    __slots__ = ()


class _Dtype(_StandIn):
    """Stand-in for numpy.dtype(spec, align, copy) plus its pickled state (byte order)."""

    __slots__ = ("byteorder", "spec")

    def __init__(self, spec: Any, *_: Any) -> None:
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2:
            order = state[1]
            order = order.decode("ascii", "replace") if isinstance(order, bytes) else order
            if order not in _BYTE_ORDERS:
                raise PickleContentError(f"unsupported dtype byte order {order!r}")
            self.byteorder = order


class _Array(_StandIn):
    """Stand-in for numpy's _reconstruct(ndarray, shape, typecode) plus its pickled state."""

    __slots__ = ("state",)

    def __init__(self, *_: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _FromBuffer(_StandIn):
    """Stand-in for numpy's _frombuffer(buffer, dtype, shape, order) (pickle protocol 5)."""

    __slots__ = ("args",)

    def __init__(self, buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> None:
        self.args = (buffer, dtype, shape, order)


class _Scalar(_StandIn):
    """Stand-in for numpy's scalar(dtype, raw bytes) (how numpy scalars pickle)."""

    __slots__ = ("args",)

    def __init__(self, dtype: Any, raw: Any = b"") -> None:
        self.args = (dtype, raw)


class _Global:
    """What the unpickler hands out for an allowed global: a fresh callable per lookup that
    forwards calls to the stand-in and refuses BUILD and attribute writes, so a pickle can
    change neither it nor the stand-in classes behind it."""

    __slots__ = ("_make", "_name")

    def __init__(self, name: str, make: Any) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_make", make)

    def __call__(self, *args: Any) -> Any:
        return self._make(*args)

    def __setstate__(self, state: Any) -> None:
        raise PickleContentError(f"pickle sets state on the global {self._name}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise PickleContentError(f"pickle sets attribute {key!r} on the global {self._name}")


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
            return _Global(f"{module}.{name}", _ALLOWED[(module, name)])
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


def _leaf(obj: Any) -> Any:
    """An array or numpy scalar rebuilt from its stand-in."""
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
    raise PickleContentError(f"pickle holds an unsupported {type(obj).__name__}")


class _Materialiser:
    """Rebuilds the unpickled graph with real arrays, each object once (by identity): shared
    references stay shared, so the work is linear in the pickle, and lists and dicts that
    contain themselves are rebuilt as such."""

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.tuples_open: set[int] = set()

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        if obj is None or isinstance(obj, bool | int | float | complex | str | bytes | bytearray):
            return obj
        key = id(obj)
        if key in self.done:
            return self.done[key]
        if depth >= MAX_DEPTH:
            raise PickleContentError(f"containers are nested more than {MAX_DEPTH} deep")
        if isinstance(obj, list):
            out: Any = []
            self.done[key] = out
            for value in obj:
                out.append(self(value, depth + 1))
        elif isinstance(obj, dict):
            out = {}
            self.done[key] = out
            for k, value in obj.items():
                out[self(k, depth + 1)] = self(value, depth + 1)
        elif isinstance(obj, tuple):
            if key in self.tuples_open:
                raise PickleContentError("a tuple contains itself")
            self.tuples_open.add(key)
            items = []
            for value in obj:
                items.append(self(value, depth + 1))
            self.tuples_open.discard(key)
            out = self.done[key] = tuple(items)
        else:
            out = self.done[key] = _leaf(obj)
        return out


def load_pickled_arrays(data: bytes, source: str = "<bytes>") -> Any:
    """Decode pickle bytes holding containers, scalars, strings and numeric numpy arrays.

    Python 2 pickles (e.g. the CIFAR-10 batches) keep their str values as bytes. Anything else
    (other classes, object arrays, functions) raises PickleContentError naming `source`.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _Materialiser()(obj)
    except PickleContentError as e:
        raise PickleContentError(f"{source}: {e}") from None
    except RecursionError:
        raise PickleContentError(f"{source}: structure nested too deeply to read") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as e:
        raise PickleContentError(f"{source}: not a readable pickle ({e})") from e
