"""`BNNRegressor`: a Bayesian neural network regressor with a Gaussian likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from bnn_shift.inference.likelihood import gaussian_likelihood
from bnn_shift.priors.base import Prior
from bnn_shift.sklearn.base import BaseBNN
from bnn_shift.sklearn.build import ModelFactory, PriorFactory
from bnn_shift.typing import PyTree


class BNNRegressor(RegressorMixin, BaseBNN):
    """Bayesian neural network regressor: y ~ N(f(x), noise_std^2) per target, a prior over
    the network's weights, and one of bnn_shift's inference engines.

    Targets are standardised per column before fitting (the prior sees unit-scale targets)
    and predictions are mapped back. `predict(X, return_std=True)` also returns the posterior
    predictive std: sqrt(variance of the mean across draws + mean noise variance).

    Args:
        noise_std: "learned" (default): one log noise std per target, a parameter inferred
            with the weights under the same prior (0 means the targets' std); or a fixed
            positive float (or one per target), in the units of y.
        inference: as for `BNNClassifier`, like every other argument.
        model: a callable gets n_outputs = the number of targets.

    Attributes:
        n_features_in_: number of input features.
        posterior_: the fitted `bnn_shift.inference.Posterior`, over standardised targets.
        y_mean_: (n_targets,) mean of the training targets.
        y_scale_: (n_targets,) standard deviation of the training targets (1 where constant).
    """

    def __init__(
        self,
        inference: str = "hmc",
        *,
        model: str | ModelFactory = "mlp",
        hidden: Sequence[int] = (32,),
        prior: str | Prior | PriorFactory = "gaussian",
        prior_scale: float = 1.0,
        noise_std: float | str = "learned",
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
        super().__init__(
            inference,
            model=model,
            hidden=hidden,
            prior=prior,
            prior_scale=prior_scale,
            step_size=step_size,
            n_iterations=n_iterations,
            n_burnin=n_burnin,
            trajectory_length=trajectory_length,
            max_leapfrogs=max_leapfrogs,
            n_chains=n_chains,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            n_members=n_members,
            temperature=temperature,
            init=init,
            random_state=random_state,
            progress=progress,
        )
        self.noise_std = noise_std

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Fit the posterior over the network's weights to X (n, d) and targets y (n,) or
        (n, n_targets)."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        targets = np.asarray(y, np.float64).reshape(len(y), -1)  # (n, k)
        self.y_mean_ = targets.mean(axis=0)
        scale = targets.std(axis=0)
        self.y_scale_ = np.where(scale > 0, scale, 1.0)
        z = ((targets - self.y_mean_) / self.y_scale_).astype(np.float32)
        k = z.shape[1]
        learned = self._learned_noise()
        noise = None if learned else np.broadcast_to(self._noise_std(k), (k,)) / self.y_scale_
        likelihood = gaussian_likelihood(noise)
        self._single_target = y.ndim == 1
        self.posterior_ = self._fit_posterior(
            X, z[:, 0] if self._single_target else z, likelihood, k, learned_noise=learned
        )
        return self

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean (n,) or (n, n_targets); with return_std=True also its
        standard deviation, noise included."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        outputs = self.posterior_.predict_draws(X, per_draw=raw_outputs).astype(np.float64)
        k = len(self.y_mean_)
        if self._learned_noise():
            means, noise_var = outputs[..., :k], np.exp(2 * outputs[..., k:])
        else:
            means, noise_var = outputs, (self._noise_std(k) / self.y_scale_) ** 2
        mean = means.mean(axis=0) * self.y_scale_ + self.y_mean_  # (n, k)
        single = self._single_target
        mean = mean[:, 0] if single else mean
        if not return_std:
            return mean
        var = means.var(axis=0) + np.mean(np.broadcast_to(noise_var, means.shape), axis=0)
        std = np.sqrt(var) * self.y_scale_
        return mean, (std[:, 0] if single else std)

    def _learned_noise(self) -> bool:
        if isinstance(self.noise_std, str):
            if self.noise_std != "learned":
                raise ValueError(
                    f'noise_std must be "learned" or a positive float, got {self.noise_std!r}'
                )
            return True
        return False

    def _noise_std(self, k: int) -> np.ndarray:
        noise = np.asarray(self.noise_std, np.float64)
        if noise.ndim > 1 or (noise.ndim == 1 and len(noise) != k):
            raise ValueError(f"noise_std must be a float or {k} floats, got {self.noise_std!r}")
        if not (np.all(np.isfinite(noise)) and np.all(noise > 0)):
            raise ValueError(f"noise_std must be finite and > 0, got {self.noise_std!r}")
        return noise


def raw_outputs(params: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, out)
    """The network's outputs under one parameter setting (means, then log stds if learned)."""
    return jax.vmap(eqx.combine(params, static))(x)
