"""One line that says which machine and libraries a benchmark ran on (bench/ scripts)."""

import os

import jax
import torch


def machine(device: torch.device) -> str:
    """CPU model and cores; jax version and devices; torch version, device and threads; the
    settings that change CPU timings (OMP_WAIT_POLICY, XLA_FLAGS)."""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), "unknown CPU")
    torch_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"{cpu}, {os.cpu_count()} cores; jax {jax.__version__} on "
            f"{jax.device_count()} x {jax.devices()[0].device_kind}; torch {torch.__version__} "
            f"on {torch_device}, torch.get_num_threads() = {torch.get_num_threads()} "
            f"(= os.cpu_count()), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
            "JAX's CPU backend uses its own Eigen thread pool; "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
