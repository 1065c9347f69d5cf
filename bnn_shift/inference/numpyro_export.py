"""Export a model and prior as a NumPyro model, so NumPyro's NUTS, SVI and Predictive run on them.

`numpyro_model(model, prior)` returns `fn(x, y=None)` with one sample site per parameter leaf,
named by its dotted path (`layers.0.weight`), and the likelihood as the observed site `"y"`.
Its log density equals this package's: (sum_i log p(y_i | x_i) + prior.log_prob(params)) / T.

How each prior becomes sites:
- Gaussian, Laplace, StudentT (`FactorisedPrior`): `distribution().expand(shape).to_event()`.
- EmpCov: `EmpCovDistribution`, rows of the weight, through the prior's own whitening.
- a prior built from others (`Prior.split`): each part's sites over its leaves, under
  `numpyro.handlers.scale(weight)`: ByPath gives each leaf the sites of the rule that governs it,
  Temperature(p, T) the sites of `p` under scale 1/T.
- any other prior (ExpNorm, SumFilter, ...): an `ImproperUniform` site per leaf plus one
  `numpyro.factor("log_prior_<k>", prior.log_prob(leaves))`. Such sites cannot be drawn from the
  prior (Predictive without samples, `init_to_sample`); start NUTS with `init_to_value`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import combine_params, param_paths, partition_params, path_to_str
from bnn_shift.priors.base import FactorisedPrior, Prior
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.typing import PyTree

LABEL_SITE = "y"
NumPyroModel = Callable[..., None]  # (x (n, ...), y (n,) | None) -> None


class EmpCovDistribution(dist.Distribution):
    """Rows of a first-layer weight under an `EmpCov` prior, each N(0, C) independently.

    batch_shape: the leading (row) axes of the weight, e.g. (out,); event_shape: the prior's row
    shape, (d,) dense or (C_in, kh, kw) conv. `log_prob` whitens with the prior's float32
    eigenbasis (no Cholesky of an ill-conditioned C); `sample` uses the prior's sampler.
    """

    pytree_data_fields = ("prior",)

    def __init__(self, prior: EmpCov, batch_shape: tuple[int, ...] = (), *, validate_args=None):
        self.prior = prior
        super().__init__(
            batch_shape=tuple(batch_shape),
            event_shape=tuple(prior.event_shape),
            validate_args=validate_args,
        )

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    def log_prob(self, value: jax.Array) -> jax.Array:  # value (..., *event) -> (...)
        outer = jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)]
        d = self.prior.dim
        norm = -0.5 * (d * math.log(2 * math.pi) + self.prior.log_det)
        z = self.prior._whiten(jnp.reshape(value, (-1, d)))  # (rows, d), N(0, I) under the prior
        return (norm - 0.5 * jnp.sum(z**2, axis=-1)).reshape(outer)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        outer = tuple(sample_shape) + self.batch_shape
        like = jnp.zeros((math.prod(outer), *self.event_shape), jnp.float32)
        return self.prior.sample(key, like).reshape(outer + self.event_shape)


class _Block(NamedTuple):
    """Leaves whose sites share one tempering scale, optionally tied by one factor."""

    scale: float
    indices: tuple[int, ...]  # positions in the params flattening
    distributions: tuple[dist.Distribution, ...]  # one per leaf, event = the whole leaf
    factor: tuple[Prior, Any] | None  # (prior, treedef of the leaves it was given) or None


def _leaf_distribution(prior: Prior, leaf: jax.Array) -> dist.Distribution | None:
    """The numpyro distribution of a whole leaf under `prior`, or None when it has none."""
    if isinstance(prior, FactorisedPrior):
        try:
            base = prior.distribution()
        except NotImplementedError:
            return None
        return base.expand(leaf.shape).to_event(leaf.ndim)
    if isinstance(prior, EmpCov):
        prior._rows([leaf])  # a clear error when the leaf is not a first-layer weight
        batch = leaf.shape[: leaf.ndim - len(prior.event_shape)]
        return EmpCovDistribution(prior, batch).to_event(len(batch))
    return None


def _route(
    prior: Prior, tree: PyTree, indices: list[int], scale: float, blocks: list[_Block]
) -> None:
    """Append the blocks of `prior` over `tree` (as its `log_prob` sees it) to `blocks`."""
    if not isinstance(prior, Prior):
        raise TypeError(f"numpyro_model needs a bnn_shift Prior, got {type(prior).__name__}")
    if parts := prior.split(tree):
        for part in parts:
            sub_indices = [indices[i] for i in part.leaves]
            _route(part.prior, part.of(tree), sub_indices, scale * part.weight, blocks)
        return
    leaves, treedef = jax.tree.flatten(tree)
    dists = [_leaf_distribution(prior, leaf) for leaf in leaves]
    if all(d is not None for d in dists):
        blocks.append(_Block(scale, tuple(indices), tuple(dists), None))
        return
    try:
        jax.eval_shape(prior.log_prob, tree)
    except NotImplementedError as err:
        raise TypeError(
            f"cannot export {type(prior).__name__} to NumPyro: it has no numpyro distribution "
            "and no log_prob"
        ) from err
    flat = tuple(dist.ImproperUniform(constraints.real, (), leaf.shape) for leaf in leaves)
    blocks.append(_Block(scale, tuple(indices), flat, (prior, treedef)))


def _scaled(scale: float):
    return contextlib.nullcontext() if scale == 1.0 else numpyro.handlers.scale(scale=scale)


def numpyro_model(model: PyTree, prior: Prior, *, temperature: float = 1.0) -> NumPyroModel:
    """A NumPyro model `fn(x (n, ...), y (n,) | None)` of the classifier `model` under `prior`.

    Sites: one per parameter leaf named by its dotted path, plus `"y"` ~ Categorical(logits)
    over the plate `"data"` (observed when y is given). The whole model runs under
    `handlers.scale(1/temperature)`, so its log density is (sum loglik + log prior) / T, the
    target of `bnn_shift.inference.kernel`. `model`'s own parameter values only give shapes; start
    samplers from them with `init_to_value(values=params_to_sites(model))`.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    params_like, static = partition_params(model)
    leaves, treedef = jax.tree.flatten(params_like)
    names = param_paths(params_like)
    if LABEL_SITE in names:
        raise ValueError(f"a parameter is named {LABEL_SITE!r}, the likelihood's site name")
    blocks: list[_Block] = []
    _route(prior, params_like, list(range(len(leaves))), 1.0, blocks)

    def fn(x: jax.Array, y: jax.Array | None = None) -> None:
        values: list[jax.Array | None] = [None] * len(leaves)
        with _scaled(1.0 / temperature):
            for k, block in enumerate(blocks):
                with _scaled(block.scale):
                    for i, d in zip(block.indices, block.distributions):
                        values[i] = numpyro.sample(names[i], d)
                    if block.factor is not None:
                        sub_prior, sub_treedef = block.factor
                        sub = jax.tree.unflatten(sub_treedef, [values[i] for i in block.indices])
                        numpyro.factor(f"log_prior_{k}", sub_prior.log_prob(sub))
            net = jax.tree.unflatten(treedef, values)
            logits = jax.vmap(combine_params(net, static))(jnp.asarray(x))  # (n, k)
            with numpyro.plate("data", logits.shape[0]):
                numpyro.sample(LABEL_SITE, dist.Categorical(logits=logits), obs=y)

    return fn


