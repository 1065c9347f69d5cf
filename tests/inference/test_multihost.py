"""Two processes x two CPU devices (jax.distributed, gloo collectives) draw the same chain as
one process on one device, and share one run directory."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian

WORKER = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2])
)
import numpy as np
from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian
assert jax.device_count() == 4 and jax.local_device_count() == 2
data = load_digits().subset(203, 50, seed=0)  # 203 rows: padding on a 4-way data split
model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
post = hmc(model, Gaussian(0.3), data.x_train, data.y_train, step_size=0.02,
           trajectory_length=0.3, n_iterations=6, n_burnin=2, n_chains=2, init="prior",
           seed=1, progress=False, eval_sets={"test": data.x_test}, run_dir=sys.argv[3])
with open(sys.argv[4], "w") as f:  # not stdout: gloo logs there
    json.dump({
        "energy": post.stats["energy"].tolist(),
        "accepted": post.stats["accepted"].tolist(),
        "weights": np.concatenate([np.ravel(w) for w in jax.tree.leaves(post.draws)]).tolist(),
        "test": post.predictions["test"].tolist(),
        "devices": post.attrs["n_devices"],
    }, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_hosts_draw_the_single_device_chain(tmp_path):
    data = load_digits().subset(203, 50, seed=0)
    model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
    one = hmc(
        model,
        Gaussian(0.3),
        data.x_train,
        data.y_train,
        step_size=0.02,
        trajectory_length=0.3,
        n_iterations=6,
        n_burnin=2,
        n_chains=2,
        init="prior",
        seed=1,
        progress=False,
        eval_sets={"test": data.x_test},
        devices=jax.devices()[:1],
    )

    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(Path(__file__).parents[2]),
    )
    address = f"127.0.0.1:{_free_port()}"
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    procs = []
    for pid in (0, 1):  # logs to files: a full pipe would block one process at shutdown
        with open(logs / f"{pid}.out", "w") as out, open(logs / f"{pid}.err", "w") as err:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        WORKER,
                        address,
                        str(pid),
                        run_dir,
                        logs / f"{pid}.json",
                    ],
                    env=env,
                    stdout=out,
                    stderr=err,
                )
            )
    for pid, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (logs / f"{pid}.err").read_text()[-3000:]
    hosts = [json.loads((logs / f"{pid}.json").read_text()) for pid in (0, 1)]

    assert hosts[0] == hosts[1]  # every process returns the same, whole posterior
    got = hosts[0]
    assert got["devices"] == 4
    assert got["accepted"] == one.stats["accepted"].tolist()
    # Batch sums are reduced in another order across 4 devices: float32 round-off only.
    np.testing.assert_allclose(got["energy"], one.stats["energy"], rtol=1e-4)
    weights = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(one.draws)])
    np.testing.assert_allclose(got["weights"], weights, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got["test"], one.predictions["test"], rtol=1e-3, atol=1e-5)
    assert (run_dir / "checkpoint.npz").exists()  # written once, by process 0
