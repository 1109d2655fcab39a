"""Test setup: 8 simulated CPU devices, so every test can compare 1 device with 8.

The flag must be set before JAX initialises its backends, i.e. before the first
`import jax` anywhere in the test session; conftest.py is imported first.
"""
import os

os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
