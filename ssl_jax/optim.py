"""Optimizers (LARS, AdamW, SGD) with bias/norm masks, and warmup-cosine schedules.

Weight decay (and, for LARS, the trust-ratio adaptation) applies only to
parameters with more than one dimension: kernels and embeddings. Biases and the
scales/offsets of BatchNorm/LayerNorm are excluded, as in BYOL's
`exclude_bias_and_norm`, Barlow Twins and MoCo v3 ("no weight decay or rate
scaling for parameters <= 1-D").
"""

import functools
import math

import jax
import ml_collections
import optax

OPTIMIZERS = ("lars", "adamw", "sgd")
LR_SCALINGS = ("linear", "sqrt", "none")


def decay_mask(params):
    """True for the leaves that get weight decay: parameters with ndim > 1."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def scaled_learning_rate(optim: ml_collections.ConfigDict, global_batch_size: int) -> float:
    """Peak learning rate from the base rate and the global batch size.

    'linear': base * B / 256 (Goyal et al. 2017; BYOL, MAE, Barlow Twins).
    'sqrt':   base * sqrt(B) (SimCLR appendix B.1, e.g. 0.075 * sqrt(4096)).
    'none':   base.
    """
    if optim.lr_scaling == "linear":
        return optim.lr * global_batch_size / 256
    if optim.lr_scaling == "sqrt":
        return optim.lr * math.sqrt(global_batch_size)
    if optim.lr_scaling == "none":
        return optim.lr
    raise ValueError(f"config.optim.lr_scaling={optim.lr_scaling!r}: expected one of {LR_SCALINGS}")


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int,
                  final_fraction: float = 0.0) -> optax.Schedule:
    """Linear warmup 0 -> peak over `warmup_steps`, then cosine decay to `final_fraction * peak`.

    lr(t) = peak * t / W                                   for t < W
    lr(t) = peak * (f + (1 - f) * (1 + cos(pi * (t - W) / (T - W))) / 2)   otherwise
    """
    warmup_steps = min(warmup_steps, total_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1), end_value=peak * final_fraction)


def base_optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
    """The optimizer named by `config.optim.name` with masked weight decay (module docstring)."""
    name = optim.name
    if name == "lars":
        return optax.lars(schedule, weight_decay=optim.weight_decay,
                          weight_decay_mask=decay_mask, trust_coefficient=optim.trust_coefficient,
                          trust_ratio_mask=decay_mask, momentum=optim.momentum)
    if name == "adamw":
        return optax.adamw(schedule, b1=optim.b1, b2=optim.b2,
                           weight_decay=optim.weight_decay, mask=decay_mask)
    if name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(optim.weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov))
    raise ValueError(f"config.optim.name={name!r}: unknown optimizer; expected one of {OPTIMIZERS}")


def build_optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule,
                    peak_lr: float | None = None) -> optax.GradientTransformation:
    """The optimizer of `config.optim`, following `schedule`, with two parameter groups:

    frozen       paths containing a fragment of `optim.frozen`: never updated, no
                 weight decay. MoCo v3 keeps a ViT's random patch projection fixed
                 for stability (Chen, Xie, He 2021, sec. 4.2): `("patch_embed",)`.
    constant_lr  paths containing a fragment of `optim.constant_lr`: the same
                 optimizer at the constant rate `peak_lr`, no warm-up or decay.
                 SimSiam's `--fix-pred-lr` (Chen & He 2021, sec. 4.3): `("predictor",)`.

    Fields read: name, weight_decay, momentum (lars, sgd), nesterov (sgd),
    trust_coefficient (lars), b1, b2 (adamw), grad_clip_norm (0 disables; over all
    gradients), frozen, constant_lr.
    """
    groups = {"train": base_optimizer(optim, schedule)}
    if optim.constant_lr:
        if peak_lr is None:
            raise ValueError("config.optim.constant_lr needs the peak learning rate")
        groups["constant_lr"] = base_optimizer(optim, optax.constant_schedule(peak_lr))
    if optim.frozen:
        groups["frozen"] = optax.set_to_zero()
    tx = groups["train"]
    if len(groups) > 1:
        tx = optax.multi_transform(groups, functools.partial(
            parameter_groups, frozen=optim.frozen, constant_lr=optim.constant_lr))
    if optim.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx


def param_path(path) -> str:
    """A parameter's path as "module/submodule/name"."""
    return "/".join(str(getattr(key, "key", key)) for key in path)


def parameter_groups(params, frozen=(), constant_lr=()) -> dict:
    """"frozen", "constant_lr" or "train" for each parameter, by path fragments
    (`build_optimizer`); frozen wins over constant_lr."""
    def group(path, _):
        name = param_path(path)
        if any(f in name for f in frozen):
            return "frozen"
        if any(f in name for f in constant_lr):
            return "constant_lr"
        return "train"
    return jax.tree_util.tree_map_with_path(group, params)


def default_optim_config() -> ml_collections.ConfigDict:
    """Every optimizer field with a default; configs override what they need."""
    return ml_collections.ConfigDict(dict(
        name="lars", lr=0.3, lr_scaling="linear", weight_decay=1e-6, momentum=0.9,
        nesterov=False, trust_coefficient=0.001, b1=0.9, b2=0.999, grad_clip_norm=0.0,
        frozen=(), constant_lr=()))
