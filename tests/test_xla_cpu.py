"""ssl_jax.xla_cpu: when the Eigen-convolution flag is added, and that it reaches XLA."""

import os
import platform
import subprocess
import sys

import pytest

from ssl_jax import xla_cpu

X86, NEW = "x86_64", (0, 10)


def test_appends_to_existing_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_cpu.prefer_eigen_convolutions(env, X86, NEW)
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution")


def test_sets_flags_when_unset():
    env = {}
    assert xla_cpu.prefer_eigen_convolutions(env, "AMD64", (0, 11))
    assert env["XLA_FLAGS"] == xla_cpu.EIGEN_CONVOLUTIONS


@pytest.mark.parametrize("env, machine, version", [
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=reduce"}, X86, NEW),
    ({xla_cpu.OPT_OUT: "1"}, X86, NEW),
    ({}, "arm64", NEW),
    ({}, "aarch64", NEW),
    ({}, X86, (0, 9)),
    ({}, X86, ()),
], ids=["user-set", "opt-out", "arm64", "aarch64", "old-jaxlib", "no-jaxlib"])
def test_leaves_flags_alone(env, machine, version):
    before = dict(env)
    assert not xla_cpu.prefer_eigen_convolutions(env, machine, version)
    assert env == before


PROBE = """
import ssl_jax, jax, jax.numpy as jnp
x, w = jnp.ones((2, 16, 16, 64)), jnp.ones((3, 3, 64, 64))  # big enough for YNNPACK
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
print("YNN" if "__ynn_fusion" in jax.jit(conv).lower(x, w).compile().as_text() else "EIGEN")
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or xla_cpu._jaxlib_version() < xla_cpu.MIN_JAXLIB,
                    reason="the flag applies to x86-64 with jaxlib >= 0.10 only")
@pytest.mark.parametrize("opt_out, expected", [("", "EIGEN"), ("1", "YNN")])
def test_import_routes_convolutions_to_eigen(opt_out, expected):
    """`import ssl_jax` before the first computation decides where XLA sends a convolution;
    with the opt-out, jaxlib's default (YNNPACK) stays. If a jaxlib upgrade changes that
    default, the opt-out case fails and the flag's premise needs measuring again."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", **{xla_cpu.OPT_OUT: opt_out})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == expected
