"""All 15 MNIST-C corruptions on the MNIST test images, batched vs a per-image loop.

For each corruption (release severity): wall and CPU seconds to corrupt the whole test set in
one batched call, and the same corruption applied image by image (a Python loop calling it on
batches of one) timed on the first --loop-n images and extrapolated linearly to the full set.
CPU seconds are this process's user + system time, which a busy shared machine inflates
less than wall time.
Run: python benchmarks/mnist_c.py [--n 10000] [--loop-n 500]
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("BNN_SHIFT_MNIST_DIR", "/work/shared/data/mnist")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> None:
    from _common import corruption_args, describe_machine, print_table, timed

    args = corruption_args(__doc__, n=10_000, n_help="test images to corrupt", loop_n=500)

    from bnn_shift.data import load_mnist
    from bnn_shift.shift.corruptions import MNIST_C, _rng, corrupt

    data = load_mnist(progress=False)
    images = np.clip(data.denormalize(data.x_test[: args.n]), 0.0, 1.0)  # (n, 28, 28, 1)
    n, loop_n = len(images), min(args.loop_n, len(images))
    print(describe_machine(), f"| load average now {os.getloadavg()[0]:.2f}")
    print(f"{n} images; per-image loop timed on {loop_n} and scaled by {n / loop_n:g}\n")

    rows, total_wall, total_cpu = [], 0.0, 0.0
    for name in args.names or list(MNIST_C):
        entry = MNIST_C[name]
        level = entry.default_severity
        corrupt(images[:8], name)  # warm-up (imports, caches)
        wall, cpu = timed(lambda: corrupt(images, name))  # noqa: B023
        rng = _rng(0, entry, level)
        small = images[:loop_n]

        def loop(entry=entry, level=level, rng=rng, small=small):
            for i in range(len(small)):
                entry.fn(small[i : i + 1], level, rng)

        loop_wall, loop_cpu = timed(loop)
        scale = n / loop_n
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        rows.append(
            [name, level, wall, cpu, loop_wall * scale, loop_cpu * scale, loop_cpu * scale / cpu]
        )
    rows.append(["total", "", total_wall, total_cpu, "", "", ""])
    print_table(
        [
            "corruption",
            "severity",
            "batched wall s",
            "batched CPU s",
            "loop wall s (extrap.)",
            "loop CPU s (extrap.)",
            "loop/batched (CPU)",
        ],
        rows,
    )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
