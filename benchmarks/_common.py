"""Helpers shared by the benchmark scripts: data, interleaved timing, tables, memory readings."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

SHARED_MNIST = "/work/shared/data/mnist"


def gradient_parts(post) -> dict[str, float]:
    """A fitted Posterior's full-batch-equivalent gradients as its attrs and stats record them:
    "init" (starting points: MAP / ensemble epochs), "tuning" (step or L tuning) and "sampling"
    (a chain's leapfrogs or MCLMC gradients; an optimiser's epochs times its members)."""
    attrs, stats = post.attrs, post.stats
    if post.is_chain and ("n_gradients" in stats or "n_steps" in stats):
        sampling = np.sum(stats["n_gradients"] if "n_gradients" in stats else stats["n_steps"])
    else:  # one epoch = one full pass of gradients per member (none for Laplace)
        sampling = int(attrs.get("n_members", 1)) * len(np.asarray(stats.get("loss", [])))
    return {
        "init": float(attrs.get("n_init_gradients", 0)),
        "tuning": float(attrs.get("n_tuning_gradients", 0)),
        "sampling": float(sampling),
    }


def prefer_shared_mnist() -> None:
    """Point $BNN_SHIFT_MNIST_DIR at the shared MNIST copy when it exists and none is set."""
    if "BNN_SHIFT_MNIST_DIR" not in os.environ and os.path.isdir(SHARED_MNIST):
        os.environ["BNN_SHIFT_MNIST_DIR"] = SHARED_MNIST


def mnist_train(n_train: int, seed: int = 0, data_dir: str | None = None):
    """-> (x (n, 784) float32, y (n,) int32): a stratified MNIST training subset.

    Looks in data_dir, then $BNN_SHIFT_MNIST_DIR, then the shared copy, then the library's cache.
    """
    from bnn_shift.data import load_mnist

    if data_dir is None:
        prefer_shared_mnist()
    ds = load_mnist(data_dir, progress=False)
    ds = ds if n_train >= len(ds.y_train) else ds.subset(n_train, None, seed=seed)
    return ds.flat("train"), ds.y_train


def interleaved_times(
    calls: Mapping[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Run each call once untimed (compile + warm-up, reported as `first`), then `repeats`
    rounds calling every method once per round, so slow drifts of a shared machine hit all
    methods alike. -> ({name: [seconds per repeat]}, {name: seconds of the first call})."""
    first = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t0)
    return times, first


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call; CPU is this process's user + system time."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def corruption_args(doc: str, *, n: int, n_help: str, loop_n: int) -> argparse.Namespace:
    """Parse the options of the corruption benchmarks: --n, --loop-n and --names."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--n", type=int, default=n, help=n_help)
    parser.add_argument("--loop-n", type=int, default=loop_n, help="images for the per-image loop")
    parser.add_argument("--names", nargs="*", default=None, help="corruptions (default: all)")
    return parser.parse_args()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """(max - min) / median: how noisy the repeats were."""
    return (max(xs) - min(xs)) / statistics.median(xs) if len(xs) > 1 else 0.0


def print_table(header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def rss_bytes() -> int:
    """Resident set size of this process (psutil if installed, else /proc/self/status)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return -1


def live_array_bytes() -> tuple[int, int]:
    """(total bytes, count) of the JAX arrays alive in this process."""
    arrays = jax.live_arrays()
    return int(sum(a.nbytes for a in arrays)), len(arrays)


def mib(n: float) -> float:
    return n / 2**20


def describe_machine() -> str:
    devices = jax.devices()
    kind = f"{devices[0].device_kind} ({devices[0].platform})"
    return (
        f"jax {jax.__version__}, {len(devices)} x {kind}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )


def flat_size(tree) -> int:
    return int(sum(np.size(a) for a in jax.tree.leaves(tree)))


def tree_axpy(a, x, y):
    """y + a * x leafwise."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def make_floor(logpost, h: float, n_steps: int):
    """Bare velocity Verlet: (q, p, grad, data) -> (q, p, grad, value) after n_steps."""
    value_and_grad = jax.value_and_grad(logpost)

    def run(q, p, g, data):
        def body(_, carry):
            q, p, g, _ = carry
            p = tree_axpy(0.5 * h, g, p)
            q = tree_axpy(h, p, q)
            v, g = value_and_grad(q, data)
            return q, tree_axpy(0.5 * h, g, p), g, v

        return jax.lax.fori_loop(0, n_steps, body, (q, p, g, jnp.zeros(())))

    return jax.jit(run)
