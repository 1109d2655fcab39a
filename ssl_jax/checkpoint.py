"""Orbax checkpoints: periodic saves, keep-N, verified resume, and the pretrain -> finetune hand-off.

A checkpoint holds the whole `TrainState` (step, params, batch_stats, opt_state,
extra) and, beside it, a digest of the state (`state_digest`: BLAKE2b over every
leaf's path, dtype, shape and the BLAKE2b digests of its bytes in 8 MiB chunks,
which threads hash in parallel: the digest is the part of a save that blocks the
training loop). Orbax writes each step into a temporary directory and
renames it when complete, so a crash mid-save never leaves a checkpoint that
loads as if whole; the digest catches what the rename cannot: files damaged
after the save (a truncated or overwritten array file can still decode, to other
numbers). Resuming needs nothing else: the data order and the random keys are
functions of (seed, step).

Faults and what they do:
- a checkpoint that fails to load or to match its digest is moved aside to
  `<step>.corrupt` (kept for inspection, invisible to Orbax) and the run resumes
  from the previous one, with a warning naming both;
- a save that fails (a full disk) raises `SaveFailed` naming the step and the
  last complete checkpoint, which stays untouched (keep-N deletes old steps only
  after a new one is complete); partial temporary directories are removed at the
  next start.
"""

import concurrent.futures
import hashlib
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

CORRUPT_SUFFIX = ".corrupt"


class SaveFailed(RuntimeError):
    """A checkpoint could not be written; the last complete one is intact."""

    def __init__(self, step: int, directory: pathlib.Path, last_complete: int | None,
                 cause: BaseException):
        self.step, self.directory, self.last_complete = step, directory, last_complete
        kept = ("no checkpoint is complete yet" if last_complete is None
                else f"the last complete checkpoint is step {last_complete}")
        super().__init__(
            f"saving the checkpoint of step {step} in {directory} failed ({cause}); {kept}. "
            "Free space there (or move the workdir) and rerun the same command to resume")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint's files do not load, or do not match the digest saved with them."""


def _host_arrays(leaves) -> list[np.ndarray]:
    """The full values of `leaves` on this host (replicated arrays: the local copy), the
    device-to-host copies all started before the first is awaited."""
    def addressable(leaf):
        if isinstance(leaf, jax.Array):
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            if not leaf.is_fully_addressable:
                leaf = leaf.addressable_data(0)
        return leaf

    return [np.ascontiguousarray(x) for x in jax.device_get([addressable(x) for x in leaves])]


def _chunk_digests(value: np.ndarray, chunk_bytes: int) -> list[bytes]:
    """BLAKE2b digests of the bytes of `value` in consecutive `chunk_bytes` pieces."""
    data = memoryview(value.reshape(-1).view(np.uint8))
    return [hashlib.blake2b(data[start:start + chunk_bytes], digest_size=32).digest()
            for start in range(0, max(len(data), 1), chunk_bytes)]


DIGEST_ALGORITHM = "blake2b-chunks"
CHUNK_BYTES = 8 * 2**20


def state_digest(state, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex digest of a pytree: BLAKE2b over each leaf's path, dtype and shape followed by
    the BLAKE2b digests of its bytes in `chunk_bytes` pieces, hashed by a thread pool
    (hashlib releases the GIL), so its time falls with the host's cores."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    values = _host_arrays([leaf for _, leaf in flat])
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        chunks = [pool.submit(_chunk_digests, value, chunk_bytes) for value in values]
        digest = hashlib.blake2b(digest_size=32)
        for (path, _), value, leaf_chunks in zip(flat, values, chunks):
            digest.update(f"{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape}|"
                          .encode())
            digest.update(b"".join(leaf_chunks.result()))
    return digest.hexdigest()


def legacy_state_digest(state) -> str:
    """The digest of checkpoints saved before `DIGEST_ALGORITHM` (their digest file names
    no algorithm): one BLAKE2b over every leaf's path, dtype, shape and bytes."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    digest = hashlib.blake2b(digest_size=32)
    for (path, _), value in zip(flat, _host_arrays([leaf for _, leaf in flat])):
        digest.update(f"{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _abstract(tree):
    """Shape/dtype/sharding of every leaf: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore_verified(manager: ocp.CheckpointManager, step: int, template):
    """The state saved at `step`, checked against its digest; CorruptCheckpoint otherwise."""
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(template)), digest=ocp.args.JsonRestore()))
    except Exception as error:  # Orbax/TensorStore raise many kinds for damaged files.
        raise CorruptCheckpoint(f"does not load: {type(error).__name__}: "
                                f"{str(error).splitlines()[0][:300]}") from error
    saved = restored["digest"]
    digest_fn = (state_digest if saved.get("algorithm") == DIGEST_ALGORITHM
                 else legacy_state_digest)
    found = digest_fn(restored["state"])
    if found != saved["state"]:
        raise CorruptCheckpoint(f"has arrays that do not match the digest saved with them "
                                f"({found[:12]}... != {saved['state'][:12]}...)")
    return restored["state"]


