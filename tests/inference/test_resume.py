"""A run killed with SIGKILL at any moment and resumed equals an uninterrupted run, bit for bit."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bnn_shift.inference import Posterior
from bnn_shift.inference.chains import STATE_FILE
from bnn_shift.inference.checkpoint import load_arrays
from bnn_shift.models import MLP

from . import _resume_worker as resume_worker

WORKER = Path(__file__).with_name("_resume_worker.py")
N_ITER, N_CHAINS = 14, 2


def run_worker(run_dir: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    return subprocess.Popen(
        [sys.executable, str(WORKER), run_dir, str(N_ITER), str(N_CHAINS)], env=env
    )


def completed(run_dir: Path) -> int:
    try:
        return load_arrays(run_dir / STATE_FILE)[1]["completed"]
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return 0


def load(path: Path) -> Posterior:
    return Posterior.load(path, MLP(64, (16,), 10, key=jax.random.key(1)))


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference.nc"
    resume_worker.main("", N_ITER, N_CHAINS, str(reference))  # uninterrupted, in this process

    run_dir = tmp_path / "run"
    for kill_after in (3, 8):  # kill twice, mid-run, at whatever point the process is in
        proc = run_worker(str(run_dir))
        deadline = time.time() + 600
        while completed(run_dir) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert completed(run_dir) < N_ITER
    assert run_worker(str(run_dir)).wait(timeout=600) == 0

    a, b = load(reference), load(run_dir / "posterior.nc")
    assert a.n_draws == b.n_draws > 0
    for x, y in zip(jax.tree.leaves(a.draws), jax.tree.leaves(b.draws)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.draw_chain, b.draw_chain)
    for key in a.stats:
        np.testing.assert_array_equal(a.stats[key], b.stats[key])
    for key in a.trace:
        np.testing.assert_array_equal(a.trace[key], b.trace[key])
    np.testing.assert_array_equal(a.predictions["test"], b.predictions["test"])
