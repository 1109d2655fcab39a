"""ResNet-18 / ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

ResNet-18: BasicBlock (two 3x3 convs) x [2, 2, 2, 2]; ResNet-50: Bottleneck
(1x1 -> 3x3 -> 1x1, expansion 4, stride on the 3x3 as torchvision's "v1.5")
x [3, 4, 6, 3]. Stage widths `width * (1, 2, 4, 8)`; a block that changes the
shape gets a strided 1x1 conv + BN shortcut (option B). The head is global
average pooling (no fc): features of dimension 512 (R18) or 2048 (R50) times
`width / 64`.

Two stems:
  'cifar'     3x3 conv, stride 1, no max-pool: the variant every CIFAR SSL result
              uses (SimCLR, Chen et al. 2020, appendix B.9); the ImageNet stem
              throws away 3/4 of a 32x32 image's resolution before any block.
  'imagenet'  7x7 conv, stride 2, then a 3x3 stride-2 max-pool.

As torchvision: explicit symmetric padding, Kaiming-normal (fan_out) conv init,
and optionally `zero_init_residual` (the last BN scale of each block starts at
zero, so each residual branch starts at zero; Goyal et al. 2017). BatchNorm:
Flax momentum 0.9 (= PyTorch 0.1), eps 1e-5, no `axis_name` (under `jax.jit`
over a mesh the statistics are already global, i.e. synchronised BN).

Convolutions use `conv_backward.conv_general_dilated`: lax's convolution, whose gradients on
the CPU avoid XLA:CPU's slow copies and base-dilated loops (same values; see that module).

`remat=True` recomputes each block's activations in the backward pass instead of
keeping them (`nn.remat`): less memory for about one more forward pass.
"""

import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import conv_backward

# torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out),
# untruncated.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

STEMS = ("cifar", "imagenet")


def _last_scale_init(zero_init_residual: bool) -> Callable:
    return nn.initializers.zeros if zero_init_residual else nn.initializers.ones


def _shortcut(x: jax.Array, out_channels: int, strides: int, conv: Callable, norm: Callable
              ) -> jax.Array:
    """Identity, or a strided 1x1 conv + BN where the shape changes (option B)."""
    if x.shape[-1] == out_channels and strides == 1:
        return x
    x = conv(out_channels, (1, 1), strides, name="shortcut_conv")(x)
    return norm(name="shortcut_norm")(x)


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, + shortcut, ReLU."""

    width: int
    strides: int
    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]
    zero_init_residual: bool
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.width, (3, 3), self.strides, padding=1)(x)
        y = nn.relu(self.norm()(y))
        y = self.conv(self.width, (3, 3), padding=1)(y)
        y = self.norm(scale_init=_last_scale_init(self.zero_init_residual))(y)
        return nn.relu(y + _shortcut(x, self.width, self.strides, self.conv, self.norm))


class Bottleneck(nn.Module):
    """1x1 conv -> BN -> ReLU -> 3x3 (strided) -> BN -> ReLU -> 1x1 (x4) -> BN, + shortcut, ReLU."""

    width: int
    strides: int
    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]
    zero_init_residual: bool
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_channels = self.width * self.expansion
        y = self.conv(self.width, (1, 1))(x)
        y = nn.relu(self.norm()(y))
        y = self.conv(self.width, (3, 3), self.strides, padding=1)(y)
        y = nn.relu(self.norm()(y))
        y = self.conv(out_channels, (1, 1))(y)
        y = self.norm(scale_init=_last_scale_init(self.zero_init_residual))(y)
        return nn.relu(y + _shortcut(x, out_channels, self.strides, self.conv, self.norm))


class ResNet(nn.Module):
    """`[B, H, W, C]` normalised images -> `[B, feature_dim]` pooled features."""

    stage_sizes: Sequence[int]
    block: type[BasicBlock] | type[Bottleneck]
    stem: str = "cifar"
    width: int = 64
    zero_init_residual: bool = False
    remat: bool = False
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return self.width * 2 ** (len(self.stage_sizes) - 1) * self.block.expansion

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.stem not in STEMS:
            raise ValueError(f"ResNet stem={self.stem!r}: expected one of {list(STEMS)}")
        conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                                 conv_general_dilated=conv_backward.conv_general_dilated)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype)
        x = x.astype(self.dtype)
        if self.stem == "cifar":
            x = conv(self.width, (3, 3), padding=1, name="stem_conv")(x)
            x = nn.relu(norm(name="stem_norm")(x))
        else:
            x = conv(self.width, (7, 7), 2, padding=3, name="stem_conv")(x)
            x = nn.relu(norm(name="stem_norm")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        block = nn.remat(self.block) if self.remat else self.block
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                x = block(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                          conv=conv, norm=norm, zero_init_residual=self.zero_init_residual,
                          name=f"stage{i + 1}_block{j}")(x)
        return jnp.mean(x, axis=(1, 2))


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (BasicBlock x [2, 2, 2, 2]); kwargs: stem, width, zero_init_residual, remat,
    dtype."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (Bottleneck x [3, 4, 6, 3]); kwargs: stem, width, zero_init_residual, remat,
    dtype."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, **kwargs)
