"""ms per HMC leapfrog with the native conv vs the im2col (matmul) conv path, same process.

LeNet-5 and a small attention classifier (patch embedding = a stride-p conv) on N MNIST images
(optionally ResNet-20-FRN: `--models resnet`, slow with the native path: use a small N),
our kernel (`HMC.for_target(...).step`, one `fori_loop` of L leapfrogs) divided by L; also one
jitted value_and_grad outside any loop. The path is forced per program through
$BNN_SHIFT_CONV_PATH (read at trace time; each program is compiled ahead of time).
Rows are interleaved round by round; the median of the repeats is reported.
Run: python benchmarks/conv_paths.py [--n-train 500] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
from _common import interleaved_times

os.environ.setdefault("BNN_SHIFT_MNIST_DIR", "/work/shared/data/mnist")
from bnn_shift.data import load_mnist
from bnn_shift.inference import CATEGORICAL, HMC, Target
from bnn_shift.models import AttentionClassifier, LeNet5, ResNet20FRN, partition_params
from bnn_shift.models.conv import CONV_PATH_ENV, CONV_PATHS
from bnn_shift.priors import Gaussian


def compiled_programs(model, x, y, steps: int, path: str):
    """(leapfrog step, value_and_grad) compiled with the conv `path`, as zero-argument calls."""
    os.environ[CONV_PATH_ENV] = path
    jax.clear_caches()  # nothing traced under the other path may be reused
    params, static = partition_params(model)
    target = Target(CATEGORICAL, Gaussian(0.1), static, 1.0, len(x))
    engine = HMC.for_target(target, params, step_size=1e-4, n_steps=steps)
    state = jax.jit(lambda q: engine.init(target, q, (x, y)))(params)
    key, warm = jax.random.key(0), jnp.asarray(False)
    step = jax.jit(lambda s: engine.step(target, key, s, (x, y), warm)).lower(state).compile()
    grad = jax.jit(jax.value_and_grad(lambda p: target.logdensity(p, (x, y))))
    grad = grad.lower(params).compile()
    return (lambda: step(state)), (lambda: grad(params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10, help="leapfrogs per HMC step (L)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=32, help="attention classifier d_model")
    parser.add_argument("--patch", type=int, default=7, help="attention classifier patch size")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet", "attention"],
        choices=["lenet", "attention", "resnet"],
    )
    args = parser.parse_args()
    data = load_mnist().subset(args.n_train, 10, seed=0)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)  # (n, 28, 28, 1), (n,)
    key = jax.random.key(0)
    builders = {
        "lenet": ("LeNet-5", lambda: LeNet5(1, 10, image_size=28, key=key)),
        "attention": (
            f"attention d={args.width} p={args.patch}",
            lambda: AttentionClassifier(
                1, 10, image_size=28, patch_size=args.patch, d_model=args.width, n_heads=4,
                depth=2, key=key,
            ),
        ),
        "resnet": ("ResNet-20-FRN", lambda: ResNet20FRN(1, 10, image_size=28, key=key)),
    }  # fmt: skip
    models = {builders[m][0]: builders[m][1]() for m in args.models}
    print(f"{jax.default_backend()}, N = {len(x)}, L = {args.steps}, {args.repeats} repeats")
    print(f"{'model':24s} {'program':22s} " + " ".join(f"{p:>10s}" for p in CONV_PATHS), end="")
    print("  native/matmul")
    for name, model in models.items():
        calls = {}
        for path in CONV_PATHS:
            step, grad = compiled_programs(model, x, y, args.steps, path)
            calls[("ms / leapfrog", path)] = step
            calls[("ms / value_and_grad", path)] = grad
        times, _ = interleaved_times(calls, args.repeats)
        for program in ("ms / leapfrog", "ms / value_and_grad"):
            per = args.steps if program == "ms / leapfrog" else 1
            ms = {p: 1e3 * statistics.median(times[(program, p)]) / per for p in CONV_PATHS}
            cells = " ".join(f"{ms[p]:10.2f}" for p in CONV_PATHS)
            print(f"{name:24s} {program:22s} {cells}  {ms['native'] / ms['matmul']:13.2f}x")


if __name__ == "__main__":
    main()
