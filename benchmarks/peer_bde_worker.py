"""One fit of the peer `bde` (MILE, scikit-learn-contrib/bde) in bde's own environment.

Started by benchmarks/peer_bde.py with bde's Python (never imported into bnn_shift's
environment: bde pins blackjax 1.2.2). Reads the training data and eval inputs from an .npz and
the estimator's keyword arguments from a JSON file, fits `bde.BdeClassifier`, and writes the
model-average probabilities on every eval set to an .npz and the fit's seconds and
full-batch-equivalent gradient count to a JSON file. No pickle anywhere.

    python peer_bde_worker.py --data data.npz --settings fit.json --out result
    python peer_bde_worker.py --probe        # prints the versions of bde, jax and blackjax

Gradients are counted from bde's source (1.0.2): the ensemble phase takes one full-batch Adam
step per epoch and member on the training part (1 - validation_split of the data when patience
is set, so such an epoch counts that fraction); the warmup runs int(0.8 W) + int(0.1 W) +
int(0.1 W) isokinetic McLachlan steps per member and the sampler n_samples steps, each two
gradients of the full-batch log posterior. Chain initialisations (one gradient each) and the
early-stopping validation losses (forward passes) are not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

GRADIENTS_PER_STEP = 2  # isokinetic McLachlan: two gradient evaluations per step
WARMUP_PHASES = (0.8, 0.1, 0.1)  # bde.sampler.warmup.custom_mclmc_warmup's phase_ratio
EVAL_PREFIX = "eval/"  # data.npz keys of the eval inputs; result keys of their probabilities


def train_fraction(n: int, patience: int | None, validation_split: float | None) -> float:
    """Fraction of the n examples bde's ensemble phase trains on: all of them unless early
    stopping (patience) holds out ceil(validation_split * n), as train_test_split does."""
    if patience is None or validation_split is None:
        return 1.0
    return (n - math.ceil(validation_split * n)) / n


def warmup_steps_run(warmup_steps: int) -> int:
    """MCLMC steps bde's warmup takes for `warmup_steps` (its three phases, each truncated)."""
    return sum(int(warmup_steps * ratio) for ratio in WARMUP_PHASES)


def bde_gradients(
    *,
    n_members: int,
    epochs_run: int,
    fraction: float,
    warmup_steps: int,
    n_samples: int,
) -> dict[str, float]:
    """Full-batch-equivalent gradients of one bde fit: ensemble (members x epochs run x the
    training fraction; stopped members are frozen but still computed until all stop), warmup
    and sampling (two per MCLMC step and member)."""
    parts = {
        "gradients_init": float(n_members * epochs_run * fraction),
        "gradients_tuning": float(n_members * GRADIENTS_PER_STEP * warmup_steps_run(warmup_steps)),
        "gradients_sampling": float(n_members * GRADIENTS_PER_STEP * n_samples),
    }
    return {"gradients": sum(parts.values()), **parts}


def epochs_run(history: dict) -> int:
    """Epochs bde's training loop ran: the longest member history (a stopped member's is cut
    at its stop epoch; the loop ends when the last member stops or at `epochs`)."""
    return max(len(member["epoch"]) for member in history.values())


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("sklearn-contrib-bde", "blackjax", "jax")}


def fit(data_path: Path, settings_path: Path, out: Path) -> None:
    """Fit BdeClassifier(**settings["bde"]) and write out.npz (probabilities) + out.json."""
    import jax
    from bde import BdeClassifier

    with np.load(data_path, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    kwargs = json.loads(settings_path.read_text())["bde"]
    x, y = arrays["x_train"], arrays["y_train"]
    estimator = BdeClassifier(**kwargs)
    started = time.perf_counter()
    estimator.fit(x, y)
    jax.block_until_ready(jax.tree.leaves(estimator.positions_eT_))
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    probs = {
        k: np.asarray(estimator.predict_proba(v), np.float32)
        for k, v in arrays.items()
        if k.startswith(EVAL_PREFIX)
    }
    predict_seconds = time.perf_counter() - started
    defaults = BdeClassifier().get_params()
    params = defaults | kwargs
    run = epochs_run(estimator._bde.history)
    count = bde_gradients(
        n_members=params["n_members"],
        epochs_run=run,
        fraction=train_fraction(len(x), params["patience"], params["validation_split"]),
        warmup_steps=params["warmup_steps"] or 0,
        n_samples=params["n_samples"],
    )
    leaf = jax.tree.leaves(estimator.positions_eT_)[0]  # (members, kept draws, ...)
    np.savez(out.with_suffix(".npz"), **probs)
    result = count | {
        "seconds": seconds,
        "predict_seconds": predict_seconds,
        "epochs_run": run,
        "draws": int(leaf.shape[0] * leaf.shape[1]),
        "classes": np.asarray(estimator.classes_).tolist(),
        "devices": [str(d) for d in jax.devices()],
        "versions": versions(),
        "settings": params,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help="print versions as JSON and exit")
    parser.add_argument("--data", type=Path, help="x_train, y_train and eval/<name> arrays")
    parser.add_argument("--settings", type=Path, help='JSON {"bde": BdeClassifier kwargs}')
    parser.add_argument("--out", type=Path, help="result path without suffix (.npz, .json)")
    args = parser.parse_args()
    if args.probe:
        import bde  # noqa: F401

        print(json.dumps(versions()))
        return
    if args.data is None or args.settings is None or args.out is None:
        parser.error("--data, --settings and --out are required (or --probe)")
    fit(args.data, args.settings, args.out)


if __name__ == "__main__":
    main()
