"""A small convnet for tiny images (8x8 digits, 28x28 MNIST, 32x32 CIFAR).

Stages of two (3x3 conv -> BatchNorm -> ReLU) followed by a 2x2 max-pool (the
pool is skipped once the feature map is 2x2 or smaller), then global average
pooling. Feature dimension = the last width. A VGG-style encoder (Simonyan &
Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015) scaled down for CPU-sized experiments.

BatchNorm: Flax momentum 0.9 (= PyTorch 0.1), eps 1e-5, no `axis_name` (under
`jax.jit` over a mesh the batch statistics are already global). Convolutions take their
gradients from `conv_backward` (the same values, arranged for XLA:CPU).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import conv_backward


class ConvNet(nn.Module):
    """`[B, H, W, C]` normalised images -> `[B, widths[-1]]` features."""

    widths: Sequence[int] = (32, 64, 128)
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        for width in self.widths:
            for _ in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False, dtype=self.dtype,
                            conv_general_dilated=conv_backward.conv_general_dilated)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype)(x)
                x = nn.relu(x)
            if min(x.shape[1:3]) > 2:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return jnp.mean(x, axis=(1, 2))
