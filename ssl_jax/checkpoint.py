"""Orbax checkpoints: periodic saves, keep-N, resume, and the pretrain -> finetune hand-off.

A checkpoint holds the whole `TrainState` (step, params, batch_stats, opt_state,
extra). Orbax writes each step into a temporary directory and renames it when
complete, so a crash mid-save never leaves a checkpoint that loads as if whole.
Resuming needs nothing else: the data order and the random keys are functions
of (seed, step).
"""

import pathlib

import jax
import orbax.checkpoint as ocp


def _abstract(tree):
    """Shape/dtype/sharding of every leaf: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Periodic, asynchronous saves of a train state in `directory`."""

    def __init__(self, directory: str | pathlib.Path, every_steps: int, keep: int):
        self.directory = pathlib.Path(directory).absolute()
        self.every_steps = every_steps
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        """Whether `step` is a periodic save step (a multiple of `every_steps` > 0)."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def maybe_save(self, step: int, state, force: bool = False) -> bool:
        """Save at multiples of `every_steps` (or when forced); returns whether it saved."""
        if not force and not self.due(step):
            return False
        if self.manager.latest_step() == step:
            return False
        return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, template):
        """The latest saved state shaped like `template`, or None when there is none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        return self.manager.restore(step, args=ocp.args.StandardRestore(_abstract(template)))

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def load_latest(directory: str | pathlib.Path, template):
    """Restore the latest checkpoint of another run (the hand-off between stages).

    Raises FileNotFoundError naming `directory` when it holds no checkpoint.
    """
    directory = pathlib.Path(directory).absolute()
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist: run the "
                                "'pretrain' stage first or point the config at its checkpoints")
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            create=False, read_only=True)) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {directory}")
        return manager.restore(step, args=ocp.args.StandardRestore(_abstract(template)))
