r"""XLA:CPU settings that make ssl_jax's training steps faster on x86 CPUs.

jaxlib 0.10 hands every convolution and every matmul that stands alone to YNNPACK by
default (the `individual_convolution` and `individual_dot` entries of the default
`--xla_cpu_experimental_ynn_fusion_type` list). On the x86 CPU we measure on (AMD EPYC,
AVX-512, 2 cores), XLA's own Eigen kernels are faster for both (`docs/BENCHMARKS.md`):
- convolutions: the SimCLR and BYOL ResNet-18 CIFAR steps run 1.5-1.8x faster ("Eigen
  convolutions on the CPU");
- matmuls: the SimCLR ViT-S/16 step at 224 px runs 1.17x faster (7.75 -> 6.64 s at B = 16),
  mostly in the backward pass, whose matmuls take a transposed operand, where YNNPACK ran
  at half its usual rate ("ViTs and ResNet-50 on the CPU"). The ResNet steps do not change.
`prefer_eigen_kernels` removes both entries and keeps YNNPACK for the fusions it builds
around elementwise ops and reductions (without them XLA splits every reduction into a tree
of `reduce-window`s, which cost the ViT-S step 0.8 s).

The flag must be in `XLA_FLAGS` before JAX creates its CPU client (at the first
computation), so `import ssl_jax` applies it. It changes nothing when
- `XLA_FLAGS` already sets `xla_cpu_experimental_ynn_fusion_type` (the user's choice wins);
- `SSL_JAX_KEEP_XLA_CPU_DEFAULTS=1` is set (opt out);
- the machine is not x86-64, or jaxlib is older than 0.10 (where it was not measured).
"""

import importlib.metadata
import os
import platform
from typing import MutableMapping

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_KERNELS = f"--{YNN_FLAG}=-individual_convolution,-individual_dot"
OPT_OUT = "SSL_JAX_KEEP_XLA_CPU_DEFAULTS"
MIN_JAXLIB = (0, 10)
X86_64 = ("x86_64", "amd64")  # platform.machine() on Linux/macOS and on Windows


def installed_jaxlib_version() -> tuple[int, ...]:
    """(major, minor) of the installed jaxlib; () when there is none."""
    try:
        text = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def prefer_eigen_kernels(environ: MutableMapping[str, str] = os.environ,
                         machine: str | None = None,
                         jaxlib_version: tuple[int, ...] | None = None) -> bool:
    """Append `EIGEN_KERNELS` to `environ["XLA_FLAGS"]` where it applies (see the
    module docstring); returns whether it did."""
    machine = platform.machine() if machine is None else machine
    jaxlib_version = installed_jaxlib_version() if jaxlib_version is None else jaxlib_version
    flags = environ.get("XLA_FLAGS", "")
    if (environ.get(OPT_OUT, "") not in ("", "0") or YNN_FLAG in flags
            or machine.lower() not in X86_64 or jaxlib_version < MIN_JAXLIB):
        return False
    environ["XLA_FLAGS"] = f"{flags} {EIGEN_KERNELS}".strip()
    return True
