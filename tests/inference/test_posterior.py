"""Tests for bnn_shift.inference.Posterior: predictions, the DataTree view and netCDF files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference import Posterior
from bnn_shift.inference.posterior import PosteriorFileError, empty_draws, stack_draws
from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import Gaussian

N_DRAWS = 3


def architecture(key: int = 0, hidden=(4,)) -> MLP:
    return MLP(6, hidden, 3, key=jax.random.key(key))


@pytest.fixture(scope="module")
def posterior() -> Posterior:
    params, static = partition_params(architecture())
    keys = jax.random.split(jax.random.key(1), N_DRAWS)
    draws = stack_draws([Gaussian(0.5).sample(k, params) for k in keys])
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    post = Posterior(
        static=static,
        draws=draws,
        draw_chain=np.array([0, 1, 1], np.int32),
        stats={  # (n_iterations=5, n_chains=2)
            "accepted": np.array(
                [[True, True], [False, True], [True, False], [True, True], [True, False]]
            ),
            "acceptance_rate": np.linspace(0.1, 1.0, 10, dtype=np.float32).reshape(5, 2),
            "energy": np.arange(10.0).reshape(5, 2) - 3.25,
        },
        trace={"log_likelihood": np.arange(10.0).reshape(5, 2) * -1.5},
        attrs={"method": "hmc", "step_size": 1e-3, "n_burnin": 1, "prior": "Gaussian(0.5)"},
    )
    post.predictions["eval"] = post.predict_proba(x)
    return post


@pytest.fixture(scope="module")
def x_eval() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(9, 6)).astype(np.float32)


def test_predict_proba_is_the_mean_of_softmax_over_draws(posterior, x_eval):
    manual = np.mean(
        [
            np.asarray(jax.nn.softmax(jax.vmap(posterior.draw(i))(x_eval), axis=-1))
            for i in range(N_DRAWS)
        ],
        axis=0,
    )
    got = posterior.predict_proba(x_eval)
    assert got.shape == (9, 3)
    np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-7)
    # not the softmax of averaged logits (the draws disagree enough to tell)
    mean_logits = np.mean(
        [np.asarray(jax.vmap(posterior.draw(i))(x_eval)) for i in range(N_DRAWS)], 0
    )
    assert np.abs(np.asarray(jax.nn.softmax(mean_logits)) - manual).max() > 1e-3
    np.testing.assert_allclose(posterior.predict_proba(x_eval, batch_size=4), got, rtol=1e-6)
    np.testing.assert_array_equal(posterior.predict(x_eval), np.argmax(got, axis=1))


def test_to_datatree_layout(posterior):
    tree = posterior.to_datatree()
    groups = {"posterior", "warmup_posterior", "sample_stats", "warmup_sample_stats"}
    assert groups | {"draws", "predictions"} <= set(tree.children)
    draws = tree["draws"].to_dataset()
    params, _ = partition_params(architecture())
    assert sorted(draws.data_vars) == sorted([*param_paths(params), "chain"])
    weight = draws["layers.0.weight"]
    assert weight.dims[0] == "sample"
    assert weight.shape == (N_DRAWS, 4, 6)
    np.testing.assert_array_equal(draws["chain"], [0, 1, 1])
    stats = tree["sample_stats"].to_dataset()
    assert stats["accepted"].dims == ("chain", "draw")
    assert stats["energy"].shape == (2, 4)  # burn-in iteration split off
    assert tree["warmup_sample_stats"].to_dataset()["energy"].shape == (2, 1)
    trace = tree["posterior"].to_dataset()["log_likelihood"]
    np.testing.assert_array_equal(trace.values, posterior.trace["log_likelihood"][1:].T)
    assert tree["predictions"].to_dataset()["eval"].shape == (5, 3)


def test_save_load_round_trip(posterior, tmp_path, x_eval):
    path = posterior.save(tmp_path / "runs" / "post.nc")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = Posterior.load(path, architecture(key=7))  # any model of the same architecture
    assert loaded.n_draws == N_DRAWS
    for a, b in zip(jax.tree.leaves(loaded.draws), jax.tree.leaves(posterior.draws)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert set(loaded.stats) == set(posterior.stats)
    for k, v in posterior.stats.items():
        assert loaded.stats[k].dtype == v.dtype, k
        np.testing.assert_array_equal(loaded.stats[k], v)
    np.testing.assert_array_equal(loaded.trace["log_likelihood"], posterior.trace["log_likelihood"])
    np.testing.assert_array_equal(loaded.draw_chain, posterior.draw_chain)
    np.testing.assert_array_equal(loaded.predictions["eval"], posterior.predictions["eval"])
    assert loaded.attrs == posterior.attrs
    np.testing.assert_array_equal(loaded.predict_proba(x_eval), posterior.predict_proba(x_eval))


def test_load_with_a_mismatched_model_raises(posterior, tmp_path):
    path = posterior.save(tmp_path / "post.nc")
    with pytest.raises(ValueError, match=r"layers\.0\.weight has shape"):
        Posterior.load(path, architecture(hidden=(5,)))
    with pytest.raises(ValueError, match="no draws for parameters"):
        Posterior.load(path, architecture(hidden=(4, 4)))


def test_variational_pytrees_round_trip(tmp_path):
    """An optimizer's posterior with q's mean and std: each a `variational/<name>` group of
    un-stacked parameters, read back into the model's pytree."""
    params, static = partition_params(architecture())
    std = jax.tree.map(lambda p: jnp.abs(p) + 0.1, params)
    post = Posterior(
        static=static,
        draws=stack_draws([params]),
        stats={"neg_elbo": np.linspace(3.0, 1.0, 4)},
        attrs={"method": "mfvi"},
        variational={"mean": params, "std": std},
    )
    group = post.to_datatree()["variational/std"].to_dataset()
    assert group["layers.0.weight"].shape == (4, 6)
    loaded = Posterior.load(post.save(tmp_path / "q.nc"), architecture(key=7))
    assert set(loaded.variational) == {"mean", "std"}
    for name, tree in post.variational.items():
        got = loaded.variational[name]
        assert jax.tree.structure(got) == jax.tree.structure(tree)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(tree)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    linear, _ = partition_params(MLP(6, (), 3, key=jax.random.key(0)))
    post.variational = {"mean": linear}  # q of another architecture than the draws
    with pytest.raises(ValueError, match=r"no mean values for parameters \['layers\.1"):
        Posterior.load(post.save(tmp_path / "bad.nc"), architecture())


