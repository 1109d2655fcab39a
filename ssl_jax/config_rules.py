"""Type and range rules for the config's leaf fields, applied wherever a field appears.

A rule is looked up by the longest dotted suffix of the field's path that has one
(`log.every_steps`, `ema.base`, or the last key alone: `hidden_dim`, wherever a
head, a view or a task has one), so
`method.view.crop_scale`, `finetune.view.crop_scale` and
`method.tasks.simclr.view.crop_scale` share one rule. Each rule raises a
ValueError naming the field (`config.method.view.crop_scale=(0.5,): ...`).
Cross-field constraints (the patch size divides the image, a mask leaves some
context) belong to the method and backbone checks that `validate` calls after these.
"""

import math
from collections.abc import Callable
from typing import Any

import ml_collections

Rule = Callable[[str, Any], None]


def _fail(field: str, value: Any, expected: str):
    raise ValueError(f"config.{field}={value!r}: {expected}")


def integer(low: int) -> Rule:
    """An int >= low (bools are not ints here)."""
    def check(field, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            _fail(field, value, f"expected an integer >= {low}")
    return check


def number(low: float, high: float = math.inf, low_open: bool = False,
           high_open: bool = False) -> Rule:
    """A finite number in the interval [low, high] (ends open when asked)."""
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(field, value):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < low or (low_open and value == low)
                or value > high or (high_open and value == high)):
            _fail(field, value, f"expected a finite number in {interval}")
    return check


def ordered_pair(low: float, high: float = math.inf) -> Rule:
    """(a, b) with low < a <= b <= high: a range to sample from."""
    def check(field, value):
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
                or not low < value[0] <= value[1] <= high):
            _fail(field, value, f"expected (low, high) with {low} < low <= high <= {high}")
    return check


def each(rule: Rule, length: int | None = None, nonempty: bool = False) -> Rule:
    """A tuple whose every item passes `rule` (of `length` items, or at least one)."""
    def check(field, value):
        if not isinstance(value, (tuple, list)):
            _fail(field, value, "expected a tuple")
        if length is not None and len(value) != length:
            _fail(field, value, f"expected {length} values")
        if nonempty and not value:
            _fail(field, value, "expected at least one value")
        for i, item in enumerate(value):
            rule(f"{field}[{i}]", item)
    return check


def text(field, value):
    if not isinstance(value, str):
        _fail(field, value, "expected a string")


def one_of(*choices: str) -> Rule:
    def check(field, value):
        if value not in choices:
            _fail(field, value, f"expected one of {sorted(choices)}")
    return check


POSITIVE = integer(1)
COUNT = integer(0)
PROBABILITY = number(0.0, 1.0)
NON_NEGATIVE = number(0.0)
POSITIVE_REAL = number(0.0, low_open=True)

