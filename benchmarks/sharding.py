"""One HMC iteration on 1 device vs the data (or chains) split over several devices.

The script re-runs itself in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=D (default 4), so on a CPU-only machine JAX sees
D host devices. It places the data with the library's own `make_mesh` + `place_data` (the batch
axis split over the mesh's data axis, padded rows masked) and times one jitted `HMC.step`
(L leapfrog steps, paper MLP, Gaussian(0.1)) per device count, interleaved, median of repeats.
A second table runs C chains (default 4) through the driver's `build_block` (one iteration a
call, vmap over chains), with the chain axis split over the devices (`make_mesh(C, devices)`)
vs on one device.
It also checks that every placement gives the same log density as 1 device.

Fake host devices share the same CPU cores, so on a small machine more devices will not be
faster; the script measures the partitioning overhead there and the speed-up on real devices.

    python benchmarks/sharding.py --n-train 4000 --n-leapfrog 20 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD_FLAG = "BNN_SHIFT_SHARDING_BENCH_CHILD"


def child(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from _common import describe_machine, interleaved_times, median, mnist_train, print_table

    from bnn_shift.inference.chains import build_block
    from bnn_shift.inference.kernel import HMC
    from bnn_shift.inference.likelihood import CATEGORICAL
    from bnn_shift.inference.sharding import make_mesh, place_chains, place_data, replicate
    from bnn_shift.inference.target import Target
    from bnn_shift.models import paper_mlp, partition_params
    from bnn_shift.priors import Gaussian

    x, y = mnist_train(args.n_train)
    params, static = partition_params(paper_mlp(key=jax.random.key(0)))
    target = Target(CATEGORICAL, Gaussian(0.1), static, 1.0, len(x))  # masks padded rows
    engine = HMC.for_target(target, params, step_size=args.step_size, n_steps=args.n_leapfrog)
    init = jax.jit(lambda q, d: engine.init(target, q, d))
    step = jax.jit(lambda k, s, d, w: engine.step(target, k, s, d, w))
    chains_init = jax.jit(jax.vmap(lambda q, d: engine.init(target, q, d), in_axes=(0, None)))
    iteration = build_block(engine, target, args.n_chains, 1, keep_positions=False)
    key, warmup = jax.random.key(1), jnp.asarray(False)  # with the MH test
    devices = jax.devices()
    counts = sorted({1, *(k for k in (2, 4, 8) if k <= len(devices)), len(devices)})
    print(f"{describe_machine()}\nN={len(x)}, L={args.n_leapfrog}, repeats={args.repeats}")

    def one_chain(k):
        mesh = make_mesh(1, devices[:k])
        data = place_data(x, y, mesh)
        state = init(replicate(params, mesh), data)
        return lambda: step(key, state, data, warmup)

    def many_chains(k):
        c = args.n_chains
        mesh = make_mesh(c, devices[:k])
        data = place_data(x, y, mesh)
        q = place_chains(jax.tree.map(lambda a: np.broadcast_to(a, (c, *a.shape)), params), mesh)
        state = chains_init(q, data)
        return lambda: iteration(key, 0, 1, state, data, {}, 0)

    for title, build, unit in (
        ("1 chain, data split over the devices", one_chain, "HMC.step"),
        (f"{args.n_chains} chains split over the devices", many_chains, "driver iteration"),
    ):
        calls = {f"{k} device{'s' * (k > 1)}": build(k) for k in counts}
        times, first = interleaved_times(calls, args.repeats)
        logdens = {n: np.asarray(c()[0].logdensity) for n, c in calls.items()}
        base_name = next(iter(calls))
        base = median(times[base_name])
        rows = [
            [
                name,
                1e3 * median(t),
                median(t) / base,
                float(np.max(np.abs(logdens[name] - logdens[base_name]))),
                first[name],
            ]
            for name, t in times.items()
        ]
        print(f"\n{title} ({unit}, L={args.n_leapfrog})")
        print_table(["devices", "ms/iteration", "x 1 device", "|dlogdensity|", "first s"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-leapfrog", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-size", type=float, default=1e-5)
    ap.add_argument("--devices", type=int, default=4, help="fake host devices in the child")
    ap.add_argument("--n-chains", type=int, default=4)
    args = ap.parse_args()
    if os.environ.get(CHILD_FLAG) == "1":
        child(args)
        return
    flags = f"{os.environ.get('XLA_FLAGS', '')} "
    flags += f"--xla_force_host_platform_device_count={args.devices}"
    env = os.environ | {CHILD_FLAG: "1", "XLA_FLAGS": flags.strip()}
    sys.exit(subprocess.call([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env))


if __name__ == "__main__":
    main()
