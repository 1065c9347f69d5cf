"""Models built on the structured-attention transformer (Kuang et al. 2025, REFERENCE §2.8).

Each maps ONE example to its outputs, so `jax.vmap`, the engines in `bnn_shift.inference`
and path-selected priors work on all of them. Every model takes its trunk as keyword
arguments of `Transformer`: d_model, n_heads, depth (required) and the attention variant by
name (scorer, structure, scorer_options, structure_options) and mlp_ratio (optional):

- `AttentionClassifier`: one channels-last image (H, W, C) -> (n_classes,) logits; a patch
  embedding (a stride-p convolution, `patch_embed.weight`, the first layer EmpCov selects),
  learned positions, non-causal blocks, mean pooling, a linear head.
- `ICLRegressor`: in-context linear regression; points (n, d + 1) (x_i then y_i per row) are
  interleaved as tokens x_1, (y_1, 0, ...), x_2, ... and the model predicts y_i at the token of
  x_i, which sees only earlier pairs (causal): -> (n,) predictions.
- `CharLM`: a causal character language model: ids (T,) -> (T, vocab) next-character logits.
- `SeriesForecaster`: an input window (L, d_in) -> forecasts (H, d_out); the window's patches
  and horizon tokens (learned positions only) pass through the blocks, the horizon tokens
  are read out. Optional instance normalisation (per-window mean and std, RevIN-style).

`mup_options()` names the tensors that muP treats as embeddings and those it zero-initialises,
for `bnn_shift.attention.mup_init` / `mup_adamw`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.mup import EMBEDDING_STD
from bnn_shift.models.conv import conv2d
from bnn_shift.models.first_layer import FirstLayer
from bnn_shift.models.transformer import Transformer


def _positions(key: jax.Array, length: int, d_model: int) -> jax.Array:
    """(length, D) learned position embeddings drawn N(0, 0.02²)."""
    return EMBEDDING_STD * jax.random.normal(key, (length, d_model), jnp.float32)


def _trunk(
    key: jax.Array, n_positions: int, causal: bool, trunk: dict[str, Any]
) -> tuple[jax.Array, Transformer, jax.Array, jax.Array]:
    """-> learned positions (n_positions, D), the `Transformer` built from the model's trunk
    keyword arguments, and the keys of the model's read-in and read-out."""
    k_in, k_pos, k_trunk, k_out = jax.random.split(key, 4)
    transformer = Transformer(key=k_trunk, causal=causal, **trunk)
    return _positions(k_pos, n_positions, transformer.d_model), transformer, k_in, k_out


def _check_sizes(**sizes: int) -> None:
    bad = {name: value for name, value in sizes.items() if value < 1}
    if bad:
        raise ValueError(f"sizes must be >= 1, got {bad}")


def _check_shape(x: jax.Array, expected: tuple, what: str) -> None:
    if x.shape != expected:
        raise ValueError(
            f"{what} expects one example of shape {expected}, got {x.shape}; "
            "use jax.vmap for batches"
        )


