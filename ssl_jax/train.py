"""The one generic train loop: every method plugs into it through `methods.base.Method`.

    mesh -> data -> method, optimizer, state -> (resume) -> jitted steps -> logs, checkpoints

The step is a single `jax.jit` over a device mesh: the batch is sharded on
`'data'`, the state is replicated and donated. The step's random key is
`fold_in(key(seed), step)` and the data of step s is a function of (seed, s), so
a run stopped and resumed from a checkpoint ends with exactly the parameters of
an uninterrupted one. `guards` (config.guard) stops the loop cleanly on SIGTERM /
SIGINT (`Preempted`, after a checkpoint), skips or stops at a non-finite step
(`NonFiniteLoss`), and warns when the representation collapses.
"""

import dataclasses
import functools
import itertools
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from ssl_jax import checkpoint, diagnostics, guards, methods, metrics, optim, sharding
from ssl_jax.data import loader
from ssl_jax.data.sources import ArrayDataset
from ssl_jax.state import TrainState

# Raised by `train`: a signal stopped it after a checkpoint; a step was not finite.
Preempted = guards.Preempted
NonFiniteLoss = guards.NonFiniteLoss


@dataclasses.dataclass
class Run:
    """What a training run is built from, and its state once trained."""

    config: ml_collections.ConfigDict
    method: methods.Method
    mesh: jax.sharding.Mesh
    pipeline: loader.Pipeline
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    total_steps: int
    init_rng: jax.Array
    train_rng: jax.Array
    state: TrainState | None = None


def check_vocab_size(model_config: ml_collections.ConfigDict, dataset: ArrayDataset):
    """ValueError naming `config.model.vocab_size` when a token id of the data is outside it."""
    largest = max(int(x.max(initial=0)) for x in (dataset.train_inputs, dataset.test_inputs))
    if largest >= model_config.vocab_size:
        raise ValueError(f"config.model.vocab_size={model_config.vocab_size}: the data has token "
                         f"id {largest}; set it to at least {largest + 1} (the tokenizer's "
                         "vocab_size)")


def build(config: ml_collections.ConfigDict, dataset: ArrayDataset | None,
          unlabeled_inputs: np.ndarray | None = None) -> Run:
    """Mesh, method, training stream, optimizer and schedule of a run (no state yet).

    `dataset`: the in-memory arrays to train on; None for a streamed dataset
    (`config.input.dataset == "tfds"`), whose stream then also gives the class count.
    `unlabeled_inputs`: inputs without labels that every batch also draws from
    (self-training, `loader.train_pipeline`).
    """
    mesh = sharding.make_mesh(config.mesh.num_devices)
    sharding.check_batch_size(config.input.batch_size, mesh)
    if dataset is not None and dataset.input_key == "tokens":
        check_vocab_size(config.model, dataset)
    pipeline = loader.train_pipeline(config, dataset, unlabeled_inputs)
    s = config.schedule
    total_steps = s.steps if s.steps > 0 else pipeline.steps_for_epochs(s.epochs)
    method = methods.build(config, (dataset or pipeline).num_classes, total_steps)
    warmup_steps = round(s.warmup_epochs * pipeline.steps_per_epoch)
    peak = optim.scaled_learning_rate(config.optim, config.input.batch_size)
    schedule = optim.warmup_cosine(peak, total_steps, warmup_steps, s.final_lr_fraction)
    init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
    return Run(config, method, mesh, pipeline, optim.build_optimizer(config.optim, schedule, peak),
               schedule, total_steps, init_rng, train_rng)


def init_state(run: Run, rng: jax.Array | None = None) -> TrainState:
    """Fresh parameters and optimizer state, replicated over the mesh."""
    def init(rng, batch):
        v = run.method.init(rng, batch)
        return TrainState(step=jnp.zeros((), jnp.int32), params=v["params"],
                          batch_stats=v["batch_stats"], opt_state=run.tx.init(v["params"]),
                          extra=v["extra"])

    batch = sharding.to_global(loader.zeros_like_spec(run.pipeline.spec()), run.mesh)
    rng = run.init_rng if rng is None else rng
    return jax.jit(init, out_shardings=sharding.replicated(run.mesh))(rng, batch)


def loss_and_grads(method: methods.Method, state: TrainState, batch: dict, rng: jax.Array):
    """loss, (batch_stats, extra, metrics), d loss / d params: the differentiable part of a step."""
    def loss_fn(params):
        return method.loss(params, state.variables(), batch, rng, state.step)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return loss, aux, grads


def is_logged(config: ml_collections.ConfigDict, steps_done, last_step: int):
    """Whether the loop logs the metrics of the step that brings the count to `steps_done`:
    every `config.log.every_steps` steps and at `last_step`."""
    return (steps_done % config.log.every_steps == 0) | (steps_done == last_step)


