"""ssl_jax.xla_cpu: when the Eigen-kernel flag is added, and that it reaches XLA."""

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
    assert xla_cpu.prefer_eigen_kernels(env, X86, NEW)
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                "--xla_cpu_experimental_ynn_fusion_type="
                                "-individual_convolution,-individual_dot")


def test_sets_flags_when_unset():
    env = {}
    assert xla_cpu.prefer_eigen_kernels(env, "AMD64", (0, 11))
    assert env["XLA_FLAGS"] == xla_cpu.EIGEN_KERNELS


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
    assert not xla_cpu.prefer_eigen_kernels(env, machine, version)
    assert env == before


PROBE = """
import ssl_jax, jax, jax.numpy as jnp
x = jax.random.normal(jax.random.key(0), (2, 16, 16, 64))  # big enough for YNNPACK
w = jax.random.normal(jax.random.key(1), (3, 3, 64, 64))
v = jax.random.normal(jax.random.key(2), (64, 96))
def loss(x, w, v):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(jnp.tanh(y) @ v))
compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(x, w, v).compile()
value, grads = compiled(x, w, v)
ynn_ops = [line for line in compiled.as_text().splitlines() if "__ynn_fusion" in line]
def runs_on_ynn(primitive):
    return any(primitive in line for line in ynn_ops)
print("YNN" if runs_on_ynn("conv_general_dilated") else "EIGEN",
      "YNN" if runs_on_ynn("dot_general") else "EIGEN",
      float(value), *(float(jnp.abs(g).sum()) for g in grads))
"""


def probe(opt_out: str) -> list[str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", **{xla_cpu.OPT_OUT: opt_out})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-6:]


@pytest.mark.skipif(platform.machine().lower() not in xla_cpu.X86_64
                    or xla_cpu.installed_jaxlib_version() < xla_cpu.MIN_JAXLIB,
                    reason="the flag applies to x86-64 with jaxlib >= 0.10 only")
def test_import_routes_convolutions_and_matmuls_to_eigen_with_the_same_results():
    """`import ssl_jax` before the first computation sends a convolution and a matmul,
    forward and backward, to Eigen; with the opt-out, jaxlib's default (YNNPACK) stays.
    Both give the same loss and gradients. If a jaxlib upgrade changes the default, the
    opt-out half fails and the flag's premise needs measuring again."""
    eigen, ynn = probe(""), probe("1")
    assert (eigen[:2], ynn[:2]) == (["EIGEN", "EIGEN"], ["YNN", "YNN"])
    np.testing.assert_allclose([float(v) for v in eigen[2:]], [float(v) for v in ynn[2:]],
                               rtol=1e-5)
