"""Exponential moving averages of parameter pytrees, with per-step decay schedules.

The target (teacher / momentum / key) network of BYOL, MoCo, DirectPred and
I-JEPA is an EMA of the online network, updated after each optimizer step:

    target <- tau_k * target + (1 - tau_k) * online

written as `target + (1 - tau_k) (online - target)`, as in BYOL's code. The
decay tau_k grows over the K steps of the run (per step, not per epoch):

    cosine  tau_k = 1 - (1 - tau_0) (cos(pi k / K) + 1) / 2
            BYOL (Grill et al. 2020, arXiv:2006.07733, sec. 3.2), MoCo v3
            (Chen, Xie, He 2021, arXiv:2104.02057): tau_0 -> 1 at k = K.
            With `final` < 1: tau_k = final - (final - tau_0)(cos(pi k/K) + 1)/2.
    linear  tau_k = tau_0 + (final - tau_0) k / K   (I-JEPA, Assran et al. 2023,
            arXiv:2301.08243: 0.996 -> 1.0)
    constant tau_k = tau_0                           (MoCo v2: m = 0.999; DirectPred)

Config (`config.method.ema`): `base` (tau_0), `final`, `schedule`.
"""

import jax
import jax.numpy as jnp
import ml_collections

SCHEDULES = ("cosine", "linear", "constant")


def decay(ema_config: ml_collections.ConfigDict, step: jax.Array, total_steps: int) -> jax.Array:
    """tau at `step` of a `total_steps` run (module docstring), float32."""
    base, final, schedule = ema_config.base, ema_config.final, ema_config.schedule
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    if schedule == "cosine":
        return final - (final - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
    if schedule == "linear":
        return base + (final - base) * progress
    if schedule == "constant":
        return jnp.asarray(base, jnp.float32)
    raise ValueError(f"config.method.ema.schedule={schedule!r}: expected one of {SCHEDULES}")


def update(target, online, tau: jax.Array):
    """target + (1 - tau) (online - target), leaf by leaf, in each leaf's dtype."""
    return jax.tree.map(lambda t, o: t + ((1.0 - tau) * (o - t)).astype(t.dtype), target, online)


def check(ema_config: ml_collections.ConfigDict):
    """ValueError naming the field unless 0 <= base <= final <= 1 and the schedule is known."""
    if ema_config.schedule not in SCHEDULES:
        raise ValueError(f"config.method.ema.schedule={ema_config.schedule!r}: expected one of "
                         f"{SCHEDULES}")
    if not 0.0 <= ema_config.base <= ema_config.final <= 1.0:
        raise ValueError(f"config.method.ema: base={ema_config.base}, final={ema_config.final}; "
                         "need 0 <= base <= final <= 1")
