"""Guards of the one train loop: preemption, non-finite steps, representation collapse.

Preemption. While `train.train` runs its steps, SIGTERM (what Kubernetes, SLURM
and cloud schedulers send before taking a machine away) and SIGINT (Ctrl-C) only
set a flag: the loop finishes the step in flight, saves a checkpoint at it,
waits for the save, and raises `Preempted`; `ssl_jax.main` then exits with
128 + the signal number (143 for SIGTERM, 130 for SIGINT), the status a shell
gives a process killed by that signal. Rerunning the same command resumes from
that checkpoint, so no step is lost. The first signal restores the handlers that
were there before, so a second one acts as it would have without the guard
(Ctrl-C twice aborts at once; an Orbax checkpoint is never half-written either
way). Python installs handlers only from the main thread: elsewhere signals are
left alone. Multi-process runs assume that every process receives the signal (a
TPU pod's maintenance event signals every worker); as they may receive it during
different steps, the processes agree at logging steps (an all-gather of one
integer) and stop together there, within `config.log.every_steps` steps.

Non-finite steps (`config.guard.on_nonfinite`). The jitted step computes
`finite = isfinite(loss) and isfinite(||grads||)` (a NaN or Inf in any gradient
makes their norm non-finite) and returns it with its metrics. "skip": the
step keeps its old params, batch_stats, opt_state and extra where `finite` is
false (a `jnp.where` over the state tree; the step counter still advances, so
the next step sees the next batch); the host counts these steps in the metric
`skipped_steps` (since this process started). "stop": the run raises
`NonFiniteLoss` naming the first such step, the non-finite metrics and the
last good checkpoint. Either way the host reads the flags of the steps since
its last look only at logging steps and before each checkpoint save (one small
transfer then, never a device sync per step), so a non-finite state is never
saved.

Collapse (`config.guard.min_embedding_std_ratio`, `config.guard.min_rankme`):
at logging steps, a WARNING when a method's logged `embedding_std_ratio` or
`rankme_embeddings` (`diagnostics.representation_metrics`, possibly with a task
prefix) is below its floor; training goes on. A floor of 0 turns it off.
"""

import signal
import threading

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

NONFINITE_ACTIONS = ("stop", "skip")
# Step metrics whose non-finite value `NonFiniteLoss` names.
WATCHED_METRICS = ("loss", "grad_norm")
# Logged metric -> the `config.guard` field holding its collapse floor.
COLLAPSE_FLOORS = {"embedding_std_ratio": "min_embedding_std_ratio",
                   "rankme_embeddings": "min_rankme"}


class Preempted(Exception):
    """A signal stopped training after step `step`, whose checkpoint is in `directory`."""

    def __init__(self, step: int, directory, signum: int):
        self.step, self.directory, self.signum = step, directory, signum
        super().__init__(f"preempted at step {step}; checkpoint saved in {directory}; "
                         "rerun the same command to resume")

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


class NonFiniteLoss(FloatingPointError):
    """Step `step` had a non-finite loss or gradients; nothing from it on was saved."""

    def __init__(self, step: int, metrics: list[str], checkpoint_step: int | None, directory):
        self.step, self.metrics = step, metrics
        self.checkpoint_step, self.directory = checkpoint_step, directory
        last_good = (f"the last good checkpoint is step {checkpoint_step} in {directory}"
                     if checkpoint_step is not None else f"no checkpoint was saved in {directory}")
        super().__init__(
            f"step {step}: non-finite {', '.join(metrics)} (config.guard.on_nonfinite='stop'); "
            f"no state from step {step} on was saved; {last_good}. Lower config.optim.lr, or "
            "set config.guard.on_nonfinite='skip' to skip such steps")


def is_finite(loss: jax.Array, grad_norm: jax.Array) -> jax.Array:
    """Whether a step's loss and all its gradients are finite (a scalar bool)."""
    return jnp.isfinite(loss) & jnp.isfinite(grad_norm)


def skip_if_not_finite(finite: jax.Array, new_state, old_state):
    """`new_state`, or where `finite` is false `old_state` with `new_state`'s step counter."""
    kept = old_state.replace(step=new_state.step)
    return jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)


class NonFiniteGuard:
    """The host side: the `finite` flags of the steps not yet read back, and what to do."""

    def __init__(self, action: str):
        self.action = action
        self.skipped = 0
        self._pending = []

    def record(self, step: int, step_metrics: dict):
        """Keep (not read) the device scalars of step `step`: no device sync."""
        self._pending.append(
            (step, {k: step_metrics[k] for k in ("finite", *WATCHED_METRICS)}))

    def check(self, checkpointer):
        """Read the pending flags; raise `NonFiniteLoss` ("stop") or count and warn ("skip")."""
        pending, self._pending = self._pending, []
        for step, values in zip([s for s, _ in pending], jax.device_get([v for _, v in pending])):
            if values["finite"]:
                continue
            names = [k for k in WATCHED_METRICS if not np.isfinite(values[k])]
            if self.action == "stop":
                raise NonFiniteLoss(step, names, checkpointer.latest_step(),
                                    checkpointer.directory)
            self.skipped += 1
            logging.warning("step %d skipped (config.guard.on_nonfinite='skip'): non-finite %s",
                            step, ", ".join(names))


class StopSignals:
    """Within `with`: SIGTERM and SIGINT set `received` (the signal number) and nothing else."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        self._restore()

    def _handle(self, signum, frame):
        self.received = signum
        self._restore()  # A second signal acts as it did before.

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def stop_requested(self, at_logging_step: bool) -> bool:
        """Whether to stop after this step: at once in a single process; at a logging step,
        by all processes together, when any of them received a signal."""
        if jax.process_count() == 1:
            return self.received is not None
        if not at_logging_step:
            return False
        received = multihost_utils.process_allgather(np.int32(self.received or 0))
        if self.received is None and received.any():
            self.received = int(received.max())
        return self.received is not None


def warn_on_collapse(step: int, scalars: dict, guard: ml_collections.ConfigDict):
    """Log a WARNING for each collapse metric of `scalars` below its floor in `guard`."""
    for key, value in scalars.items():
        for metric, field in COLLAPSE_FLOORS.items():
            if (key == metric or key.endswith("_" + metric)) and value < guard[field]:
                logging.warning("step %d: %s=%.4g is below config.guard.%s=%g: the "
                                "representation may be collapsing", step, key, value, field,
                                guard[field])
