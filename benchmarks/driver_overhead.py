"""Per-iteration overhead of the `hmc` driver on small models, against a `lax.scan` floor.

For a tiny model the kernel's work per iteration is microseconds to milliseconds, so what the
driver adds per compiled call (dispatch, device-to-host copies, the host's per-iteration
bookkeeping, checkpoints) can dominate. Two models, each run for --iterations iterations
(--burnin without MH) of --chains chains at a fixed step size, `progress=False`:

  linreg   Bayesian linear regression: `eqx.nn.Linear(7, 1)`, 8 parameters (7 weights and a
           bias), `likelihood=gaussian_likelihood(0.5)`, Gaussian(1.0) prior, 200 synthetic
           examples, step 0.005, 10 leapfrogs.
  digits   `MLP(64, (16,), 10)` (1,210 parameters) on 300 scikit-learn digits, Gaussian(0.3)
           prior, step 0.02, 15 leapfrogs (the settings of tests/inference/test_chains.py).

Methods, all in the same process, all the same chain:

  floor         one jitted `jax.lax.scan` over `jax.vmap(HMC.step)` for all iterations, with
                the engine and `Target` that `hmc` builds (same masked log-likelihood, prior,
                step jitter, per-iteration keys `chains.iteration_keys` and burn-in switch),
                returning only the per-iteration HMCInfo: the least any driver of this engine
                can do. It is jitted once, so its steady state has no compile time.
  per-call      `hmc(..., iterations_per_call=1)`: one compiled call per iteration (the old
                driver).
  auto block    `hmc(...)`: `iterations_per_call=None`, blocks of up to 100 iterations.
  auto+run_dir  `hmc(..., run_dir=<fresh tmp dir>)`: the same blocks, a checkpoint after each
                block and every kept draw streamed to disk (one .npz per chain and iteration).

Every `hmc` call builds its engine and target again; the driver's compiled block takes them as
arguments, so a later call with the same shapes and settings can reuse the program, while
anything traced anew (e.g. the initial states) still compiles. The script listens to JAX's
`/jax/core/compile/{jaxpr_trace,jaxpr_to_mlir_module,backend_compile}_duration` events and
reports the number of XLA compiles inside each call, the seconds spent tracing, lowering and
compiling ("compile s"), and the remainder ("run s": running and host work) against the
floor's. A run whose length is not a multiple of the automatic block compiles a second, shorter
block for the remainder.

Each method is called once untimed (compile + warm-up; "first s"), then timed in --repeats
interleaved rounds (`_common.interleaved_times`); medians are reported, spread = (max - min) /
median of the whole calls, and for run s (each call less its own compile seconds) also the
fastest repeat, the better estimate on a shared machine. The script checks that every run's
energies equal the floor's, bit for bit (the same chain), and stops if they do not.

    python benchmarks/driver_overhead.py --iterations 600 --burnin 100 --chains 4 --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from collections import defaultdict
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import describe_machine, flat_size, interleaved_times, median, print_table, spread

from bnn_shift.data import load_digits
from bnn_shift.inference import gaussian_likelihood, hmc
from bnn_shift.inference.chains import iteration_keys
from bnn_shift.inference.kernel import HMC, n_leapfrog_steps
from bnn_shift.inference.likelihood import resolve_likelihood
from bnn_shift.inference.sharding import make_mesh, place_data
from bnn_shift.inference.target import Target
from bnn_shift.models import MLP, partition_params
from bnn_shift.priors import Gaussian

FLOOR, PER_CALL, AUTO, RUN_DIR = "floor (lax.scan)", "per-call (=1)", "auto block", "auto+run_dir"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one per XLA compile
STAGES = (  # what a first call of a jitted function costs: trace, lower, compile
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    COMPILE_EVENT,
)


def linreg_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 7)).astype(np.float32)
    w = rng.normal(size=7).astype(np.float32)
    y = (x @ w + 0.3 + 0.5 * rng.normal(size=200)).astype(np.float32)
    model = eqx.nn.Linear(7, 1, key=jax.random.key(0))
    settings = dict(step_size=0.005, trajectory_length=0.05, likelihood=gaussian_likelihood(0.5))
    return model, Gaussian(1.0), x, y, settings


def digits_problem():
    data = load_digits().subset(300, None, seed=0)
    model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
    settings = dict(step_size=0.02, trajectory_length=0.3, likelihood="categorical")
    return model, Gaussian(0.3), data.x_train, data.y_train, settings


PROBLEMS = {"linreg": linreg_problem, "digits": digits_problem}


class CompileClock:
    """Sums the seconds JAX reports tracing, lowering and compiling while it is active, and
    counts the XLA compiles."""

    def __init__(self):
        self.seconds, self.count = 0.0, 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event in STAGES:
            self.seconds += duration
            self.count += event == COMPILE_EVENT

    def close(self) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)


def make_floor(model, prior, x, y, settings, args):
    """The engine and target `hmc` builds, scanned over all iterations: -> a call returning
    (final state, per-iteration HMCInfo)."""
    params, static = partition_params(model)
    lik = resolve_likelihood(settings["likelihood"])
    x, y = lik.check(model, x, y)
    h = settings["step_size"]
    target = Target(lik, prior, static, 1.0, len(x))  # masks the padded rows, as hmc's
    engine = HMC.for_target(
        target,
        params,
        step_size=h,
        n_steps=n_leapfrog_steps(settings["trajectory_length"], h, 100_000),
    )
    data = place_data(x, y, make_mesh(args.chains))
    positions = jax.tree.map(lambda a: jnp.broadcast_to(a, (args.chains, *a.shape)), params)
    init = jax.vmap(lambda q, d: engine.init(target, q, d), in_axes=(0, None))
    state = jax.jit(init)(positions, data)
    step = jax.vmap(engine.step, in_axes=(None, 0, 0, None, None))

    @jax.jit
    def run(key, state, data):
        def one(state, i):
            keys = iteration_keys(key, i, args.chains)
            return step(target, keys, state, data, i < args.burnin)

        return jax.lax.scan(one, state, jnp.arange(args.iterations))

    return partial(run, jax.random.key(args.seed), state, data)


def bench(name: str, args, scratch: str) -> list[list[object]]:
    model, prior, x, y, settings = PROBLEMS[name]()
    fit = partial(
        hmc,
        model,
        prior,
        x,
        y,
        n_iterations=args.iterations,
        n_burnin=args.burnin,
        n_chains=args.chains,
        seed=args.seed,
        progress=False,
        **settings,
    )
    calls = {
        FLOOR: make_floor(model, prior, x, y, settings, args),
        PER_CALL: partial(fit, iterations_per_call=1),
        AUTO: fit,
        RUN_DIR: lambda: fit(run_dir=tempfile.mkdtemp(dir=scratch)),
    }
    clock = CompileClock()
    compile_s: dict[str, list[float]] = defaultdict(list)
    compiles: dict[str, list[int]] = defaultdict(list)
    last = {}

    def clocked(key, call):
        def run():
            seconds, count = clock.seconds, clock.count
            last[key] = call()
            compile_s[key].append(clock.seconds - seconds)
            compiles[key].append(clock.count - count)
            return last[key]

        return run

    try:
        times, first = interleaved_times({k: clocked(k, c) for k, c in calls.items()}, args.repeats)
    finally:
        clock.close()

    energy = np.asarray(last[FLOOR][1].energy)  # (iterations, chains)
    same = all(np.array_equal(last[k].stats["energy"], energy) for k in (PER_CALL, AUTO, RUN_DIR))
    post = last[AUTO]
    print(
        f"{name}: {flat_size(partition_params(model)[0])} parameters, n = {len(x)}, "
        f"L = {post.attrs['n_leapfrog_steps']}, h = {settings['step_size']}, acceptance after "
        f"burn-in {post.stats['acceptance_rate'][args.burnin :].mean():.2f}; "
        f"every hmc run's energies == the floor's: {same}"
    )
    if not same:
        raise AssertionError(f"{name}: the floor does not run the chain hmc runs")

    total = {k: median(v) for k, v in times.items()}
    comp = {k: median(v[1:]) for k, v in compile_s.items()}  # v[0]: the untimed first call
    runs = {k: [t - c for t, c in zip(times[k], compile_s[k][1:])] for k in calls}
    run, fastest = {k: median(v) for k, v in runs.items()}, {k: min(v) for k, v in runs.items()}
    return [
        [f"{name}: {k}", first[k], compile_s[k][0], total[k], total[k] / total[FLOOR],
         spread(times[k]), max(compiles[k][1:]), comp[k], run[k], run[k] / run[FLOOR],
         fastest[k], fastest[k] / fastest[FLOOR], 1e3 * (run[k] - run[FLOOR]) / args.iterations]
        for k in calls
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=600, help="iterations per run")
    ap.add_argument("--burnin", type=int, default=100, help="of which burn-in")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after the first call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    args = ap.parse_args()
    if args.repeats < 1 or not 0 <= args.burnin <= args.iterations:
        ap.error("need --repeats >= 1 and 0 <= --burnin <= --iterations")
    print(
        f"{describe_machine()}\n{args.iterations} iterations ({args.burnin} burn-in), "
        f"{args.chains} chains, {args.repeats} repeats"
    )
    warnings.filterwarnings("ignore", message=".*R-hat.*")  # short runs of far-apart chains
    scratch = tempfile.mkdtemp(prefix="driver_overhead_")
    try:
        rows = [row for name in args.models for row in bench(name, args, scratch)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    header = [
        "model: method", "first s", "of it compile", "median s", "x floor", "spread", "compiles",
        "compile s", "run s", "run x floor", "min run s", "min x floor", "ms/it over floor",
    ]  # fmt: skip
    print_table(header, rows)
    print(
        "\nfirst s: the untimed first call, of it compile: its trace + lower + XLA compile "
        "seconds; median s, spread: the timed calls; compiles: XLA compiles inside one timed "
        "call (most); compile s: trace + lower + compile seconds in it (median); run s, min run "
        "s: median and fastest of (call - its compile s) over the timed calls; ms/it over "
        "floor = (run s - floor's) / iterations."
    )


if __name__ == "__main__":
    main()