class AttentionClassifier(eqx.Module):
    """Image patches -> tokens -> transformer blocks -> class logits (one image (H, W, C)).

    patch_size p must divide image_size: (image_size/p)² tokens. Parameters:
    `patch_embed.weight` (D, C, p, p), `patch_embed.bias`, `position` (N, D),
    `transformer.*`, `head.weight` (n_classes, D), `head.bias`.
    """

    patch_embed: eqx.nn.Conv2d
    position: jax.Array  # (N, D)
    transformer: Transformer
    head: eqx.nn.Linear
    image_size: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    patch_size: int = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        image_size: int,
        patch_size: int,
        key: jax.Array,
        **trunk: Any,
    ):
        _check_sizes(in_channels=in_channels, image_size=image_size, patch_size=patch_size)
        if n_classes < 2:
            raise ValueError(f"AttentionClassifier needs n_classes >= 2, got {n_classes}")
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide image_size={image_size}; pick a divisor "
                f"such as {', '.join(str(p) for p in range(2, image_size) if image_size % p == 0)}"
            )
        n_tokens = (image_size // patch_size) ** 2
        self.position, self.transformer, k_patch, k_head = _trunk(key, n_tokens, False, trunk)
        d_model = self.transformer.d_model
        self.patch_embed = eqx.nn.Conv2d(
            in_channels, d_model, patch_size, stride=patch_size, padding=0, key=k_patch
        )
        self.head = eqx.nn.Linear(d_model, n_classes, key=k_head)
        self.image_size = image_size
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.n_classes = n_classes

    @property
    def n_tokens(self) -> int:
        return int(self.position.shape[0])

    @property
    def first_layer(self) -> FirstLayer:
        """`patch_embed.weight`: p×p windows, stride p, no padding."""
        return FirstLayer("patch_embed.weight", "conv", self.patch_size, self.patch_size, 0)

    def mup_options(self) -> dict[str, tuple[str, ...]]:
        return {"zero": ("*out_proj.weight", "head.weight"), "embedding": ("position",)}

    def tokens(self, x: jax.Array) -> jax.Array:
        """(H, W, C) -> (N, D) patch embeddings plus positions."""
        size = (self.image_size, self.image_size, self.in_channels)
        _check_shape(x, size, "AttentionClassifier")
        h = conv2d(self.patch_embed, jnp.transpose(x, (2, 0, 1)))  # (D, H/p, W/p)
        return h.reshape(h.shape[0], -1).T + self.position

    def __call__(self, x: jax.Array) -> jax.Array:
        """(H, W, C) one channels-last image -> (n_classes,) logits."""
        h = self.transformer(self.tokens(x))  # (N, D)
        return self.head(jnp.mean(h, axis=0))


def icl_points(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """xs (..., n, d) and ys (..., n) -> points (..., n, d + 1), the `ICLRegressor` input."""
    return jnp.concatenate([xs, ys[..., None]], axis=-1)


class ICLRegressor(eqx.Module):
    """In-context regression over n_points (x, y) pairs: points (n, d + 1) -> (n,) predictions.

    Token 2i is x_i, token 2i + 1 is (y_i, 0, ..., 0) (both read in by one linear map); the
    prediction of y_i is read out at token 2i, which (causal attention) sees only the pairs
    before it. Fewer than n_points points may be given. Parameters: `read_in.weight` (D, d),
    `position` (2 n_points, D), `transformer.*`, `read_out.weight` (1, D). No biases.
    """

    read_in: eqx.nn.Linear
    position: jax.Array  # (2 n_points, D)
    transformer: Transformer
    read_out: eqx.nn.Linear
    d_input: int = eqx.field(static=True)
    n_points: int = eqx.field(static=True)

    def __init__(self, d_input: int, n_points: int, *, key: jax.Array, **trunk: Any):
        _check_sizes(d_input=d_input, n_points=n_points)
        self.position, self.transformer, k_in, k_out = _trunk(key, 2 * n_points, True, trunk)
        d_model = self.transformer.d_model
        self.read_in = eqx.nn.Linear(d_input, d_model, use_bias=False, key=k_in)
        self.read_out = eqx.nn.Linear(d_model, 1, use_bias=False, key=k_out)
        self.d_input = d_input
        self.n_points = n_points

    @property
    def first_layer(self) -> FirstLayer:
        """`read_in.weight` (D, d), applied to each token (x_i, then (y_i, 0, ...))."""
        return FirstLayer("read_in.weight", "tokens")

    def mup_options(self) -> dict[str, tuple[str, ...]]:
        return {
            "zero": ("*out_proj.weight", "read_out.weight"),
            "embedding": ("read_in.weight", "position"),
        }

    def tokens(self, points: jax.Array) -> jax.Array:
        """(n, d + 1) -> (2n, d): x_1, (y_1, 0, ...), x_2, (y_2, 0, ...), ..."""
        n = points.shape[0] if points.ndim == 2 else -1
        if points.ndim != 2 or points.shape[1] != self.d_input + 1 or not 1 <= n <= self.n_points:
            raise ValueError(
                f"ICLRegressor expects one sequence of points shaped (n, {self.d_input + 1}) with "
                f"n <= {self.n_points} (x then y per row; see icl_points), got {points.shape}"
            )
        xs, ys = points[:, : self.d_input], points[:, self.d_input]
        y_tokens = jnp.zeros_like(xs).at[:, 0].set(ys)
        return jnp.stack([xs, y_tokens], axis=1).reshape(2 * n, self.d_input)

    def __call__(self, points: jax.Array) -> jax.Array:
        """(n, d + 1) -> (n,) predictions of each y_i from x_i and the pairs before it."""
        tokens = self.tokens(points)
        h = tokens @ self.read_in.weight.T + self.position[: tokens.shape[0]]
        h = self.transformer(h)  # (2n, D)
        return (h[0::2] @ self.read_out.weight.T)[:, 0]


class CharLM(eqx.Module):
    """A causal character language model: ids (T,) -> (T, vocab) logits of the next character.

    T may be at most `context_length` (structures such as "mlr" constrain it further).
    Parameters: `embedding.weight` (vocab, D), `position` (context_length, D),
    `transformer.*`, `head.weight` (vocab, D). No biases.
    """

    embedding: eqx.nn.Embedding
    position: jax.Array  # (context_length, D)
    transformer: Transformer
    head: eqx.nn.Linear
    vocab_size: int = eqx.field(static=True)
    context_length: int = eqx.field(static=True)

    def __init__(self, vocab_size: int, context_length: int, *, key: jax.Array, **trunk: Any):
        _check_sizes(vocab_size=vocab_size, context_length=context_length)
        self.position, self.transformer, k_emb, k_head = _trunk(key, context_length, True, trunk)
        d_model = self.transformer.d_model
        self.embedding = eqx.nn.Embedding(vocab_size, d_model, key=k_emb)
        self.head = eqx.nn.Linear(d_model, vocab_size, use_bias=False, key=k_head)
        self.vocab_size = vocab_size
        self.context_length = context_length

    @property
    def first_layer(self) -> FirstLayer:
        """`embedding.weight` (vocab, D), looked up by character id."""
        return FirstLayer("embedding.weight", "embedding")

    def mup_options(self) -> dict[str, tuple[str, ...]]:
        return {"zero": ("*out_proj.weight", "head.weight"), "embedding": ("position",)}

    def __call__(self, ids: jax.Array) -> jax.Array:
        """(T,) integer ids -> (T, vocab) logits; position t sees ids[: t + 1] only."""
        if ids.ndim != 1 or not 1 <= ids.shape[0] <= self.context_length:
            raise ValueError(
                f"CharLM expects one sequence of ids shaped (T,) with T <= "
                f"{self.context_length}, got {ids.shape}; use jax.vmap for batches"
            )
        h = self.embedding.weight[ids.astype(jnp.int32)] + self.position[: ids.shape[0]]
        return self.transformer(h) @ self.head.weight.T


class SeriesForecaster(eqx.Module):
    """An input window (L, d_in) -> forecasts (H, d_out), direct multi-horizon.

    Tokens: the window cut into L/p patches of p consecutive steps (read in linearly), then
    H/p horizon tokens (zero content), each plus a learned position; the blocks are non-causal
    unless `causal`; each horizon token is read out as its p steps (p = `patch`, 1 = one token
    per step; it must divide L and H). instance_norm: standardise each variable by the window's
    own mean and std and undo it on the forecasts (needs d_out == d_in). Parameters:
    `read_in.weight` (D, p·d_in), `read_in.bias`, `position` ((L + H)/p, D), `transformer.*`,
    `read_out.weight` (p·d_out, D), `read_out.bias`.
    """

    read_in: eqx.nn.Linear
    position: jax.Array  # ((L + H)/p, D)
    transformer: Transformer
    read_out: eqx.nn.Linear
    input_length: int = eqx.field(static=True)
    horizon: int = eqx.field(static=True)
    d_in: int = eqx.field(static=True)
    d_out: int = eqx.field(static=True)
    patch: int = eqx.field(static=True)
    instance_norm: bool = eqx.field(static=True)

    def __init__(
        self,
        input_length: int,
        horizon: int,
        d_in: int,
        d_out: int | None = None,
        *,
        key: jax.Array,
        patch: int = 1,
        causal: bool = False,
        instance_norm: bool = True,
        **trunk: Any,
    ):
        d_out = d_in if d_out is None else d_out
        _check_sizes(
            input_length=input_length, horizon=horizon, d_in=d_in, d_out=d_out, patch=patch
        )
        if input_length % patch or horizon % patch:
            raise ValueError(
                f"patch={patch} must divide input_length={input_length} and horizon={horizon}"
            )
        if instance_norm and d_out != d_in:
            raise ValueError(
                f"instance_norm undoes the input's per-variable scaling on the outputs, so it "
                f"needs d_out == d_in (got {d_out} and {d_in}); pass instance_norm=False"
            )
        n_positions = (input_length + horizon) // patch
        self.position, self.transformer, k_in, k_out = _trunk(key, n_positions, causal, trunk)
        d_model = self.transformer.d_model
        self.read_in = eqx.nn.Linear(patch * d_in, d_model, key=k_in)
        self.read_out = eqx.nn.Linear(d_model, patch * d_out, key=k_out)
        self.input_length = input_length
        self.horizon = horizon
        self.d_in = d_in
        self.d_out = d_out
        self.patch = patch
        self.instance_norm = instance_norm

    @property
    def seq_len(self) -> int:
        """Tokens per example: (L + H)/p."""
        return (self.input_length + self.horizon) // self.patch

    @property
    def first_layer(self) -> FirstLayer:
        """`read_in.weight` (D, p·d_in), applied to each patch of p steps of the window."""
        return FirstLayer("read_in.weight", "tokens")

    def mup_options(self) -> dict[str, tuple[str, ...]]:
        return {"zero": ("*out_proj.weight", "read_out.weight"), "embedding": ("position",)}

    def __call__(self, window: jax.Array) -> jax.Array:
        """(L, d_in) -> (H, d_out)."""
        _check_shape(window, (self.input_length, self.d_in), "SeriesForecaster")
        if self.instance_norm:
            mean = jnp.mean(window, axis=0)
            std = jnp.sqrt(jnp.var(window, axis=0) + 1e-5)
            window = (window - mean) / std
        patches = window.reshape(self.input_length // self.patch, -1)  # (L/p, p d_in)
        steps = patches @ self.read_in.weight.T + self.read_in.bias  # (L/p, D)
        future = jnp.zeros((self.horizon // self.patch, steps.shape[1]), steps.dtype)
        h = self.transformer(jnp.concatenate([steps, future]) + self.position)
        h = h[self.input_length // self.patch :]  # (H/p, D)
        out = (h @ self.read_out.weight.T + self.read_out.bias).reshape(self.horizon, self.d_out)
        return out * std + mean if self.instance_norm else out
