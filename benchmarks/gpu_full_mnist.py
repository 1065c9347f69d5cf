"""Full-MNIST HMC speed on one accelerator: ms per leapfrog step, and the paper's run time.

Paper MLP (784-256-256-10), Gaussian(0.1) prior, all 60,000 MNIST training images. For each
matmul precision ("float32" = full fp32, "tensorfloat32", and JAX's "default", which on recent
NVIDIA GPUs may already use TF32), every program is traced, compiled and run under
`jax.default_matmul_precision(p)`:

  floor   bare fused velocity Verlet (`lax.fori_loop` of value_and_grad), the baseline;
  ours    one `HMC.step` / L on the driver's `Target` (masked per-example log-likelihood);
  driver  the same step through `chains.build_block`, one iteration a call, as `hmc` runs it.

It reports ms/leapfrog, ours/floor, each precision against float32, the relative error of the
log density and gradient against float32 (what TF32 costs in accuracy), peak device memory, and
the estimated time of the paper's run (100 iterations x 15,000 leapfrog steps = 1.5e6 gradient
evaluations, single chain; per-trajectory costs vanish at L=15,000). A --budget-s guard skips
the remaining precisions once time runs short, so a run ends well inside 5 minutes. Results go
to stdout and, when $OUT (or --out) is set, to gpu_full_mnist.json there.

MNIST: --data-dir, else $BNN_SHIFT_MNIST_DIR, else /work/shared/data/mnist, else the library's
cache; if none has it, random inputs of MNIST's shape are used (timing does not depend on pixel
values) and the JSON says so (`"data": "synthetic"`). The accelerator image has JAX, equinox and
numpyro but may lack blackjax (a pure-Python wheel): carry it, e.g. put the venv's `blackjax`
package folder in a carried directory on PYTHONPATH (the script puts the repository root and
benchmarks/ on sys.path itself, so bnn_shift needs no install). From the repository root:

    python3 benchmarks/gpu_full_mnist.py                                    # on the GPU
    python benchmarks/gpu_full_mnist.py --n-train 500 --n-leapfrog 5 --repeats 2   # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import interleaved_times, make_floor, median, mnist_train, print_table, spread

from bnn_shift.models import combine_params, paper_mlp, partition_params
from bnn_shift.priors import Gaussian

try:  # bnn_shift.inference needs blackjax, which the accelerator image may lack
    from bnn_shift.inference.chains import build_block
    from bnn_shift.inference.kernel import HMC
    from bnn_shift.inference.likelihood import CATEGORICAL, categorical_loglik
    from bnn_shift.inference.target import Target

    KERNEL_ERROR = None
except ImportError as err:
    KERNEL_ERROR = f"{type(err).__name__}: {err}"

    def categorical_loglik(params, static, x, y):  # (n,), as bnn_shift's, for the floor
        logits = jax.vmap(combine_params(params, static))(x)
        return jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]


PRECISIONS = ("float32", "tensorfloat32", "default")  # most wanted first


def load(args):
    """-> (x (n, 784), y (n,), source)."""
    try:
        x, y = mnist_train(args.n_train, data_dir=args.data_dir)
        return x, y, "mnist"
    except Exception as err:  # any failure to find MNIST falls back
        print(f"MNIST not available ({type(err).__name__}: {str(err)[:120]}); using random inputs")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((args.n_train, 784), dtype=np.float32)
        return x, rng.integers(0, 10, args.n_train).astype(np.int32), "synthetic"


def rel_err(a, b) -> float:
    """||a - b|| / ||b|| over all leaves."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(la, lb))
    den = sum(float(jnp.sum(v**2)) for v in lb)
    return float(np.sqrt(num / max(den, 1e-300)))


def peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--n-leapfrog", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--step-size", type=float, default=1e-5)
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--paper-iterations", type=int, default=100)
    ap.add_argument("--paper-leapfrogs", type=int, default=15_000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--budget-s", type=float, default=180.0, help="skip later precisions after this"
    )
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for the JSON")
    args = ap.parse_args()
    started = time.perf_counter()
    h, L = args.step_size, args.n_leapfrog

    dev = jax.devices()[0]
    x, y, source = load(args)
    params, static = partition_params(paper_mlp(key=jax.random.key(0)))
    prior = Gaussian(0.1)
    data = tuple(jax.device_put(a, dev) for a in (x, y, np.ones(len(x), np.float32)))  # + mask
    key, warmup = jax.random.key(1), jnp.asarray(False)  # with the MH test
    momentum = jax.tree.map(lambda a: jax.random.normal(key, a.shape, a.dtype), params)
    print(
        f"jax {jax.__version__} on {dev.device_kind} ({dev.platform}); N={len(x)} ({source}), "
        f"L={L}, repeats={args.repeats}"
    )

    def loglik_fn(p, d):
        return jnp.where(d[2] > 0, categorical_loglik(p, static, d[0], d[1]), 0.0)  # as masked

    def logpost(p, d):
        return jnp.sum(loglik_fn(p, d)) + prior.log_prob(p)

    kernel_error = KERNEL_ERROR
    if kernel_error:
        print(f"our kernel cannot be imported ({kernel_error}); timing the floor only")
    else:  # programs built from these are traced under each precision below
        target = Target(CATEGORICAL, prior, static, 1.0, len(x))  # masks by data[2]
        engine = HMC.for_target(target, params, step_size=h, n_steps=L)

    with jax.default_matmul_precision("float32"):
        ref_value, ref_grad = jax.jit(jax.value_and_grad(logpost))(params, data)

    results: dict[str, dict] = {}
    for precision in args.precisions.split(","):
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent; skipping precision {precision}")
            continue
        with jax.default_matmul_precision(precision):
            value, grad = jax.jit(jax.value_and_grad(logpost))(params, data)
            floor = make_floor(logpost, h, L)
            calls = {"floor": lambda f=floor, g=grad: f(params, momentum, g, data)}
            if kernel_error is None:
                step = jax.jit(lambda k, s, d, w: engine.step(target, k, s, d, w))
                state = jax.jit(lambda q, d: engine.init(target, q, d))(params, data)
                iteration = build_block(engine, target, 1, 1, keep_positions=False)
                cstate = jax.tree.map(lambda a: a[None], state)
                calls["ours"] = lambda s=step, st=state: s(key, st, data, warmup)
                calls["driver"] = lambda it=iteration, st=cstate: it(key, 0, 1, st, data, {}, 0)
            times, first = interleaved_times(calls, args.repeats)
        results[precision] = {
            name: {
                "ms_per_leapfrog": 1e3 * median(t) / L,
                "spread": spread(t),
                "first_call_s": first[name],
            }
            for name, t in times.items()
        }
        results[precision]["logdensity_rel_err_vs_float32"] = abs(
            float(value - ref_value) / float(ref_value)
        )
        results[precision]["grad_rel_err_vs_float32"] = rel_err(grad, ref_grad)

    def hours(ms_per_leapfrog: float) -> float:
        return ms_per_leapfrog * 1e-3 * args.paper_iterations * args.paper_leapfrogs / 3600

    rows = []
    f32 = results.get("float32", {})
    for precision, r in results.items():
        for name in ("floor", "ours", "driver"):
            if name in r:
                ms = r[name]["ms_per_leapfrog"]
                rows.append(
                    [
                        precision,
                        name,
                        ms,
                        ms / r["floor"]["ms_per_leapfrog"],
                        ms / f32[name]["ms_per_leapfrog"] if name in f32 else float("nan"),
                        r["grad_rel_err_vs_float32"],
                        hours(ms),
                    ]
                )
    print_table(
        [
            "precision",
            "method",
            "ms/leapfrog",
            "x floor",
            "x float32",
            "grad rel err",
            "paper run h",
        ],
        rows,
    )
    report = {
        "device": f"{dev.device_kind} ({dev.platform})",
        "jax": jax.__version__,
        "python": platform.python_version(),
        "data": source,
        "n_train": len(x),
        "n_leapfrog": L,
        "repeats": args.repeats,
        "paper_leapfrogs_total": args.paper_iterations * args.paper_leapfrogs,
        "results": results,
        "paper_run_hours": {
            p: {n: hours(r[n]["ms_per_leapfrog"]) for n in ("floor", "ours", "driver") if n in r}
            for p, r in results.items()
        },
        "peak_device_bytes": peak_bytes(),
        "kernel_error": kernel_error,
        "wall_s": time.perf_counter() - started,
    }
    print(f"peak device memory: {report['peak_device_bytes']}; wall {report['wall_s']:.0f} s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "gpu_full_mnist.json")
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
