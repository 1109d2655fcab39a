"""ssl_jax.xla_cpu: when the Eigen-convolution flag is added, and that it reaches XLA."""

import os
import platform
import subprocess
import sys

import numpy as np
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
x = jax.random.normal(jax.random.key(0), (2, 16, 16, 64))  # big enough for YNNPACK
w = jax.random.normal(jax.random.key(1), (3, 3, 64, 64))
def loss(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(y))
compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, w).compile()
value, (dx, dw) = compiled(x, w)
ynn_convolutions = [line for line in compiled.as_text().splitlines()
                    if "__ynn_fusion" in line and "conv_general_dilated" in line]
print("YNN" if ynn_convolutions else "EIGEN",
      float(value), float(jnp.abs(dx).sum()), float(jnp.abs(dw).sum()))
"""


def probe(opt_out: str) -> list[str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", **{xla_cpu.OPT_OUT: opt_out})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-4:]


@pytest.mark.skipif(platform.machine().lower() not in xla_cpu.X86_64
                    or xla_cpu.installed_jaxlib_version() < xla_cpu.MIN_JAXLIB,
                    reason="the flag applies to x86-64 with jaxlib >= 0.10 only")
def test_import_routes_convolutions_to_eigen_with_the_same_results():
    """`import ssl_jax` before the first computation sends a convolution, forward and
    backward, to Eigen; with the opt-out, jaxlib's default (YNNPACK) stays. Both give the
    same loss and gradients. If a jaxlib upgrade changes the default, the opt-out half
    fails and the flag's premise needs measuring again."""
    eigen, ynn = probe(""), probe("1")
    assert (eigen[0], ynn[0]) == ("EIGEN", "YNN")
    np.testing.assert_allclose([float(v) for v in eigen[1:]], [float(v) for v in ynn[1:]],
                               rtol=1e-5)
