"""Cost per leapfrog step of our HMC kernel against a fused floor, BlackJAX and NumPyro.

Same process, same model (paper MLP 784-256-256-10), same Gaussian(0.1) prior, same N MNIST
images, same step size, L leapfrog steps per HMC step. Every method is jitted, takes the data as
an argument (as our driver does, so no method gets the data baked in as a constant), is called
once to compile and warm up, then timed in interleaved rounds; the median is reported.

  floor     bare velocity Verlet: `lax.fori_loop` of value_and_grad of the log posterior (no
            mask, no momentum draw, no accept test) -- the least any HMC can do per step.
  ours      one `HMC.step` (L steps + end-of-trajectory log-likelihood + termwise accept test)
            / L on the driver's `Target` (categorical likelihood, data masked by its third
            entry), engine and target closed over by `jax.jit`.
  driver    the same step as the driver runs it: `chains.build_block`, one iteration a call.
  blackjax  `blackjax.hmc(..., inverse_mass_matrix=jnp.ones(dim), num_integration_steps=L)`
            step / L; the kernel is built inside the jitted function so data is an argument.
  numpyro   `numpyro.infer.hmc.hmc(potential_fn_gen=..., algo="HMC")`'s `sample_kernel` / L,
            initialised with num_steps=L, trajectory_length=None, no adaptation. This is the
            function `HMC.sample(state, model_args, model_kwargs)` calls; we use the functional
            form because `HMC(potential_fn=f)` can only close over the data (a jit constant),
            while `potential_fn_gen` takes it as `model_args`, like ours. Timing one jitted
            sample_kernel call is fairer than MCMC.run, which adds a scan, a progress loop and
            sample collection.
  ours+EmpCov  ours with `by_path({"layers.0.weight": EmpCov.from_data(x), "*": Gaussian(0.1)})`,
            as the samplers run it (whitened: the first layer in whitened coordinates, inputs
            rotated once, `inference/whitening.py`) and as they did before (preconditioned: the
            prior's mass matrix and dense log prior inside every leapfrog).

Columns: median ms per leapfrog step, its ratio to the floor, the fastest repeat ("min ms", the
better estimate on a shared machine), spread = (max - min) / median of the repeats, and the
first call (compile + one run). --profile also times the pieces (one value_and_grad, one
forward pass, one momentum draw, the floor with the data mask, the floor with the EmpCov log
prior) and prints XLA's static cost estimate (flops, loop bodies counted once) of every program,
which attributes the work outside the leapfrog loop without timing noise.

    python benchmarks/leapfrog.py --n-train 10000 --n-leapfrog 100 --repeats 3
"""

from __future__ import annotations

import argparse
from functools import partial

import blackjax
import jax
import jax.numpy as jnp
from _common import (
    describe_machine,
    interleaved_times,
    make_floor,
    median,
    mnist_train,
    print_table,
    spread,
)
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc as numpyro_hmc

from bnn_shift.inference.chains import build_block
from bnn_shift.inference.kernel import HMC
from bnn_shift.inference.likelihood import CATEGORICAL, categorical_loglik
from bnn_shift.inference.metric import prior_metric
from bnn_shift.inference.sharding import make_mesh, masked, place_data
from bnn_shift.inference.target import Target
from bnn_shift.inference.whitening import find_whitening
from bnn_shift.models import paper_mlp, partition_params
from bnn_shift.priors import EmpCov, Gaussian, by_path

