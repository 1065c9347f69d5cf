"""A run killed with SIGKILL at any moment and resumed equals an uninterrupted run, bit for bit:
HMC and NUTS through the full-batch driver, MAP through the minibatch driver."""

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
from bnn_shift.inference.checkpoint import STATE_FILE, load_arrays
from bnn_shift.models import MLP

from . import _resume_worker as resume_worker

WORKER = Path(__file__).with_name("_resume_worker.py")
N_CHAINS = 2
# iterations (MAP: epochs, milliseconds each) of a run and where the two kills happen: enough
# left after the second kill that a fast machine cannot finish before the signal lands
LENGTHS = {
    "hmc": (40, (3, 8)),
    "nuts": (40, (3, 8)),
    "mclmc": (40, (3, 8)),
    "map": (1500, (200, 700)),
}


def run_worker(run_dir: str, engine: str = "hmc") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    args = [run_dir, str(LENGTHS[engine][0]), str(N_CHAINS), f"{run_dir}/posterior.nc", engine]
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env)


def completed(run_dir: Path) -> int:
    try:
        return load_arrays(run_dir / STATE_FILE)[1]["completed"]
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return 0


def load(path: Path) -> Posterior:
    return Posterior.load(path, MLP(64, (16,), 10, key=jax.random.key(1)))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hmc", "nuts", "mclmc", "map"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, engine):
    reference = tmp_path / "reference.nc"
    n_iterations, kill_points = LENGTHS[engine]
    resume_worker.main("", n_iterations, N_CHAINS, str(reference), engine)  # uninterrupted, here

    run_dir = tmp_path / "run"
    for kill_after in kill_points:  # kill twice, mid-run, at whatever point the process is in
        proc = run_worker(str(run_dir), engine)
        deadline = time.time() + 600
        while completed(run_dir) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert completed(run_dir) < n_iterations
    assert run_worker(str(run_dir), engine).wait(timeout=600) == 0

    a, b = load(reference), load(run_dir / "posterior.nc")
    assert a.n_draws == b.n_draws > 0
    for x, y in zip(jax.tree.leaves(a.draws), jax.tree.leaves(b.draws)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.draw_chain, b.draw_chain)
    for key in a.stats:
        np.testing.assert_array_equal(a.stats[key], b.stats[key])
    for key in a.trace:
        np.testing.assert_array_equal(a.trace[key], b.trace[key])
    for key in a.predictions:
        np.testing.assert_array_equal(a.predictions[key], b.predictions[key])
