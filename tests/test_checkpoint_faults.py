"""Faults against the checkpoints: SIGKILL at random steps, damaged files, a full disk.

The kills and the full disk run `tests/fault_run.py` in processes of their own
(12 steps, checkpoints every 3, keep 2); the damaged-file cases run in this
process on the quickstart smoke config (6 steps, checkpoints at 3 and 6). Every
case ends by comparing the final parameters and optimizer state bitwise (CPU)
with an uninterrupted run: the only work a fault may cost is the steps since the
last complete checkpoint. Each test prints what it injected.
"""

import functools
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import logging

from ssl_jax import checkpoint, metrics, train
from test_reliability import (assert_trees_equal, digits,  # noqa: F401
                              quickstart, saved_steps, uninterrupted)

REPO = pathlib.Path(__file__).resolve().parents[1]
FAULT_RUN = REPO / "tests" / "fault_run.py"
STEPS, EVERY = 12, 3  # As fault_run.py.


# --- runs in processes of their own --------------------------------------------------------------

@pytest.fixture(scope="module")
def subprocess_env():
    """One CPU device and quick compiles; the session's compilation cache (conftest.py) comes
    with os.environ."""
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_THREEFRY_PARTITIONABLE="false",
                XLA_FLAGS=("--xla_force_host_platform_device_count=1 "
                           "--xla_backend_optimization_level=0"))