def test_samplers_have_no_variational_group(posterior, tmp_path):
    assert "variational" not in posterior.to_datatree().children
    assert Posterior.load(posterior.save(tmp_path / "p.nc"), architecture()).variational == {}


def test_zero_draw_posterior(tmp_path):
    params, static = partition_params(architecture())
    post = Posterior(static=static, draws=empty_draws(params))
    assert post.n_draws == 0
    with pytest.raises(ValueError, match="no draws"):
        post.predict_proba(np.zeros((2, 6), np.float32))
    loaded = Posterior.load(post.save(tmp_path / "empty.nc"), architecture())
    assert loaded.n_draws == 0


def test_single_draw_predictions(x_eval):
    model = architecture(3)
    params, static = partition_params(model)
    post = Posterior(static=static, draws=stack_draws([params]))
    expected = np.asarray(jax.nn.softmax(jax.vmap(model)(jnp.asarray(x_eval)), axis=-1))
    np.testing.assert_allclose(post.predict_proba(x_eval), expected, rtol=1e-6, atol=1e-7)


def test_many_draws_are_averaged_in_chunks(x_eval):
    """More draws than DRAW_CHUNK: the chunked average equals the plain mean over draws."""
    from bnn_shift.inference.posterior import DRAW_CHUNK

    params, static = partition_params(architecture())
    n = 2 * DRAW_CHUNK + 5
    draws = stack_draws(
        [Gaussian(0.5).sample(k, params) for k in jax.random.split(jax.random.key(3), n)]
    )
    post = Posterior(static=static, draws=draws)
    one = lambda i: jax.nn.softmax(jax.vmap(post.draw(i))(jnp.asarray(x_eval)), axis=-1)
    expected = np.mean([np.asarray(one(i)) for i in range(n)], axis=0)
    np.testing.assert_allclose(post.predict_proba(x_eval), expected, rtol=1e-5, atol=1e-7)


def test_the_kind_is_explicit_and_old_files_get_one_inferred(posterior, tmp_path):
    assert posterior.kind == "chain"
    params, static = partition_params(architecture())
    point = Posterior(static, stack_draws([params]), attrs={"method": "map"})
    assert point.kind == "optimizer"
    assert Posterior(static, stack_draws([params]), attrs={}, kind="ensemble").kind == "ensemble"
    with pytest.raises(ValueError, match="kind must be one of"):
        Posterior(static, stack_draws([params]), kind="bootstrap")
    path = point.save(tmp_path / "point.nc")
    assert Posterior.load(path, architecture()).kind == "optimizer"


