"""Shared set-up for the scikit-learn estimator tests."""

from __future__ import annotations

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture(scope="package", autouse=True)
def compiled_program_cache(tmp_path_factory):
    """Each fit traces fresh closures, so jit's in-memory cache never hits across fits; but the
    programs repeat (check_estimator refits the same shapes and settings ~50 times), and a disk
    cache of compiled programs, keyed by the program itself, skips most recompilation."""
    saved = {name: getattr(jax.config, name) for name in CACHE_OPTIONS}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
