"""A second fit with the same shapes and settings reuses every compiled program: engines and
targets are arguments of the drivers' programs, not closures made per fit."""

import jax
import numpy as np
import pytest
from jax import monitoring

from bnn_shift.data import load_digits
from bnn_shift.inference import deep_ensemble, hmc, mala, map_fit, mfvi, nuts, sgld, swag
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian

COMPILES = [0]


def _count(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILES[0] += 1


monitoring.register_event_duration_secs_listener(_count)

FITS = {
    "hmc": lambda m, *d, **kw: hmc(
        m, Gaussian(0.3), *d, n_iterations=4, n_burnin=1, n_chains=2, **kw
    ),
    "hmc-auto": lambda m, *d, **kw: hmc(
        m, Gaussian(0.3), *d, n_iterations=3, n_burnin=1, n_tune=5, **kw
    ),
    "nuts": lambda m, *d, **kw: nuts(
        m, Gaussian(0.3), *d, n_warmup=3, n_samples=2, max_depth=3, **kw
    ),
    "mala": lambda m, *d, **kw: mala(
        m, Gaussian(0.3), *d, step_size=1e-3, n_iterations=3, n_burnin=1, **kw
    ),
    "map": lambda m, *d, **kw: map_fit(m, Gaussian(0.3), *d, n_epochs=3, batch_size=20, **kw),
    "ensemble": lambda m, *d, **kw: deep_ensemble(
        m,
        Gaussian(0.3),
        *d,
        n_members=2,
        n_epochs=2,
        learning_rate=0.01,
        init_fn=lambda k: MLP(64, (8,), 10, key=k),
        **kw,
    ),
    "sgld": lambda m, *d, **kw: sgld(
        m,
        Gaussian(0.3),
        *d,
        learning_rate=0.01,
        n_epochs=3,
        batch_size=20,
        n_burnin_epochs=1,
        **kw,
    ),
    "swag": lambda m, *d, **kw: swag(
        m, Gaussian(0.3), *d, learning_rate=0.01, n_epochs=3, batch_size=20, n_samples=2, **kw
    ),
    "mfvi": lambda m, *d, **kw: mfvi(m, Gaussian(0.3), *d, n_epochs=3, learning_rate=0.01, **kw),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # too short to converge, on purpose
@pytest.mark.parametrize(
    "engine", [pytest.param(e, marks=pytest.mark.slow) if e == "hmc-auto" else e for e in FITS]
)
def test_a_second_identical_fit_compiles_nothing(engine):
    data = load_digits().subset(60, 10, seed=0)
    model = MLP(64, (8,), 10, key=jax.random.key(0))
    fit = FITS[engine]
    args = (model, data.x_train, data.y_train)
    first = fit(*args, progress=False)
    before = COMPILES[0]
    second = fit(*args, progress=False)
    assert COMPILES[0] == before, f"{COMPILES[0] - before} programs compiled again"
    for a, b in zip(jax.tree.leaves(first.draws), jax.tree.leaves(second.draws)):
        np.testing.assert_array_equal(a, b)
    assert COMPILES[0] > 0  # the listener does see compiles (the first fit's)
