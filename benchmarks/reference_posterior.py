"""Build (or resume) the reference posteriors other methods are scored against.

For each prior (Gaussian, EmpCov): independent full-batch HMC runs (one per seed, 2 chains
each, chains started at independent prior draws) on the main job's problem (2,000-image MNIST
subset, MLP 784-256-256-10, prior scale 0.1), at half the main job's step. Each run checkpoints
under RUN_ROOT/<prior>-seed<s>; interrupt and rerun to resume; a larger --n-iterations extends
finished runs. At the end writes benchmarks/reference/mnist-mlp-<prior>.npz (each run's
model-average probabilities on the clean test set and at noise std 2) and a JSON sidecar (sha256
of the file and of the inputs, settings, acceptance, R-hat, and the run-vs-run noise floor).

    python benchmarks/reference_posterior.py                       # both priors, hours on a CPU
    python benchmarks/reference_posterior.py --priors gaussian --n-iterations 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import prefer_shared_mnist

from bnn_shift.experiments.reference import ReferenceConfig, build_reference

OUT = Path(__file__).parent / "reference"


def main() -> None:
    defaults = ReferenceConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="gaussian,empcov")
    parser.add_argument("--n-iterations", type=int, default=defaults.n_iterations)
    parser.add_argument("--n-burnin", type=int, default=defaults.n_burnin)
    parser.add_argument("--step-size", type=float, default=defaults.step_size)
    parser.add_argument("--run-root", default="runs/reference")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    prefer_shared_mnist()
    for prior in args.priors.split(","):
        config = ReferenceConfig(
            prior=prior,
            n_iterations=args.n_iterations,
            n_burnin=args.n_burnin,
            step_size=args.step_size,
        )
        reference = build_reference(config, args.run_root)
        path = reference.save(args.out / f"mnist-mlp-{prior}.npz")
        print(path, json.dumps(reference.floor(), indent=1))


if __name__ == "__main__":
    main()
