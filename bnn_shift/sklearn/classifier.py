"""`BNNClassifier`: a Bayesian neural network classifier with the scikit-learn interface."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bnn_shift.inference.likelihood import CATEGORICAL
from bnn_shift.sklearn.base import BaseBNN


class BNNClassifier(ClassifierMixin, BaseBNN):
    """Bayesian neural network classifier: a categorical likelihood over the network's logits,
    a prior over its weights, and one of bnn_shift's inference engines.

    Predictions average the softmax over the posterior's draws (Bayesian model averaging).

    Args:
        inference: "hmc" (full-batch HMC, the default), a name of `ENGINES` ("hmc_adapted",
            "nuts", "mala", "mclmc", "adjusted_mclmc", "mile", "map", "ensemble", "sgld",
            "vi", "swag", "multiswag", "laplace"; docs/sklearn.md describes each).
        model: "mlp", or a callable (n_features, n_outputs, key) -> equinox module mapping one
            example (n_features,) to n_outputs values.
        hidden: hidden layer widths of model="mlp"; () is a Bayesian linear model.
        prior: a name from `bnn_shift.priors.PRIORS` ("gaussian", "laplace", "student-t",
            "empcov", "empcov-product"; data priors are fitted to the training inputs and put
            on the model's `first_layer`, `layers.0.weight` of the MLP), a `Prior` used as
            given, or a callable x_train (n, d) -> Prior.
        prior_scale: prior standard deviation of the named priors.
        step_size: HMC leapfrog step, or "auto": tuned by dual averaging at the start.
        n_iterations: HMC iterations; every state after burn-in is a draw. NUTS
            runs n_burnin warm-up steps and keeps the other n_iterations - n_burnin.
        n_burnin: HMC iterations without the Metropolis test at the start, not kept.
        trajectory_length: HMC trajectory length; None is (pi/2) * the prior's
            `trajectory_scale`.
        max_leapfrogs: "hmc" shortens a trajectory needing more leapfrogs of the tuned step
            than this to that many (each iteration costs at most max_leapfrogs gradients, the
            chain stays exact; 256 keeps MNIST-sized fits to minutes); None: full trajectories.
        n_chains: HMC / NUTS chains.
        epochs: epochs of "map", "ensemble", "sgld" and "vi", and of the MAP fit that starts
            the samplers (init="map").
        learning_rate: Adam's (cosine-decayed) learning rate; SGLD's step in the same units.
        batch_size: minibatch size of the epoch-based engines; None is the full batch.
        n_members: ensemble size of inference="ensemble".
        temperature: posterior temperature of "hmc", "nuts", "sgld" and "vi".
        init: where "hmc", "nuts" and "sgld" start: "map" (a MAP fit of `epochs` epochs) or
            "random" (the network's random initialisation).
        random_state: int, RandomState or None; seeds the initialisation and the engine.
        progress: show the engines' progress bars.

    Attributes:
        classes_: (n_classes,) the labels seen in fit; outputs are in this order.
        n_features_in_: number of input features.
        posterior_: the fitted `bnn_shift.inference.Posterior` (draws, sample stats, attrs).
    """

    def fit(self, X, y):
        """Fit the posterior over the network's weights to X (n, d) and labels y (n,)."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs examples of at least 2 classes; y has 1 class "
                f"({self.classes_[0]!r})"
            )
        self.posterior_ = self._fit_posterior(X, codes, CATEGORICAL, len(self.classes_))
        return self

    def predict_proba(self, X) -> np.ndarray:  # (n, n_classes)
        """Posterior-averaged class probabilities, columns in the order of `classes_`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        probs = self.posterior_.predict_proba(X).astype(np.float64)  # float32, checked
        return probs / probs.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:  # (n, n_classes)
        """Log of `predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:  # (n,)
        """The most probable class under the posterior predictive."""
        probs = self.predict_proba(X)  # checks that the estimator is fitted
        return self.classes_[np.argmax(probs, axis=1)]
