"""Tests for bnn_shift.models.attention_models and the transformer trunk they share."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from bnn_shift.attention import mup_init
from bnn_shift.inference import hmc
from bnn_shift.inference.likelihood import (
    SEQUENCE_CATEGORICAL,
    gaussian_likelihood,
    sequence_categorical_loglik,
    sequence_gaussian_likelihood,
)
from bnn_shift.models import (
    AttentionClassifier,
    CharLM,
    FirstLayer,
    ICLRegressor,
    SeriesForecaster,
    forward_flops_per_token,
    icl_points,
    param_paths,
    partition_params,
)
from bnn_shift.models.transformer import Transformer, matrix_params
from bnn_shift.priors import Gaussian

KEY = jax.random.key(0)
# each structure's own causal mask is tested in tests/attention; here, that CharLM passes it on
CAUSAL_STRUCTURES = [("full", {}), ("mlr", {"ranks": (2, 1, 1), "normalize": "count"})]


def out_shape(model, x) -> tuple[int, ...]:
    """The output shape of model(x), traced without compiling."""
    return eqx.filter_eval_shape(model, x).shape


forward = eqx.filter_jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def classifier():  # 8x8x1 images (digits-sized): patch 4 -> 4 tokens
    return AttentionClassifier(
        1, 10, image_size=8, patch_size=4, d_model=8, n_heads=2, depth=1, key=KEY
    )


def test_classifier_shapes_paths_and_first_layer(classifier):
    images = jnp.zeros((3, 8, 8, 1))
    assert out_shape(classifier, images[0]) == (10,)
    assert out_shape(jax.vmap(classifier), images) == (3, 10)
    paths = param_paths(partition_params(classifier)[0])
    assert paths[:3] == ["patch_embed.weight", "patch_embed.bias", "position"]
    assert "transformer.blocks.0.attention.scorer.query.weight" in paths
    assert paths[-2:] == ["head.weight", "head.bias"]
    assert classifier.patch_embed.weight.shape == (8, 1, 4, 4)
    assert classifier.first_layer == FirstLayer("patch_embed.weight", "conv", 4, 4, 0)
    assert classifier.n_tokens == 4


def test_classifier_tokens_are_the_patches(classifier):
    """Token t is the weight applied to the t-th 4x4 patch (row-major), plus its position."""
    image = jax.random.normal(jax.random.key(1), (8, 8, 1))
    patches = image[:, :, 0].reshape(2, 4, 2, 4).transpose(0, 2, 1, 3).reshape(4, 16)
    w = classifier.patch_embed.weight.reshape(8, 16)
    expected = patches @ w.T + classifier.patch_embed.bias.reshape(1, 8) + classifier.position
    np.testing.assert_allclose(classifier.tokens(image), expected, rtol=1e-5, atol=1e-5)


def test_classifier_input_errors(classifier):
    with pytest.raises(ValueError, match="patch_size=3 must divide image_size=8"):
        AttentionClassifier(
            1, 10, image_size=8, patch_size=3, d_model=8, n_heads=2, depth=1, key=KEY
        )
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\)"):
        classifier(jnp.zeros((8, 8)))


@pytest.fixture(scope="module")
def icl():
    return ICLRegressor(3, 5, d_model=8, n_heads=2, depth=1, key=KEY)


def test_icl_tokens_interleave_x_and_padded_y(icl):
    xs = jnp.arange(15.0).reshape(5, 3)
    ys = -jnp.arange(1.0, 6.0)
    tokens = icl.tokens(icl_points(xs, ys))
    assert tokens.shape == (10, 3)
    np.testing.assert_array_equal(tokens[0::2], xs)
    np.testing.assert_array_equal(tokens[1::2, 0], ys)
    np.testing.assert_array_equal(tokens[1::2, 1:], 0.0)


def test_icl_prediction_sees_only_earlier_pairs(icl):
    model = mup_init(icl, KEY, **icl.mup_options())
    # muP zero-inits the read-out; give it weights so predictions depend on the input
    read_out = jax.random.normal(jax.random.key(5), (1, 8))
    model = eqx.tree_at(lambda m: m.read_out.weight, model, read_out)
    model = eqx.tree_at(
        lambda m: m.transformer.blocks[0].attention.out_proj.weight, model, jnp.eye(8)
    )
    points = jax.random.normal(jax.random.key(2), (5, 4))
    base = forward(model, points)
    assert base.shape == (5,)
    for i in range(5):
        changed = forward(model, points.at[i, 3].add(10.0).at[i + 1 :].add(3.0))  # y_i, later
        np.testing.assert_allclose(changed[: i + 1], base[: i + 1], rtol=1e-5, atol=1e-6)
        if i < 4:
            assert not np.allclose(changed[i + 1 :], base[i + 1 :])
    assert out_shape(model, points[:3]) == (3,)  # fewer points than n_points


def test_icl_rejects_bad_points(icl):
    with pytest.raises(ValueError, match=r"shaped \(n, 4\) with n <= 5"):
        icl(jnp.zeros((6, 4)))
    with pytest.raises(ValueError, match="icl_points"):
        icl(jnp.zeros((5, 3)))


@pytest.mark.parametrize(("structure", "options"), CAUSAL_STRUCTURES)
def test_char_lm_is_causal(structure, options):
    lm = CharLM(
        7, 8, d_model=8, n_heads=2, depth=1, key=KEY, structure=structure, structure_options=options
    )
    ids = jnp.arange(8) % 7
    base = forward(lm, ids)
    assert base.shape == (8, 7)
    for t in (0, 3, 7):
        changed = forward(lm, ids.at[t].set((ids[t] + 3) % 7))
        np.testing.assert_allclose(changed[:t], base[:t], rtol=1e-5, atol=1e-5)
        assert not np.allclose(changed[t], base[t])


def test_char_lm_checks_length(char_lm):
    assert out_shape(char_lm, jnp.zeros(4, jnp.int32)) == (4, 7)
    with pytest.raises(ValueError, match="T <= 8"):
        out_shape(char_lm, jnp.zeros(9, jnp.int32))


@pytest.fixture(scope="module")
def char_lm():
    return CharLM(7, 8, d_model=8, n_heads=2, depth=1, key=KEY)


@pytest.fixture(scope="module")
def forecaster():
    return SeriesForecaster(8, 4, 2, d_model=8, n_heads=2, depth=1, key=KEY, patch=2)


def test_forecaster_shapes_and_instance_norm_equivariance(forecaster):
    model = mup_init(forecaster, KEY, **forecaster.mup_options())
    read_out = jax.random.normal(jax.random.key(5), (4, 8)) / 8
    model = eqx.tree_at(lambda m: m.read_out.weight, model, read_out)
    window = jax.random.normal(jax.random.key(4), (8, 2))
    out = forward(model, window)
    assert out.shape == (4, 2) and forecaster.seq_len == 6
    scale, shift = jnp.array([3.0, 0.5]), jnp.array([-2.0, 7.0])
    # the forecast of an affinely moved window is the moved forecast (per variable)
    moved = forward(model, window * scale + shift)
    np.testing.assert_allclose(moved, out * scale + shift, atol=2e-4)


def test_forecaster_argument_errors():
    with pytest.raises(ValueError, match="patch=3 must divide"):
        SeriesForecaster(8, 4, 2, d_model=8, n_heads=2, depth=1, key=KEY, patch=3)
    with pytest.raises(ValueError, match="needs d_out == d_in"):
        SeriesForecaster(8, 4, 2, 1, d_model=8, n_heads=2, depth=1, key=KEY)
    model = SeriesForecaster(
        8, 4, 2, 1, d_model=8, n_heads=2, depth=1, key=KEY, instance_norm=False
    )
    assert out_shape(model, jnp.zeros((8, 2))) == (4, 1)
    with pytest.raises(ValueError, match=r"\(8, 2\)"):
        out_shape(model, jnp.zeros((4, 2)))


def test_transformer_rejects_conflicting_causality():
    with pytest.raises(ValueError, match="leave causal out"):
        Transformer(8, 1, 2, key=KEY, structure_options={"causal": False}, causal=True)
    with pytest.raises(ValueError, match="depth >= 1"):
        Transformer(8, 0, 2, key=KEY)


def test_forward_flops_per_token_by_hand():
    d, h, t, depth = 8, 2, 16, 2
    full = Transformer(d, depth, h, key=KEY)
    params = depth * (4 * d * d + 8 * d * d)  # q, k, v, out + MLP 4x
    assert matrix_params(full) == params
    r = d // h
    attention = depth * h * (2 * t * t * r + 2 * t * t * r) / t  # logits + A·V per token
    assert forward_flops_per_token(full, t) == pytest.approx(2 * params + attention)
    ranks = (2, 1, 1)
    mlr = Transformer(d, depth, h, key=KEY, structure="mlr", structure_options={"ranks": ranks})
    score = 2 * t * (t * 2 + t // 2 * 1 + t // 4 * 1)  # 2·T·Σ T_l r_l
    expected = 2 * params + depth * h * (score + 2 * t * t * r) / t
    assert forward_flops_per_token(mlr, t) == pytest.approx(expected)
    window = Transformer(
        d, depth, h, key=KEY, structure="sliding_window", structure_options={"window": 3}
    )
    assert forward_flops_per_token(window, t) < forward_flops_per_token(mlr, t)


@pytest.mark.parametrize(
    ("model_name", "kind", "shape"),
    [
        ("classifier", "conv", (8, 1, 4, 4)),
        ("icl", "tokens", (8, 3)),
        ("char_lm", "embedding", (7, 8)),
        ("forecaster", "tokens", (8, 4)),
    ],
)
def test_first_layer_names_the_weight_that_reads_the_input(model_name, kind, shape, request):
    model = request.getfixturevalue(model_name)
    params = partition_params(model)[0]
    first = model.first_layer
    weight = jax.tree.leaves(params)[param_paths(params).index(first.path)]
    assert (first.kind, weight.shape) == (kind, shape)


@pytest.mark.parametrize("model_name", ["classifier", "icl", "forecaster"])
def test_mup_options_match_the_models(model_name, request):
    model = request.getfixturevalue(model_name)
    redrawn = mup_init(model, KEY, **model.mup_options())
    assert float(jnp.abs(redrawn.transformer.blocks[0].mlp.out_proj.weight).max()) == 0.0
    assert float(jnp.std(redrawn.position)) < 0.05


def test_sequence_categorical_loglik_sums_log_softmax_over_positions(char_lm):
    ids = np.random.default_rng(0).integers(0, 7, size=(3, 8))
    targets = np.roll(ids, -1, axis=1)
    params, static = partition_params(char_lm)
    got = sequence_categorical_loglik(params, static, jnp.asarray(ids, jnp.float32), targets)
    logits = np.asarray(forward(jax.vmap(char_lm), jnp.asarray(ids)), np.float64)  # (3, 8, 7)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    x, y = SEQUENCE_CATEGORICAL.check(char_lm, ids, targets)
    assert x.dtype == np.float32 and y.dtype == np.int32
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 7\)"):
        SEQUENCE_CATEGORICAL.check(char_lm, ids, targets + 1)
    with pytest.raises(ValueError, match=r"targets must be shaped \(3, 8\)"):
        SEQUENCE_CATEGORICAL.check(char_lm, ids, targets[:, :5])


def test_sequence_gaussian_loglik_is_the_sum_of_normal_log_densities(forecaster):
    windows = jax.random.normal(jax.random.key(6), (3, 8, 2))
    targets = np.asarray(jax.random.normal(jax.random.key(7), (3, 4, 2)))
    likelihood = sequence_gaussian_likelihood(0.5)
    params, static = partition_params(forecaster)
    got = likelihood.loglik(params, static, windows, targets)
    mean = np.asarray(forward(jax.vmap(forecaster), windows), np.float64)
    expected = norm.logpdf(targets, mean, 0.5).sum(axis=(1, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(likelihood.predict(params, static, windows), mean, rtol=1e-5)
    with pytest.raises(ValueError, match=r"targets must be shaped \(3, 4, 2\)"):
        likelihood.check(forecaster, windows, targets[:, :, 0])
    with pytest.raises(ValueError, match="noise_std must be"):
        sequence_gaussian_likelihood(0.0)


def _hmc_case(name, icl, char_lm, forecaster):
    """(model, x, y, likelihood) of one sequence model on tiny random data."""
    rng = np.random.default_rng(0)
    if name == "icl":
        points = rng.normal(size=(8, 5, 4)).astype(np.float32)
        return icl, points, points[..., 3], gaussian_likelihood(0.5)
    if name == "char_lm":
        ids = rng.integers(0, 7, size=(8, 9))
        return char_lm, ids[:, :-1], ids[:, 1:], SEQUENCE_CATEGORICAL
    windows = rng.normal(size=(8, 12, 2)).astype(np.float32)
    return forecaster, windows[:, :8], windows[:, 8:], sequence_gaussian_likelihood(0.5)


# the classifier runs under HMC in tests/commands/test_experiment_commands.py (compare-priors)
@pytest.mark.parametrize(
    "name",
    ["icl", *(pytest.param(n, marks=pytest.mark.slow) for n in ("char_lm", "forecaster"))],
)
def test_models_run_under_hmc(name, icl, char_lm, forecaster):
    model, x, y, likelihood = _hmc_case(name, icl, char_lm, forecaster)
    posterior = hmc(
        model,
        Gaussian(0.1),
        x,
        y,
        likelihood=likelihood,
        step_size=1e-3,
        trajectory_length=2e-3,  # 2 leapfrog steps
        n_iterations=3,
        n_burnin=1,
        progress=False,
    )
    assert np.all(np.isfinite(posterior.trace["log_likelihood"]))
    assert posterior.n_draws == 2  # tiny steps: both post-burn-in proposals accepted
    start = jax.tree.leaves(partition_params(model)[0])
    draws = jax.tree.leaves(posterior.draws)
    assert all(d.shape == (2, *s.shape) for d, s in zip(draws, start))
    assert all(np.all(np.isfinite(d)) for d in draws)
    assert any(not np.allclose(d[-1], s) for d, s in zip(draws, start))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["char_lm", "forecaster"])
def test_sequence_predictions_are_averaged_over_chains(name, icl, char_lm, forecaster):
    """Running averages of per-position predictions (m, T, ...) with several chains and an
    unlabelled eval set equal the mean of every kept draw's predictions."""
    model, x, y, likelihood = _hmc_case(name, icl, char_lm, forecaster)
    probe = x[:3]  # m = 3 differs from the 2 chains, so a misaligned broadcast cannot pass
    posterior = hmc(
        model, Gaussian(0.1), x, y, likelihood=likelihood, step_size=1e-3,
        trajectory_length=2e-3, n_iterations=3, n_burnin=1, n_chains=2,
        eval_sets={"probe": probe}, progress=False,
    )  # fmt: skip
    each = [
        likelihood.predict(
            jax.tree.map(lambda d, i=i: jnp.asarray(d[i]), posterior.draws), posterior.static, probe
        )
        for i in range(posterior.n_draws)
    ]
    np.testing.assert_allclose(posterior.predictions["probe"], np.mean(each, axis=0), rtol=1e-5)