def prior_distributions(model: PyTree, prior: Prior) -> dict[str, dist.Distribution]:
    """Dotted path -> the numpyro distribution of that whole leaf; for numpyro's
    `random_eqx_module(..., prior=...)` see `module_prior`. Errors when a leaf has none
    (ExpNorm, SumFilter, a tempered prior): use `numpyro_model` for those."""
    params_like, _ = partition_params(model)
    names = param_paths(params_like)
    blocks: list[_Block] = []
    _route(prior, params_like, list(range(len(names))), 1.0, blocks)
    out = {}
    for block in blocks:
        if block.factor is not None or block.scale != 1.0:
            what = type(block.factor[0]).__name__ if block.factor else "a tempered prior"
            raise TypeError(
                f"{what} (parameters {[names[i] for i in block.indices]}) has no numpyro "
                "distribution; use numpyro_model, which adds it as a factor or scale"
            )
        out.update({names[i]: d for i, d in zip(block.indices, block.distributions)})
    return {name: out[name] for name in names}  # in leaf order


def module_prior(model: PyTree, prior: Prior) -> Callable[[str, tuple], dist.Distribution]:
    """`prior` as the callable `(name, shape) -> distribution` that numpyro's
    `random_eqx_module(name, model, prior=...)` takes (names like `layers[0].weight`)."""
    params_like, _ = partition_params(model)
    by_path = prior_distributions(model, prior)
    flat = jax.tree_util.tree_flatten_with_path(params_like)[0]
    table = {jax.tree_util.keystr(p)[1:]: by_path[path_to_str(p)] for p, _ in flat}
    return lambda name, shape: table[name]


