"""Tests for bnn_shift.plots: prior/posterior std along data directions, ArviZ trace and energy."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from bnn_shift import plots
from bnn_shift.data import load_digits
from bnn_shift.inference import Posterior
from bnn_shift.inference.posterior import stack_draws
from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import EmpCov, Gaussian, by_path
from bnn_shift.shift import plots as shift_plots

N_ITER, N_BURNIN, N_CHAINS = 25, 5, 3
HIDDEN = 16


@pytest.fixture(scope="module")
def x_train() -> np.ndarray:
    return load_digits().subset(300, 10, seed=0).x_train  # (300, 8, 8, 1)


@pytest.fixture(scope="module")
def model() -> MLP:
    return MLP(64, (HIDDEN,), 10, key=jax.random.key(0))


@pytest.fixture(scope="module")
def chain_posterior(model) -> Posterior:
    """A hand-built sampler run: 3 chains, 25 iterations of which 5 burn-in."""
    params, static = partition_params(model)
    rng = np.random.default_rng(0)
    draws = jax.tree.map(lambda p: 0.3 * rng.normal(size=(4, *p.shape)).astype(np.float32), params)
    shape = (N_ITER, N_CHAINS)
    energy = 500 + np.cumsum(rng.normal(size=shape), axis=0) * np.array([1.0, 3.0, 0.3])
    return Posterior(
        static=static,
        draws=draws,
        draw_chain=np.array([0, 1, 2, 2], np.int32),
        stats={
            "energy": energy,
            "diverging": np.zeros(shape, bool),
            "acceptance_rate": rng.uniform(size=shape),
        },
        trace={
            "log_likelihood": -100 + rng.normal(size=shape),
            "test_accuracy": rng.uniform(0.8, 0.9, size=shape),
        },
        attrs={"method": "hmc", "n_burnin": N_BURNIN},
    )


def test_shift_plots_are_reexported_not_copied():
    for name in ("plot_metric_vs_severity", "plot_severity_grid", "plot_corruption_bars"):
        assert getattr(plots, name) is getattr(shift_plots, name)
    assert plots.plot_reliability is shift_plots.plot_reliability
    assert set(plots.__all__) <= set(dir(plots))


# ---- std along the data's principal directions ------------------------------------------------


def test_data_std_is_the_inputs_principal_std(x_train, chain_posterior):
    table = plots.std_along_directions(x_train, posteriors={"hmc": chain_posterior})
    data = table[table["kind"] == "data"].sort_values("rank")
    flat = x_train.reshape(len(x_train), -1).astype(np.float64)
    singular = np.linalg.svd(flat - flat.mean(0), compute_uv=False) / np.sqrt(len(flat) - 1)
    np.testing.assert_allclose(data["std"], singular, rtol=1e-6, atol=1e-6)
    assert list(table.columns) == ["rank", "source", "kind", "std"]
    assert set(table["kind"]) == {"data", "posterior"}


def test_posterior_std_of_weights_built_along_known_directions(x_train, model):
    """Rows 3*u0 and 4*u5 (u = data directions): RMS over 2 rows is 3/sqrt2 and 4/sqrt2."""
    flat = x_train.reshape(len(x_train), -1).astype(np.float64)
    _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)  # rows: directions
    params, static = partition_params(MLP(64, (2,), 10, key=jax.random.key(3)))
    weight = np.stack([3 * vt[0], 4 * vt[5]]).astype(np.float32)  # (2, 64)
    draws = _replace_leaf(stack_draws([params]), "layers.0.weight", weight[None])  # one draw
    table = plots.std_along_directions(x_train, posteriors={"map": Posterior(static, draws)})
    std = table[table["source"] == "map"].sort_values("rank")["std"].to_numpy()
    expected = np.zeros(64)
    expected[0], expected[5] = 3 / np.sqrt(2), 4 / np.sqrt(2)
    np.testing.assert_allclose(std, expected, atol=2e-6)


def _replace_leaf(tree, path, value):
    names = param_paths(tree)
    leaves, treedef = jax.tree.flatten(tree)
    leaves[names.index(path)] = value
    return jax.tree.unflatten(treedef, leaves)


def test_prior_std_matches_the_exact_prior(x_train, model):
    n_draws = 128
    gaussian = Gaussian(0.3)
    empcov = EmpCov.from_data(x_train, scale=0.3)
    priors = {"gaussian": gaussian, "empcov": by_path({"layers.0.weight": empcov, "*": gaussian})}
    table = plots.std_along_directions(x_train, priors=priors, model=model, n_prior_draws=n_draws)
    # each direction's std is estimated from n_draws * HIDDEN Gaussian coordinates: relative
    # standard error 1/sqrt(2N); allow 5 of them (64 directions x 2 priors)
    rtol = 5 / np.sqrt(2 * n_draws * HIDDEN)
    got_g = table[table["source"] == "gaussian"].sort_values("rank")["std"].to_numpy()
    np.testing.assert_allclose(got_g, 0.3, rtol=rtol)
    got_e = table[table["source"] == "empcov"].sort_values("rank")["std"].to_numpy()
    np.testing.assert_allclose(got_e, empcov.std_along_data_directions()[1], rtol=rtol)
    assert got_e[0] > 10 * got_e[-1]  # EmpCov leaves almost no spread where pixels never vary


def test_prior_structure_defaults_to_the_posterior_draws(x_train, chain_posterior):
    table = plots.std_along_directions(
        x_train, posteriors={"hmc": chain_posterior}, priors={"g": Gaussian(0.3)}
    )
    assert set(table["source"]) == {"data", "hmc", "g"}
    assert (table.groupby("source").size() == 64).all()


def test_std_along_directions_errors(x_train, chain_posterior, model):
    with pytest.raises(ValueError, match="nothing to measure"):
        plots.std_along_directions(x_train)
    with pytest.raises(ValueError, match="pass model="):
        plots.std_along_directions(x_train, priors={"g": Gaussian(0.3)})
    with pytest.raises(ValueError, match=r"no parameter 'conv1\.weight'"):
        plots.std_along_directions(x_train, posteriors={"h": chain_posterior}, path="conv1.weight")
    with pytest.raises(ValueError, match="rows of the 64 input features"):
        plots.std_along_directions(
            x_train, posteriors={"h": chain_posterior}, path="layers.1.weight"
        )
    with pytest.raises(ValueError, match="distinct names"):
        plots.std_along_directions(
            x_train, posteriors={"a": chain_posterior}, priors={"a": Gaussian(1.0)}, model=model
        )
    with pytest.raises(ValueError, match=r"\['data'\] are taken"):
        plots.std_along_directions(x_train, posteriors={"data": chain_posterior})


def test_plot_std_along_directions(x_train, chain_posterior):
    table = plots.std_along_directions(
        x_train, posteriors={"hmc": chain_posterior}, priors={"gaussian": Gaussian(0.3)}
    )
    fig = plots.plot_std_along_directions(table, title="digits")
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    assert len(top.get_lines()) == 1 and top.get_yscale() == "log"
    labels = {line.get_label(): line for line in bottom.get_lines()}
    assert set(labels) == {"hmc (posterior)", "gaussian (prior)"}
    assert labels["gaussian (prior)"].get_linestyle() == "--"
    assert labels["hmc (posterior)"].get_linestyle() == "-"
    np.testing.assert_array_equal(labels["hmc (posterior)"].get_xdata(), np.arange(64))
    assert bottom.get_yscale() == "log" and bottom.get_legend() is not None
    fig.savefig(io.BytesIO(), format="png")
    with pytest.raises(ValueError, match="lacks columns"):
        plots.plot_std_along_directions(table.drop(columns="kind"))


# ---- ArviZ ----------------------------------------------------------------------------------


def test_arviz_tree_adds_coordinates(chain_posterior):
    tree = plots.arviz_tree(chain_posterior)
    post = tree["posterior"].to_dataset()
    np.testing.assert_array_equal(post["chain"], np.arange(N_CHAINS))
    np.testing.assert_array_equal(post["draw"], np.arange(N_ITER - N_BURNIN))
    assert {"sample_stats", "warmup_posterior", "warmup_sample_stats"} <= set(tree.children)
    same = plots.arviz_tree(chain_posterior.to_datatree())  # a DataTree works as well
    np.testing.assert_array_equal(same["sample_stats"]["energy"], tree["sample_stats"]["energy"])


def test_plot_trace_draws_each_chain_after_burn_in(chain_posterior):
    figs_before = plt.get_fignums()
    fig = plots.plot_trace(chain_posterior)
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == figs_before  # not left in pyplot's registry
    by_var = {}
    for ax in fig.axes:
        by_var.setdefault(ax.get_ylabel() or ax.get_title(), []).append(ax)
    trace_axes = [ax for ax in fig.axes if ax.get_xlabel() == "Draw"]
    assert len(fig.axes) == 4 and len(trace_axes) == 2  # (density, trace) per quantity
    for ax in trace_axes:
        name = ax.get_ylabel()
        lines = ax.get_lines()
        assert len(lines) == N_CHAINS
        expected = chain_posterior.trace[name][N_BURNIN:]  # (draws, chains)
        for c, line in enumerate(lines):
            np.testing.assert_allclose(line.get_ydata(), expected[:, c], rtol=1e-6)
    one = plots.plot_trace(chain_posterior, var_names=["test_accuracy"])
    assert len(one.axes) == 2
    fig.savefig(io.BytesIO(), format="png")


def test_plot_energy_shows_each_chains_bfmi(chain_posterior):
    fig = plots.plot_energy(chain_posterior)
    assert isinstance(fig, Figure)
    (bfmi_ax,) = [ax for ax in fig.axes if ax.get_title() == "BFMI"]
    points = bfmi_ax.collections[0].get_offsets()  # (chains, 2): (E-BFMI, chain)
    energy = chain_posterior.stats["energy"][N_BURNIN:]
    expected = np.sum(np.diff(energy, axis=0) ** 2, 0) / np.sum((energy - energy.mean(0)) ** 2, 0)
    np.testing.assert_allclose(np.asarray(points)[:, 0], expected, rtol=1e-5)
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert legend == ["marginal", "transition"]
    (dist_ax,) = [ax for ax in fig.axes if ax is not bfmi_ax]
    assert len(dist_ax.get_lines()) == 2
    fig.savefig(io.BytesIO(), format="png")


def test_diagnostic_plots_need_a_sampler_run(model):
    params, static = partition_params(model)
    fit = Posterior(static, stack_draws([params]), stats={"loss": np.ones(3)}, attrs={})
    with pytest.raises(ValueError, match="optimiser"):
        plots.plot_trace(fit)
    with pytest.raises(ValueError, match="optimiser"):
        plots.plot_energy(fit)
