"""Memory of the `hmc` driver over a run: does device memory stay flat in the iteration count?

Three 100-iteration runs of the paper MLP on a small MNIST subset (few leapfrog steps, no
burn-in, so nearly every iteration keeps a draw of 269,322 float32 = 1.03 MiB), in one process:

  baseline    keep_draws=False, run_dir=None: nothing kept but running averages.
  streamed    keep_draws=True, run_dir=<tmp>: draws written to disk, checkpoint every iteration.
  in-memory   keep_draws=True, run_dir=None: draws held on the host until the run ends.

The driver has no callback, so during each run we swap in a stand-in for the progress bar it
updates once per iteration (`bnn_shift.inference.chains.tqdm`) and, every --every iterations,
record the process RSS (psutil, else /proc/self/status) and the bytes of all live JAX arrays
(`jax.live_arrays()`). After each run we also record the Posterior's draw bytes, the RSS and live
bytes with it alive, and the live bytes once it is deleted. On CPU, `np.asarray` of a JAX array
is a zero-copy view, so whatever the host keeps of a step's outputs (draws held in memory, the
per-iteration stats rows) still counts as live JAX arrays until the run ends; on a GPU those are
host copies and device memory holds only the state, the data and the eval sets.

    python benchmarks/memory.py --n-train 500 --n-iterations 100 --n-steps 5
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import ClassVar
from unittest import mock

import jax
from _common import describe_machine, live_array_bytes, mib, mnist_train, print_table, rss_bytes

from bnn_shift.inference import chains, hmc
from bnn_shift.models import paper_mlp
from bnn_shift.priors import Gaussian


class MemoryProbe:
    """Stands in for the driver's tqdm bar; samples memory every `every` iterations."""

    every = 10
    samples: ClassVar[list[dict]] = []

    def __init__(self, *args, initial: int = 0, **kwargs):
        self.i = initial
        self.t0 = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.i += n
        if self.i % self.every == 0 or self.i == 1:
            live, count = live_array_bytes()
            MemoryProbe.samples.append(
                {
                    "it": self.i,
                    "t": time.perf_counter(),
                    "rss": rss_bytes(),
                    "live": live,
                    "n_live": count,
                }
            )

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def run(name: str, args, model, x, y, *, keep_draws: bool, run_dir: Path | None) -> dict:
    MemoryProbe.samples = []
    gc.collect()
    rss0, (live0, _) = rss_bytes(), live_array_bytes()
    with mock.patch.object(chains, "tqdm", MemoryProbe):
        post = hmc(
            model,
            Gaussian(0.1),
            x,
            y,
            step_size=args.step_size,
            trajectory_length=args.n_steps * args.step_size,
            n_iterations=args.n_iterations,
            n_burnin=0,
            eval_sets={"eval": (x[:100], y[:100])},
            keep_draws=keep_draws,
            run_dir=run_dir,
            progress=True,
        )
    draws = sum(a.nbytes for a in jax.tree.leaves(post.draws))
    rss_alive, (live_alive, _) = rss_bytes(), live_array_bytes()
    on_disk = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) if run_dir else 0
    del post
    gc.collect()
    s = MemoryProbe.samples
    steady = [r for r in s if r["it"] >= MemoryProbe.every]
    sec_per_it = (
        (steady[-1]["t"] - steady[0]["t"]) / (steady[-1]["it"] - steady[0]["it"])
        if len(steady) > 1
        else float("nan")
    )
    return {
        "name": name,
        "samples": s,
        "rss0": rss0,
        "live0": live0,
        "draws": draws,
        "rss_alive": rss_alive,
        "live_alive": live_alive,
        "live_after": live_array_bytes()[0],
        "on_disk": on_disk,
        "sec_per_it": sec_per_it,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--n-iterations", type=int, default=100)
    ap.add_argument("--n-steps", type=int, default=5, help="leapfrog steps per iteration")
    ap.add_argument("--step-size", type=float, default=1e-5)
    ap.add_argument("--every", type=int, default=10, help="sample memory every k iterations")
    args = ap.parse_args()
    MemoryProbe.every = args.every
    x, y = mnist_train(args.n_train)
    model = paper_mlp(key=jax.random.key(0))
    print(
        f"{describe_machine()}\nN={len(x)}, {args.n_iterations} iterations x {args.n_steps} "
        f"leapfrog steps; MiB throughout"
    )

    results = [run("baseline", args, model, x, y, keep_draws=False, run_dir=None)]
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run("streamed", args, model, x, y, keep_draws=True, run_dir=Path(tmp)))
    results.append(run("in-memory", args, model, x, y, keep_draws=True, run_dir=None))

    for r in results:
        print(f"\n{r['name']}: RSS and live JAX bytes relative to the start of the run")
        rows = [
            [s["it"], mib(s["rss"] - r["rss0"]), mib(s["live"] - r["live0"]), s["n_live"]]
            for s in r["samples"]
        ]
        print_table(["iteration", "d RSS", "d live JAX", "# live arrays"], rows)

    print(f"\nsummary (MiB; growth = value at the last sample - value at iteration {args.every})")
    rows = []
    for r in results:
        steady = [s for s in r["samples"] if s["it"] >= args.every]
        first, last = steady[0], steady[-1]
        rows.append(
            [
                r["name"],
                mib(last["live"] - first["live"]),
                mib(last["rss"] - first["rss"]),
                mib(r["draws"]),
                mib(r["on_disk"]),
                mib(r["rss_alive"] - r["rss0"]),
                mib(r["live_after"] - r["live0"]),
                (last["n_live"] - first["n_live"]) / max(last["it"] - first["it"], 1),
                1e3 * r["sec_per_it"],
            ]
        )
    print_table(
        [
            "run",
            "live JAX growth",
            "RSS growth",
            "posterior draws",
            "on disk",
            "RSS after - before",
            "live JAX leaked",
            "live arrays/it",
            "ms/iteration",
        ],
        rows,
    )
    base = results[0]["sec_per_it"]
    for r in results[1:]:
        print(f"{r['name']} / baseline time per iteration = {r['sec_per_it'] / base:.2f}")
    print(f"peak RSS of the process: {mib(results[-1]['maxrss']):.0f} MiB")


if __name__ == "__main__":
    main()
