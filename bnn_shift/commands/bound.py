"""`bnn-shift bound`: a PAC-Bayes compression bound on a network's 0-1 error."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, ints, names

DEFAULT_OUT = "runs/bound"


def add(sub: argparse._SubParsersAction) -> None:
    from bnn_shift.bounds.experiment import MODELS, REGULARISERS, BoundExperimentConfig
    from bnn_shift.bounds.pipeline import BoundSettings
    from bnn_shift.bounds.subspace import PROJECTORS

    c, s = BoundExperimentConfig(), BoundSettings()
    p = sub.add_parser(
        "bound",
        parents=[common_options()],
        help="PAC-Bayes compression bound (subspace + quantisation + arithmetic coding)",
        description="Train the network in a random subspace around its seeded init, quantise "
        "the subspace weights to learned levels, arithmetic-code them, and print the quantised "
        "train error, code length, KL and Catoni's bound on the test error (δ = 0.05), once per "
        "regulariser of the fit. Writes report.json to --out.",
    )
    # (flag, owner, field, type, help); defaults live in the config dataclasses only.
    options = [
        ("--dataset", c, "dataset", str, "mnist or digits"),
        ("--data-dir", c, "data_dir", str, "directory with the four MNIST IDX files"),
        ("--model", c, "model", str, f"network: {' or '.join(MODELS)}"),
        ("--hidden", c, "hidden", ints, "MLP hidden widths, comma-separated"),
        ("--prior", c, "priors", names, f"fit regularisers, comma-separated: {REGULARISERS}"),
        ("--prior-scale", c, "prior_scale", float, "Gaussian regulariser std"),
        ("--seed", c, "seed", int, "seed of the network init θ₀ and of the minibatch order"),
        ("--intrinsic-dim", s, "intrinsic_dim", int, "subspace dimension d"),
        ("--projector", s, "projector", str, f"random projector: {', '.join(PROJECTORS)}"),
        ("--levels", s, "n_levels", int, "quantisation levels L"),
        ("--level-init", s, "level_init", str, "uniform or kmeans"),
        ("--epochs", s, "epochs", int, "subspace training epochs"),
        ("--quant-epochs", s, "quant_epochs", int, "quantisation-aware training epochs"),
        ("--batch-size", s, "batch_size", int, "minibatch size"),
        ("--learning-rate", s, "learning_rate", float, "Adam peak learning rate (subspace)"),
        ("--quant-learning-rate", s, "quant_learning_rate", float, "Adam lr during QAT"),
        ("--hyper-bits", s, "hyper_bits", float, "log2(configurations searched), charged"),
        ("--prior-fraction", s, "prior_fraction", float, "data-dependent θ₀: share it trains on"),
        ("--prior-epochs", s, "prior_epochs", int, "epochs of the MAP fit of θ₀ on that share"),
    ]
    for flag, owner, name, kind, text in options:
        default = getattr(owner, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"{text} [{shown}]")
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory [%(default)s]")
    p.set_defaults(run=run, config_fields=[name for _, _, name, _, _ in options])


def run(args: argparse.Namespace) -> None:
    import dataclasses

    from bnn_shift.bounds.experiment import BoundExperimentConfig, run_bound_experiment
    from bnn_shift.bounds.pipeline import BoundSettings

    given = {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
    own = {f.name for f in dataclasses.fields(BoundSettings)} - {"seed"}
    settings = BoundSettings(
        seed=given.get("seed", 0), **{k: v for k, v in given.items() if k in own}
    )
    config = BoundExperimentConfig(
        **{k: v for k, v in given.items() if k not in own}, settings=settings
    )
    result = run_bound_experiment(config, out_dir=args.out, progress=not args.quiet)
    print(f"\ndataset: {result.dataset} (train {result.n_train}, test {result.n_test})")
    for name, r in result.reports.items():
        print(
            f"\n[{name}] train error {r.train_error:.4f} (before quantisation "
            f"{r.float_train_error:.4f}), test error {r.test_error:.4f}\n"
            f"  d = {r.intrinsic_dim} of D = {r.n_params}; code length {r.code.message_bits} bits "
            f"(arithmetic code {r.code.payload_bits}, entropy estimate {r.code.entropy_bits}), "
            f"prefix-free {r.code.prefix_free_bits:.1f} + {r.hyper_bits:g} hyperparameter bits\n"
            f"  KL {r.kl:.1f} nats, n = {r.n}\n"
            f"  bound on the test error: {r.catoni:.4f} (Catoni); Occam {r.occam:.4f}, "
            f"McAllester {r.mcallester:.4f}; {r.wall_seconds:.0f} s"
        )
    print(f"\nwrote {args.out}/report.json")
