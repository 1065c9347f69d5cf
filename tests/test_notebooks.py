"""The notebooks in notebooks/ are stored without outputs and execute from top to bottom."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.slow  # executes every notebook: the full tier

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; each notebook runs in well under a minute on 2 idle CPU cores


def _execute(nb, cwd: Path) -> None:
    """Run every cell in a fresh kernel of this interpreter (jupyter_client starts the
    "python3" kernel with sys.executable), on the CPU unless told otherwise."""
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=TIMEOUT_S,
        startup_timeout=180,  # a loaded CI machine can be slow to start a kernel
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    expected = {"01_quickstart", "02_priors_under_shift", "03_structured_attention"}
    assert expected | {"04_compression_bounds", "05_diagnostics"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: code cell {i} has stored outputs"
            assert cell.execution_count is None, f"{path.name}: code cell {i} has a count"


def test_kernel_is_this_interpreter(tmp_path):
    code = "import sys; print(sys.executable)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    _execute(nb, tmp_path)
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    _execute(nb, tmp_path)  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - started
    figures = sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert figures >= 1, f"{path.name} drew no figure"
    print(f"{path.name}: {seconds:.1f} s")