FLOOR, OURS = "floor (fused fori_loop)", "ours (kernel.step)"
DRIVER, EMPCOV = "ours via driver (1 chain)", "ours + EmpCov layer 0 (whitened)"
PRECONDITIONED = "ours + EmpCov layer 0 (preconditioned)"
PIECE = "piece: "  # one call, not per leapfrog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-leapfrog", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-size", type=float, default=1e-5)
    ap.add_argument("--no-empcov", action="store_true", help="skip the EmpCov row")
    ap.add_argument("--no-driver", action="store_true", help="skip the driver (vmap) row")
    ap.add_argument("--profile", action="store_true", help="also time the pieces")
    args = ap.parse_args()
    h, L = args.step_size, args.n_leapfrog

    x, y = mnist_train(args.n_train)
    params, static = partition_params(paper_mlp(key=jax.random.key(0)))
    prior = Gaussian(0.1)
    data = place_data(x, y, make_mesh(1, jax.devices()[:1]))  # (x, y, mask) as the driver has it
    print(f"{describe_machine()}\nN={len(x)}, L={L}, h={h}, repeats={args.repeats}")

    target = Target(CATEGORICAL, prior, static, 1.0, len(x))  # what the driver samples

    def loglik_fn(p, d):  # the driver's per-example log-likelihood (= target.loglik)
        return masked(categorical_loglik(p, static, d[0], d[1]), d[2])

    def logpost(p, d):
        return jnp.sum(loglik_fn(p, d)) + prior.log_prob(p)

    def bare_logpost(p, d):
        return jnp.sum(categorical_loglik(p, static, d[0], d[1])) + prior.log_prob(p)

    key = jax.random.key(1)
    momentum = jax.tree.map(lambda a: jax.random.normal(key, a.shape, a.dtype), params)
    grad0 = jax.grad(bare_logpost)(params, data)
    floor = make_floor(bare_logpost, h, L)

    engine = HMC.for_target(target, params, step_size=h, n_steps=L)
    ours = jax.jit(lambda k, s, d, w: engine.step(target, k, s, d, w))
    state = jax.jit(lambda q, d: engine.init(target, q, d))(params, data)
    warmup = jnp.asarray(False)  # with the MH test

    dim = ravel_pytree(params)[0].size

    def bj(d):
        return blackjax.hmc(
            lambda p: logpost(p, d), h, inverse_mass_matrix=jnp.ones(dim), num_integration_steps=L
        )

    bj_state = jax.jit(lambda q, d: bj(d).init(q))(params, data)
    bj_step = jax.jit(lambda k, s, d: bj(d).step(k, s))

    np_init, np_sample = numpyro_hmc(
        potential_fn_gen=lambda *d: lambda q: -logpost(q, d), algo="HMC"
    )
    np_state = np_init(
        params,
        num_warmup=0,
        step_size=h,
        adapt_step_size=False,
        adapt_mass_matrix=False,
        num_steps=L,
        trajectory_length=None,
        model_args=data,
        rng_key=key,
    )
    np_step = jax.jit(lambda s, d: np_sample(s, model_args=d))

    programs = {  # name -> (jitted function, arguments)
        FLOOR: (floor, (params, momentum, grad0, data)),
        OURS: (ours, (key, state, data, warmup)),
        "blackjax.hmc": (bj_step, (key, bj_state, data)),
        "numpyro HMC": (np_step, (np_state, data)),
    }
    if not args.no_driver:
        iteration = build_block(engine, target, 1, 1, keep_positions=False)
        chain_state = jax.tree.map(lambda a: a[None], state)
        programs[DRIVER] = (iteration, (key, 0, 1, chain_state, data, {}, 0))
    if not args.no_empcov:
        empcov = by_path({"layers.0.weight": EmpCov.from_data(x, scale=0.1), "*": prior})
        whitening, whitened_prior = find_whitening(paper_mlp(key=jax.random.key(0)), empcov, params)
        rotated = place_data(whitening.rotate(x), y, make_mesh(1, jax.devices()[:1]))
        z = whitening.to_whitened(params)
        for name, target_e, start, data_e in (
            (PRECONDITIONED, Target(CATEGORICAL, empcov, static, 1.0, len(x)), params, data),
            (EMPCOV, Target(CATEGORICAL, whitened_prior, static, 1.0, len(x), "float32", whitening),
             z, rotated),
        ):  # fmt: skip
            engine_e = HMC.for_target(target_e, start, step_size=h, n_steps=L)
            state_e = jax.jit(lambda q, d, e=engine_e, t=target_e: e.init(t, q, d))(start, data_e)
            step_e = jax.jit(lambda k, s, d, w, e=engine_e, t=target_e: e.step(t, k, s, d, w))
            programs[name] = (step_e, (key, state_e, data_e, warmup))
    if args.profile:
        programs |= profile_programs(args, logpost, loglik_fn, params, momentum, grad0, data, x)

    calls = {name: partial(fn, *fn_args) for name, (fn, fn_args) in programs.items()}
    times, first = interleaved_times(calls, args.repeats)
    steps = {k: 1 if k.startswith(PIECE) else L for k in calls}  # leapfrogs per call
    per_leap = {k: median(v) / steps[k] for k, v in times.items()}
    base = per_leap[FLOOR]
    rows = [
        [name, 1e3 * per_leap[name], per_leap[name] / base, 1e3 * min(times[name]) / steps[name],
         spread(times[name]), first[name]]
        for name in calls
    ]  # fmt: skip
    print_table(["method", "ms/leapfrog", "x floor", "min ms", "spread", "first call s"], rows)
    o = per_leap[OURS]
    print(f"\nours / floor    = {o / base:.3f}   (target <= 1.05)")
    print(f"ours / blackjax = {o / per_leap['blackjax.hmc']:.3f}   (target <= 1.0)")
    print(f"ours / numpyro  = {o / per_leap['numpyro HMC']:.3f}   (target <= 1.0)")
    if EMPCOV in per_leap:
        print(f"EmpCov / Gaussian (ours, whitened) = {per_leap[EMPCOV] / o:.3f}   (target <= 1.05)")
        print(f"EmpCov / Gaussian (ours, preconditioned) = {per_leap[PRECONDITIONED] / o:.3f}")
    if args.profile:
        vg, fwd = per_leap[PIECE + "value_and_grad"], per_leap[PIECE + "forward loglik"]
        draw = per_leap[PIECE + "momentum draw"]
        print(
            f"\nforward / value_and_grad = {fwd / vg:.3f}; one extra forward pass and one momentum"
            f" draw per trajectory predict ours/floor = 1 + (fwd + draw)/(L*leapfrog) = "
            f"{1 + (fwd + draw) / (L * base):.4f}"
        )
        print_cost(programs, L)


