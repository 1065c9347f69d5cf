"""MILE, Microcanonical Langevin Ensembles (Sommer, Robnik, Nozadze, Seljak, Rugamer, 2025):
a deep ensemble's members as starting points, then unadjusted MCLMC chains from each.

Differences from the paper's recipe, for the shared driver: the step size, L and diagonal mass
are tuned once, from member 0, and shared by every chain (the paper tunes each member); the
other members burn in for n_burnin iterations before their states are averaged.
"""

from __future__ import annotations

from bnn_shift.inference.mclmc import mclmc
from bnn_shift.inference.posterior import Posterior
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


def mile(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    n_members: int = 4,
    n_iterations: int = 100,
    n_burnin: int = 10,
    members: Posterior | None = None,
    **settings,
) -> Posterior:
    """MILE: n_members MAP fits (a `deep_ensemble` with the ENSEMBLE_INIT settings, or your
    own `members` posterior), then one MCLMC chain from each (`mclmc`'s other settings).
    attrs["n_init_gradients"] counts the ensemble's full-batch gradients."""
    post = mclmc(
        model, prior, x, y,
        n_chains=n_members, init="ensemble" if members is None else members,
        n_iterations=n_iterations, n_burnin=n_burnin, **settings,
    )  # fmt: skip
    post.attrs["method"] = "mile"
    return post
