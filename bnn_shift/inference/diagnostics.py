"""Convergence diagnostics of saved runs: sampler health and ArviZ R-hat/ESS in function space.

Weight-space R-hat is meaningless for neural networks (permutation symmetries); the trace of
function-space quantities (train log-likelihood, test log-predictive and accuracy) is what the
chains should agree on.
"""

from __future__ import annotations

import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bnn_shift.inference.chains import POINTWISE
from bnn_shift.inference.convergence import RHAT_WARNING, max_rhat


def open_run(path: str | Path) -> xr.DataTree:
    """A saved posterior (.nc) as a DataTree, fully loaded."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def sampler_health(tree: xr.DataTree) -> dict[str, float | int | str]:
    """Method, chains, iterations, acceptance rate and divergences of a saved posterior."""
    attrs = json.loads(tree.attrs.get("bnn_shift", "{}"))
    health: dict[str, float | int | str] = {
        "method": attrs.get("method", "?"),
        "draws kept": int(tree["draws"].to_dataset().sizes.get("sample", 0)),
    }
    if "sample_stats" not in tree.children:
        return health
    stats = tree["sample_stats"].to_dataset()
    warmup = tree["warmup_sample_stats"].to_dataset()
    health |= {
        "chains": int(stats.sizes["chain"]),
        "burn-in": int(warmup.sizes.get("draw", 0)),
        "draws": int(stats.sizes["draw"]),
    }
    if "acceptance_rate" in stats:  # Metropolis-adjusted samplers (not SGLD)
        health |= {
            "step size": attrs.get("step_size", float("nan")),
            "acceptance rate": float(stats["acceptance_rate"].mean()),
            "divergences": int(stats["diverging"].sum() + warmup.get("diverging", 0).sum()),
        }
    if "n_leapfrog_steps" in attrs:
        health["leapfrog steps"] = attrs["n_leapfrog_steps"]
    if "accepted" in stats:
        health["accepted"] = float(stats["accepted"].mean())
    if "n_steps" in stats:
        health["mean tree size"] = float(stats["n_steps"].mean())
    health["converged"] = _converged_text(attrs)
    return health


def _converged_text(attrs: dict) -> str:
    """yes / NO (R-hat > 1.1) / unchecked, from the run's function-space R-hat."""
    worst = max_rhat(attrs)
    if worst is None:
        return "unchecked (R-hat needs >= 2 chains)"
    return (
        f"yes (max R-hat {worst:.4g})" if attrs.get("converged") else f"NO (max R-hat {worst:.4g})"
    )


def function_space_summary(tree: xr.DataTree) -> pd.DataFrame:
    """ArviZ mean, sd, bulk/tail ESS and R-hat of each traced quantity (rows), post burn-in."""
    if "posterior" not in tree.children or not tree["posterior"].to_dataset().data_vars:
        return pd.DataFrame()
    posterior = tree["posterior"].to_dataset()
    if posterior.sizes.get("draw", 0) < 4:
        raise ValueError("too few post-burn-in iterations for R-hat/ESS (need at least 4)")
    scalar = [name for name in posterior.data_vars if not str(name).endswith(POINTWISE)]
    table = az.summary(tree, var_names=scalar, kind="all", round_to="none")
    keep = [c for c in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat") if c in table.columns]
    return table[keep].astype(np.float64)


def report(path: str | Path) -> str:
    """A printable diagnostic report of one saved posterior."""
    tree = open_run(path)
    lines = [f"== {Path(path).name}"]
    for key, value in sampler_health(tree).items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:16s} {text}")
    try:
        summary = function_space_summary(tree)
    except ValueError as err:
        lines.append(f"  (no R-hat/ESS: {err})")
        return "\n".join(lines)
    if not summary.empty:
        lines.append("  function-space quantities (R-hat needs >= 2 chains):")
        lines.extend("    " + row for row in summary.round(3).to_string().splitlines())
    lines.extend(pointwise_lines(json.loads(tree.attrs.get("bnn_shift", "{}"))))
    return "\n".join(lines)


def pointwise_lines(attrs: dict) -> list[str]:
    """Report lines of the per-point log-predictive R-hat summaries in a posterior's attrs."""
    lines = []
    for name, s in attrs.get("pointwise_rhat", {}).items():
        lines.append(
            f"  per-point R-hat on {name}: median {s['median']:.3f}, 90% {s['q90']:.3f}, "
            f"max {s['max']:.3f}; {s['share_above']:.1%} of points above {RHAT_WARNING}"
        )
    return lines
