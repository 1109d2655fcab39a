"""Decoders from a code `[B, D]` back to an image `[B, H, W, C]`, mirroring an encoder.

The second half of an auto-encoder (Hinton & Salakhutdinov, "Reducing the
Dimensionality of Data with Neural Networks", Science 2006; Vincent et al.,
"Extracting and Composing Robust Features with Denoising Autoencoders", ICML
2008). The image shape `(H, W, C)` is given at call time (the shape of the
encoder's input), so one decoder serves any image size. The output is linear
(no sigmoid): it reconstructs normalised pixels, which are not bounded to [0, 1].

`MLPDecoder` mirrors `MLPEncoder(widths)`: the hidden widths in reverse, each
Dense -> BatchNorm -> ReLU, then a Dense to H*W*C values reshaped to the image.
For widths (512, 256, 64) on MNIST: 64 -> 256 -> 512 -> 784.

`ConvDecoder` mirrors `ConvNet(widths)`: a Dense (-> BN -> ReLU) to an
`h0 x w0 x widths[-1]` map with h0 = ceil(H / 2^n), w0 = ceil(W / 2^n) for
n = len(widths); then per width in reverse, a nearest-neighbour 2x upsampling
and two (3x3 conv -> BN -> ReLU), the mirror of ConvNet's stage (two convs,
then a 2x2 pool); then a 3x3 conv to C channels. When 2^n does not divide the
image side (28 x 28 MNIST with three stages: 4 -> 8 -> 16 -> 32) the map is
resized (bilinear, antialiased) to exactly H x W at the end. Its convolutions take their
gradients from `conv_backward`, as the encoder's.

`build_decoder` picks the mirror of the backbone named by `config.model.name`.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.models import DTYPES, conv_backward


def _batch_norm(train: bool, dtype: Any) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype)


class MLPDecoder(nn.Module):
    """`[B, D]` codes -> `[B, H, W, C]` images; `widths` are the encoder's."""

    widths: Sequence[int] = (512, 256, 64)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, code: jax.Array, image_shape: Sequence[int], train: bool) -> jax.Array:
        x = code.astype(self.dtype)
        for width in reversed(self.widths[:-1]):
            x = nn.Dense(width, use_bias=False, dtype=self.dtype)(x)
            x = nn.relu(_batch_norm(train, self.dtype)(x))
        x = nn.Dense(math.prod(image_shape), dtype=self.dtype)(x)
        return x.reshape(x.shape[0], *image_shape)


class ConvDecoder(nn.Module):
    """`[B, D]` codes -> `[B, H, W, C]` images; `widths` are the encoder's (module docstring)."""

    widths: Sequence[int] = (32, 64, 128)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, code: jax.Array, image_shape: Sequence[int], train: bool) -> jax.Array:
        height, width, channels = image_shape
        scale = 2 ** len(self.widths)
        h0, w0 = math.ceil(height / scale), math.ceil(width / scale)
        x = nn.Dense(h0 * w0 * self.widths[-1], use_bias=False, dtype=self.dtype)(
            code.astype(self.dtype))
        x = nn.relu(_batch_norm(train, self.dtype)(x))
        x = x.reshape(x.shape[0], h0, w0, self.widths[-1])
        for stage_width in reversed(self.widths):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            for _ in range(2):
                x = nn.Conv(stage_width, (3, 3), use_bias=False, dtype=self.dtype,
                            conv_general_dilated=conv_backward.conv_general_dilated)(x)
                x = nn.relu(_batch_norm(train, self.dtype)(x))
        x = nn.Conv(channels, (3, 3), dtype=self.dtype,
                    conv_general_dilated=conv_backward.conv_general_dilated)(x)
        if x.shape[1:3] != (height, width):
            x = jax.image.resize(x, (x.shape[0], height, width, channels), "linear")
        return x


DECODERS = {"convnet": ConvDecoder, "mlp": MLPDecoder}


def build_decoder(config: ml_collections.ConfigDict) -> nn.Module:
    """The mirror of the backbone of `config` (the `config.model` section), unbound."""
    if config.name not in DECODERS:
        raise ValueError(f"config.model.name={config.name!r}: no decoder mirrors this backbone; "
                         f"the auto-encoders need one of {sorted(DECODERS)}")
    return DECODERS[config.name](widths=tuple(config.widths), dtype=DTYPES[config.dtype])
