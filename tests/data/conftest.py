"""Fixtures for the data tests: an isolated cache, and the shared MNIST copy when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bnn_shift.data.mnist import ENV_MNIST_DIR, local_mnist_dir

_REPO_SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
# The shared data files (ETTh1.csv, tinyshakespeare.txt, ...): $BNN_SHIFT_SHARED_DATA, else the
# checkout's sibling ../shared/data (CI clones have one; a user's checkout may not).
_SHARED_DATA = Path(os.environ.get("BNN_SHIFT_SHARED_DATA") or _REPO_SHARED_MNIST.parent)
# the shared copy, else $BNN_SHIFT_MNIST_DIR or what load_mnist fetched into its cache (read
# here, before each test gets an empty cache)
_MNIST_DIR = local_mnist_dir(_REPO_SHARED_MNIST) or _REPO_SHARED_MNIST


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty cache (BNN_SHIFT_DATA) and no BNN_SHIFT_MNIST_DIR."""
    cache = tmp_path / "data_home"
    monkeypatch.setenv("BNN_SHIFT_DATA", str(cache))
    monkeypatch.delenv(ENV_MNIST_DIR, raising=False)
    return cache


@pytest.fixture(scope="session")
def shared_mnist_dir() -> Path:
    """Directory with the 4 MNIST IDX files ($BNN_SHIFT_MNIST_DIR or ../shared/data/mnist)."""
    if local_mnist_dir(_MNIST_DIR) != _MNIST_DIR:
        pytest.skip(f"no MNIST copy: set {ENV_MNIST_DIR} or provide {_REPO_SHARED_MNIST}")
    return _MNIST_DIR


@pytest.fixture
def mnist_env(shared_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point BNN_SHIFT_MNIST_DIR at the shared MNIST copy for one test."""
    monkeypatch.setenv(ENV_MNIST_DIR, str(shared_mnist_dir))
    return shared_mnist_dir


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data directory ($BNN_SHIFT_SHARED_DATA or ../shared/data); skips if absent."""
    if not _SHARED_DATA.is_dir():
        pytest.skip(
            f"no shared data directory: set BNN_SHIFT_SHARED_DATA or provide {_SHARED_DATA}"
        )
    return _SHARED_DATA
