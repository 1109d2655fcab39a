"""Reliability of the train loop (`ssl_jax.guards`): signals, non-finite steps, collapse.

Faults are injected in this process: a signal sent to it after a chosen step
through `train.train(on_step=...)`, and a test-only method whose loss is NaN at
a chosen step. One case sends SIGTERM to `python -m ssl_jax.main`. The runs are
the quickstart smoke config (SimCLR on the 8x8 digits, 6 steps); docs/RELIABILITY.md
tabulates what is tried here.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import guards, methods, metrics, train, validate
from ssl_jax.config import load_config_file
from ssl_jax.data import sources
from ssl_jax.methods.simclr import SimCLR

REPO = pathlib.Path(__file__).resolve().parents[1]
in_main_thread = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                    reason="signal handlers can only be installed there")


def quickstart():
    """6 steps, checkpoints at 3 and 6, logs at 2, 4 and 6."""
    return load_config_file(str(REPO / "configs" / "quickstart.py"), "runlocal")


@pytest.fixture(scope="module")
def digits():
    return sources.load(quickstart().input)


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    run = train.train(quickstart(), tmp_path_factory.mktemp("uninterrupted"), digits)
    return jax.device_get((run.state.params, run.state.opt_state))


def saved_steps(workdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


# --- preemption ---------------------------------------------------------------------------------

@in_main_thread
@pytest.mark.parametrize("stop_step, signum", [(2, signal.SIGTERM), (3, signal.SIGINT),
                                               (5, signal.SIGTERM)],
                         ids=["SIGTERM_after_2", "SIGINT_after_3", "SIGTERM_after_5"])
def test_signal_saves_that_step_and_the_resumed_run_equals_an_uninterrupted_one(
        digits, uninterrupted, tmp_path, stop_step, signum):
    """Step 3 is also a periodic checkpoint; 2 and 5 are not. The resumed run ends with
    bitwise the parameters and optimizer state of the uninterrupted run (CPU)."""
    steps_run = []

    def send_signal(step, state):
        steps_run.append(step)
        if step == stop_step:
            print("sent", signal.Signals(signum).name, "at step", step)
            os.kill(os.getpid(), signum)

    handlers_before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(train.Preempted) as preempted:
        train.train(quickstart(), tmp_path, digits, on_step=send_signal)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers_before
    assert steps_run == list(range(1, stop_step + 1))  # It stopped after the step in flight.
    error = preempted.value
    assert (error.step, error.signum, error.exit_code) == (stop_step, signum, 128 + signum)
    assert error.directory == (tmp_path / "checkpoints").absolute()
    assert str(error) == (f"preempted at step {stop_step}; checkpoint saved in {error.directory}; "
                          "rerun the same command to resume")
    assert saved_steps(tmp_path)[-1] == stop_step
    resumed = train.train(quickstart(), tmp_path, digits)
    assert int(resumed.state.step) == quickstart().schedule.steps
    assert_trees_equal(jax.device_get((resumed.state.params, resumed.state.opt_state)),
                       uninterrupted)


def test_main_exits_with_143_and_says_how_to_resume_on_sigterm(tmp_path):
    """The command line: SIGTERM once training has logged a step -> status 128 + 15, the
    message naming the step, and exactly that step's checkpoint (periodic saves are off)."""
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "ssl_jax.main", "--config", "configs/quickstart.py:runlocal",
               "--workdir", str(workdir), "--config.stages=('pretrain',)",
               "--config.schedule.steps=100000", "--config.log.every_steps=1",
               "--config.checkpoint.every_steps=0"]
    # One device and XLA's optimisation level 0 compile the step fastest.
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_THREEFRY_PARTITIONABLE="false",
               XLA_FLAGS=("--xla_force_host_platform_device_count=1 "
                          "--xla_backend_optimization_level=0"))
    log = tmp_path / "main.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not (workdir / "pretrain" / "metrics.jsonl").is_file():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no step logged in 180 s"
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            print("sent SIGTERM once", workdir / "pretrain" / "metrics.jsonl", "existed")
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    output = log.read_text()
    assert status == 143, output[-3000:]
    checkpoints = workdir / "pretrain" / "checkpoints"
    [step] = saved_steps(workdir / "pretrain")
    assert (f"preempted at step {step}; checkpoint saved in {checkpoints}; "
            "rerun the same command to resume") in output
    assert "Traceback" not in output
    assert metrics.read_metrics(workdir / "pretrain")[-1]["step"] == step


AGREE_SCRIPT = """
import sys
from ssl_jax import distributed, guards
process_id = int(sys.argv[2])
distributed.initialize(sys.argv[1], 2, process_id)
signals = guards.StopSignals()
signals.received = 15 if process_id == 0 else None
print("stop between logging steps:", signals.stop_requested(False))
print("stop at a logging step:", signals.stop_requested(True), "signal", signals.received)
"""


