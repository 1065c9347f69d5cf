"""Subprocess body for the kill-and-resume test: a small HMC run with a run directory."""

import sys

import jax

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian


def main(run_dir: str, n_iterations: int, n_chains: int, out: str = "") -> None:
    """With a run_dir: two iterations per compiled call and checkpoint, so the run can be
    killed between checkpoints; without: the automatic block (the whole run in one call)."""
    data = load_digits().subset(200, 50, seed=0)
    model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
    hmc(
        model,
        Gaussian(0.3),
        data.x_train,
        data.y_train,
        step_size=0.02,
        trajectory_length=0.3,
        n_iterations=n_iterations,
        n_burnin=3,
        n_chains=n_chains,
        init="prior",
        eval_sets={"test": (data.x_test, data.y_test)},
        run_dir=run_dir or None,
        iterations_per_call=2 if run_dir else None,
        seed=5,
        progress=False,
    ).save(out or f"{run_dir}/posterior.nc")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
