"""Laplace approximation around a MAP fit: a Gaussian over a subset of the parameters whose
precision is the generalised Gauss-Newton (GGN) curvature of the negative log-likelihood plus
the prior's own precision; its evidence; and its predictives.

Conventions (tempered posterior (likelihood * prior)^(1/T), as `Target`):

    P = GGN(theta*) + prior precision                 (untempered, over the subset, (d, d))
    q = N(theta*, T P^-1)                             (parameters outside the subset stay at MAP)
    GGN = sum_i J_i^T Lambda_i J_i,  J_i = d f(x_i) / d theta (k, d),
    Lambda_i = -d^2 log p(y_i | f) / d f^2 (k, k): I / noise_std^2 (Gaussian, fixed noise, where
    the GGN is the Hessian for a linear model), diag(p) - p p^T (categorical, p = softmax(f)).

Curvature structures (`hessian`):
- "full": dense P, exact (GGN and prior precision), for at most FULL_LIMIT parameters.
- "diag": diag(P): the GGN's diagonal plus the prior precision's diagonal (for EmpCov the
  diagonal of its dense row precision, so the marginal sds are 1/sqrt(diag P), the conditional
  and not the marginal sds of the dense precision: never wider than those).
- "kron": KFAC for every selected `eqx.nn.Linear` and `eqx.nn.Conv2d` (weight with its bias):
  its GGN block is approximated by G (out, out) kron A (in+1, in+1), G = sum_i J_s,i^T
  Lambda_i J_s,i with J_s the Jacobian of f by the layer's outputs, A = mean_i [a_i, 1][a_i,
  1]^T of its inputs; a conv is the dense layer at every output position on the patch under
  it, positions taken as independent (KFC, Grosse & Martens 2016): G sums over positions too,
  A averages over them, patches in the kernel's (C, kh, kw) row order.
  The prior precision I kron R (R: a row's precision, dense for EmpCov) is added exactly:
  P = (I kron S)(G kron S^-1 A S^-T + I)(I kron S^T), R = S S^T, diagonalised by the
  eigenvectors of G and of S^-1 A S^-T. Other selected leaves get the "diag" structure, and
  the layers are independent of each other (block diagonal).

Everything after the GGN's float32 sums is float64 on the host, except the linearised
predictive's covariance operator and Jacobian products (float32 on the device).

Prior scales by the evidence (`tune_prior_scale`): post hoc, the MAP and the GGN fixed, one
factor per group of leaves (one for the subset, one per layer, or per `by_path` selector)
multiplies every prior sd in the group; the prior rescales exactly in every structure (diag: its
diagonal, as above; kron: R scaled inside the exact whitening; full: dense), log det by
eigenvalues computed once (kron, and full with one group) or in closed form (diag). A KFAC layer
takes one factor. The MAP is not refitted under the tuned prior (see `tuning`).

Predictives (`laplace_predict`): "mc" over draws of q; "glm", the network linearised at theta*,
f ~ N(f*, T J P^-1 J^T), its k x k output covariance computed matrix-free (`linearised`,
`operators`): diag and dense blocks by one VJP, P^-1 as an operator and one JVP per output;
KFAC layers through their Jacobian factors (by the layer's outputs, and its inputs) in the
Kronecker eigenbases; so whole-network diag / kron approximations predict without forming
Jacobians; classifiers average softmax over draws of f drawn from the same standard normals for
every input. "probit" uses the same variances (the covariance between classes dropped). The
`laplace` engine returns a `LaplacePosterior` that predicts by the one chosen while in memory;
saved and loaded, it is a plain Posterior of draws of q.

Modules: `subset` (which leaves, the subset vector), `gauss_newton` (the GGN by Jacobian chunks),
`prior` (the prior's row precisions and weights), `curvature` (the Full / Diag / Kron blocks,
`Curvature`), `operators` (their device views: covariance, prior-scaled log det), `kron` (KFAC
factors), `approx` (`fit_laplace`, the evidence, draws), `tuning` (prior scales by the
evidence), `linearised` (the matrix-free output covariance), `predict` (`laplace_predict`,
`LaplacePosterior`), `engine` (`laplace`).
"""

from bnn_shift.inference.laplace.approx import (
    FULL_LIMIT,
    HESSIANS,
    LaplaceApprox,
    build_curvature,
    fit_laplace,
    log_marginal_likelihood,
    marginal_std,
    sample_laplace,
)
from bnn_shift.inference.laplace.curvature import (
    Block,
    Curvature,
    DiagBlock,
    FullBlock,
    KronBlock,
)
from bnn_shift.inference.laplace.engine import laplace
from bnn_shift.inference.laplace.gauss_newton import CHUNK_FLOATS, check_likelihood, ggn
from bnn_shift.inference.laplace.kron import KronLayer, kron_factors
from bnn_shift.inference.laplace.linearised import output_covariance
from bnn_shift.inference.laplace.predict import (
    METHODS,
    LaplacePosterior,
    LaplacePrediction,
    approx_from_posterior,
    laplace_predict,
)
from bnn_shift.inference.laplace.prior import prior_weights, row_precisions
from bnn_shift.inference.laplace.subset import Subset, select_leaves
from bnn_shift.inference.laplace.tuning import (
    Groups,
    PriorScaleFit,
    prior_groups,
    tune_prior_scale,
)

__all__ = [
    "CHUNK_FLOATS",
    "FULL_LIMIT",
    "HESSIANS",
    "METHODS",
    "Block",
    "Curvature",
    "DiagBlock",
    "FullBlock",
    "Groups",
    "KronBlock",
    "KronLayer",
    "LaplaceApprox",
    "LaplacePosterior",
    "LaplacePrediction",
    "PriorScaleFit",
    "Subset",
    "approx_from_posterior",
    "build_curvature",
    "check_likelihood",
    "fit_laplace",
    "ggn",
    "kron_factors",
    "laplace",
    "laplace_predict",
    "log_marginal_likelihood",
    "marginal_std",
    "output_covariance",
    "prior_groups",
    "prior_weights",
    "row_precisions",
    "sample_laplace",
    "select_leaves",
    "tune_prior_scale",
]
