"""Multi-process start-up: `jax.distributed.initialize`, for runs over several processes.

When it is needed: whenever one training run spans more than one Python
process, i.e.

  * a Cloud TPU pod slice (v4-16 and up: one process per TPU VM host), where
    JAX detects every value itself (`--distributed` on `ssl_jax.main`);
  * several GPU hosts, or one process per GPU, where the values come from
    flags (`--coordinator_address`, `--num_processes`, `--process_id`) or are
    detected under SLURM or Open MPI (`--distributed`);
  * several CPU processes on one machine (tests, trying out a launch script),
    which also needs cross-process CPU collectives: gloo over TCP.

It is not needed, and `initialize` does nothing, for a single process, however
many local devices it has (one GPU host with 8 GPUs, a single TPU VM such as a
v4-8, a CPU run). It must run before anything initialises a JAX backend
(`jax.devices()`, any computation), which is why `ssl_jax.main` calls it first.

After it, `jax.devices()` lists the devices of every process, the trainer's
mesh spans all of them, `jax.process_index()` / `jax.process_count()` say which
contiguous share of each global batch this process reads
(`data.loader.StepBatcher`), and Orbax coordinates checkpoint saves between the
processes (the checkpoint directory must be on storage every process sees).
"""

import os

import jax
from absl import logging

# JAX's own variable for the coordinator; read by `jax.distributed.initialize`.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
CPU_COLLECTIVES_ENV = "JAX_CPU_COLLECTIVES_IMPLEMENTATION"


def _check_address(address: str):
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator_address={address!r}: expected HOST:PORT, the address of "
                         "process 0 and a free port on it, e.g. 10.0.0.1:1234")


def check_arguments(coordinator_address: str | None, num_processes: int | None,
                    process_id: int | None, *, auto_detect: bool = False):
    """Raise ValueError naming the flag when the values cannot describe one run.

    Without `auto_detect` all three values are needed (with
    `$JAX_COORDINATOR_ADDRESS` standing in for the address); with it, missing
    values are left to JAX's cluster detection, and only the given ones are checked.
    """
    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
    if coordinator_address is not None:
        _check_address(coordinator_address)
    elif not auto_detect:
        raise ValueError(
            "--coordinator_address is missing: a multi-process run needs the HOST:PORT of "
            f"process 0 (or ${COORDINATOR_ENV}); pass --distributed instead to let JAX detect "
            "it on a Cloud TPU pod, under SLURM or under Open MPI")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes={num_processes}: must be >= 1")
    if num_processes is None and not auto_detect:
        raise ValueError("--num_processes is missing: with --coordinator_address, give the "
                         "number of processes of the run (the same on every process)")
    if process_id is None and not auto_detect:
        raise ValueError(f"--process_id is missing: give this process's index, 0 .. "
                         f"{num_processes - 1} (0 runs the coordinator)")
    if process_id is not None:
        if process_id < 0:
            raise ValueError(f"--process_id={process_id}: must be >= 0")
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"--process_id={process_id} is out of range for "
                             f"--num_processes={num_processes}: expected 0 .. {num_processes - 1}")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto_detect: bool = False,
               local_device_ids: list[int] | None = None, cpu_collectives: str = "gloo",
               initialization_timeout: int = 300) -> bool:
    """Join a multi-process JAX run; returns whether it did (False: single process, a no-op).

    Args:
      coordinator_address: HOST:PORT of process 0, which runs the coordinator
        service on that port; the same on every process.
      num_processes: the number of processes of the run.
      process_id: this process, 0 .. num_processes - 1.
      auto_detect: call `jax.distributed.initialize` even when none of the
        three values is given, letting JAX detect what is missing (Cloud TPU
        pods, SLURM, Open MPI). Without it and without any value, this is a no-op.
      local_device_ids: the local accelerators this process uses (e.g. `[rank %
        8]` with one process per GPU); None: what JAX chooses.
      cpu_collectives: the cross-process collectives of the CPU backend
        ("gloo" over TCP, or "mpi"); `$JAX_CPU_COLLECTIVES_IMPLEMENTATION`
        takes precedence. Harmless on TPU/GPU hosts, where the CPU backend is
        not what runs the step.
      initialization_timeout: seconds to wait for every process to connect.

    Raises:
      ValueError: naming the flag whose value is missing or inconsistent.
      RuntimeError: (from JAX) when a JAX backend is already initialised or
        this was called before.
    """
    given = (coordinator_address, num_processes, process_id)
    if not auto_detect and all(v is None for v in given):
        return False
    check_arguments(coordinator_address, num_processes, process_id, auto_detect=auto_detect)
    if cpu_collectives and not os.environ.get(CPU_COLLECTIVES_ENV):
        # The default in recent JAX; set explicitly since older versions had none, and
        # a multi-process CPU computation then fails.
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   local_device_ids=local_device_ids,
                                   initialization_timeout=initialization_timeout)
    except ValueError as error:
        if not auto_detect:
            raise
        # JAX says only "coordinator_address should be defined." and the like.
        raise ValueError(
            f"--distributed: JAX found no cluster to detect the missing values from (Cloud "
            f"TPU, SLURM, Open MPI, Kubernetes): {error} Pass --coordinator_address, "
            "--num_processes and --process_id instead") from error
    logging.info("%s", describe())
    return True


def describe() -> str:
    """`process 1/2: 2 local of 4 devices (cpu)`: where this process stands."""
    return (f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} "
            f"local of {jax.device_count()} devices ({jax.default_backend()})")