def test_processes_stop_together_at_a_logging_step_when_one_got_the_signal(tmp_path):
    """Two processes (gloo): only process 0 got SIGTERM; neither stops between logging
    steps, both stop at the next one, with SIGTERM's number (exit status 143)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC honours them.
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    print("SIGTERM marked received on process 0 only")
    processes = [subprocess.Popen([sys.executable, "-c", AGREE_SCRIPT, f"127.0.0.1:{port}",
                                   str(i)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=120)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
        assert "stop between logging steps: False" in output
        assert "stop at a logging step: True signal 15" in output


# --- non-finite steps ---------------------------------------------------------------------------

class NaNAtStep(SimCLR):
    """SimCLR whose loss (hence every gradient) is NaN at step `bad_step` (1-based)."""

    bad_step = 3

    def loss(self, params, variables, batch, rng, step):
        loss, aux = super().loss(params, variables, batch, rng, step)
        return loss * jnp.where(step + 1 == self.bad_step, jnp.nan, 1.0), aux


def nan_config(on_nonfinite: str):
    """NaN at step 3; checkpoints every 2 steps; logs only at steps 5 and 6, so the
    check before the save of step 4 is the one that must catch it."""
    config = quickstart()
    config.method.name = "nan_at_step"
    config.guard.on_nonfinite = on_nonfinite
    config.checkpoint.every_steps = 2
    config.log.every_steps = 5
    return config


@pytest.fixture
def nan_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "nan_at_step", NaNAtStep)
    print("loss and gradients are NaN at step", NaNAtStep.bad_step)


def test_stop_names_the_step_and_the_last_good_checkpoint_and_saves_nothing_after(
        nan_method, digits, tmp_path):
    with pytest.raises(train.NonFiniteLoss) as raised:
        train.train(nan_config("stop"), tmp_path, digits)
    error = raised.value
    directory = (tmp_path / "checkpoints").absolute()
    assert (error.step, error.metrics, error.checkpoint_step) == (3, ["loss", "grad_norm"], 2)
    assert ("step 3: non-finite loss, grad_norm (config.guard.on_nonfinite='stop')" in str(error)
            and f"the last good checkpoint is step 2 in {directory}" in str(error))
    assert saved_steps(tmp_path) == [2]  # Nothing at or after the bad step.


def test_skip_keeps_the_previous_state_and_counts_the_skipped_step(nan_method, digits, tmp_path):
    params = {}

    def keep_params(step, state):
        params[step] = jax.device_get(state.params)

    run = train.train(nan_config("skip"), tmp_path, digits, on_step=keep_params)
    assert int(run.state.step) == 6
    assert_trees_equal(params[3], params[2])  # The NaN step changed nothing...
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), params[4], params[3])
    assert any(jax.tree.leaves(changed))  # ...and the next one trained again.
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params[6]))
    records = metrics.read_metrics(tmp_path)
    assert [(r["step"], r["skipped_steps"], r["finite"]) for r in records] == [(5, 1, 1), (6, 1, 1)]
    assert saved_steps(tmp_path) == [2, 4, 6]


# --- collapse warnings and config checks -------------------------------------------------------

def collapse_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "may be collapsing" in r.getMessage()]


def test_collapse_warning_names_step_metric_and_value_only_below_a_floor(
        digits, tmp_path, caplog):
    """Healthy here: embedding_std_ratio ~0.8, rankme_embeddings ~12 (measured). A floor of
    2.0 on the first warns at each logging step; the default rankme floor 1.5 never does."""
    config = quickstart()
    config.guard.min_embedding_std_ratio = 2.0
    print("min_embedding_std_ratio", config.guard.min_embedding_std_ratio)
    train.train(config, tmp_path, digits)
    records = metrics.read_metrics(tmp_path)
    expected = [f"step {r['step']}: embedding_std_ratio={r['embedding_std_ratio']:.4g} is below "
                "config.guard.min_embedding_std_ratio=2: the representation may be collapsing"
                for r in records]
    assert collapse_warnings(caplog) == expected and len(expected) == 3
    assert all(r["rankme_embeddings"] > 1.5 for r in records)


def test_collapse_floors_match_task_prefixed_metrics_and_zero_turns_them_off(caplog):
    scalars = {"rotation_rankme_embeddings": 1.2, "rankme_features": 1.0, "loss": 0.0}
    guard = quickstart().guard
    guards.warn_on_collapse(7, scalars, guard)
    assert collapse_warnings(caplog) == [
        "step 7: rotation_rankme_embeddings=1.2 is below config.guard.min_rankme=1.5: the "
        "representation may be collapsing"]
    caplog.clear()
    guard.min_rankme = 0.0
    guards.warn_on_collapse(7, scalars, guard)
    assert collapse_warnings(caplog) == []


@pytest.mark.parametrize("field, value, message", [
    ("on_nonfinite", "explode", "config.guard.on_nonfinite='explode': expected one of"),
    ("min_rankme", -1.0,
     "config.guard.min_rankme=-1.0: expected a finite number in [0.0, inf]")])
def test_bad_guard_config_is_refused_naming_the_field(field, value, message):
    config = quickstart()
    config.guard[field] = value
    print("config.guard.", field, "=", repr(value), sep="")
    with pytest.raises(ValueError, match=re.escape(message)):
        validate.validate(config)

