"""Time and memory of the matrix-free linearised (GLM) Laplace predictive for the main job's
MLP (784-256-256-10, 269,322 parameters) on MNIST test points, whole network, kron and diag.

The main job's MAP fit (compare-priors defaults: 2,000 training images, Gaussian prior sd 0.1,
full-batch Adam; --map-epochs shortens it), then per structure: the Laplace fit, and
`laplace_predict(..., method="glm")` on --n-test test images, then its covariance again (the
first call compiles); memory: XLA's temporary and argument bytes of the compiled chunk program
(`memory_analysis`), against the chunk's Jacobians were they formed. The baseline in the same
process: the same k x k covariances from materialised Jacobians (k x d
per point, `_jacobians`, one point per chunk as CHUNK_FLOATS allows) on --n-baseline points,
per-point seconds compared. Also the clean test accuracy and NLL of MAP and of each
structure's mc (32 weight draws), glm and probit predictives.

    .venv/bin/python benchmarks/laplace_glm.py [--n-test 2000] [--map-epochs 1000]
"""

from __future__ import annotations

import argparse
import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import describe_machine, mib, print_table

from bnn_shift.experiments.compare_priors import ComparePriorsConfig, fit_map, load_data
from bnn_shift.experiments.compare_priors import initial_model as first_model
from bnn_shift.inference.laplace import (
    DiagBlock,
    KronBlock,
    fit_laplace,
    laplace_predict,
    output_covariance,
)
from bnn_shift.inference.laplace.gauss_newton import CHUNK_FLOATS, _batches, _jacobians
from bnn_shift.priors import Gaussian


def chunk_memory(approx, x: np.ndarray) -> tuple[int, int, int]:
    """(chunk size, XLA temporary bytes, argument bytes) of the compiled chunk program."""
    linearised = importlib.import_module("bnn_shift.inference.laplace.linearised")
    chunk = max(1, CHUNK_FLOATS // approx.curvature.dim)
    params = jax.tree.map(jnp.asarray, approx.mean)
    lowered = linearised._chunk_covariance.lower(
        params, approx.static, approx.selected, approx.curvature.covariance(), x[:chunk]
    )
    stats = lowered.compile().compiled.memory_analysis()
    return chunk, stats.temp_size_in_bytes, stats.argument_size_in_bytes


def materialised_seconds(approx, x: np.ndarray) -> float:
    """Seconds per point of T J Sigma J^T from materialised Jacobians (k x d per point, as
    many points per chunk as CHUNK_FLOATS allows), each block applied to them on the host in
    float64 (the path this replaced)."""
    params = jax.tree.map(jnp.asarray, approx.mean)

    def block_form(block, jac):  # (m, k, b) -> (m, k, k)
        if isinstance(block, KronBlock):
            q_g, b, _, _ = block._parts
            v = q_g.T @ block._to_matrix(jac) @ b  # (m, k, out, in')
            return np.einsum("mkoi,mloi->mkl", v / block._eig(), v)
        if isinstance(block, DiagBlock):
            return np.einsum("mkb,mlb->mkl", jac * block.variances(), jac)
        raise NotImplementedError(type(block).__name__)

    def run():
        for xb, _ in _batches(x, None, 10 * approx.curvature.dim):
            _, jac = _jacobians(params, approx.static, approx.selected, xb)  # (b, k, d)
            jac = np.asarray(jac, np.float64)
            sum(block_form(block, jac[..., at]) for at, block in approx.curvature.blocks)

    run()  # compile
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / len(x)


def scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    acc = float(np.mean(probs.argmax(1) == y))
    return acc, float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-baseline", type=int, default=50)
    parser.add_argument("--map-epochs", type=int, default=ComparePriorsConfig().map_epochs)
    args = parser.parse_args()
    config = ComparePriorsConfig(dataset="mnist", n_test=args.n_test, map_epochs=args.map_epochs)
    data = load_data(config)
    prior = Gaussian(config.prior_scale)
    start = time.perf_counter()
    mapped = fit_map(first_model(config, data), prior, config, data, progress=False).draw(0)
    print(describe_machine())
    print(f"MAP fit: {time.perf_counter() - start:.1f} s ({args.map_epochs} epochs)")
    x, y = data.flat("test"), data.y_test
    rows, quality = [], []
    map_probs = np.asarray(jax.nn.softmax(jax.vmap(mapped)(x), -1))
    quality.append(["map", "-", *scores(map_probs, y)])
    for hessian in ("kron", "diag"):
        start = time.perf_counter()
        approx = fit_laplace(mapped, prior, data.x_train, data.y_train, hessian=hessian,
                             fit_map=False)  # fmt: skip
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        glm = laplace_predict(approx, x, method="glm").predictive
        first = time.perf_counter() - start
        start = time.perf_counter()
        output_covariance(approx, x)
        second = time.perf_counter() - start
        per_point = materialised_seconds(approx, x[: args.n_baseline])
        chunk, temp, arguments = chunk_memory(approx, x)
        jacobians = chunk * map_probs.shape[1] * approx.curvature.dim * 4
        rows.append([
            hessian, approx.curvature.dim, fit_seconds, first, second, chunk, mib(temp),
            mib(arguments), mib(jacobians), per_point * len(x), per_point * len(x) / second,
        ])  # fmt: skip
        for method in ("mc", "glm", "probit"):
            probs = (
                glm
                if method == "glm"
                else laplace_predict(approx, x, method=method, n_samples=32).predictive
            )
            quality.append([f"laplace-{hessian}", method, *scores(probs, y)])
    print(f"\nGLM predictive on {len(x)} MNIST test points (whole network):")
    print_table(
        ["hessian", "d", "fit s", "glm s (1st)", "covariance s (2nd)", "chunk", "temp MiB",
         "args MiB", "chunk's J MiB", "materialised s (est.)", "ratio"],
        rows,
    )  # fmt: skip
    print("\nclean test set:")
    print_table(["method", "predictive", "accuracy", "nll"], quality)


if __name__ == "__main__":
    main()