def print_cost(programs, n_steps: int) -> None:
    """XLA's static cost estimate of each program (before optimisation; a loop body counts
    once), in units of one forward pass: where the work outside the leapfrog loop goes."""
    cost = {}
    for name, (fn, fn_args) in programs.items():
        # the driver's block is a plain function calling a compiled one: jit it to lower it
        lower = fn.lower if hasattr(fn, "lower") else jax.jit(fn).lower
        c = lower(*fn_args).cost_analysis()
        cost[name] = (c[0] if isinstance(c, list) else c) or {}
    fwd = cost[PIECE + "forward loglik"].get("flops", float("nan"))
    floor = cost[FLOOR].get("flops", float("nan"))
    print(f"\nXLA cost analysis (loop bodies counted once; 1 forward = {fwd:.4g} flops)")
    rows = [
        [name, c.get("flops", float("nan")), (c.get("flops", 0) - floor) / fwd,
         c.get("transcendentals", float("nan")), c.get("bytes accessed", float("nan"))]
        for name, c in cost.items()
    ]  # fmt: skip
    print_table(["program", "flops", "(flops - floor)/forward", "transcendentals", "bytes"], rows)


def profile_programs(args, logpost, loglik_fn, params, momentum, grad0, data, x):
    """Pieces that attribute our overheads: one value_and_grad, one forward pass, the floor with
    the driver's data mask, and the floor with the EmpCov log prior (no preconditioner)."""
    h, L = args.step_size, args.n_leapfrog
    draw_momentum = prior_metric(Gaussian(0.1).preconditioner(params)).sample_momentum
    out = {
        PIECE + "value_and_grad": (jax.jit(jax.value_and_grad(logpost)), (params, data)),
        PIECE + "forward loglik": (jax.jit(loglik_fn), (params, data)),
        PIECE + "momentum draw": (jax.jit(draw_momentum), (jax.random.key(2), params)),
        "floor + data mask": (make_floor(logpost, h, L), (params, momentum, grad0, data)),
    }
    if not args.no_empcov:
        empcov = by_path({"layers.0.weight": EmpCov.from_data(x, scale=0.1), "*": Gaussian(0.1)})

        def logpost_e(p, d):
            return jnp.sum(loglik_fn(p, d)) + empcov.log_prob(p)

        floor_e = make_floor(logpost_e, h, L)
        out["floor + EmpCov log prior"] = (floor_e, (params, momentum, grad0, data))
    return out


if __name__ == "__main__":
    main()
