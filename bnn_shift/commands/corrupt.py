"""`bnn-shift corrupt`: write a corrupted test set (MNIST-C or CIFAR-10-C layout) to disk."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, ints, names


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "corrupt",
        parents=[common_options()],
        help="write corrupted test sets in the MNIST-C / CIFAR-10-C layout",
        description="Corrupt the test set of MNIST (MNIST-C layout: OUT/<corruption>/"
        "test_images.npy + test_labels.npy) or CIFAR-10 (CIFAR-10-C layout: OUT/<corruption>.npy, "
        "severities 1-5 stacked, + labels.npy), with OUT/manifest.json holding sha256 checksums, "
        "the seed and the generator version. Re-running with the same settings keeps what is "
        "already there and fills in the rest.",
    )
    p.add_argument("--dataset", required=True, choices=("mnist", "cifar10"))
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset location (MNIST: the four IDX files; CIFAR-10: cifar-10-batches-py or "
        "its .tar.gz) [MNIST: search and fetch as load_mnist does]",
    )
    p.add_argument(
        "--corruptions",
        type=names,
        default=None,
        help="comma-separated corruption names [all of the benchmark]",
    )
    p.add_argument(
        "--severities",
        type=ints,
        default=None,
        help="comma-separated severities [MNIST-C: each corruption's release default; "
        "CIFAR-10-C: 1,2,3,4,5]",
    )
    p.add_argument("--n-test", type=int, default=None, help="stratified test subset [all]")
    p.add_argument("--seed", type=int, default=0, help="corruption (and subset) seed [0]")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from bnn_shift.shift.corrupted_sets import load_corrupted, write_corrupted

    manifest = write_corrupted(
        args.dataset,
        args.out,
        names=args.corruptions,
        severities=args.severities,
        seed=args.seed,
        progress=not args.quiet,
        data_dir=args.data_dir,
        n_test=args.n_test,
    )
    written = load_corrupted(manifest.parent)
    print(
        f"wrote {len(written.keys)} corrupted sets of {len(written.labels)} {args.dataset} test "
        f"images to {manifest.parent} ({written.benchmark} layout; checksums in {manifest.name})"
    )
