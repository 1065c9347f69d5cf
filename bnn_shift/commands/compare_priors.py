"""`bnn-shift compare-priors`: MAP vs HMC under several priors, scored under input noise."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, floats, ints, names, size, step_size

DEFAULT_OUT = "runs/compare-priors"


def add(sub: argparse._SubParsersAction) -> None:
    from bnn_shift.experiments.compare_priors import MODELS, ComparePriorsConfig
    from bnn_shift.priors import PRIORS

    d = ComparePriorsConfig()
    p = sub.add_parser(
        "compare-priors",
        parents=[common_options()],
        help="MAP vs HMC under several priors, scored under input noise (covariate shift)",
        description="Fit MAP and HMC chains per prior on MNIST (or digits), evaluate them "
        "under a Gaussian-noise sweep, and write metrics.csv, accuracy.png, config.json and one "
        "posterior-<method>.nc per method to --out. Every setting defaults to the CPU-sized "
        "configuration; --paper switches to the paper's. Priors: "
        + "; ".join(f"{name}: {entry.doc}" for name, entry in PRIORS.items()),
    )
    # (flag, config field, type, help); defaults live in ComparePriorsConfig only.
    options = [
        ("--dataset", "dataset", str, "auto = MNIST if it can be found or fetched, else digits"),
        ("--data-dir", "data_dir", str, "directory with the four MNIST IDX files (gz or raw)"),
        ("--n-train", "n_train", size, "stratified training subset size, or 'all'"),
        ("--n-test", "n_test", size, "stratified test subset size, or 'all'"),
        ("--model", "model", str, f"network: {' or '.join(MODELS)}"),
        ("--hidden", "hidden", ints, "MLP hidden layer widths, comma-separated"),
        ("--patch-size", "patch_size", int, "attention model: patch side (divides the image)"),
        ("--attention-width", "attention_width", int, "attention model: token width d_model"),
        ("--attention-heads", "attention_heads", int, "attention model: heads"),
        ("--attention-depth", "attention_depth", int, "attention model: transformer blocks"),
        ("--scorer", "scorer", str, "attention model: standard, dense, btt or bilinear_mlr"),
        ("--structure", "structure", str, "attention model: full or mlr"),
        ("--gain-prior-scale", "gain_prior_scale", float, "attention model: LayerNorm gain std"),
        (
            "--sampler",
            "sampler",
            str,
            "full-batch sampler run per prior: hmc, hmc_adapted (diagonal mass and step adapted "
            "over the burn-in), mala, mclmc, adjusted_mclmc or mile (one MCLMC chain from each "
            "of --n-chains MAP fits); the MCLMC family tunes its own step (--step-size is HMC's "
            "and MALA's)",
        ),
        (
            "--baselines",
            "baselines",
            names,
            "from MAP fits: swag, multiswag, laplace-last-layer, laplace-kron, laplace-diag",
        ),
        (
            "--baseline-prior",
            "baseline_prior",
            str,
            "prior of MAP and the baselines; other than gaussian, the MAP starts at a draw of "
            "it and is optimised in its whitened coordinates",
        ),
        (
            "--laplace-predictive",
            "laplace_predictive",
            str,
            "Laplace baselines predict by mc (their draws), glm (the linearised network, "
            "matrix-free) or probit",
        ),
        ("--swag-epochs", "swag_epochs", int, "SWAG SGD epochs (collects the second half)"),
        ("--swag-learning-rate", "swag_learning_rate", float, "SWAG constant SGD learning rate"),
        ("--priors", "priors", names, "comma-separated priors, one sampler run each"),
        ("--prior-scale", "prior_scale", float, "Gaussian prior std = 1/sqrt(weight decay)"),
        ("--empcov-eps", "empcov_eps", float, "EmpCov prior variance along null data directions"),
        ("--step-size", "step_size", step_size, "HMC leapfrog step, or auto (tuned)"),
        ("--step-jitter", "step_jitter", float, "HMC step drawn from step*(1 -+ j); 0 = fixed"),
        ("--keep", "keep", str, "post-burn-in HMC states averaged: all, or accepted (biased)"),
        ("--n-iterations", "n_iterations", int, "HMC iterations, burn-in included"),
        ("--n-chains", "n_chains", int, "HMC chains per prior (R-hat needs >= 2)"),
        ("--precision", "precision", str, "leapfrog matmuls: float32, tensorfloat32, bfloat16"),
        ("--n-burnin", "n_burnin", int, "HMC iterations without MH correction, not averaged"),
        ("--trajectory-length", "trajectory_length", float, "HMC trajectory (pi/2 * scale)"),
        ("--map-epochs", "map_epochs", int, "MAP epochs"),
        ("--map-learning-rate", "map_learning_rate", float, "MAP peak learning rate (cosine)"),
        ("--map-batch-size", "map_batch_size", int, "MAP minibatch size for SGD (full-batch Adam)"),
        ("--noise", "noise_stds", floats, "noise std levels in normalised pixel units"),
        (
            "--corruptions",
            "corruptions",
            str,
            "also score on mnist-c or cifar10-c (every corruption at its release severities; "
            "metrics-<benchmark>.csv)",
        ),
        ("--seed", "seed", int, "random seed for data subset, init, HMC and noise"),
    ]
    for flag, name, kind, text in options:
        default = getattr(d, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"{text} [{shown}]")
    p.add_argument(
        "--no-map",
        dest="include_map",
        action="store_false",
        default=None,
        help="skip the MAP baseline",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's full settings (all of MNIST, step 1e-5, 100 iterations, fixed "
        "trajectory, accepted states averaged: hours on a CPU); explicit flags still override",
    )
    p.add_argument(
        "--methods",
        type=names,
        default=None,
        help="exactly these methods instead of --no-map/--baselines/--sampler/--priors: map, "
        "baselines, a sampler name (with --priors) or <sampler>-<prior>, e.g. "
        "map,laplace-kron,swag,hmc",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory [%(default)s]")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="fit every method again; by default a rerun with the same settings and --out "
        "loads the methods an earlier (interrupted) run saved whole",
    )
    fields = [name for _, name, _, _ in options] + ["include_map"]
    p.set_defaults(run=run, config_fields=fields)


def run(args: argparse.Namespace) -> None:
    import pandas as pd

    from bnn_shift.experiments.compare_priors import (
        ComparePriorsConfig,
        acceptance_rate,
        compare_priors,
        settings_for_methods,
    )
    from bnn_shift.inference.convergence import max_rhat
    from bnn_shift.shift import pivot_metric
    from bnn_shift.shift.summary import summarise

    given = {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
    if args.methods:
        from_methods = settings_for_methods(args.methods)
        clash = sorted(set(from_methods) & set(given))
        if clash:
            raise ValueError(f"--methods sets {clash} itself; drop those flags")
        given |= from_methods
    config = ComparePriorsConfig.paper(**given) if args.paper else ComparePriorsConfig(**given)
    result = compare_priors(
        config, out_dir=args.out, progress=not args.quiet, resume=not args.fresh
    )
    print(f"\ndataset: {result.dataset} (train {result.n_train}, test {result.n_test})")
    for method, posterior in result.posteriors.items():
        rate, rhat = acceptance_rate(posterior), max_rhat(posterior.attrs)
        if rate is not None:
            checked = "R-hat unchecked (1 chain)" if rhat is None else f"max R-hat {rhat:.3g}"
            flag = "" if posterior.attrs.get("converged") in (True, None) else " NOT CONVERGED"
            print(f"{method}: {posterior.n_draws} draws averaged, acceptance rate {rate:.2f}, "
                  f"{checked}{flag}")  # fmt: skip
    for metric in ("accuracy", "nll", "ece"):
        table = pivot_metric(result.table, metric)[list(result.posteriors)]
        print(f"\n{metric} vs noise std:\n{table.round(4).to_string()}")
    if result.corruption_table is not None:
        clean = result.table[result.table.severity == 0]
        overall = summarise(pd.concat([clean, result.corruption_table])).overall
        print(f"\nclean vs mean over {config.corruptions}:\n{overall.round(4).to_string()}")
    print(f"\nwrote {args.out}/metrics.csv, accuracy.png, config.json, posterior-*.nc")
