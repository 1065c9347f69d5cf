"""The peer `bde` (MILE behind a scikit-learn API) side by side with our `BNNClassifier`.

For each data set, back to back on the same train/test split and MLP widths: our
`BNNClassifier` with its defaults for inference="hmc" and "mile", then bde's `BdeClassifier`
(a) with its defaults, (b) at the gradient budget our default HMC fit spent, with our prior
(its ensemble phase for a fixed third of the budget, "bde-matched", or with the README's early
stopping, "bde-matched-es"), and (c) with its README's classification settings.

bde pins blackjax 1.2.2, so it runs in its own environment: benchmarks/peer_bde_worker.py is
started there (--bde-python), and data and results travel as .npz (no pickle) and JSON files
under --out. Every fit is scored here with the same metrics: accuracy / NLL / ECE on the clean
test set and at Gaussian pixel noise std 2 (the reference's eval sets, `eval_sets`), and on
MNIST agreement / total variation against the stored Gaussian reference posterior. Gradients
are full-batch equivalents (a minibatch of b of n examples counts b / n; ensemble epochs,
step-size tuning and warmup included; chain initialisations not). Each row is written to
peer-bde.csv as soon as its fit ends; rerunning with the same --out skips finished rows.

    python benchmarks/peer_bde.py --smoke                    # digits, tiny budgets, seconds
    python benchmarks/peer_bde.py --datasets digits,mnist    # MLPs 64-32-10 and 784-256-256-10
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import gradient_parts, prefer_shared_mnist
from peer_bde_worker import EVAL_PREFIX, train_fraction

from bnn_shift.experiments.compare_priors import ComparePriorsConfig, load_data
from bnn_shift.experiments.reference import (
    CLEAN,
    ReferenceConfig,
    eval_sets,
    input_digests,
    load_reference,
    noise_name,
)
from bnn_shift.shift.agreement import closeness
from bnn_shift.shift.calibration import ece
from bnn_shift.shift.metrics import accuracy, nll
from bnn_shift.sklearn import BNNClassifier

HERE = Path(__file__).resolve().parent
WORKER = HERE / "peer_bde_worker.py"
DEFAULT_BDE_PYTHON = Path("/work/bde-venv/bin/python")
CREATE_BDE_VENV = (
    "PYENV_VERSION=3.12.1 python3.12 -m venv /work/bde-venv && "
    "/work/bde-venv/bin/pip install sklearn-contrib-bde"
)
REFERENCE = HERE / "reference" / "mnist-mlp-gaussian.npz"
NOISY = noise_name(2.0)
TABLE = "peer-bde.csv"
SEED = 0

# (c): the classification example of bde's README (1.0.2), hidden widths replaced by ours
BDE_README = {
    "n_members": 4, "epochs": 1000, "validation_split": 0.15, "lr": 1e-3, "warmup_steps": 400,
    "n_samples": 100, "n_thinning": 1, "patience": 10,
}  # fmt: skip
# (b): how a matched budget is split over bde's phases
MATCHED_MEMBERS = 4  # as bde's README
MATCHED_STORED_BYTES = 2e9  # bde keeps every sampled position (members x n_samples) in memory
MATCHED_DRAWS = 100  # thinning keeps at most this many draws per member


@dataclasses.dataclass(frozen=True)
class Problem:
    """One data set: flattened inputs, eval sets and the network / prior both sides use."""

    name: str
    x_train: np.ndarray  # (n, d) float32
    y_train: np.ndarray  # (n,) int32
    evals: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> ((m, d), (m,))
    hidden: tuple[int, ...]
    prior_scale: float
    reference: object | None  # a bnn_shift Reference (MNIST) or None

    @property
    def n_params(self) -> int:
        widths = (self.x_train.shape[1], *self.hidden, len(np.unique(self.y_train)))
        return sum((a + 1) * b for a, b in itertools.pairwise(widths))


def load_problem(name: str, smoke: bool) -> Problem:
    """digits (all of it, MLP 64-32-10, prior scale 1) or the main job's MNIST subset (2,000 /
    2,000 images, MLP 784-256-256-10, prior scale 0.1, with its reference posterior)."""
    if name == "digits":
        sizes = {"n_train": 300, "n_test": 100, "hidden": (16,)} if smoke else {}
        config = ComparePriorsConfig(
            **{"dataset": "digits", "n_train": None, "n_test": None, "hidden": (32,)} | sizes,
            prior_scale=1.0,
        )
    elif name == "mnist":
        config = ComparePriorsConfig(dataset="mnist")
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from digits, mnist")
    data = load_data(config)
    evals = eval_sets(ReferenceConfig(problem=config), data.x_test, data.y_test)
    reference = None
    if name == "mnist":
        reference = load_reference(REFERENCE)
        if input_digests(evals) != reference.digests:
            raise SystemExit(f"{REFERENCE} was made on other inputs than this problem's eval sets")
    flat = {k: (x.reshape(len(x), -1), y) for k, (x, y) in evals.items()}
    return Problem(
        name, data.flat("train"), data.y_train, flat, config.hidden, config.prior_scale, reference
    )


# ---- our estimator -------------------------------------------------------------------------


def ours_settings(inference: str, problem: Problem, smoke: bool) -> dict:
    """BNNClassifier's defaults, with the problem's widths and prior scale (tiny for --smoke)."""
    settings = {
        "hidden": problem.hidden, "prior_scale": problem.prior_scale, "random_state": SEED,
    }  # fmt: skip
    if smoke:
        settings |= {"n_iterations": 6, "n_burnin": 2, "epochs": 20}
        settings |= {"n_members": 2} if inference == "mile" else {}
    return settings


def ours_gradients(estimator: BNNClassifier) -> dict[str, float]:
    """Full-batch-equivalent gradients of a fitted BNNClassifier("hmc" or "mile"), split into
    the start (MAP epochs / ensemble members' epochs), tuning and sampling."""
    parts = {f"gradients_{k}": v for k, v in gradient_parts(estimator.posterior_).items()}
    return {"gradients": sum(parts.values()), **parts}


def fit_ours(inference: str, problem: Problem, settings: dict) -> tuple[dict, dict]:
    """-> (eval name -> probabilities, row fields)."""
    estimator = BNNClassifier(inference, **settings)
    started = time.perf_counter()
    estimator.fit(problem.x_train, problem.y_train)
    seconds = time.perf_counter() - started
    probs = {k: estimator.predict_proba(x) for k, (x, _) in problem.evals.items()}
    attrs = estimator.posterior_.attrs
    info = {"seconds": seconds, "draws": estimator.posterior_.n_draws}
    info |= {"step_size": float(attrs["step_size"])} if "step_size" in attrs else {}
    info |= {"leapfrogs": int(attrs["n_leapfrog_steps"])} if "n_leapfrog_steps" in attrs else {}
    return probs, info | ours_gradients(estimator)


# ---- bde -----------------------------------------------------------------------------------


def matched_settings(gradients: float, problem: Problem, max_epochs: int | None = None) -> dict:
    """bde settings spending about `gradients` (our default HMC fit's) with MATCHED_MEMBERS
    members and the problem's prior. max_epochs=None: a third of each member's share in
    full-batch ensemble epochs, the rest in MCLMC steps (two gradients each). max_epochs=E: the
    README's early stopping (patience, validation split) for at most E epochs, the share left
    after E epochs in MCLMC steps (an ensemble that stops early spends less than the target).
    Sampling takes at most as many steps as warmup and stores at most MATCHED_STORED_BYTES of
    positions (bde keeps every step's); thinned to at most MATCHED_DRAWS draws per member."""
    share = gradients / MATCHED_MEMBERS
    if max_epochs is None:
        epochs, ensemble = max(1, round(share / 3)), {"patience": None}
        spent = epochs
    else:
        epochs = max_epochs
        ensemble = {k: BDE_README[k] for k in ("patience", "validation_split")}
        spent = epochs * train_fraction(len(problem.x_train), **ensemble)
    steps = max(2, (share - spent) / 2)  # MCLMC steps per member
    cap = int(MATCHED_STORED_BYTES // (MATCHED_MEMBERS * problem.n_params * 4))
    n_samples = max(1, min(round(steps / 2), cap))
    return {
        "n_members": MATCHED_MEMBERS, "hidden_layers": list(problem.hidden), "seed": SEED,
        "epochs": epochs, **ensemble, "warmup_steps": max(1, round(steps - n_samples)),
        "n_samples": n_samples, "n_thinning": max(1, math.ceil(n_samples / MATCHED_DRAWS)),
        "prior_family": "normal", "prior_kwargs": {"scale": problem.prior_scale},
    }  # fmt: skip


def bde_settings(fit: str, problem: Problem, rows: list[dict], smoke: bool) -> dict:
    """BdeClassifier keyword arguments of `fit`: "bde-defaults", "bde-readme", or
    "bde-matched" / "bde-matched-es" (`matched_settings` for our ours-hmc row's gradients)."""
    base = {"hidden_layers": list(problem.hidden), "seed": SEED}
    if fit == "bde-defaults":
        return base
    if fit == "bde-readme":
        small = {"epochs": 20, "warmup_steps": 20, "n_samples": 10} if smoke else {}
        return base | BDE_README | small
    ours = [r for r in rows if r["dataset"] == problem.name and r["fit"] == "ours-hmc"]
    if not ours:
        raise SystemExit(f"{fit} needs the ours-hmc row of the same data set: fit it first")
    max_epochs = None if fit == "bde-matched" else 20 if smoke else BDE_README["epochs"]
    return matched_settings(float(ours[0]["gradients"]), problem, max_epochs)


def check_bde(bde_python: Path) -> dict:
    """Versions of bde, blackjax and jax in bde's environment; a clear error if it is missing."""
    if not bde_python.is_file():
        raise SystemExit(
            f"bde's environment is missing ({bde_python} does not exist). bde pins blackjax "
            f"1.2.2, so it lives in its own virtual environment; create it with\n\n"
            f"    {CREATE_BDE_VENV}\n\nor pass --bde-python PATH."
        )
    probe = subprocess.run(
        [str(bde_python), str(WORKER), "--probe"], capture_output=True, text=True, timeout=600
    )
    if probe.returncode != 0:
        raise SystemExit(
            f"{bde_python} cannot import bde:\n{probe.stderr[-2000:]}\nInstall it with\n\n"
            f"    {bde_python.parent / 'pip'} install sklearn-contrib-bde\n\n"
            f"(or recreate the environment: {CREATE_BDE_VENV})"
        )
    return json.loads(probe.stdout.strip().splitlines()[-1])


def write_data(problem: Problem, folder: Path) -> Path:
    """The worker's inputs: x_train, y_train and eval/<name> (no pickle)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.npz"
    evals = {f"{EVAL_PREFIX}{k}": x for k, (x, _) in problem.evals.items()}
    np.savez(path, x_train=problem.x_train, y_train=problem.y_train, **evals)
    return path


def fit_bde(
    fit: str, settings: dict, data: Path, folder: Path, bde_python: Path
) -> tuple[dict, dict]:
    """Run the worker on `data` with `settings` -> (eval name -> probabilities, row fields)."""
    spec, out, log = folder / f"{fit}.json", folder / f"{fit}-result", folder / f"{fit}.log"
    spec.write_text(json.dumps({"bde": settings}, indent=1) + "\n")
    command = [str(bde_python), str(WORKER), "--data", str(data), "--settings", str(spec)]
    env = dict(os.environ, TQDM_DISABLE="1")
    with log.open("w") as stream:
        done = subprocess.run(
            [*command, "--out", str(out)], stdout=stream, stderr=subprocess.STDOUT, env=env
        )
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"bde fit {fit} failed (exit {done.returncode}), log {log}:\n{tail}")
    result = json.loads(out.with_suffix(".json").read_text())
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as stored:
        probs = {k.removeprefix(EVAL_PREFIX): stored[k].astype(np.float64) for k in stored.files}
    if result["classes"] != list(range(probs[CLEAN].shape[1])):
        raise RuntimeError(f"bde's classes {result['classes']} are not 0..k-1")
    keys = ("seconds", "draws", "gradients", "gradients_init", "gradients_tuning")
    return probs, {k: result[k] for k in (*keys, "gradients_sampling")}


# ---- scores, rows, resume ------------------------------------------------------------------


def scores(probs: dict[str, np.ndarray], problem: Problem) -> dict[str, float]:
    """Accuracy / NLL / ECE on the clean and the noise-2 test set, and agreement / total
    variation against the reference's pooled model average where there is one."""
    row = {}
    for name, tag in ((CLEAN, "clean"), (NOISY, "noise2")):
        p, labels = probs[name], problem.evals[name][1]
        row |= {f"accuracy_{tag}": accuracy(p, labels), f"nll_{tag}": nll(p, labels)}
        row[f"ece_{tag}"] = ece(p, labels)
        if problem.reference is not None:
            against = closeness(p, problem.reference.predictions[name])
            row |= {f"{k}_{tag}": v for k, v in against.items()}
    return row


def finished_rows(out: Path, settings: dict) -> list[dict]:
    """Rows an earlier run with the same settings wrote to out/peer-bde.csv (resume)."""
    out.mkdir(parents=True, exist_ok=True)
    stored, table = out / "settings.json", out / TABLE
    if stored.is_file() and json.loads(stored.read_text()) != settings:
        raise SystemExit(f"{out} holds a run with other settings ({stored}); use another --out")
    stored.write_text(json.dumps(settings, indent=1) + "\n")
    return pd.read_csv(table).to_dict("records") if table.is_file() else []


def write_rows(rows: list[dict], out: Path) -> None:
    pd.DataFrame(rows).to_csv(out / TABLE, index=False)


SHOWN = (
    "dataset", "fit", "gradients", "seconds", "draws", "accuracy_clean", "nll_clean",
    "ece_clean", "accuracy_noise2", "nll_noise2", "ece_noise2", "agreement_clean",
    "total_variation_clean", "agreement_noise2", "total_variation_noise2",
)  # fmt: skip
FITS = ("ours-hmc", "ours-mile", "bde-defaults", "bde-matched", "bde-matched-es", "bde-readme")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits", help="comma-separated: digits,mnist")
    parser.add_argument("--fits", default=",".join(FITS), help="comma-separated subset of FITS")
    parser.add_argument("--bde-python", type=Path, default=DEFAULT_BDE_PYTHON)
    parser.add_argument("--out", type=Path, default=Path("runs/peer-bde"))
    parser.add_argument("--smoke", action="store_true", help="digits only, tiny budgets")
    args = parser.parse_args()
    prefer_shared_mnist()
    warnings.simplefilter("ignore")  # short runs warn about convergence; the table says it
    fits = args.fits.split(",")
    unknown = sorted(set(fits) - set(FITS))
    if unknown:
        raise SystemExit(f"unknown fits {unknown}; choose from {', '.join(FITS)}")
    datasets = ["digits"] if args.smoke else args.datasets.split(",")
    needs_bde = any(f.startswith("bde") for f in fits)
    versions = check_bde(args.bde_python) if needs_bde else {}
    settings = {"smoke": args.smoke, "seed": SEED, "bde_readme": BDE_README, "versions": versions}
    settings |= {"matched": [MATCHED_MEMBERS, MATCHED_STORED_BYTES, MATCHED_DRAWS]}
    rows = finished_rows(args.out, settings)
    for dataset in datasets:
        problem = load_problem(dataset, args.smoke)
        folder = args.out / dataset
        data = write_data(problem, folder) if needs_bde else None
        for fit in fits:
            if any(r["dataset"] == dataset and r["fit"] == fit for r in rows):
                continue
            if fit.startswith("ours"):
                inference = fit.removeprefix("ours-")
                config = ours_settings(inference, problem, args.smoke)
                probs, info = fit_ours(inference, problem, config)
                config = BNNClassifier(inference, **config).get_params()  # every setting
            else:
                config = bde_settings(fit, problem, rows, args.smoke)
                probs, info = fit_bde(fit, config, data, folder, args.bde_python)
            row = {"dataset": dataset, "fit": fit} | info | scores(probs, problem)
            rows.append(row | {"settings": json.dumps(config)})
            write_rows(rows, args.out)
            print(f"{dataset} {fit}: {info['gradients']:,.0f} gradients, {info['seconds']:.1f} s")
    table = pd.DataFrame(rows)
    shown = [c for c in SHOWN if c in table.columns]
    print(f"\nbde environment: {json.dumps(versions)}; {TABLE} in {args.out}")
    print(table[table.dataset.isin(datasets)][shown].round(4).to_string(index=False))
    if "mnist" in datasets:
        problem = load_problem("mnist", args.smoke)
        own = {k: round(v, 4) for k, v in scores(problem.reference.predictions, problem).items()}
        print(f"the reference's own pooled model average: {json.dumps(own)}")
        print(f"reference run-vs-run floor: {json.dumps(problem.reference.floor())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