RULES: dict[str, Rule] = {
    # Sizes and counts.
    "batch_size": POSITIVE, "image_size": POSITIVE, "out_size": POSITIVE, "width": POSITIVE,
    "depth": POSITIVE, "num_heads": POSITIVE, "patch_size": POSITIVE, "hidden_dim": POSITIVE,
    "out_dim": POSITIVE, "num_layers": POSITIVE, "widths": each(POSITIVE, nonempty=True),
    "queue_size": POSITIVE, "bn_splits": POSITIVE, "num_targets": POSITIVE,
    "min_context": POSITIVE, "keep": POSITIVE, "probe_steps": POSITIVE, "prefetch": COUNT,
    "shuffle_buffer": POSITIVE, "train_limit": COUNT, "seq_len": COUNT, "text_stride": COUNT,
    "vocab_size": COUNT, "max_predictions": COUNT, "gap": COUNT, "jitter": COUNT,
    "steps": COUNT, "labels_per_class": COUNT, "unlabeled_ratio": POSITIVE,
    "log.every_steps": POSITIVE, "checkpoint.every_steps": COUNT,
    "directpred.every_steps": POSITIVE, "mesh.num_devices": integer(-1),
    # Probabilities and fractions.
    "flip_prob": PROBABILITY, "jitter_prob": PROBABILITY, "grayscale_prob": PROBABILITY,
    "blur_prob": PROBABILITY, "solarize_prob": PROBABILITY, "mask_prob": PROBABILITY,
    "replace_prob": PROBABILITY, "random_prob": PROBABILITY,
    "final_lr_fraction": PROBABILITY, "text_val_fraction": number(0.0, 1.0, high_open=True),
    "mask_ratio": number(0.0, 1.0, low_open=True, high_open=True),
    "blur_kernel_fraction": number(0.0, 1.0, low_open=True),
    "ema.base": PROBABILITY, "ema.final": PROBABILITY, "rho": PROBABILITY,
    "momentum": PROBABILITY, "threshold": PROBABILITY,
    "b1": number(0.0, 1.0, high_open=True), "b2": number(0.0, 1.0, high_open=True),
    "per_view.blur_prob": each(PROBABILITY, length=2),
    "per_view.solarize_prob": each(PROBABILITY, length=2),
    # Non-negative reals.
    "lr": POSITIVE_REAL, "weight_decay": NON_NEGATIVE, "grad_clip_norm": NON_NEGATIVE,
    "epochs": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE, "temperature": POSITIVE_REAL,
    "loss_scale": POSITIVE_REAL, "trust_coefficient": POSITIVE_REAL, "eps": NON_NEGATIVE,
    "weight": NON_NEGATIVE, "invariance_weight": NON_NEGATIVE, "variance_weight": NON_NEGATIVE,
    "covariance_weight": NON_NEGATIVE, "off_diagonal_weight": NON_NEGATIVE,
    "unlabeled_weight": NON_NEGATIVE,
    "brightness": NON_NEGATIVE, "contrast": NON_NEGATIVE, "saturation": NON_NEGATIVE,
    "hue": number(0.0, 0.5),
    "min_embedding_std_ratio": NON_NEGATIVE, "min_rankme": NON_NEGATIVE,
    # Ranges to sample from.
    "crop_scale": ordered_pair(0.0, 1.0), "crop_ratio": ordered_pair(0.0),
    "blur_sigma": ordered_pair(0.0), "context_scale": ordered_pair(0.0, 1.0),
    "target_scale": ordered_pair(0.0, 1.0), "target_aspect": ordered_pair(0.0),
    # Normalisation and parameter-name patterns.
    "mean": each(number(-math.inf), nonempty=True),
    "std": each(POSITIVE_REAL, nonempty=True),
    "frozen": each(text), "constant_lr": each(text),
    # Backbone choices (which backbone reads which field: ssl_jax.models).
    "model.pool": one_of("cls", "gap"), "model.stem": one_of("cifar", "imagenet"),
    "model.posemb": one_of("learn", "sincos2d", "rope"),
}

# Sections whose leaves are checked (`eval` is checked by its stages).
SECTIONS = ("input", "model", "method", "optim", "schedule", "mesh", "guard", "checkpoint",
            "log", "finetune", "self_train")


def leaves(config: ml_collections.ConfigDict, prefix: str = ""):
    """(dotted path, value) of every leaf under `config`, paths starting with `prefix`."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def check_leaves(config: ml_collections.ConfigDict):
    """Apply `RULES` to every leaf of `SECTIONS`: ValueError naming the first bad field."""
    for section in SECTIONS:
        for path, value in leaves(config[section], section + "."):
            keys = path.split(".")
            rule = next((RULES[suffix] for suffix in (".".join(keys[i:]) for i in range(len(keys)))
                         if suffix in RULES), None)
            if rule is not None:
                rule(path, value)
    if config.mesh.num_devices == 0:
        _fail("mesh.num_devices", 0, "expected -1 (every device) or a positive count")
