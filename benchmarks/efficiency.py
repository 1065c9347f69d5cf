"""Posterior quality per gradient: every engine at increasing budgets against a reference posterior.

For each method and budget: full-batch-equivalent gradient evaluations (a minibatch gradient of b
examples counts b / n; tuning, ensemble initialisation and MCLMC's two gradients per step
included; Laplace: its MAP fit's epochs plus one full-batch pass per output class for the
generalised Gauss-Newton; SWAG: its MAP fits' epochs plus its SGD epochs), wall seconds, top-1
agreement and total variation against the reference's pooled
model average (benchmarks/reference/, `benchmarks/reference_posterior.py`), and accuracy / NLL /
ECE on the clean test set and at noise std 2. Writes efficiency.csv and agreement.png (agreement
against gradients, log x) to --out after every row and prints the table and the reference's
run-vs-run floor; rerunning with the same --out resumes after the last finished row. The
chain samplers checkpoint into --out/chains/<method> after every iteration: a killed row resumes
where it stopped, and a larger budget extends the smaller one's chains (its seconds add up the
finished calls that ran them; a killed call's share is not counted).

    python benchmarks/efficiency.py                          # MNIST main-job problem, Gaussian
    python benchmarks/efficiency.py --methods hmc,mclmc,mile --budgets 1,2
    python benchmarks/efficiency.py --smoke                  # digits, tiny budgets, own reference
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import gradient_parts, prefer_shared_mnist

from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    initial_model,
    load_data,
)
from bnn_shift.experiments.reference import (
    CLEAN,
    ReferenceConfig,
    build_reference,
    eval_sets,
    input_digests,
    load_reference,
    noise_name,
)
from bnn_shift.inference import (
    Posterior,
    adjusted_mclmc,
    deep_ensemble,
    hmc,
    laplace,
    map_fit,
    mclmc,
    mile,
    nuts,
    sgld,
    swag,
)
from bnn_shift.models import combine_params, partition_params
from bnn_shift.priors import make_prior
from bnn_shift.shift.agreement import closeness
from bnn_shift.shift.calibration import ece
from bnn_shift.shift.metrics import accuracy, nll

NOISY = noise_name(2.0)
METHODS = (
    "hmc", "hmc_adapted", "hmc_ensemble_init", "nuts", "mclmc", "adjusted_mclmc", "mile",
    "cyclical_sghmc", "deep_ensemble", "map", "swag", "multiswag", "laplace_last_layer",
    "laplace_kron", "laplace_diag",
)  # fmt: skip
# Laplace rows: (subset, hessian), predicting by the linearised network
LAPLACE = {
    "laplace_last_layer": ("last_layer", "full"),
    "laplace_kron": ("all", "kron"),
    "laplace_diag": ("all", "diag"),
}
SWAG_EPOCHS = 20  # compare-priors' SWAG settings: constant SGD from the MAP fit
SWAG_SETTINGS = {"learning_rate": 1e-2, "batch_size": 100, "seed": 0, "progress": False}


@dataclasses.dataclass(frozen=True)
class Budget:
    """One budget level's sizes (multiplied by the --budgets factor)."""

    iterations: int  # chain iterations after burn-in (samplers)
    epochs: int  # optimiser / SG-MCMC epochs


