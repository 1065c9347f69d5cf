"""Prior selection by Laplace evidence on a small digits problem."""

import numpy as np

from bnn_shift.experiments.compare_priors import ComparePriorsConfig
from bnn_shift.experiments.evidence import prior_evidence


def test_every_prior_gets_a_finite_evidence():
    config = ComparePriorsConfig(
        dataset="digits", n_train=200, n_test=50, hidden=(8,), map_epochs=30,
        priors=("gaussian", "empcov"),
    )  # fmt: skip
    table = prior_evidence(config)
    assert list(table.prior) == ["gaussian", "empcov"]
    assert np.all(np.isfinite(table.log_marginal_likelihood))
    assert np.all(table.grad_norm_at_map >= 0)
    np.testing.assert_allclose(table.per_example * 200, table.log_marginal_likelihood)
    # a different prior is a different model of the data: the two evidences differ
    assert table.log_marginal_likelihood[0] != table.log_marginal_likelihood[1]
