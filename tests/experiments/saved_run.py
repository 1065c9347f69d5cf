"""A compare-priors run directory for tests, written without fitting anything.

compare-priors' own `write_results` writes it, so it has exactly the layout of a real run;
the posteriors are perturbed copies of the initial network (fitting is tested elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import jax
import pandas as pd

from bnn_shift.data import Dataset
from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    ComparePriorsResult,
    initial_model,
    load_data,
    write_results,
)
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.models.params import partition_params
from bnn_shift.shift import COLUMNS

CONFIG = ComparePriorsConfig(
    dataset="digits", n_train=100, n_test=60, hidden=(8,), priors=("gaussian",), seed=3
)


def perturbed_posterior(model, n_draws: int, seed: int) -> Posterior:
    """n_draws copies of `model`'s parameters plus N(0, 0.3²) noise each."""
    params, static = partition_params(model)
    keys = jax.random.split(jax.random.key(seed), n_draws)
    draws = [
        jax.tree.map(lambda p, k=k: p + 0.3 * jax.random.normal(k, p.shape), params) for k in keys
    ]
    return Posterior(static, stack_draws(draws), attrs={"method": "test"})


def write_run(path: Path, config: ComparePriorsConfig = CONFIG):
    """Write a run with methods "map" (1 draw) and "hmc-gaussian" (3 draws) to `path`."""
    data: Dataset = load_data(config)
    model = initial_model(config, data)
    posteriors = {
        "map": perturbed_posterior(model, 1, 0),
        "hmc-gaussian": perturbed_posterior(model, 3, 1),
    }
    # compare-priors' own table only feeds its accuracy.png here; any values will do
    table = pd.DataFrame(
        [(m, "gaussian_noise", 0.0, "accuracy", 0.5) for m in posteriors], columns=COLUMNS
    )
    result = ComparePriorsResult(config, "digits", 100, 60, table, posteriors)
    write_results(result, path)
    return data, posteriors
