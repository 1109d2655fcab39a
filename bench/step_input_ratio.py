r"""Is the input pipeline ever the bottleneck? SimCLR steps/s fed by the real pipeline
divided by steps/s on one batch already resident on the device.

    python bench/step_input_ratio.py --config configs/simclr_cifar10.py \
        --config.input.batch_size=128 --blocks 3 --steps 10

Both loops run the same jitted step with the same state shapes. The "pipeline"
loop takes every batch from `pipeline.batches()` through `sharding.DevicePrefetcher`
(host slicing, host-to-device copy, prefetch thread), as `train.train` does; the
"resident" loop reuses one device batch. Blocks of the two alternate, so drift in
the machine's speed (other jobs, thermal) hits both; the ratio is reported per
block pair and as mean ± std. Goal (issue #3): ratio >= 0.95.
"""

import itertools
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_BLOCKS = flags.DEFINE_integer("blocks", 3, "Alternating block pairs.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per block.")
flags.mark_flags_as_required(["config"])


def timed(step_fn, state, batches, steps: int):
    """Run `steps` steps; seconds from the first dispatch to the last result."""
    start = time.perf_counter()
    for _, batch in zip(range(steps), batches):
        state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - start


def main(argv):
    del argv
    from ssl_jax import sharding, train, validate
    from ssl_jax.data import sources

    config = _CONFIG.value
    validate.validate(config)
    dataset = sources.load(config.input)
    run = train.build(config, dataset)
    state = train.init_state(run)
    step_fn = train.make_step(run)
    resident = sharding.to_global(next(run.pipeline.batches(0)), run.mesh)
    state, compile_seconds = timed(step_fn, state, itertools.repeat(resident), 1)
    prefetcher = sharding.DevicePrefetcher(run.pipeline.batches(1), run.mesh,
                                           config.input.prefetch)
    ratios = []
    try:
        for block in range(_BLOCKS.value):
            state, t_resident = timed(step_fn, state, itertools.repeat(resident), _STEPS.value)
            state, t_pipeline = timed(step_fn, state, prefetcher, _STEPS.value)
            ratios.append(t_resident / t_pipeline)
            print(f"block {block}: resident {_STEPS.value / t_resident:.3f} steps/s, "
                  f"pipeline {_STEPS.value / t_pipeline:.3f} steps/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    finally:
        prefetcher.close()
    batch = config.input.batch_size
    print(f"\n| config | global batch | devices | first step (compile) | ratio pipeline / "
          f"resident |\n|---|---|---|---|---|\n| {config.model.name} {config.input.dataset} | "
          f"{batch} | {run.mesh.size} | {compile_seconds:.1f} s | "
          f"{np.mean(ratios):.3f} ± {np.std(ratios):.3f} ({len(ratios)} blocks of "
          f"{_STEPS.value} steps) |")


if __name__ == "__main__":
    app.run(main)
