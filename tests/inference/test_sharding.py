"""The data-sharded chain on 4 (forced CPU) devices equals the single-device chain, for HMC and
for NUTS (which gets sharding from the shared full-batch driver)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = """
import json, sys
import jax, numpy as np
from bnn_shift.data import load_digits
from bnn_shift.inference import hmc, nuts
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian
assert len(jax.devices()) == 4, jax.devices()
data = load_digits().subset(203, 50, seed=0)  # 203: not a multiple of 4, exercises padding
model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
out = {}
for name, devices, chains in (("one", jax.devices()[:1], 2), ("four", jax.devices(), 2)):
    common = dict(n_chains=chains, devices=devices, seed=1, progress=False,
                  eval_sets={"test": data.x_test})
    if sys.argv[1] == "hmc":
        post = hmc(model, Gaussian(0.3), data.x_train, data.y_train, step_size=0.02,
                   trajectory_length=0.3, n_iterations=6, n_burnin=2, init="prior", **common)
        steps = post.stats["accepted"]
    else:
        post = nuts(model, Gaussian(0.3), data.x_train, data.y_train, n_warmup=3,
                    n_samples=3, max_depth=4, **common)
        steps = post.stats["n_steps"]
    out[name] = {
        "energy": post.stats["energy"].tolist(),
        "steps": steps.tolist(),
        "weights": np.concatenate([np.ravel(l) for l in jax.tree.leaves(post.draws)]).tolist(),
        "test": post.predictions["test"].tolist(),
        "devices": post.attrs["n_devices"],
    }
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hmc", "nuts"])
def test_four_device_chain_equals_single_device_chain(engine):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(Path(__file__).parents[2]),
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, engine], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    one, four = out["one"], out["four"]
    assert one["devices"] == 1 and four["devices"] == 4
    assert one["steps"] == four["steps"]  # HMC: the accept decisions; NUTS: the tree sizes
    # Sums over the batch are reduced in a different order across devices: float32 round-off.
    np.testing.assert_allclose(four["energy"], one["energy"], rtol=1e-4)
    np.testing.assert_allclose(four["weights"], one["weights"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(four["test"], one["test"], rtol=1e-3, atol=1e-5)
