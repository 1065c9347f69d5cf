"""The named priors of compare-priors, built for the MLP and for LeNet-5."""

import jax
import numpy as np
import pytest

from bnn_shift.experiments.compare_priors import ComparePriorsConfig, build_model
from bnn_shift.experiments.prior_zoo import PRIORS, PRIORS_DOC, make_prior
from bnn_shift.models import partition_params
from bnn_shift.priors import ByPath, EmpCov


class FakeData:
    """Just what build_model reads: 14x14 single-channel images, 10 classes."""

    n_classes = 10
    image_shape = (14, 14, 1)
    n_features = 196


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 14, 14, 1)).astype(np.float32)
    x[:, 0, :, :] = -0.42  # a dead top row, as in MNIST
    return x


@pytest.mark.parametrize("model_kind", ["mlp", "lenet"])
def test_every_prior_builds_and_scores_the_model(model_kind, images):
    model, first = build_model(ComparePriorsConfig(model=model_kind, hidden=(8,)), FakeData())
    params = partition_params(model)[0]
    for name in PRIORS:
        if name == "sumfilter" and first.kind != "conv":
            with pytest.raises(ValueError, match="needs a conv first layer"):
                make_prior(name, first, images, 0.1, 1e-8)
            continue
        prior = make_prior(name, first, images, 0.1, 1e-8)
        assert np.isfinite(float(prior.log_prob(params))), name
        assert name in PRIORS_DOC


def test_lenet_empcov_uses_patches_of_the_first_conv(images):
    model, first = build_model(ComparePriorsConfig(model="lenet"), FakeData())
    prior = make_prior("empcov", first, images, 0.1, 1e-8)
    assert isinstance(prior, ByPath) and prior.patterns[0] == "conv1.weight"
    empcov = prior.priors[0]
    assert isinstance(empcov, EmpCov) and empcov.event_shape == (1, 5, 5)
    sample = prior.sample(jax.random.key(0), partition_params(model)[0])
    assert sample.conv1.weight.shape == (6, 1, 5, 5)


def test_unknown_prior_and_model():
    with pytest.raises(ValueError, match="unknown prior"):
        ComparePriorsConfig(priors=("horseshoe",))
    with pytest.raises(ValueError, match="unknown model"):
        ComparePriorsConfig(model="resnet")
    with pytest.raises(ValueError, match="nothing to fit"):
        ComparePriorsConfig(priors=(), include_map=False)
