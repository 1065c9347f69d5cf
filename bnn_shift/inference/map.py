"""MAP as a minibatch engine: optax on the mean negative log posterior, and `map_fit(...)`."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.minibatch import EpochEngine, fit_epochs, prepare_epochs
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, learning_rate, n_steps: int) -> optax.GradientTransformation:
    """Adam or SGD with momentum 0.9, both with a cosine-decayed learning rate."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=max(n_steps, 1))
    if name == "adam":
        return optax.adam(schedule)
    return optax.sgd(schedule, momentum=0.9)


def check_learning_rate(learning_rate: float) -> None:
    """Raise a ValueError unless the learning rate is finite and > 0."""
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate}")


class MAPState(NamedTuple):
    position: PyTree
    opt_state: optax.OptState


class MAPInfo(NamedTuple):
    loss: jax.Array  # -(minibatch log joint) / n


class MAP(EpochEngine):
    """Minimises -(log likelihood + log prior) / n (a mean loss, so learning rates do not
    depend on the data size) with `optimizer` at a cosine-decayed learning rate over
    n_steps steps."""

    learning_rate: jax.Array = eqx.field(converter=lambda r: jnp.asarray(r, jnp.float32))
    n_steps: int = eqx.field(static=True)
    optimizer: str = eqx.field(static=True, default="adam")

    def _optax(self) -> optax.GradientTransformation:
        return make_optimizer(self.optimizer, self.learning_rate, self.n_steps)

    def init(self, target: Target, position: PyTree) -> MAPState:
        return MAPState(position, self._optax().init(position))

    def step(self, target: Target, key, state: MAPState, batch: Data, step) -> tuple:
        def loss(p):
            return -target.minibatch_log_joint(p, batch) / target.n

        value, grads = jax.value_and_grad(loss)(state.position)
        updates, opt_state = self._optax().update(grads, state.opt_state, state.position)
        return MAPState(optax.apply_updates(state.position, updates), opt_state), MAPInfo(value)


def map_fit(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    n_epochs: int = 500,
    batch_size: int | None = None,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    run_dir: str | Path | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
    whiten_first_layer: bool = False,
) -> Posterior:
    """Maximise sum_i log p(y_i|x_i, theta) + log p(theta); -> a one-draw `Posterior`.

    The objective is divided by n (a mean loss) so learning rates do not depend on data size;
    minibatches (batch_size < n) rescale their likelihood by n / batch_size. stats["loss"] holds
    the per-epoch mean loss, -(log posterior)/n. likelihood: "categorical" (classifiers),
    "gaussian" or a `Likelihood` such as gaussian_likelihood(noise_std) (regression).
    run_dir: checkpoint after each block of epochs there; calling again resumes (bit for bit).
    epochs_per_call: epochs per compiled call and checkpoint (default: adapted to ~2 s).
    whiten_first_layer: optimise a dense EmpCov first layer in whitened coordinates (the same
    objective, well conditioned: Adam then reaches EmpCov's mode; `prepare_epochs`); stats["loss"]
    is then the whitened objective, which differs by a constant (the log-Jacobian of the map).
    Start it at a prior draw: a network initialisation lies far off EmpCov's support along the
    inputs' near-dependent directions, which no optimiser crosses quickly in either coordinates.
    """
    problem = prepare_epochs(
        model, prior, x, y, likelihood=likelihood, batch_size=batch_size, n_epochs=n_epochs,
        whiten_first_layer=whiten_first_layer,
    )  # fmt: skip
    engine = _map_engine(problem.target.n, problem.batch_size, n_epochs, optimizer, learning_rate)
    settings = {"optimizer": optimizer, "learning_rate": learning_rate, "seed": seed}
    run, attrs = fit_epochs(
        "map", engine, problem, [problem.params], settings,
        seeds=[seed], n_epochs=n_epochs, run_dir=run_dir, progress=progress,
        epochs_per_call=epochs_per_call,
    )  # fmt: skip
    final = jax.tree.map(lambda a: np.asarray(a[0]), problem.params_of(run.state.position))
    return Posterior(
        static=problem.target.static,
        draws=stack_draws([final]),
        stats={"loss": run.stats["loss"][:, 0]},
        attrs=attrs,
        kind="optimizer",
    )


def _map_engine(n: int, batch: int, n_epochs: int, optimizer: str, learning_rate: float) -> MAP:
    """The MAP engine for n_epochs of n // batch steps, its settings checked."""
    check_learning_rate(learning_rate)
    make_optimizer(optimizer, learning_rate, 1)  # checks the name
    return MAP(learning_rate, n_epochs * (n // batch), optimizer)
