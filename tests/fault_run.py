"""A training run with a fault injected at a chosen step, in a process of its own.

    python tests/fault_run.py WORKDIR OUT_NPZ [--kill-after K] [--fill-disk-after K FILLER]
                                             [--limit-file-size-after K]

Trains the quickstart smoke config (SimCLR on the 8x8 digits) for 12 steps,
checkpoints every 3 (keep 2), logs every 2, in WORKDIR. It prints
`started at step S` once the first step has run (S = the step it resumed from),
and at the end writes the final parameters and optimizer state to OUT_NPZ.

Faults, after step K (before that step's logging and checkpoint):
  --kill-after K          SIGKILL to itself: no handler, no flush, no save.
  --fill-disk-after K F   once the latest due checkpoint is complete on disk, writes
                          the file F until the disk is full (ENOSPC).
  --limit-file-size-after K
                          lowers RLIMIT_FSIZE to 0 (SIGXFSZ ignored), so every write that
                          grows a file fails (EFBIG): a full disk where no tmpfs can be mounted.
An exception from the run is printed as `FAILED <type>: <message>` (exit status 3).
"""

import argparse
import os
import pathlib
import resource
import signal
import sys
import time
import traceback

import jax
import numpy as np

from ssl_jax import train
from ssl_jax.config import load_config_file
from ssl_jax.data import sources

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, EVERY = 12, 3


def config():
    config = load_config_file(str(REPO / "configs" / "quickstart.py"), "runlocal")
    config.schedule.steps = STEPS
    config.checkpoint.every_steps = EVERY
    config.checkpoint.keep = 2
    config.log.every_steps = 2
    return config


def wait_for_checkpoint(directory: pathlib.Path, step: int, timeout_s: float = 60.0):
    """Until `directory/step` is a complete (renamed, not temporary) checkpoint."""
    deadline = time.monotonic() + timeout_s
    while not (directory / str(step) / "_CHECKPOINT_METADATA").is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"checkpoint {step} not complete in {directory}")
        time.sleep(0.05)


def fill_disk(filler: pathlib.Path):
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 65536)
    except OSError as error:
        print("disk full:", error, flush=True)
    try:
        while True:  # The last partial blocks too.
            os.write(descriptor, b"\0")
    except OSError:
        pass
    os.close(descriptor)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--kill-after", type=int)
    parser.add_argument("--fill-disk-after", nargs=2)
    parser.add_argument("--limit-file-size-after", type=int)
    args = parser.parse_args()

    def on_step(done: int, state):
        if not hasattr(on_step, "started"):
            on_step.started = True
            print(f"started at step {done - 1}", flush=True)
        if done == args.kill_after:
            print(f"SIGKILL after step {done}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if args.fill_disk_after and done == int(args.fill_disk_after[0]):
            wait_for_checkpoint(args.workdir / "checkpoints", done // EVERY * EVERY)
            fill_disk(pathlib.Path(args.fill_disk_after[1]))
        if done == args.limit_file_size_after:
            wait_for_checkpoint(args.workdir / "checkpoints", done // EVERY * EVERY)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            print("file size limit 0", flush=True)

    run_config = config()
    try:
        run = train.train(run_config, args.workdir, sources.load(run_config.input),
                          on_step=on_step)
    except Exception as error:  # The test reads what the user would read.
        traceback.print_exc()
        print(f"FAILED {type(error).__name__}: {error}", flush=True)
        sys.exit(3)
    leaves = jax.tree.leaves(jax.device_get((run.state.params, run.state.opt_state)))
    np.savez(args.out, *leaves)
    print(f"finished at step {int(run.state.step)}", flush=True)


if __name__ == "__main__":
    main()