def train_step(run: Run, state: TrainState, batch: dict,
               last_step: int | None = None) -> tuple[TrainState, dict]:
    """One optimizer step on a global batch; pure, jitted by `make_step`.

    Its metrics hold `finite` (loss and gradients finite); with
    `config.guard.on_nonfinite == "skip"` a non-finite step keeps the old state. RankMe
    (`diagnostics`) is computed only at the steps `is_logged` names, with `last_step`
    (default: the run's last) the step the loop ends at; NaN at the others.
    """
    rng = jax.random.fold_in(run.train_rng, state.step)
    logged = is_logged(run.config, state.step + 1,
                       run.total_steps if last_step is None else last_step)
    with diagnostics.rank_only_when(logged):
        loss, (batch_stats, extra, step_metrics), grads = loss_and_grads(
            run.method, state, batch, rng)
    updates, opt_state = run.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    variables = run.method.after_step(
        dict(params=params, batch_stats=batch_stats, extra=extra), state.step)
    new_state = TrainState(step=state.step + 1, opt_state=opt_state, **variables)
    grad_norm = optax.tree.norm(grads)
    finite = guards.is_finite(loss, grad_norm)
    if run.config.guard.on_nonfinite == "skip":
        new_state = guards.skip_if_not_finite(finite, new_state, state)
    step_metrics = dict(step_metrics, loss=loss, learning_rate=run.schedule(state.step),
                        grad_norm=grad_norm, finite=finite)
    return new_state, step_metrics


def make_step(run: Run, last_step: int | None = None):
    """`train_step` jitted over the mesh, with the old state's buffers donated."""
    replicated = sharding.replicated(run.mesh)
    return jax.jit(functools.partial(train_step, run, last_step=last_step), donate_argnums=0,
                   out_shardings=(replicated, replicated))


def replace_backbone(state: TrainState, backbone: dict) -> TrainState:
    """Put pretrained backbone params/batch_stats into a fresh state (fine-tuning init).

    The fresh optimizer state depends only on parameter shapes, so it stays valid.
    """
    params = dict(state.params, backbone=backbone["params"])
    batch_stats = dict(state.batch_stats)
    if backbone["batch_stats"]:
        batch_stats["backbone"] = backbone["batch_stats"]
    return state.replace(params=params, batch_stats=batch_stats)


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          dataset: ArrayDataset | None, *, init_backbone: dict | None = None,
          unlabeled_inputs: np.ndarray | None = None, stop_at_step: int | None = None,
          on_step: Callable[[int, TrainState], None] | None = None) -> Run:
    """Train (or resume) a run in `workdir`; returns it with its final state.

    Args:
      init_backbone: `{'params', 'batch_stats'}` of a pretrained backbone to start from.
      unlabeled_inputs: inputs without labels drawn beside `dataset` (self-training).
      stop_at_step: stop (with a checkpoint) after this step, as a preemption would;
        the schedule still spans the whole run, so a restart continues it exactly.
      on_step: called as `on_step(steps_done, state)` after every step, before the loop
        checks for signals, logs or saves: a hook for tests (inject a fault, inspect a
        state). The state's buffers are donated to the next step: copy what you keep.

    Raises:
      Preempted: SIGTERM or SIGINT arrived; the checkpoint of the step it ended is saved.
      NonFiniteLoss: a step was not finite and `config.guard.on_nonfinite == "stop"`.
      checkpoint.SaveFailed: a checkpoint could not be written (a full disk); the last
        complete one is intact and a rerun resumes from it.
    """
    workdir = pathlib.Path(workdir)
    run = build(config, dataset, unlabeled_inputs)
    state = init_state(run)
    if init_backbone is not None:
        state = replace_backbone(state, init_backbone)
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", config.checkpoint.every_steps,
                                   config.checkpoint.keep)
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state = restored
        logging.info("resumed from %s at step %d", ckpt.directory, int(state.step))
    start = int(state.step)
    end = run.total_steps if stop_at_step is None else min(stop_at_step, run.total_steps)
    step_fn = make_step(run, last_step=end)
    writer = metrics.MetricWriter(workdir)
    progress = metrics.ProgressLine(run.total_steps, run.pipeline.global_batch_size, start)
    nonfinite = guards.NonFiniteGuard(config.guard.on_nonfinite)
    batches = sharding.DevicePrefetcher(
        itertools.islice(run.pipeline.batches(start), end - start), run.mesh,
        config.input.prefetch)
    try:
        with guards.StopSignals() as signals:
            for step, batch in zip(range(start, end), batches):
                state, step_metrics = step_fn(state, batch)
                done = step + 1
                nonfinite.record(done, step_metrics)
                if on_step is not None:
                    on_step(done, state)
                logging_step = bool(is_logged(config, done, end))
                stopping = signals.stop_requested(logging_step)
                if logging_step or ckpt.due(done) or stopping:
                    nonfinite.check(ckpt)  # Before any save: never save a non-finite state.
                    ckpt.check_for_errors()  # A failed async save stops the run here.
                if logging_step:
                    scalars = jax.device_get(step_metrics)
                    if nonfinite.action == "skip":
                        scalars["skipped_steps"] = nonfinite.skipped
                    writer.write(done, {**scalars, **progress.update(done, scalars)})
                    guards.warn_on_collapse(done, scalars, config.guard)
                if stopping:
                    break
                ckpt.maybe_save(done, state)
            nonfinite.check(ckpt)
            ckpt.maybe_save(int(state.step), state, force=True)
    finally:
        batches.close()
        ckpt.close()  # Waits for the saves in flight.
        writer.close()
    if signals.received is not None:
        preempted = Preempted(int(state.step), ckpt.directory, signals.received)
        logging.warning("%s", preempted)
        raise preempted
    run.state = state
    return run
