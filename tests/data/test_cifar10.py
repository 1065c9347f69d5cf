"""CIFAR-10 from small files in the exact python-batch format, written here with pickle."""

from __future__ import annotations

import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import ChecksumError, DataNotFoundError, load_cifar10, load_dataset
from bnn_shift.data import cifar10 as c10

PER_TRAIN_BATCH, N_TEST = 2, 3
NAMES = [n.upper().encode() for n in c10.CLASSES]  # read from batches.meta (Python 2 str)


def _batch(rng: np.random.Generator, n: int, label: bytes) -> dict:
    """A batch dict as the release has it (Python 2 str keys read back as bytes)."""
    return {
        b"batch_label": label,
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }


@pytest.fixture
def batches(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """tmp/cifar-10-batches-py/ with 5 train batches of 2, a test batch of 3 and the meta."""
    rng = np.random.default_rng(0)
    d = tmp_path / "copy" / c10.BATCH_DIR
    d.mkdir(parents=True)
    written = {}
    for name in c10.TRAIN_BATCHES:
        written[name] = _batch(rng, PER_TRAIN_BATCH, b"training batch")
    written[c10.TEST_BATCH] = _batch(rng, N_TEST, b"testing batch 1 of 1")
    for name, batch in written.items():
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": 10000, b"label_names": NAMES, b"num_vis": 3072}
    (d / c10.META).write_bytes(pickle.dumps(meta, protocol=2))
    return d, written


def _check(ds, written: dict[str, dict]) -> None:
    assert ds.name == "cifar10" and ds.image_shape == (32, 32, 3)
    assert len(ds.y_train) == 5 * PER_TRAIN_BATCH and len(ds.y_test) == N_TEST
    assert ds.classes == tuple(n.decode() for n in NAMES)
    test = written[c10.TEST_BATCH]
    np.testing.assert_array_equal(ds.y_test, test[b"labels"])
    np.testing.assert_array_equal(ds.y_train[:2], written["data_batch_1"][b"labels"])
    raw = np.rint(ds.denormalize(ds.x_test) * 255).astype(np.int64)  # (n, 32, 32, 3)
    flat = test[b"data"].astype(np.int64)
    # row-major planes: pixel (row r, column c) of channel k sits at k*1024 + r*32 + c
    for i, r, c, k in [(0, 0, 0, 0), (1, 5, 31, 1), (2, 31, 7, 2)]:
        assert raw[i, r, c, k] == flat[i, k * 1024 + r * 32 + c]
    np.testing.assert_array_equal(raw[2].transpose(2, 0, 1).reshape(-1), flat[2])


def test_batch_dir_and_its_parent(batches: tuple[Path, dict[str, dict]]) -> None:
    d, written = batches
    _check(load_cifar10(d), written)
    ds = load_cifar10(d.parent)
    _check(ds, written)
    expect = (written[c10.TEST_BATCH][b"data"][0, 0] / 255 - 0.49) / 0.2  # red of pixel (0, 0)
    assert ds.x_test[0, 0, 0, 0] == pytest.approx(expect, rel=1e-6)
    assert ds.mean == (0.49, 0.48, 0.44) and ds.std == 0.2


def test_tar_gz_archive_and_env(
    batches: tuple[Path, dict[str, dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, written = batches
    archive = tmp_path / "dl" / c10.ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(d, arcname=c10.BATCH_DIR)
    _check(load_cifar10(archive), written)
    _check(load_cifar10(archive.parent), written)
    monkeypatch.setenv(c10.ENV_CIFAR10_DIR, str(archive))
    _check(load_dataset("cifar10"), written)


def test_meta_optional_and_str_keys(batches: tuple[Path, dict[str, dict]]) -> None:
    d, written = batches
    (d / c10.META).unlink()
    # a copy re-pickled by Python 3 with str keys reads the same
    test = {k.decode(): v for k, v in written[c10.TEST_BATCH].items()}
    (d / c10.TEST_BATCH).write_bytes(pickle.dumps(test, protocol=4))
    ds = load_cifar10(d)
    assert ds.classes == c10.CLASSES
    np.testing.assert_array_equal(ds.y_test, written[c10.TEST_BATCH][b"labels"])


def test_small_copy_warns(
    batches: tuple[Path, dict[str, dict]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        load_cifar10(batches[0])
    assert "not the full CIFAR-10" in caplog.text


def test_missing_and_malformed(
    batches: tuple[Path, dict[str, dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, written = batches
    monkeypatch.delenv(c10.ENV_CIFAR10_DIR, raising=False)
    with pytest.raises(DataNotFoundError, match=r"cs\.toronto\.edu"):
        load_cifar10()
    bad = dict(written["data_batch_3"])
    bad[b"data"] = bad[b"data"][:, :100]
    (d / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ChecksumError, match=r"data_batch_3: data is uint8\(2, 100\)"):
        load_cifar10(d)
    bad[b"data"], bad[b"labels"] = written["data_batch_3"][b"data"], [0, 10]
    (d / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ChecksumError, match=r"labels outside 0\.\.9"):
        load_cifar10(d)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match=r"lacks CIFAR-10 batches \['data_batch_3'\]"):
        load_cifar10(d)


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def test_code_in_a_batch_is_not_run(batches: tuple[Path, dict[str, dict]]) -> None:
    d, written = batches
    evil = dict(written[c10.TEST_BATCH])
    evil[b"filenames"] = _Payload()
    (d / c10.TEST_BATCH).write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(ChecksumError, match=r"system.*python batch"):
        load_cifar10(d)
