"""Test setup: 8 simulated CPU devices, so every test can compare 1 device with 8, and one
persistent compilation cache for the whole session.

The flag must be set before JAX initialises its backends, i.e. before the first
`import jax` anywhere in the test session; conftest.py is imported first.
"""
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Many tests compile the same programs: the quickstart step alone in the end-to-end, CLI,
# notebook, reliability and fault tests, several of them in `python -m ssl_jax.main`
# subprocesses. JAX's persistent cache turns every repeat into a load from disk. Set here, in
# the environment, so that pytest-xdist's workers and every subprocess share it; a fresh
# directory per session (the controller's), removed at the end. A user's own
# JAX_COMPILATION_CACHE_DIR is used as it is.
SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    SESSION_CACHE = tempfile.mkdtemp(prefix="ssl_jax_tests_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = SESSION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real datasets of ../shared/data: skipped when absent, except in CI, where they must be."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real data at {SHARED_DATA}")
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_configure(config):
    """Threefry in its older, non-partitionable form: the same key gives the same numbers on
    any sharding either way, but on CPU this form compiles each random op ~10x faster
    (4 s -> 0.4 s per shape here), which is most of a tiny test's compile time."""
    import jax

    jax.config.update("jax_threefry_partitionable", False)


def pytest_unconfigure(config):
    """The session's compilation cache goes when the process that made it ends."""
    if SESSION_CACHE is not None:
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)