class Checkpointer:
    """Periodic, asynchronous saves of a train state in `directory`."""

    def __init__(self, directory: str | pathlib.Path, every_steps: int, keep: int):
        self.directory = pathlib.Path(directory).absolute()
        self.every_steps = every_steps
        self._last_submitted: int | None = None
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=True,
                                                 cleanup_tmp_directories=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        """Whether `step` is a periodic save step (a multiple of `every_steps` > 0)."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def _save_failed(self, step: int, error: BaseException) -> SaveFailed:
        self.manager.reload()  # What is complete on disk now.
        return SaveFailed(step, self.directory, self.manager.latest_step(), error)

    def check_for_errors(self):
        """Raise SaveFailed if an asynchronous save has failed since the last check."""
        try:
            self.manager.check_for_errors()
        except Exception as error:  # The error of the save thread, re-raised here.
            raise self._save_failed(self._last_submitted, error) from error

    def maybe_save(self, step: int, state, force: bool = False) -> bool:
        """Save at multiples of `every_steps` (or when forced); returns whether it saved.

        Raises SaveFailed when this save, or an earlier asynchronous one, fails.
        """
        if not force and not self.due(step):
            return False
        if self.manager.latest_step() == step:
            return False
        self.check_for_errors()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  digest=ocp.args.JsonSave({"state": state_digest(state),
                                                          "algorithm": DIGEST_ALGORITHM}))
        try:
            saved = self.manager.save(step, args=args, force=True)
        except Exception as error:  # Orbax re-raises an earlier async failure here too.
            raise self._save_failed(self._last_submitted or step, error) from error
        self._last_submitted = step
        return saved

    def _set_aside(self, step: int, reason: CorruptCheckpoint) -> pathlib.Path:
        """Rename a corrupt step directory so that Orbax no longer lists it."""
        source = self.directory / str(step)
        target = source.with_name(source.name + CORRUPT_SUFFIX)
        n = 1
        while target.exists():
            n += 1
            target = source.with_name(f"{source.name}{CORRUPT_SUFFIX}{n}")
        if jax.process_index() == 0:
            source.rename(target)
        ocp.multihost.sync_global_processes(f"ssl_jax_set_aside_{step}")
        logging.warning("checkpoint step %d in %s %s; moved it to %s and trying the previous "
                        "one", step, self.directory, reason, target.name)
        self.manager.reload()
        return target

    def restore_latest(self, template):
        """The latest intact saved state shaped like `template`, or None when there is none.

        Corrupt checkpoints on the way are set aside (`<step>.corrupt`) with a warning;
        when none is left the run starts afresh, and the warning says so.
        """
        set_aside = []
        while (step := self.manager.latest_step()) is not None:
            try:
                return _restore_verified(self.manager, step, template)
            except CorruptCheckpoint as reason:
                set_aside.append(self._set_aside(step, reason))
        if set_aside:
            logging.warning("no intact checkpoint left in %s (set aside: %s): starting from "
                            "step 0", self.directory, ", ".join(p.name for p in set_aside))
        return None

    def close(self):
        """Wait for the saves in flight; SaveFailed if one of them failed."""
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as error:
            raise self._save_failed(self._last_submitted, error) from error
        finally:
            self.manager.close()


def load_latest(directory: str | pathlib.Path, template):
    """Restore the latest checkpoint of another run (the hand-off between stages).

    Raises FileNotFoundError naming `directory` when it holds no checkpoint, and
    CorruptCheckpoint when the latest one is damaged (rerunning the stage that
    wrote it sets it aside and resumes from the previous one).
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
        try:
            return _restore_verified(manager, step, template)
        except CorruptCheckpoint as reason:
            raise CorruptCheckpoint(
                f"checkpoint step {step} in {directory} {reason}: rerun the stage that wrote "
                "it, which sets it aside and resumes from the previous one") from reason
