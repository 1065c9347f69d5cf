"""The named priors of `bnn_shift.priors.PRIORS`, built for the MLP and for LeNet-5."""

import jax
import numpy as np
import pytest

from bnn_shift.models import MLP, CharLM, LeNet5, partition_params
from bnn_shift.priors import PRIORS, ByPath, EmpCov, NamedPrior, make_prior

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 14, 14, 1)).astype(np.float32)
    x[:, 0, :, :] = -0.42  # a dead top row, as in MNIST
    return x


@pytest.mark.parametrize(
    "model",
    [MLP(196, (8,), 10, key=KEY), LeNet5(1, 10, image_size=14, key=KEY)],
    ids=["mlp", "lenet"],
)
def test_every_prior_builds_and_scores_the_model(model, images):
    params = partition_params(model)[0]
    for name, entry in PRIORS.items():
        assert isinstance(entry, NamedPrior) and entry.doc
        if name == "sumfilter" and model.first_layer.kind != "conv":
            with pytest.raises(ValueError, match="needs a conv first layer"):
                make_prior(name, model, images, 0.1, 1e-8)
            continue
        prior = make_prior(name, model, images, 0.1, 1e-8)
        assert np.isfinite(float(prior.log_prob(params))), name


def test_lenet_empcov_uses_patches_of_the_first_conv(images):
    model = LeNet5(1, 10, image_size=14, key=KEY)
    prior = make_prior("empcov", model, images, 0.1, 1e-8)
    assert isinstance(prior, ByPath) and prior.patterns[0] == "conv1.weight"
    empcov = prior.priors[0]
    assert isinstance(empcov, EmpCov) and empcov.event_shape == (1, 5, 5)
    sample = prior.sample(jax.random.key(0), partition_params(model)[0])
    assert sample.conv1.weight.shape == (6, 1, 5, 5)


def test_unknown_names_and_models_without_a_usable_first_layer():
    with pytest.raises(ValueError, match="unknown prior 'horseshoe'; choose from gaussian"):
        make_prior("horseshoe", None, np.zeros((2, 3)), 0.1, 1e-8)
    with pytest.raises(ValueError, match="dict has no first_layer property"):
        make_prior("empcov", {"w": np.zeros(3)}, np.zeros((2, 3)), 0.1, 1e-8)
    char_lm = CharLM(5, 4, d_model=8, n_heads=2, depth=1, key=KEY)
    with pytest.raises(ValueError, match=r"embedding\.weight is embedding"):
        make_prior("empcov", char_lm, np.zeros((2, 4)), 0.1, 1e-8)
    assert make_prior("gaussian", None, np.zeros((2, 3)), 0.3, 1e-8).scale == 0.3
