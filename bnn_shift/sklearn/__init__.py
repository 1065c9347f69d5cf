"""scikit-learn estimators: `BNNClassifier` and `BNNRegressor` (fit / predict / predict_proba /
score), usable in Pipeline, GridSearchCV and cross_val_score."""

from bnn_shift.sklearn.base import expected_failed_checks
from bnn_shift.sklearn.classifier import BNNClassifier
from bnn_shift.sklearn.engines import ENGINES
from bnn_shift.sklearn.regressor import BNNRegressor

__all__ = ["ENGINES", "BNNClassifier", "BNNRegressor", "expected_failed_checks"]
