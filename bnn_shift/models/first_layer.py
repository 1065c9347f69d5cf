"""Where a model's first layer keeps its weight and how it reads one example.

Priors that look at the data through the first layer (EmpCov, SumFilter) are placed by
`FirstLayer.path` and, for a convolution, fitted to the patches its geometry cuts out. Each
model in `bnn_shift.models` (the `Transformer` trunk aside) reports its own as `first_layer`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FIRST_LAYER_KINDS = ("dense", "conv", "tokens", "embedding")


@dataclass(frozen=True)
class FirstLayer:
    """A model's first layer: the dotted path of its weight, its kind and, for a conv, its patches.

    Kinds: "dense", a weight (out, in) applied to the flattened example; "conv", a kernel
    (out, C, k, k) applied to the k x k windows of one channels-last image, `stride` apart, with
    `padding` zeros on each side; "tokens", a weight (out, in) applied to each row of a sequence
    the model cuts from the example; "embedding", a table (vocab, out) looked up by integer id.
    """

    path: str
    kind: str
    kernel_size: int = 0
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        if self.kind not in FIRST_LAYER_KINDS:
            raise ValueError(
                f"unknown first-layer kind {self.kind!r}; choose from {FIRST_LAYER_KINDS}"
            )

    def inside(self, field: str) -> FirstLayer:
        """The same layer seen from a wrapper that holds the model as attribute `field`."""
        return dataclasses.replace(self, path=f"{field}.{self.path}")
