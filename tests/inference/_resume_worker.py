"""Subprocess body for the kill-and-resume tests: a small run of one engine with a run dir."""

import sys

import jax

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc, map_fit, mclmc, nuts
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian


def main(run_dir: str, n_iterations: int, n_chains: int, out: str = "", engine: str = "hmc"):
    """With a run_dir: two iterations (epochs) per compiled call and checkpoint, so the run can
    be killed between checkpoints; without: the automatic block."""
    data = load_digits().subset(200, 50, seed=0)
    model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
    problem = (model, Gaussian(0.3), data.x_train, data.y_train)
    per_call = 2 if run_dir else None
    common = {"run_dir": run_dir or None, "seed": 5, "progress": False}
    chains = common | {
        "n_chains": n_chains,
        "eval_sets": {"test": (data.x_test, data.y_test)},
        "iterations_per_call": per_call,
    }
    if engine == "hmc":
        post = hmc(
            *problem, step_size=0.02, trajectory_length=0.3, n_iterations=n_iterations,
            n_burnin=3, init="prior", **chains,
        )  # fmt: skip
    elif engine == "mclmc":
        post = mclmc(*problem, n_iterations=n_iterations, n_burnin=3, n_tune=200, **chains)
    elif engine == "nuts":
        post = nuts(*problem, n_warmup=3, n_samples=n_iterations - 3, max_depth=4, **chains)
    else:
        post = map_fit(
            *problem, n_epochs=n_iterations, batch_size=50, learning_rate=0.01,
            epochs_per_call=per_call, **common,
        )  # fmt: skip
    post.save(out or f"{run_dir}/posterior.nc")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
