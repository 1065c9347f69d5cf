"""Compile once: seconds of the second of two identical `BNNClassifier(...).fit` calls.

Each engine fits the same estimator (an `MLP(64, (32,), 10)` on 500 scikit-learn digits, the
estimator's defaults otherwise, progress off) twice in one process, with no persistent
compilation cache. The first call traces and compiles every program; the second repeats the
same shapes and settings, so a library whose programs take the model, prior and settings as
arguments reuses them and a library that builds fresh closures per fit compiles everything
again. Reported: first and second call seconds, their ratio, and the XLA compiles inside the
second call (JAX's `/jax/core/compile/backend_compile_duration` events).

    .venv/bin/python benchmarks/refit.py [--engines hmc map ...] [--n-train 500]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from jax import monitoring
from sklearn.datasets import load_digits

from bnn_shift.sklearn import BNNClassifier

SETTINGS = {
    "hmc": {"n_iterations": 30, "n_burnin": 10, "epochs": 100},
    "nuts": {"n_iterations": 30, "n_burnin": 10, "epochs": 100},
    "map": {"epochs": 200},
    "ensemble": {"epochs": 100, "n_members": 3},
    "sgld": {"epochs": 100},
    "vi": {"epochs": 100},
}

compiles = [0]


def _count(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        compiles[0] += 1


def fit_seconds(engine: str, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """(wall seconds, XLA compiles) of one fit."""
    before = compiles[0]
    started = time.perf_counter()
    BNNClassifier(engine, hidden=(32,), random_state=0, **SETTINGS[engine]).fit(x, y)
    return time.perf_counter() - started, compiles[0] - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--n-train", type=int, default=500)
    args = parser.parse_args()
    monitoring.register_event_duration_secs_listener(_count)
    digits = load_digits()
    x = (digits.data[: args.n_train] / 16.0).astype(np.float32)
    y = digits.target[: args.n_train]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {len(x)} digits")
    header = ("engine", "first s", "second s", "ratio", "compiles 1st/2nd")
    print(f"{header[0]:10s} {header[1]:>8s} {header[2]:>9s} {header[3]:>6s} {header[4]:>17s}")
    for engine in args.engines:
        first, c1 = fit_seconds(engine, x, y)
        second, c2 = fit_seconds(engine, x, y)
        print(f"{engine:10s} {first:8.2f} {second:9.2f} {second / first:6.2f} {c1:>8d}/{c2:<8d}")


if __name__ == "__main__":
    main()
