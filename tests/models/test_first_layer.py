"""FirstLayer: every image and dense model names the weight that reads its input."""

from __future__ import annotations

import jax
import pytest

from bnn_shift.models import MLP, FirstLayer, lenet5_mnist, param_paths, partition_params
from bnn_shift.models.resnet import ResNet20FRN

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLP(6, (4,), 3, key=KEY), (4, 6)),
        (lenet5_mnist(KEY), (6, 1, 5, 5)),
        (ResNet20FRN(2, 3, image_size=6, width=2, depth=8, key=KEY), (2, 2, 3, 3)),
    ],
)
def test_first_layer_path_is_the_first_parameter(model, shape):
    params = partition_params(model)[0]
    first = model.first_layer
    assert param_paths(params)[0] == first.path
    assert jax.tree.leaves(params)[0].shape == shape
    if first.kind == "conv":
        assert shape[-2:] == (first.kernel_size, first.kernel_size)


def test_inside_prefixes_the_path_and_kinds_are_checked():
    first = FirstLayer("layers.0.weight", "dense")
    assert first.inside("net") == FirstLayer("net.layers.0.weight", "dense")
    with pytest.raises(ValueError, match="unknown first-layer kind 'pool'"):
        FirstLayer("pool.weight", "pool")