def run_method(name: str, factor: int, problem: dict, base: Budget) -> Posterior:
    """Fit `name` at `factor` times the base budget."""
    it, ep = base.iterations * factor, base.epochs * factor
    model, prior, x, y, evals = (problem[k] for k in ("model", "prior", "x", "y", "evals"))
    chains = {"eval_sets": evals, "progress": False, "seed": 0, "run_dir": problem["chains"] / name}
    fits: dict[str, Callable[[], Posterior]] = {
        "hmc": lambda: hmc(
            model, prior, x, y, step_size=1e-3, n_chains=2, n_iterations=it + 5, n_burnin=5,
            **chains,
        ),
        "hmc_adapted": lambda: hmc(
            model, prior, x, y, step_size=1e-3, n_chains=2, adapt_mass=True,
            n_iterations=150 + 4 * it, n_burnin=150, **chains,
        ),
        "hmc_ensemble_init": lambda: hmc(
            model, prior, x, y, step_size=1e-3, n_chains=2, init="ensemble",
            n_iterations=it + 1, n_burnin=1, **chains,
        ),
        "nuts": lambda: nuts(
            model, prior, x, y, n_warmup=50, n_samples=it, n_chains=2, max_depth=8, **chains
        ),
        "mclmc": lambda: mclmc(
            model, prior, x, y, n_chains=2, init="prior", n_iterations=4 * it + 10, n_burnin=10,
            **chains,
        ),
        "adjusted_mclmc": lambda: adjusted_mclmc(
            model, prior, x, y, n_chains=2, init="prior", n_iterations=it + 5, n_burnin=5,
            **chains,
        ),
        "mile": lambda: mile(
            model, prior, x, y, n_members=4, n_iterations=2 * it + 5, n_burnin=5, **chains
        ),
        "cyclical_sghmc": lambda: sgld(
            model, prior, x, y, learning_rate=1e-3, n_epochs=ep, batch_size=200,
            n_burnin_epochs=ep // 4, momentum=0.9, cycles=4, seed=0, progress=False,
        ),
        "deep_ensemble": lambda: deep_ensemble(
            model, prior, x, y, n_members=4, n_epochs=ep, learning_rate=1e-3,
            init_fn=problem["init_fn"], progress=False,
        ),
        "map": lambda: map_fit(
            model, prior, x, y, n_epochs=ep, learning_rate=1e-3, progress=False
        ),
    }  # fmt: skip
    if name in LAPLACE or name in ("swag", "multiswag"):
        return post_hoc(name, ep, problem)
    return fits[name]()


def post_hoc(name: str, epochs: int, problem: dict) -> Posterior:
    """SWAG / MultiSWAG / Laplace from MAP fits of `epochs` epochs (MultiSWAG: three members
    started at prior draws); their gradients are counted into attrs["n_init_gradients"]."""
    model, prior, x, y = (problem[k] for k in ("model", "prior", "x", "y"))
    members = 3 if name == "multiswag" else 1
    fit = deep_ensemble if members > 1 else map_fit
    extra = {"n_members": 3, "init_fn": problem["init_fn"]} if members > 1 else {}
    mapped = fit(model, prior, x, y, n_epochs=epochs, learning_rate=1e-3, progress=False, **extra)
    starts = [mapped.draw(i) for i in range(members)]
    if name in LAPLACE:
        subset, hessian = LAPLACE[name]
        post = laplace(starts[0], prior, x, y, subset=subset, hessian=hessian, fit_map=False,
                       predictive="glm")  # fmt: skip
        passes = int(np.asarray(problem["y"]).max()) + 1  # one GGN backward pass per class
        post.attrs["n_init_gradients"] = gradients(mapped) + passes
        return post
    post = swag(starts if members > 1 else starts[0], prior, x, y, n_epochs=SWAG_EPOCHS,
                **SWAG_SETTINGS)  # fmt: skip
    post.attrs["n_init_gradients"] = gradients(mapped)
    return post


def gradients(post: Posterior) -> float:
    """Full-batch-equivalent gradient evaluations spent by a fit."""
    return sum(gradient_parts(post).values())


def scores(probs: dict[str, np.ndarray], labels: np.ndarray, reference) -> dict[str, float]:
    """Closeness to the reference and accuracy / NLL / ECE, clean and at noise std 2."""
    row = {}
    for name, tag in ((CLEAN, "clean"), (NOISY, "noise2")):
        p = probs[name]
        row |= {f"{k}_{tag}": v for k, v in closeness(p, reference.predictions[name]).items()}
        row[f"accuracy_{tag}"] = accuracy(p, labels)
        row[f"nll_{tag}"] = nll(p, labels)
        row[f"ece_{tag}"] = ece(p, labels)
    return row


