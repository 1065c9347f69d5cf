"""The documentation site builds without warnings, and its Python examples run."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_docs_site_builds_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    reference = (tmp_path / "api" / "priors" / "index.html").read_text()
    assert 'id="bnn_shift.priors.EmpCov.from_data"' in reference  # docstrings were rendered


@pytest.mark.slow
@pytest.mark.parametrize("page", ["getting-started.md"])
def test_python_examples_run(page):
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"no python examples in {page}"
    for block in blocks:
        exec(compile(block, page, "exec"), {})