def test_predict_draws_gives_every_draws_prediction(posterior, x_eval):
    per_draw = posterior.predict_draws(x_eval)  # (draws, n, k)
    assert per_draw.shape == (N_DRAWS, len(x_eval), 3)
    for i in range(N_DRAWS):
        model = posterior.draw(i)
        expected = jax.nn.softmax(jax.vmap(model)(jnp.asarray(x_eval)), axis=-1)
        np.testing.assert_allclose(per_draw[i], expected, atol=1e-6)
    np.testing.assert_allclose(per_draw.mean(0), posterior.predict_proba(x_eval), atol=1e-6)
    # row chunks change only float rounding (XLA vectorises across rows)
    np.testing.assert_allclose(posterior.predict_draws(x_eval, batch_size=2), per_draw, atol=1e-6)


def test_a_regression_posterior_predicts_means(x_eval):
    from bnn_shift.inference import gaussian_likelihood

    params, static = partition_params(architecture())
    keys = jax.random.split(jax.random.key(2), N_DRAWS)
    draws = stack_draws([Gaussian(0.5).sample(k, params) for k in keys])
    likelihood = gaussian_likelihood([0.1, 0.2, 0.3])
    post = Posterior(static, draws, attrs={"likelihood": likelihood.describe()}, kind="chain")
    assert post.likelihood.describe() == likelihood.describe()
    outputs = np.stack([jax.vmap(post.draw(i))(jnp.asarray(x_eval)) for i in range(N_DRAWS)])
    np.testing.assert_allclose(post.predict_draws(x_eval), outputs, atol=1e-6)
    np.testing.assert_allclose(post.predict(x_eval), outputs.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="class probabilities need a categorical likelihood"):
        post.predict_proba(x_eval)


def test_sequence_predictions_keep_their_axes_in_files(tmp_path):
    params, static = partition_params(architecture())
    post = Posterior(
        static,
        stack_draws([params]),
        predictions={"test": np.full((4, 7, 3), 1 / 3, np.float32)},  # (m, T, k)
        attrs={"method": "hmc", "n_burnin": 0},
    )
    loaded = Posterior.load(post.save(tmp_path / "seq.nc"), architecture())
    np.testing.assert_array_equal(loaded.predictions["test"], post.predictions["test"])


def test_a_flipped_byte_in_any_stored_array_is_caught_on_load(posterior, tmp_path):
    import h5py

    path = posterior.save(tmp_path / "p.nc")
    with h5py.File(path, "r") as f:
        offset = f["draws"]["layers.0.weight"].id.get_offset()  # the draws' raw bytes
    damaged = bytearray(path.read_bytes())
    for i in range(16):
        damaged[offset + i] ^= 0xFF
    bad = tmp_path / "bad.nc"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(PosteriorFileError, match=rf"{bad} is corrupted: /draws/layers.0.weight"):
        Posterior.load(bad, architecture())


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"method = 'hmc'\n"],
    ids=["truncated", "empty", "text"],
)
def test_unreadable_files_are_named(posterior, tmp_path, damage):
    path = posterior.save(tmp_path / "p.nc")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(PosteriorFileError, match=rf"{path} cannot be read as a saved posterior"):
        Posterior.load(path, architecture())
    with pytest.raises(FileNotFoundError, match="no such posterior file"):
        Posterior.load(tmp_path / "missing.nc", architecture())


def test_a_netcdf_file_that_is_not_a_posterior_is_named(tmp_path):
    import xarray as xr

    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(PosteriorFileError, match="not a saved posterior"):
        Posterior.load(path, architecture())


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.zeros((0, 6)), {}, r"x has shape \(0, 6\); give examples"),
        (np.zeros((2, 6)), {"batch_size": 0}, "batch_size is 0; give a positive integer"),
        (np.full((2, 6), np.nan), {}, "x: found NaN or inf"),
        (np.full((2, 6), 1e39), {}, "x: found NaN or inf .values beyond float32"),
        (np.zeros((2, 6), complex), {}, "x: complex values"),
        (np.zeros((2, 5)), {}, r"cannot take examples of shape \(5,\)"),
    ],
)
def test_bad_inputs_to_predictions_are_named(posterior, x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        posterior.predict_proba(x, **kwargs)
    with pytest.raises(ValueError, match=match):
        posterior.predict_draws(x, **kwargs)


def test_inputs_are_checked_against_the_recorded_input_shape(posterior):
    from dataclasses import replace

    recorded = replace(posterior, attrs=posterior.attrs | {"input_shape": [6]})
    with pytest.raises(ValueError, match=r"shape \(3, 2\); this posterior's model takes \(6,\)"):
        recorded.predict_proba(np.zeros((2, 3, 2)))


def test_a_posterior_without_draws_says_why():
    params, static = partition_params(architecture())
    post = Posterior(static, empty_draws(params), attrs={"no_draws": "all 4 iterations burn-in"})
    with pytest.raises(ValueError, match="no draws: all 4 iterations burn-in"):
        post.predict_proba(np.zeros((2, 6), np.float32))