def params_to_sites(params_or_model: PyTree) -> dict[str, jax.Array]:
    """A model (or its params) -> {dotted path: array}: NumPyro's site values, e.g. for
    `init_to_value(values=...)` or `numpyro.infer.util.log_density(..., params)`."""
    params, _ = partition_params(params_or_model)
    return dict(zip(param_paths(params), jax.tree.leaves(params)))


def to_params(samples: Mapping[str, Any], model: PyTree) -> PyTree:
    """NumPyro samples {site: (*lead, *leaf shape)} -> a params pytree of `model`'s structure
    whose leaves keep the leading axes, e.g. (draws, ...) or (chains, draws, ...)."""
    params_like, _ = partition_params(model)
    names = param_paths(params_like)
    missing = [n for n in names if n not in samples]
    if missing:
        raise KeyError(f"the samples have no site for parameters {missing}")
    leaves, treedef = jax.tree.flatten(params_like)
    out = []
    for name, like in zip(names, leaves):
        value = np.asarray(samples[name])
        if value.shape[value.ndim - like.ndim :] != like.shape:
            raise ValueError(f"site {name} has shape {value.shape}, the parameter {like.shape}")
        out.append(value.astype(like.dtype, copy=False))
    return jax.tree.unflatten(treedef, out)


def posterior_from_numpyro(mcmc_or_samples: Any, model: PyTree) -> Posterior:
    """A `Posterior` from a run `numpyro.infer.MCMC` or a samples dict {site: (draws, ...)}.

    From an MCMC, draws are chain-major with `draw_chain` set, and its per-draw extra fields
    (e.g. `diverging`) become `stats` (n_draws_per_chain, n_chains); warmup is not kept.
    """
    _, static = partition_params(model)
    stats: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {"method": "numpyro"}
    if hasattr(mcmc_or_samples, "get_samples"):
        grouped = to_params(mcmc_or_samples.get_samples(group_by_chain=True), model)
        n_chains, n_per = jax.tree.leaves(grouped)[0].shape[:2]
        draws = jax.tree.map(lambda a: a.reshape(n_chains * n_per, *a.shape[2:]), grouped)
        draw_chain = np.repeat(np.arange(n_chains, dtype=np.int32), n_per)
        extra = mcmc_or_samples.get_extra_fields(group_by_chain=True)
        for key, value in extra.items():
            value = np.asarray(value)
            if value.shape == (n_chains, n_per):
                stats[key] = value.T
        attrs["n_burnin"] = 0
        attrs["sampler"] = type(mcmc_or_samples.sampler).__name__
    else:
        draws = to_params(mcmc_or_samples, model)
        params_like, _ = partition_params(model)
        lead = {
            a.ndim - b.ndim for a, b in zip(jax.tree.leaves(draws), jax.tree.leaves(params_like))
        }
        if lead != {1}:
            raise ValueError(
                "samples must be shaped (draws, ...); for (chains, draws, ...) pass the MCMC "
                "object or flatten the chains"
            )
        draw_chain = None
    return Posterior(static=static, draws=draws, draw_chain=draw_chain, stats=stats, attrs=attrs)
