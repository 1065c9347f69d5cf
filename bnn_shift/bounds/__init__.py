"""PAC-Bayes compression bounds: subspace training, learned quantisation, arithmetic coding and
Catoni's bound, for any `bnn_shift` model (REFERENCE §3)."""

from bnn_shift.bounds.bound import (
    catoni_bound,
    hyperparameter_bits,
    kl_nats,
    mcallester_bound,
    occam_bound,
    prior_split,
)
from bnn_shift.bounds.coding import (
    CodeLength,
    arithmetic_decode,
    arithmetic_encode,
    code_length,
    empirical_entropy_bits,
)
from bnn_shift.bounds.pipeline import (
    BoundReport,
    BoundSettings,
    bound_model,
    compare_prior_bounds,
    reports_table,
)
from bnn_shift.bounds.quantize import assign, init_levels, quantize
from bnn_shift.bounds.subspace import (
    DenseProjector,
    KroneckerProjector,
    KroneckerSumProjector,
    Projector,
    SparseProjector,
    Subspace,
    make_projector,
    make_subspace,
)
from bnn_shift.bounds.train import error_rate, fit_quantized, fit_subspace

__all__ = [
    "BoundReport",
    "BoundSettings",
    "CodeLength",
    "DenseProjector",
    "KroneckerProjector",
    "KroneckerSumProjector",
    "Projector",
    "SparseProjector",
    "Subspace",
    "arithmetic_decode",
    "arithmetic_encode",
    "assign",
    "bound_model",
    "catoni_bound",
    "code_length",
    "compare_prior_bounds",
    "empirical_entropy_bits",
    "error_rate",
    "fit_quantized",
    "fit_subspace",
    "hyperparameter_bits",
    "init_levels",
    "kl_nats",
    "make_projector",
    "make_subspace",
    "mcallester_bound",
    "occam_bound",
    "prior_split",
    "quantize",
    "reports_table",
]