def predictions(post: Posterior, evals: dict) -> dict[str, np.ndarray]:
    """Model averages on the eval sets: the running ones of a sampler, else predict_proba."""
    return {
        name: post.predictions[name] if name in post.predictions else post.predict_proba(x)
        for name, (x, _) in evals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budgets", default="1,2,4", help="multiples of the base budget")
    parser.add_argument("--prior", default="gaussian")
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/efficiency"))
    parser.add_argument("--smoke", action="store_true", help="digits, tiny budgets")
    args = parser.parse_args()
    prefer_shared_mnist()
    warnings.simplefilter("ignore")  # short budgets warn about convergence; the table says it
    if args.smoke:
        problem_config = ComparePriorsConfig(
            dataset="digits", n_train=300, n_test=100, hidden=(16,)
        )
        base = Budget(iterations=4, epochs=20)
        ref_config = ReferenceConfig(
            prior=args.prior, n_iterations=40, n_burnin=10, step_size=5e-3, problem=problem_config
        )
        reference = build_reference(ref_config, args.out / "reference", progress=False)
    else:
        problem_config = ComparePriorsConfig()
        base = Budget(iterations=10, epochs=100)
        ref_config = ReferenceConfig(prior=args.prior)
        path = args.reference or Path(__file__).parent / "reference" / f"mnist-mlp-{args.prior}.npz"
        reference = load_reference(path)
    data = load_data(problem_config)
    model = initial_model(problem_config, data)
    evals = eval_sets(ref_config, data.x_test, data.y_test)
    if input_digests(evals) != reference.digests:
        raise SystemExit("the reference was made on other inputs than this problem's eval sets")
    prior = make_prior(args.prior, model, data.x_train, problem_config.prior_scale, 1e-8)

    params, static = partition_params(model)

    def init_fn(key):  # ensemble members start at prior draws, as init="ensemble" does
        return combine_params(prior.sample(key, params), static)

    problem = {
        "model": model, "prior": prior, "x": data.x_train, "y": data.y_train, "evals": evals,
        "init_fn": init_fn, "chains": args.out / "chains",
    }  # fmt: skip
    settings = {"prior": args.prior, "smoke": args.smoke, "base": dataclasses.asdict(base),
                "reference_inputs": reference.digests}  # fmt: skip
    rows = finished_rows(args.out, settings)
    done = {(r["method"], int(r["budget"])) for r in rows}
    for name in args.methods.split(","):
        for factor in map(int, args.budgets.split(",")):
            if (name, factor) in done:
                continue
            started = time.perf_counter()
            post = run_method(name, factor, problem, base)
            seconds = chain_seconds(problem["chains"] / name, time.perf_counter() - started)
            row = {"method": name, "budget": factor, "seconds": seconds}
            row["gradients"] = gradients(post)
            row["converged"] = post.attrs.get("converged")
            row |= scores(predictions(post, evals), data.y_test, reference)
            rows.append(row)
            print(pd.DataFrame([row]).round(4).to_string(index=False, header=len(rows) == 1))
            write_results(pd.DataFrame(rows), args.out, reference)
    print(f"\nreference floor: {reference.floor()}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


def chain_seconds(run_dir: Path, seconds: float) -> float:
    """Wall seconds of a chain whose run_dir an earlier row started: this call's plus those of
    the finished calls before it (kept in run_dir/seconds.json); `seconds` for other methods."""
    if not run_dir.is_dir():
        return seconds
    record = run_dir / "seconds.json"
    total = seconds + (json.loads(record.read_text()) if record.is_file() else 0.0)
    record.write_text(json.dumps(total))
    return total


def finished_rows(out: Path, settings: dict) -> list[dict]:
    """The rows an interrupted run of the same settings already wrote to `out` (resume)."""
    out.mkdir(parents=True, exist_ok=True)
    stored, table = out / "settings.json", out / "efficiency.csv"
    if stored.is_file() and json.loads(stored.read_text()) != settings:
        raise SystemExit(f"{out} holds a run with other settings ({stored}); use another --out")
    stored.write_text(json.dumps(settings, indent=1))
    return pd.read_csv(table).to_dict("records") if table.is_file() else []


def write_results(table: pd.DataFrame, out: Path, reference) -> None:
    """efficiency.csv and agreement.png (agreement against gradients, log x), after every row."""
    table.to_csv(out / "efficiency.csv", index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, group in table.groupby("method"):
        ax.plot(group.gradients, group.agreement_clean, marker="o", label=name)
    floor = reference.floor()[CLEAN]["agreement"]
    ax.axhline(floor, color="k", ls="--", lw=1, label="reference vs reference")
    ax.set(xscale="log", xlabel="full-batch gradient evaluations", ylabel="agreement (clean)")
    ax.legend(fontsize=7)
    fig.savefig(out / "agreement.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