def fault_run(env, *args, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, str(FAULT_RUN), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def started_at(output: str) -> int:
    [line] = [line for line in output.splitlines() if line.startswith("started at step")]
    return int(line.split()[-1])


def final_state(path: pathlib.Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


@pytest.fixture(scope="module")
def reference_run(subprocess_env, tmp_path_factory) -> pathlib.Path:
    """The workdir of the 12-step run, uninterrupted (its final state in final.npz)."""
    directory = tmp_path_factory.mktemp("reference")
    done = fault_run(subprocess_env, directory / "run", directory / "final.npz")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return directory


@pytest.fixture(scope="module")
def reference(reference_run) -> list[np.ndarray]:
    return final_state(reference_run / "final.npz")


def logged_values(workdir: pathlib.Path) -> dict[int, dict]:
    """The metrics of each logged step, from the last run that logged it, timings left out."""
    return {record["step"]: {k: v for k, v in record.items() if not k.endswith("_per_s")}
            for record in metrics.read_metrics(workdir)}


def complete_steps(checkpoints: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in checkpoints.iterdir()
                  if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file())


def test_sigkill_at_three_random_steps_then_resume_ends_bitwise_equal(
        subprocess_env, reference_run, reference, tmp_path):
    """SIGKILL (no handler runs, nothing is flushed) after 3 random steps of one run: each
    restart resumes from the newest complete checkpoint (a save in flight at the kill is
    not one), and the run finishes bitwise equal to the uninterrupted one, having logged
    exactly its metrics."""
    kills = sorted(random.SystemRandom().sample(range(1, STEPS), 3))
    print("SIGKILL after steps", kills, "(checkpoints every", EVERY, "steps)")
    workdir, out = tmp_path / "run", tmp_path / "final.npz"
    resumed_from = 0
    for kill in kills:
        killed = fault_run(subprocess_env, workdir, out, "--kill-after", kill)
        assert killed.returncode == -9, killed.stdout + killed.stderr[-3000:]
        assert started_at(killed.stdout) == resumed_from
        on_disk = complete_steps(workdir / "checkpoints")
        newest = max(on_disk, default=0)
        # Saves are asynchronous: the newest due step's save may have been in flight.
        assert newest <= kill and newest % EVERY == 0, (kill, on_disk)
        print(f"killed after step {kill}: complete checkpoints {on_disk}, "
              f"work lost {kill - newest} steps")
        resumed_from = newest
    finished = fault_run(subprocess_env, workdir, out)
    assert finished.returncode == 0, finished.stdout + finished.stderr[-3000:]
    assert started_at(finished.stdout) == resumed_from
    jax.tree.map(np.testing.assert_array_equal, final_state(out), reference)
    # Determinism: every logged metric equals the uninterrupted run's (same seed).
    assert logged_values(workdir) == logged_values(reference_run / "run")
    assert not [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]


def mountable_tmpfs() -> bool:
    """Whether this user may mount a tmpfs in a new user + mount namespace."""
    try:
        probe = subprocess.run(["unshare", "-Urm", "sh", "-c",
                                "mount -t tmpfs -o size=1m tmpfs /mnt"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def fill_a_tmpfs(env, tmp_path, out):
    """A 1 MB tmpfs (mounted in a user + mount namespace) filled after step 7; in the
    namespace: the run, then the filler deleted and the run again."""
    if not mountable_tmpfs():
        pytest.skip("this user may not mount a tmpfs (unshare -Urm); see the rlimit case")
    disk = tmp_path / "disk"
    disk.mkdir()
    workdir, filler = disk / "run", disk / "filler"
    script = (f"mount -t tmpfs -o size=1m tmpfs {disk} && "
              f"{sys.executable} {FAULT_RUN} {workdir} {out} --fill-disk-after 7 {filler}; "
              f"echo status $?; rm {filler}; "
              f"{sys.executable} {FAULT_RUN} {workdir} {out}; echo status $?")
    both = subprocess.run(["unshare", "-Urm", "sh", "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    first, _, second = both.stdout.partition("status ")
    return (workdir, (first, second), (second.split()[0], second.split()[-1]),
            both.stdout + both.stderr[-3000:], "No space left on device")


def limit_the_file_size(env, tmp_path, out):
    """RLIMIT_FSIZE 0 after step 7: every write that grows a file fails (EFBIG), as on a
    full disk; the rerun is a fresh process, without the limit."""
    workdir = tmp_path / "run"
    failed = fault_run(env, workdir, out, "--limit-file-size-after", 7)
    rerun = fault_run(env, workdir, out)
    return (workdir, (failed.stdout, rerun.stdout), (str(failed.returncode), str(rerun.returncode)),
            failed.stdout + rerun.stdout + rerun.stderr[-3000:], "File too large")


@pytest.mark.parametrize("fill", [fill_a_tmpfs, limit_the_file_size],
                         ids=["tmpfs_1MB", "rlimit_fsize_0"])
def test_full_disk_fails_clearly_keeps_the_last_checkpoint_and_resumes_exactly(
        subprocess_env, reference, tmp_path, fill):
    """The disk fills after step 7 (checkpoint 6 complete). The run stops with an error
    naming what failed (the save of step 9, or the metrics file) and the last complete
    checkpoint, 6, which stays loadable; with space freed, the rerun resumes from 6 and
    ends bitwise equal to the uninterrupted run."""
    print(fill.__doc__.splitlines()[0])
    out = tmp_path / "final.npz"
    workdir, outputs, statuses, report, errno_text = fill(subprocess_env, tmp_path, out)
    assert statuses == ("3", "0"), report
    [failure] = [line for line in outputs[0].splitlines() if line.startswith("FAILED")]
    print(failure)
    assert errno_text in failure
    saved = ("FAILED SaveFailed: saving the checkpoint of step 9 in " in failure
             and "the last complete checkpoint is step 6" in failure)
    metrics_file = "FAILED OSError: " in failure and str(workdir / "metrics.jsonl") in failure
    assert saved or metrics_file, failure
    assert started_at(outputs[1]) == 6  # Work lost: steps 7 and 8, since the checkpoint.
    jax.tree.map(np.testing.assert_array_equal, final_state(out), reference)


# --- damaged checkpoint files (in this process) ---------------------------------------------------

def array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    """The OCDBT data files of the state (each holds some of the arrays; OCDBT is
    append-only, so a file may also hold superseded data that no read touches)."""
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def xor_every_seventh_byte(step_dir):
    for path in array_files(step_dir):
        data = bytearray(path.read_bytes())
        for i in range(0, len(data), 7):
            data[i] ^= 0x55
        path.write_bytes(bytes(data))


def arrays_of_step_3(step_dir):
    """Step 3's array files in step 6's place (a botched copy): they decode without an
    error, to other numbers, so only the digest can tell."""
    shutil.rmtree(step_dir / "state")
    shutil.copytree(step_dir.parent / "3" / "state", step_dir / "state")


def truncate_to_half(step_dir):
    for path in array_files(step_dir):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete_the_array_index(step_dir):
    (step_dir / "state" / "manifest.ocdbt").unlink()


def delete_the_digest(step_dir):
    shutil.rmtree(step_dir / "digest")


CORRUPTIONS = [xor_every_seventh_byte, arrays_of_step_3, truncate_to_half, delete_the_array_index,
               delete_the_digest]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[f.__name__ for f in CORRUPTIONS])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(
        digits, uninterrupted, tmp_path, corrupt, caplog):
    """Checkpoints 3 and 6 saved; step 6's files damaged. The next start warns, renames
    6 to 6.corrupt, resumes from 3 and ends bitwise equal to the uninterrupted run; the
    stage hand-off (`load_latest`) refuses the damaged one, naming step and directory."""
    train.train(quickstart(), tmp_path, digits)
    directory = (tmp_path / "checkpoints").absolute()
    assert saved_steps(tmp_path) == [3, 6]
    corrupt(directory / "6")
    print("damaged checkpoint 6:", corrupt.__name__)
    template = train.init_state(train.build(quickstart(), digits))
    with pytest.raises(checkpoint.CorruptCheckpoint,
                       match=f"checkpoint step 6 in {directory} (does not load|has arrays)"):
        checkpoint.load_latest(directory, template)
    steps_run = []
    caplog.set_level(logging.WARNING)
    resumed = train.train(quickstart(), tmp_path, digits,
                          on_step=lambda step, state: steps_run.append(step))
    assert steps_run == [4, 5, 6]  # Lost: the 3 steps since checkpoint 3.
    assert_trees_equal(jax.device_get((resumed.state.params, resumed.state.opt_state)),
                       uninterrupted)
    assert sorted(p.name for p in directory.iterdir()) == ["3", "6", "6.corrupt"]
    [warning] = [r.getMessage() for r in caplog.records if "moved it to" in r.getMessage()]
    print(warning)
    assert warning.startswith(f"checkpoint step 6 in {directory} ")
    assert warning.endswith("moved it to 6.corrupt and trying the previous one")


def test_when_every_checkpoint_is_damaged_the_run_says_so_and_starts_afresh(
        digits, uninterrupted, tmp_path, caplog):
    train.train(quickstart(), tmp_path, digits)
    directory = (tmp_path / "checkpoints").absolute()
    for step in (3, 6):
        truncate_to_half(directory / str(step))
    print("truncated an array file of checkpoints 3 and 6")
    caplog.set_level(logging.WARNING)
    steps_run = []
    rerun = train.train(quickstart(), tmp_path, digits,
                        on_step=lambda step, state: steps_run.append(step))
    assert steps_run == [1, 2, 3, 4, 5, 6]
    assert_trees_equal(jax.device_get((rerun.state.params, rerun.state.opt_state)), uninterrupted)
    assert any(r.getMessage() == f"no intact checkpoint left in {directory} (set aside: "
               "6.corrupt, 3.corrupt): starting from step 0" for r in caplog.records)


@pytest.mark.parametrize("digest", [
    checkpoint.state_digest, functools.partial(checkpoint.state_digest, chunk_bytes=4),
    checkpoint.legacy_state_digest], ids=["8MiB-chunks", "4-byte-chunks", "legacy"])
def test_the_digest_covers_every_leaf_path_dtype_and_value(digest):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    same = digest(state)
    assert digest({k: v.copy() for k, v in state.items()}) == same
    changed_value = dict(state, b=np.array([0, 0, 1e-30], np.float32))  # In the last chunk.
    changed_dtype = dict(state, b=np.zeros(3, np.float64))
    changed_shape = dict(state, w=state["w"].reshape(3, 2))
    renamed = {"w": state["w"], "c": state["b"]}
    digests = {digest(s) for s in (changed_value, changed_dtype, changed_shape, renamed)}
    assert same not in digests and len(digests) == 4


def test_the_chunked_digest_hashes_each_chunk_of_a_leaf_in_order():
    """Swapping two chunks of one leaf changes the digest (chunk digests are not summed)."""
    leaf = np.arange(4, dtype=np.uint32)
    swapped = leaf[[1, 0, 2, 3]]
    assert (checkpoint.state_digest({"a": leaf}, chunk_bytes=4)
            != checkpoint.state_digest({"a": swapped}, chunk_bytes=4))


@pytest.mark.parametrize("tampered", [False, True])
def test_a_checkpoint_with_a_legacy_digest_is_verified_with_the_legacy_digest(tmp_path,
                                                                              tampered):
    """Checkpoints saved before the digest named its algorithm still resume (and are still
    checked): their digest file holds only {"state": legacy_state_digest(state)}."""
    state = jax.device_put({"w": np.arange(6, dtype=np.float32), "step": np.array(3)})
    saver = checkpoint.Checkpointer(tmp_path, 1, 2)
    saver.maybe_save(3, state)
    saver.close()
    legacy = checkpoint.legacy_state_digest(dict(state, w=state["w"] + tampered))
    (tmp_path / "3" / "digest" / "metadata").write_text(json.dumps({"state": legacy}))
    restored = checkpoint.Checkpointer(tmp_path, 1, 2).restore_latest(state)
    if tampered:
        assert restored is None and (tmp_path / "3.corrupt").is_dir()
    else:
        assert_trees_equal(jax.device_get(restored), state)
