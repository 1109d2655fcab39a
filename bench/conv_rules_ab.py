r"""A/B of the convolution gradients in one process: `conv_backward`'s against JAX's own.

    OMP_WAIT_POLICY=PASSIVE python bench/conv_rules_ab.py --config configs/simclr_cifar10.py \
        --config.input.batch_size=128 --blocks 5 --steps 2

Builds the ssl_jax train step of `bench/step_throughput.py` ("aug excluded": identity views,
one resident batch of random images) twice: once as the models run it, with
`ssl_jax.models.conv_backward`'s gradients, and once with `lax.conv_general_dilated`'s own
rules (the module attribute swapped while that step is traced). Then `--blocks` rounds of
`--steps` steps of each alternate, so drift in the machine's speed hits both alike:

    speed-up = t_step(lax rules) / t_step(conv_backward), per round; mean ± std over rounds

A step through `jax.transfer_guard("disallow")`, as step_throughput.py.
"""

import os
import sys

import jax
import numpy as np
import torch
from absl import app

from ssl_jax.models import conv_backward

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_throughput  # noqa: E402  (a sibling script, not a package)
from machine import machine  # noqa: E402

# step_throughput.py's flags (its import defines them): --config (and overrides), --blocks,
# --steps.
_CONFIG, _BLOCKS, _STEPS = step_throughput._CONFIG, step_throughput._BLOCKS, step_throughput._STEPS


def build_steps(config) -> dict:
    """{"lax": step with JAX's rules, "conv_backward": the step as the models run it}."""
    dataset = step_throughput.random_dataset(config)
    config = step_throughput.identity_views(config)
    ours = conv_backward.conv_general_dilated
    steps = {}
    try:
        conv_backward.conv_general_dilated = jax.lax.conv_general_dilated
        steps["lax"] = step_throughput.JaxStep(config, dataset)
    finally:
        conv_backward.conv_general_dilated = ours
    steps["conv_backward"] = step_throughput.JaxStep(config, dataset)
    return steps


def main(argv):
    del argv
    config = _CONFIG.value
    print(f"machine: {machine(torch.device('cpu'))}\ncommand: python {' '.join(sys.argv)}",
          flush=True)
    steps = build_steps(config)
    for step in steps.values():
        step.timed(1)  # warm-up
    ms = {k: [] for k in steps}
    for block in range(_BLOCKS.value):
        for k, step in steps.items():
            ms[k].append(1e3 * step.timed(_STEPS.value) / _STEPS.value)
        print(f"block {block}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in ms.items()),
              flush=True)
    speedup = np.asarray(ms["lax"]) / np.asarray(ms["conv_backward"])
    print(f"\n| B = {config.input.batch_size}, {_BLOCKS.value} blocks of {_STEPS.value} "
          "steps | JAX's rules (ms) | conv_backward (ms) | speed-up |\n|---|---|---|---|")
    cells = [f"{np.mean(ms[k]):.0f} ± {np.std(ms[k]):.0f}" for k in ("lax", "conv_backward")]
    print(f"| {config.method.name} {config.model.name} | {cells[0]} | {cells[1]} | "
          f"{speedup.mean():.2f} ± {speedup.std():.2f} |")


if __name__ == "__main__":
    app.run(main)
