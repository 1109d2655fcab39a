"""A multi-layer perceptron encoder for small images (MNIST-sized), e.g. 784-512-256-64.

The image is flattened to a vector, then every width but the last is a hidden
layer (Dense -> BatchNorm -> ReLU) and the last width is the bottleneck: a plain
linear Dense layer, whose output is the code, i.e. the features:

    h_0 = flatten(x),   h_l = relu(BN(W_l h_{l-1}))   (l < L),   code = W_L h_{L-1}

The encoder of the fully connected auto-encoders (Hinton & Salakhutdinov,
"Reducing the Dimensionality of Data with Neural Networks", Science 2006;
Vincent et al., "Extracting and Composing Robust Features with Denoising
Autoencoders", ICML 2008), with BatchNorm (Ioffe & Szegedy, ICML 2015,
arXiv:1502.03167) in the hidden layers.

Why the bottleneck has neither BatchNorm nor ReLU: a ReLU would clip every
negative code value to 0, and a unit that stays negative on all inputs would
carry nothing to the decoder or to the probes (a dead code dimension); a
BatchNorm there would standardise each code dimension over the batch, which the
decoders and projector heads already do after their first Dense, so it would
mostly make each example's code depend on the rest of the batch. The code is a
linear map of the last hidden layer (the linear bottleneck of PCA-like
auto-encoders), without a bias: the first Dense of whatever reads the code
(decoder, projector, probe) has its own bias or feeds a BatchNorm, so a bias
here would be redundant (with a BatchNorm after, it gets no gradient at all).

BatchNorm: Flax momentum 0.9 (= PyTorch 0.1), eps 1e-5, as in `ConvNet`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPEncoder(nn.Module):
    """`[B, H, W, C]` normalised images -> `[B, widths[-1]]` codes."""

    widths: Sequence[int] = (512, 256, 64)
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype).reshape(x.shape[0], -1)
        for width in self.widths[:-1]:
            x = nn.Dense(width, use_bias=False, dtype=self.dtype)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype)(x)
            x = nn.relu(x)
        return nn.Dense(self.widths[-1], use_bias=False, dtype=self.dtype)(x)
