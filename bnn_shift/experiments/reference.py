"""Reference posteriors: long full-batch HMC runs whose model averages other methods are scored
against (agreement and total variation, bnn_shift.shift.agreement).

A reference is made of independent runs (different seeds, chains started at independent prior
draws) of the main job's problem: the 2,000-image MNIST subset, MLP 784-256-256-10, prior scale
0.1, at a conservative HMC step. Each run resumes from its own run directory. The file written
at the end holds each run's model-average probabilities on the clean and noisy test sets (small
arrays), the sha256 of the inputs they were computed on, and the agreement / total variation
between the runs: the noise floor below which no method can be told apart from the reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from bnn_shift.data.cache import array_digest
from bnn_shift.experiments.compare_priors import ComparePriorsConfig, initial_model, load_data
from bnn_shift.inference.checkpoint import load_arrays, save_arrays
from bnn_shift.inference.convergence import max_rhat
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import hmc
from bnn_shift.priors import make_prior
from bnn_shift.shift.agreement import closeness
from bnn_shift.shift.noise import gaussian_noise

CLEAN = "test"  # the clean test set keeps compare-priors' eval-set name, so runs compare directly


@dataclass(frozen=True)
class ReferenceConfig:
    """A reference run's settings; data and network are compare-priors' (`problem`)."""

    prior: str = "gaussian"
    seeds: tuple[int, ...] = (1, 2)  # one independent run per seed
    n_chains: int = 2  # per run
    n_iterations: int = 150  # per chain, burn-in included; a larger value extends a run
    n_burnin: int = 50
    step_size: float = 5e-4  # half the main job's step: acceptance >= 0.9 for both priors
    noise_stds: tuple[float, ...] = (2.0,)  # noisy test sets besides the clean one
    problem: ComparePriorsConfig = field(default_factory=ComparePriorsConfig)

    def __post_init__(self):
        if len(set(self.seeds)) < 2:
            raise ValueError(f"a reference needs >= 2 independent runs (seeds), got {self.seeds}")
        if not 0 <= self.n_burnin < self.n_iterations:
            raise ValueError(
                f"need 0 <= n_burnin < n_iterations, got {self.n_burnin}, {self.n_iterations}"
            )


def noise_name(std: float) -> str:
    """Eval-set name of the test set with Gaussian noise of this std."""
    return f"noise_{float(std):g}"


def eval_sets(config: ReferenceConfig, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """name -> (inputs, labels): the clean test set and one per noise std (compare-priors'
    noise draw, seed = the problem's seed)."""
    sets = {CLEAN: (x_test, y_test)}
    for std in config.noise_stds:
        noisy = gaussian_noise(x_test, std=std, seed=config.problem.seed)
        sets[noise_name(std)] = (noisy, y_test)
    return sets


def run_reference(config: ReferenceConfig, seed: int, run_dir: str | Path, progress=True):
    """One reference run (resumes from run_dir) -> its Posterior (no draws kept: predictions)."""
    data = load_data(config.problem)
    model = initial_model(config.problem, data)
    prior = make_prior(
        config.prior, model, data.x_train, config.problem.prior_scale, config.problem.empcov_eps
    )
    return hmc(
        model, prior, data.x_train, data.y_train,
        step_size=config.step_size, n_iterations=config.n_iterations, n_burnin=config.n_burnin,
        n_chains=config.n_chains, init="prior", seed=seed,
        eval_sets=eval_sets(config, data.x_test, data.y_test), trace_pointwise=(CLEAN,),
        keep_draws=False, run_dir=run_dir, progress=progress,
    )  # fmt: skip


@dataclass
class Reference:
    """Model-average probabilities of independent reference runs on named eval sets."""

    runs: dict[str, list[np.ndarray]]  # eval name -> one (m, k) array per run
    digests: dict[str, str]  # eval name -> sha256 of the float32 inputs
    meta: dict

    @property
    def predictions(self) -> dict[str, np.ndarray]:
        """eval name -> the pooled model average (m, k) (runs have equal draws)."""
        return {name: np.mean(runs, axis=0) for name, runs in self.runs.items()}

    def floor(self) -> dict[str, dict[str, float]]:
        """eval name -> agreement / total variation between the first two runs: how close two
        independent references get (pooling halves the floor's Monte Carlo part, roughly)."""
        return {name: closeness(runs[0], runs[1]) for name, runs in self.runs.items()}

    def save(self, path: str | Path) -> Path:
        """npz of the runs' predictions plus a JSON sidecar with their sha256 and the meta."""
        path = Path(path)
        arrays = {f"{name}/{i}": p for name, runs in self.runs.items() for i, p in enumerate(runs)}
        save_arrays(path, arrays, {"digests": self.digests})
        sidecar = self.meta | {
            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "floor": self.floor(),
            "input_digests": self.digests,
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
        return path


def load_reference(path: str | Path) -> Reference:
    """Read a saved Reference, checking the npz against the sha256 in its JSON sidecar."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        raise FileNotFoundError(
            f"a reference is a .npz with a .json sidecar next to it; {path} or {sidecar} is "
            "missing (make one with benchmarks/reference_posterior.py)"
        )
    meta = json.loads(sidecar.read_text())
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != meta.get("file_sha256"):
        raise ValueError(
            f"{path} has sha256 {got}, its sidecar says {meta.get('file_sha256')}: the file was "
            "changed or truncated; restore it (git checkout) or rebuild the reference"
        )
    arrays, stored = load_arrays(path)
    runs: dict[str, list[np.ndarray]] = {}
    for key in sorted(arrays, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        runs.setdefault(key.rsplit("/", 1)[0], []).append(arrays[key])
    return Reference(runs, stored["digests"], meta)


def build_reference(
    config: ReferenceConfig, run_root: str | Path, progress: bool = True
) -> Reference:
    """Run (or resume) every seed's run under run_root/<prior>-seed<s> and collect them."""
    runs: dict[str, list[np.ndarray]] = {}
    summaries, digests = [], {}
    for seed in config.seeds:
        started = time.perf_counter()
        post = run_reference(config, seed, Path(run_root) / f"{config.prior}-seed{seed}", progress)
        if post.attrs.get("interrupted"):
            raise KeyboardInterrupt(f"reference run seed {seed} interrupted; run again to resume")
        for name, p in post.predictions.items():
            runs.setdefault(name, []).append(np.asarray(p, np.float32))
        digests = post.attrs["eval_set_digests"]
        summaries.append(_run_summary(post, seed, time.perf_counter() - started))
    meta = {
        "config": _jsonable(config),
        "runs": summaries,
        "command": "python benchmarks/reference_posterior.py",
    }
    return Reference(runs, digests, meta)


def _run_summary(post: Posterior, seed: int, seconds: float) -> dict:
    mh = post.stats["mh"].astype(bool)
    return {
        "seed": seed,
        "draws_averaged": int(post.attrs["n_chains"])
        * (int(post.attrs["n_iterations"]) - int(post.attrs["n_burnin"])),
        "acceptance_rate": float(np.mean(post.stats["acceptance_rate"][mh])),
        "max_rhat": max_rhat(post.attrs),
        "converged": post.attrs.get("converged"),
        "pointwise_rhat": post.attrs.get("pointwise_rhat"),
        "seconds_this_call": seconds,
    }


PROBLEM_FIELDS = ("dataset", "n_train", "n_test", "model", "hidden", "prior_scale", "empcov_eps")


def _jsonable(config: ReferenceConfig) -> dict:
    """The settings that define a reference (the problem's data, network and prior only)."""
    settings = dataclasses.asdict(config)
    problem = settings.pop("problem")
    settings["problem"] = {k: problem[k] for k in PROBLEM_FIELDS} | {"seed": problem["seed"]}
    return json.loads(json.dumps(settings, default=str))


def input_digests(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, str]:
    """name -> sha256 of the float32 inputs, as the sampler records them."""
    return {name: array_digest(np.asarray(x, np.float32)) for name, (x, _) in sets.items()}


def against_reference(
    predictions: dict[str, np.ndarray], digests: dict[str, str], reference: Reference
) -> dict[str, dict[str, float]]:
    """eval name -> agreement / total variation of `predictions` against the reference's pooled
    model average, beside the reference's own run-vs-run floor, for every eval set both have.
    digests: sha256 of the inputs the predictions were made on (a Posterior's
    attrs["eval_set_digests"]); a set whose inputs differ from the reference's is an error."""
    shared = [name for name in predictions if name in reference.runs]
    if not shared:
        raise ValueError(
            f"no eval set in common: the predictions have {sorted(predictions)}, the reference "
            f"{sorted(reference.runs)}"
        )
    pooled, floor, out = reference.predictions, reference.floor(), {}
    for name in shared:
        if name in digests and digests[name] != reference.digests.get(name):
            raise ValueError(
                f"eval set {name!r} was made on other inputs than the reference's (sha256 "
                f"{digests[name][:12]}... vs {reference.digests.get(name, '?')[:12]}...): "
                "use the reference's data subset, seed and noise draw"
            )
        here = closeness(predictions[name], pooled[name])
        out[name] = here | {f"floor_{k}": v for k, v in floor[name].items()}
    return out


def reference_lines(tree: xr.DataTree, reference: Reference) -> list[str]:
    """Report lines: agreement / total variation of the saved model averages against a
    reference, with the reference's run-vs-run floor."""
    attrs = json.loads(tree.attrs.get("bnn_shift", "{}"))
    predictions = {k: v.values for k, v in tree["predictions"].to_dataset().items()}
    if not set(predictions) & set(reference.runs):  # e.g. a MAP fit: no running predictions
        return ["  vs reference: no eval set in common (score it with benchmarks/efficiency.py)"]
    rows = against_reference(predictions, attrs.get("eval_set_digests", {}), reference)
    return [
        f"  vs reference on {name}: agreement {r['agreement']:.4f} (floor "
        f"{r['floor_agreement']:.4f}), total variation {r['total_variation']:.4f} (floor "
        f"{r['floor_total_variation']:.4f})"
        for name, r in rows.items()
    ]
