"""IDX reading/writing: round trips, gzip detection by magic bytes, malformed input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bnn_shift.data import IdxFormatError, read_idx, write_idx
from bnn_shift.data.idx import decode_idx, encode_idx

DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]


@settings(max_examples=60, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
        elements={"allow_nan": False},
    ),
    gz=st.booleans(),
)
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, arr, gz: bool) -> None:
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    back = read_idx(path)
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_uint8_header_layout() -> None:
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    data = encode_idx(arr)
    assert data[:4] == b"\x00\x00\x08\x02"
    assert struct.unpack(">2I", data[4:12]) == (2, 3)
    assert data[12:] == bytes(range(6))


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = tmp_path / "x.gz"
    gz_named_raw.write_bytes(encode_idx(arr))  # raw bytes, misleading name
    raw_named_gz = tmp_path / "x.idx"
    raw_named_gz.write_bytes(gzip.compress(encode_idx(arr)))  # gzipped, plain name
    np.testing.assert_array_equal(read_idx(gz_named_raw), arr)
    np.testing.assert_array_equal(read_idx(raw_named_gz), arr)


def test_big_endian_on_disk() -> None:
    data = encode_idx(np.array([1, 256], dtype=np.int32))
    assert data[8:] == b"\x00\x00\x00\x01\x00\x00\x01\x00"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "first two bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "dtype byte 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "payload is 2 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "payload is 2 bytes"),
    ],
)
def test_malformed_headers(data: bytes, match: str) -> None:
    with pytest.raises(IdxFormatError, match=match):
        decode_idx(data, source="bad")


def test_short_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(encode_idx(np.zeros(10, np.uint8))[:-3])
    with pytest.raises(IdxFormatError, match="short-idx1-ubyte"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(1000, np.uint8)))[:-10])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


@pytest.mark.parametrize("bad", [np.zeros(3, np.uint64), np.zeros(3, bool), np.float32(1.0)])
def test_write_rejects_unsupported(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises((TypeError, ValueError)):
        write_idx(tmp_path / "x", bad)
