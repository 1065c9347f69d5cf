"""XLA:CPU runs convolutions inside a while loop (fori_loop) several times slower than unrolled.

LeNet-5 value_and_grad on N MNIST images, seconds per gradient: alone; inside our HMC kernel
step (a fori_loop of leapfrogs); in a bare fori_loop; fully unrolled; unrolled by 5.
Run: python benchmarks/conv_in_loop.py [--n-train 500] [--steps 10]
The convs follow $BNN_SHIFT_CONV_PATH (bnn_shift.models.conv; on CPU the default is the matmul
path, which does not slow down in loops): set it to "native" to see the slowdown;
benchmarks/conv_paths.py compares both paths in one process.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp

os.environ.setdefault("BNN_SHIFT_MNIST_DIR", "/work/shared/data/mnist")
from bnn_shift.data import load_mnist
from bnn_shift.inference import CATEGORICAL, HMC, Target
from bnn_shift.inference.likelihood import categorical_loglik
from bnn_shift.models import LeNet5, partition_params
from bnn_shift.priors import Gaussian


def seconds(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    data = load_mnist().subset(args.n_train, 10, seed=0)
    params, static = partition_params(LeNet5(1, 10, image_size=28, key=jax.random.key(0)))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    grad = jax.value_and_grad(lambda p: categorical_loglik(p, static, x, y).sum())

    def looped(unroll):
        def body(_, p):
            return jax.tree.map(lambda a, g: a + 1e-6 * g, p, grad(p)[1])

        return jax.jit(lambda p: jax.lax.fori_loop(0, args.steps, body, p, unroll=unroll))

    target = Target(CATEGORICAL, Gaussian(0.1), static, 1.0, len(x))
    engine = HMC.for_target(target, params, step_size=3e-3, n_steps=args.steps)
    state = jax.jit(lambda q: engine.init(target, q, (x, y)))(params)
    step = jax.jit(lambda s: engine.step(target, jax.random.key(0), s, (x, y), jnp.asarray(False)))
    single = seconds(jax.jit(grad), params)
    rows = {
        "one jitted value_and_grad": single,
        "kernel step (fori_loop)": seconds(step, state) / args.steps,
        "bare fori_loop": seconds(looped(1), params) / args.steps,
        "fully unrolled": seconds(looped(True), params) / args.steps,
        "unroll=5": seconds(looped(5), params) / args.steps,
    }
    for name, value in rows.items():
        print(f"{name:28s} {value:8.4f} s/gradient  {value / single:5.2f}x")


if __name__ == "__main__":
    main()
