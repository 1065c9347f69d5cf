"""A Laplace approximation in its posterior's saved file (group "laplace": the curvature blocks'
arrays, the subset and the evidence terms), so a loaded `LaplacePosterior` predicts by the GLM
or probit predictive as the fitted one did; its mean is the file's variational "mean"."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from bnn_shift.inference.laplace.approx import LaplaceApprox
from bnn_shift.inference.laplace.curvature import Curvature, DiagBlock, FullBlock, KronBlock
from bnn_shift.inference.laplace.kron import _kron_layers
from bnn_shift.typing import PyTree

GROUP = "laplace"
KRON_ARRAYS = ("g", "a", "r", "order")  # a KronBlock's arrays, in its constructor's order
KINDS = {"full": FullBlock, "diag": DiagBlock, "kron": KronBlock}


def _variable(name: str, values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """A DataArray spec with dimension names of its own (blocks' sizes differ)."""
    values = np.asarray(values)
    return tuple(f"{name}_{i}" for i in range(values.ndim)), values


def approx_dataset(approx: LaplaceApprox, predictive: str, n_predictive_samples: int):
    """The approximation as an xarray Dataset (arrays, and its scalars as a JSON attribute)."""
    layers = list(_kron_layers(approx.mean, approx.selected))
    arrays = {
        "selected": np.asarray(approx.selected, np.int64),
        "prior_quad": approx.prior_quad,
        "prior_weight": approx.prior_weight,
    }
    blocks = []
    for i, (at, block) in enumerate(approx.curvature.blocks):
        kind = next(name for name, cls in KINDS.items() if isinstance(block, cls))
        names = KRON_ARRAYS if kind == "kron" else ("ggn", "prior")
        arrays[f"block{i}_at"] = at
        arrays |= {f"block{i}_{name}": getattr(block, name) for name in names}
        entry = {"kind": kind}
        if kind == "kron":  # its layer, by position among the subset's KFAC layers
            entry["layer"] = layers.index(block.layer)
        blocks.append(entry)
    meta = {
        "blocks": blocks,
        "dim": approx.curvature.dim,
        "temperature": approx.temperature,
        "log_joint": approx.log_joint,
        "settings": approx.settings,
        "predictive": predictive,
        "n_predictive_samples": n_predictive_samples,
    }
    variables = {name: _variable(name, values) for name, values in arrays.items()}
    return xr.Dataset(variables, attrs={GROUP: json.dumps(meta, default=str)})


def approx_from_dataset(
    data: xr.Dataset, mean: PyTree, static: PyTree, likelihood
) -> tuple[LaplaceApprox, str, int]:
    """-> (the approximation, its predictive, n_predictive_samples) from `approx_dataset`'s
    output and the posterior's mean, structure and likelihood."""
    meta = json.loads(data.attrs[GROUP])
    arrays = {name: np.asarray(var.values) for name, var in data.variables.items()}
    selected = tuple(int(i) for i in arrays["selected"])
    layers = list(_kron_layers(mean, selected))
    blocks = []
    for i, entry in enumerate(meta["blocks"]):
        kind = entry["kind"]
        names = KRON_ARRAYS if kind == "kron" else ("ggn", "prior")
        parts = [arrays[f"block{i}_{name}"] for name in names]
        if kind == "kron":
            parts.append(layers[entry["layer"]])
        blocks.append((arrays[f"block{i}_at"], KINDS[kind](*parts)))
    approx = LaplaceApprox(
        mean=mean,
        static=static,
        likelihood=likelihood,
        selected=selected,
        curvature=Curvature(tuple(blocks), int(meta["dim"])),
        temperature=float(meta["temperature"]),
        log_joint=float(meta["log_joint"]),
        prior_quad=arrays["prior_quad"],
        prior_weight=arrays["prior_weight"],
        settings=meta["settings"],
    )
    return approx, meta["predictive"], int(meta["n_predictive_samples"])
