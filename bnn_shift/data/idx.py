"""The IDX container (the MNIST file format): read and write, gzipped or raw.

Layout: two zero bytes, a dtype byte, an ndim byte, ndim big-endian uint32 dimensions, then the
row-major payload in big-endian byte order.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from bnn_shift.data.errors import IdxFormatError

_GZIP_MAGIC = b"\x1f\x8b"

# dtype byte -> on-disk (big-endian) numpy dtype
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_SIZE_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}


def decode_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (not gzipped) into a native-endian array; `source` names it in errors."""
    if len(data) < 4:
        raise IdxFormatError(f"{source}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{source}: not an IDX file (first two bytes are {data[:2].hex()}, expected 0000)"
        )
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        raise IdxFormatError(f"{source}: unknown IDX dtype byte 0x{code:02x}")
    if ndim == 0:
        raise IdxFormatError(f"{source}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(
            f"{source}: truncated header ({len(data)} bytes, {ndim} dims need {header_len})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _CODE_TO_DTYPE[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        raise IdxFormatError(
            f"{source}: payload is {got} bytes but dims {dims} of {dtype.name} need {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # writable, native byte order


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes; dtypes uint8, int8, int16, int32, float32, float64."""
    arr = np.asarray(array)
    code = _KIND_SIZE_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"IDX dimensions must fit in uint32, got {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=_CODE_TO_DTYPE[code]).tobytes()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file; gzip is detected from the magic bytes, not the file name."""
    path = Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    try:
        if gzipped:
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise IdxFormatError(f"{path}: corrupt gzip stream ({e})") from e
    return decode_idx(data, source=str(path))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` as IDX; gzipped when the path ends with .gz."""
    path = Path(path)
    data = encode_idx(array)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path
