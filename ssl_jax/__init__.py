"""ssl_jax: self-supervised learning in JAX/Flax."""

from ssl_jax import xla_cpu

__version__ = "0.1.0"

xla_cpu.prefer_eigen_kernels()
