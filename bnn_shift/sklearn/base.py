"""Shared constructor and fit of the scikit-learn estimators (see `BNNClassifier`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import numpy as np
from sklearn.base import BaseEstimator

from bnn_shift.inference.convergence import stuck_chains
from bnn_shift.inference.likelihood import Likelihood, float32_values
from bnn_shift.inference.posterior import Posterior
from bnn_shift.priors.base import Prior
from bnn_shift.sklearn.build import (
    ModelFactory,
    PriorFactory,
    build_model,
    build_prior,
    fit_seeds,
)
from bnn_shift.sklearn.engines import Problem, Settings, fit_posterior


class BaseBNN(BaseEstimator):
    """Constructor arguments are stored unchanged; everything is built and checked in `fit`."""

    def __init__(
        self,
        inference: str = "hmc",
        *,
        model: str | ModelFactory = "mlp",
        hidden: Sequence[int] = (32,),
        prior: str | Prior | PriorFactory = "gaussian",
        prior_scale: float = 1.0,
        step_size: float | str = "auto",
        n_iterations: int = 60,
        n_burnin: int = 20,
        trajectory_length: float | None = None,
        max_leapfrogs: int | None = 256,
        n_chains: int = 1,
        epochs: int = 500,
        learning_rate: float = 0.01,
        batch_size: int | None = None,
        n_members: int = 5,
        temperature: float = 1.0,
        init: str = "map",
        random_state: int | np.random.RandomState | None = None,
        progress: bool = False,
    ):
        self.inference = inference
        self.model = model
        self.hidden = hidden
        self.prior = prior
        self.prior_scale = prior_scale
        self.step_size = step_size
        self.n_iterations = n_iterations
        self.n_burnin = n_burnin
        self.trajectory_length = trajectory_length
        self.max_leapfrogs = max_leapfrogs
        self.n_chains = n_chains
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_members = n_members
        self.temperature = temperature
        self.init = init
        self.random_state = random_state
        self.progress = progress

    def _fit_posterior(
        self,
        x: np.ndarray,
        y: np.ndarray,
        likelihood: Likelihood,
        n_outputs: int,
        learned_noise: bool = False,
    ) -> Posterior:
        """Build the network (n_outputs means, plus a learned log noise std per output when
        asked) and the prior for x (n, d), and run the chosen engine."""
        model_seed, engine_seed = fit_seeds(self.random_state)
        x = np.ascontiguousarray(float32_values(x, "X"))  # checked after the cast
        make_model = partial(
            build_model,
            self.model,
            self.hidden,
            x.shape[1],
            n_outputs,
            learned_noise=learned_noise,
        )
        model = make_model(jax.random.key(model_seed))
        problem = Problem(
            model=model,
            make_model=make_model,
            prior=build_prior(self.prior, x, self.prior_scale, model),
            likelihood=likelihood,
            x=x,
            y=y,
            seed=engine_seed,
        )
        posterior = fit_posterior(self.inference, problem, self._settings())
        if posterior.n_draws == 0 or stuck_chains(posterior):
            raise RuntimeError(
                f"{self.inference} never moved: every proposal after burn-in was rejected "
                f"(step size {posterior.attrs.get('step_size')}); pass a smaller step_size, "
                "a longer n_burnin (hmc adapts its step over it), more epochs for the MAP start "
                "(init='map'), or a shorter trajectory_length"
            )
        return posterior

    def _settings(self) -> Settings:
        return Settings(
            step_size=self.step_size,
            n_iterations=self.n_iterations,
            n_burnin=self.n_burnin,
            trajectory_length=self.trajectory_length,
            max_leapfrogs=self.max_leapfrogs,
            n_chains=self.n_chains,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            n_members=self.n_members,
            temperature=self.temperature,
            init=self.init,
            progress=self.progress,
        )


FLOAT32_ROWS = (
    "float32 network outputs can change in the last bits (~1e-7) with a row's position and the "
    "number of rows in the batch (XLA's CPU kernels vectorise across rows, with a remainder "
    "loop); the check asks for agreement to 1e-9"
)
# Checks comparing predictions of the same rows in different batch layouts (reordered, or a
# subset). Any architecture can differ there (a dense layer is enough), so all are declared.
BATCH_LAYOUT_CHECKS = (
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
)


def expected_failed_checks(estimator: BaseBNN) -> dict[str, str]:
    """scikit-learn checks the estimators can fail, each with the reason; pass this as
    `expected_failed_checks` to check_estimator or parametrize_with_checks."""
    return dict.fromkeys(BATCH_LAYOUT_CHECKS, FLOAT32_ROWS)
