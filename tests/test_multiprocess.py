"""A real multi-process run: 2 processes x 2 CPU devices train exactly like 1 process x 4.

Both runs are the command line of docs/MULTIHOST.md, `python -m ssl_jax.main`:
once as one process with 4 devices, and once as two processes with 2 devices
each (`--coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I`),
joined by `jax.distributed` with gloo CPU collectives, each reading its half of
every global batch, Orbax writing one checkpoint from both. The three processes
run at once; the final parameters (read back from the checkpoints) and the
logged losses must agree.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ssl_jax import checkpoint, distributed, metrics, train
from ssl_jax.config import load_config_file
from ssl_jax.data import loader, sources

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
# The run both sides train: the quickstart smoke config, 3 steps of global batch 32,
# a mid-run checkpoint (step 2) and the final one (step 3).
OVERRIDES = {"input.batch_size": 32, "schedule.steps": 3, "log.every_steps": 1,
             "checkpoint.every_steps": 2}
DEADLINE_S = 240  # A hang (a process waiting for a peer that died) fails, not blocks.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(num_devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC honours them.
    # Optimisation level 0 compiles the train step ~2.5x faster on CPU (23 s -> 9 s here);
    # both runs use it, so they still compute the same function.
    env.update(XLA_FLAGS=(f"--xla_force_host_platform_device_count={num_devices} "
                          "--xla_backend_optimization_level=0"),
               JAX_PLATFORMS="cpu",
               # Compiles faster too (conftest.py); must be the same in both runs.
               JAX_THREEFRY_PARTITIONABLE="false")
    return env


def main_command(workdir: pathlib.Path, *distributed_flags: str) -> list[str]:
    return [sys.executable, "-m", "ssl_jax.main",
            "--config", "configs/quickstart.py:runlocal", "--workdir", str(workdir),
            "--config.stages=('pretrain',)",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items()), *distributed_flags]


def tail(path: pathlib.Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


def run_all(commands: dict[str, tuple[list[str], dict]], logs: pathlib.Path):
    """Start every command at once; wait for all (failing on the first error or at
    the deadline, then killing what is left)."""
    procs = {}
    start = time.monotonic()
    try:
        for name, (command, env) in commands.items():
            with (logs / f"{name}.log").open("w") as f:
                procs[name] = subprocess.Popen(command, cwd=REPO, env=env, stdout=f,
                                               stderr=subprocess.STDOUT)
        while any(p.poll() is None for p in procs.values()):
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            if failed or time.monotonic() - start > DEADLINE_S:
                break
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, proc in procs.items():
        assert proc.returncode == 0, (
            f"{name} exited with {proc.returncode} after {time.monotonic() - start:.0f} s "
            f"(deadline {DEADLINE_S} s):\n" + "\n".join(
                f"--- {n}:\n{tail(logs / f'{n}.log')}" for n in procs))


def test_two_processes_train_exactly_like_one(tmp_path):
    total_devices = NUM_PROCESSES * DEVICES_PER_PROCESS
    port = free_port()
    commands = {"one_process": (main_command(tmp_path / "one_process"),
                                process_env(total_devices))}
    for i in range(NUM_PROCESSES):
        commands[f"process_{i}"] = (
            main_command(tmp_path / "two_processes", f"--coordinator_address=127.0.0.1:{port}",
                         f"--num_processes={NUM_PROCESSES}", f"--process_id={i}"),
            process_env(DEVICES_PER_PROCESS))
    run_all(commands, tmp_path)
    for i in range(NUM_PROCESSES):
        # Really one run over both processes, not two single-process runs.
        expected = (f"process {i}/{NUM_PROCESSES}: {DEVICES_PER_PROCESS} local of "
                    f"{total_devices} devices (cpu)")
        assert expected in (tmp_path / f"process_{i}.log").read_text()
    assert "process 0/" not in (tmp_path / "one_process.log").read_text()  # No-op: one process.

    config = load_config_file(str(REPO / "configs" / "quickstart.py"), "runlocal")
    config.update_from_flattened_dict(OVERRIDES)
    config.mesh.num_devices = total_devices
    # Process 0 alone wrote the metrics.
    one_losses, two_losses = ([r["loss"] for r in metrics.read_metrics(tmp_path / run / "pretrain")]
                              for run in ("one_process", "two_processes"))
    assert len(one_losses) == config.schedule.steps
    # Identical here (float32); the tolerance allows another reduction order in gloo.
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5, atol=1e-6)
    # The two processes saved together the mid-run checkpoint and the final one.
    ckpt_dirs = [tmp_path / run / "pretrain" / "checkpoints"
                 for run in ("one_process", "two_processes")]
    assert sorted(int(p.name) for p in ckpt_dirs[1].iterdir() if p.name.isdigit()) == [2, 3]
    fresh = train.init_state(train.build(config, sources.load(config.input)))
    one, two = (checkpoint.load_latest(d, fresh) for d in ckpt_dirs)
    assert int(one.step) == int(two.step) == config.schedule.steps
    init, one_params, two_params = jax.device_get((fresh.params, one.params, two.params))
    # Gradients are summed across processes by gloo, within one by XLA: another order,
    # so parameters agree to float32 rounding (~1e-7), not bit for bit.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6),
                 one_params, two_params)
    # The comparison can fail: training moved the parameters away from their init.
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), init, one_params)
    assert max(jax.tree.leaves(moved)) > 1e-3


@pytest.mark.parametrize("num_examples,global_batch", [(160, 32), (1442, 32), (50, 64)])
def test_process_shares_of_an_epoch_are_disjoint_and_cover_it(num_examples, global_batch):
    """Each process's shares of one epoch's steps: no example twice, across processes or
    steps, and together every example once (also when the epoch ends inside a step,
    and when a batch is larger than the dataset)."""
    arrays = {"index": np.arange(num_examples)}
    steps = -(-num_examples // global_batch)
    shares = [[loader.StepBatcher(arrays, global_batch, seed=3, process_index=p,
                                  process_count=NUM_PROCESSES).batch(s)["index"]
               for s in range(steps)] for p in range(NUM_PROCESSES)]
    local = global_batch // NUM_PROCESSES
    assert all(len(x) == local for per_process in shares for x in per_process)
    # The stream order: step by step, process 0's share, then process 1's.
    stream = np.concatenate([shares[p][s] for s in range(steps) for p in range(NUM_PROCESSES)])
    single = loader.StepBatcher(arrays, global_batch, seed=3, process_index=0, process_count=1)
    np.testing.assert_array_equal(
        stream, np.concatenate([single.batch(s)["index"] for s in range(steps)]))
    epoch = stream[:num_examples]
    np.testing.assert_array_equal(np.sort(epoch), np.arange(num_examples))
    if num_examples % global_batch == 0:  # Whole steps: the processes' sets are disjoint.
        seen = [set(np.concatenate(per_process).tolist()) for per_process in shares]
        assert not seen[0] & seen[1]
        assert seen[0] | seen[1] == set(range(num_examples))


def test_digits_train_split_size_matches_the_epoch_test():
    """1442 above is the digits train split: the real, uneven case."""
    config = load_config_file(str(REPO / "configs" / "quickstart.py"), "runlocal")
    assert sources.load(config.input).train_inputs.shape[0] == 1442


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv(distributed.COORDINATOR_ENV, raising=False)
    assert distributed.initialize() is False
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize("args,message", [
    (("127.0.0.1:1234", 2, 2), "--process_id=2 is out of range for --num_processes=2"),
    (("127.0.0.1:1234", 2, -1), "--process_id=-1"),
    (("127.0.0.1:1234", 0, 0), "--num_processes=0"),
    ((None, 2, 0), "--coordinator_address is missing"),
    (("127.0.0.1", 2, 0), "--coordinator_address='127.0.0.1': expected HOST:PORT"),
    (("127.0.0.1:1234", None, 0), "--num_processes is missing"),
    (("127.0.0.1:1234", 2, None), "--process_id is missing"),
])
def test_inconsistent_values_name_the_flag(monkeypatch, args, message):
    monkeypatch.delenv(distributed.COORDINATOR_ENV, raising=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.initialize(*args)
    assert not jax.distributed.is_initialized()


def test_bad_flag_is_a_usage_error_before_jax_starts(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ssl_jax.main", "--config", "configs/quickstart.py:runlocal",
         "--workdir", str(tmp_path), "--coordinator_address=127.0.0.1:1234",
         "--num_processes=2", "--process_id=2"],
        cwd=REPO, env=process_env(2), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "--process_id=2 is out of range for --num_processes=2" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "pretrain").exists()
