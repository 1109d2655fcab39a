"""Backbone registry: `config.model` -> a Flax module `(x, train) -> [B, feature_dim]`.

Fields of `config.model` (every config has all of them, see `default_model_config`):
  name                convnet | mlp | resnet18 | resnet50 | vit_ti | vit_s | vit_b | vit |
                      text_transformer
  dtype               computation dtype, 'float32' or 'bfloat16' (params stay float32)
  widths              convnet: channels per stage; mlp: hidden sizes, the last is the bottleneck
  stem                resnet: 'cifar' (3x3, stride 1, no pool) or 'imagenet' (7x7/2 + pool)
  width               resnet: channels of the first stage (64 = the standard network);
                      vit: token width (the named variants fix width, depth, num_heads);
                      text_transformer: token width
  depth, num_heads    vit, text_transformer: number of blocks and attention heads (a ViT
                      of any size, e.g. the small ones a CPU can pretrain)
  zero_init_residual  resnet: zero the last BN scale of each residual block
  patch_size          vit: side of the square patches (must divide the image size)
  pool                vit, text_transformer: 'cls' (first token) or 'gap' (mean of the
                      patch tokens / of the non-padding tokens)
  posemb              vit: 'learn' or 'sincos2d' (fixed); text_transformer: 'learn' or
                      'rope' (rotary)
  vocab_size          text_transformer: number of token ids (the tokenizer's vocab_size;
                      default 260, the byte tokenizer's)
  causal              text_transformer: causal self-attention (GPT) or not (BERT)
  remat               resnet, vit, text_transformer: recompute each block's activations in
                      the backward pass instead of storing them (`nn.remat`): less memory
                      where it binds, for about one more forward pass of compute

Each backbone reads only the fields listed in its `Backbone.fields` (plus name
and dtype) and ignores the others, so one config section serves every backbone.
"""

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from ssl_jax.models.convnet import ConvNet
from ssl_jax.models.mlp import MLPEncoder
from ssl_jax.models.resnet import resnet18, resnet50
from ssl_jax.models.text_transformer import BYTE_VOCAB_SIZE, TextTransformer
from ssl_jax.models.vit import VARIANTS, ViT

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A registry entry: the module constructor and the config fields passed to it."""

    make: Callable[..., nn.Module]
    fields: tuple[str, ...]


_RESNET_FIELDS = ("stem", "width", "zero_init_residual", "remat")
_VIT_FIELDS = ("patch_size", "pool", "posemb", "remat")
_VIT_SIZE_FIELDS = ("width", "depth", "num_heads")

BACKBONES = {
    "convnet": Backbone(ConvNet, ("widths",)),
    "mlp": Backbone(MLPEncoder, ("widths",)),
    "resnet18": Backbone(resnet18, _RESNET_FIELDS),
    "resnet50": Backbone(resnet50, _RESNET_FIELDS),
    "vit_ti": Backbone(functools.partial(ViT, **VARIANTS["ti"]), _VIT_FIELDS),
    "vit_s": Backbone(functools.partial(ViT, **VARIANTS["s"]), _VIT_FIELDS),
    "vit_b": Backbone(functools.partial(ViT, **VARIANTS["b"]), _VIT_FIELDS),
    "vit": Backbone(ViT, _VIT_FIELDS + _VIT_SIZE_FIELDS),
    "text_transformer": Backbone(
        TextTransformer, ("vocab_size", "pool", "posemb", "causal", "remat") + _VIT_SIZE_FIELDS),
}


def _check_name(name: str):
    if name not in BACKBONES:
        raise ValueError(f"config.model.name={name!r}: unknown backbone; "
                         f"expected one of {sorted(BACKBONES)}")


def _field(value: Any) -> Any:
    """Config values as module attributes: lists (e.g. from the command line) -> tuples."""
    return tuple(value) if isinstance(value, list) else value


POSITION_EMBEDDINGS = {"vit": ("learn", "sincos2d"), "text_transformer": ("learn", "rope")}


def check_config(config: ml_collections.ConfigDict, image_sizes: dict[str, int]):
    """ValueError naming the `config.model` field a backbone cannot be built with.

    `image_sizes`: the image sides the backbone will see, by the config field that sets
    them (`config.input.image_size`, a view's `out_size`), for the patch-size check.
    """
    width = build_backbone(config).feature_dim  # Checks the name and dtype.
    fields = BACKBONES[config.name].fields
    family = "text_transformer" if config.name == "text_transformer" else "vit"
    if "posemb" in fields and config.posemb not in POSITION_EMBEDDINGS[family]:
        raise ValueError(f"config.model.posemb={config.posemb!r}: the {config.name} backbone "
                         f"takes one of {list(POSITION_EMBEDDINGS[family])}")
    if "num_heads" in fields and config.width % config.num_heads:
        raise ValueError(f"config.model.width={config.width} is not divisible by "
                         f"config.model.num_heads={config.num_heads}")
    if "posemb" in fields and config.posemb == "sincos2d" and width % 4:
        raise ValueError(f"config.model.posemb='sincos2d' needs config.model.width divisible "
                         f"by 4, got {width}")
    if "posemb" in fields and config.posemb == "rope" and (width // config.num_heads) % 2:
        raise ValueError(f"config.model.posemb='rope' needs an even head width: "
                         f"config.model.width={width} / num_heads={config.num_heads} is odd")
    if "patch_size" in fields:
        for field, size in image_sizes.items():
            if size % config.patch_size:
                raise ValueError(f"config.model.patch_size={config.patch_size} does not divide "
                                 f"{field}={size}")


def build_backbone(config: ml_collections.ConfigDict) -> nn.Module:
    """The backbone named by `config.name` (the `config.model` section), unbound."""
    _check_name(config.name)
    if config.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={config.dtype!r}: expected one of {sorted(DTYPES)}")
    entry = BACKBONES[config.name]
    return entry.make(dtype=DTYPES[config.dtype],
                      **{field: _field(config[field]) for field in entry.fields})


def feature_dim(config: ml_collections.ConfigDict) -> int:
    """Dimension of the backbone's pooled features, without building any parameters."""
    return build_backbone(config).feature_dim


def default_model_config(name: str = "convnet") -> ml_collections.ConfigDict:
    """Every `config.model` field with its default, for the backbone `name` (`vit`: the
    ViT-Ti size; `text_transformer`: 4 blocks of 128 with 4 heads over byte tokens,
    mean-pooled)."""
    _check_name(name)
    config = ml_collections.ConfigDict(dict(
        name=name, dtype="float32", widths=(32, 64, 128), stem="cifar",
        width=VARIANTS["ti"]["width"] if name == "vit" else 64, zero_init_residual=False,
        patch_size=16, pool="cls", posemb="learn", depth=VARIANTS["ti"]["depth"],
        num_heads=VARIANTS["ti"]["num_heads"], vocab_size=0, causal=False, remat=False))
    if name == "text_transformer":
        config.update(dict(width=128, depth=4, num_heads=4, pool="gap",
                           vocab_size=BYTE_VOCAB_SIZE))
    return config
