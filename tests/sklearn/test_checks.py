"""scikit-learn's own estimator checks (check_estimator), one test per check."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from bnn_shift.sklearn import BNNClassifier, BNNRegressor, expected_failed_checks

pytestmark = pytest.mark.slow  # scikit-learn's whole estimator-check suite: the full tier

# The checks test the scikit-learn contract and fit ~50 times per estimator, data of new shapes
# compiling new programs, so the networks are linear (hidden=(), the cheapest to compile): MAP
# for both estimators, and the default engine, HMC with its tuned step, for the classifier on short
# trajectories from the random start. Hidden layers and the other engines are tested in the
# other files here.
CHECKED = [
    BNNClassifier("map", hidden=(), epochs=50, learning_rate=0.05),
    BNNRegressor("map", hidden=(), epochs=50, learning_rate=0.05),
    BNNClassifier(
        "hmc", hidden=(), init="random", n_iterations=4, n_burnin=1, trajectory_length=0.2
    ),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)
