"""Heads on top of a backbone: the projector/predictor MLP and a linear classifier.

`MLPHead`: (Dense -> BN -> ReLU) x (num_layers - 1) -> Dense [-> BN without
affine]. SimCLR's projector g (Chen et al., ICML 2020; BN in every layer as the
official code), BYOL's projector and predictor (Grill et al., NeurIPS 2020),
and with `last_bn` MoCo v3's heads (Chen, Xie, He, ICCV 2021: the output BN
has no learnable scale or offset). `LinearClassifier`: one Dense layer to
class logits, for probes and fine-tuning.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPHead(nn.Module):
    """`[B, D]` -> `[B, out_dim]`; `num_layers=1` is a single Dense.

    `use_bias` sets whether the Dense layers carry a bias; a Dense followed by
    BN never does (the BN offset makes it redundant).
    """

    hidden_dim: int
    out_dim: int
    num_layers: int = 2
    use_bn: bool = True
    last_bn: bool = False
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.num_layers < 1:
            raise ValueError(f"MLPHead num_layers={self.num_layers}: must be >= 1")
        for _ in range(self.num_layers - 1):
            x = nn.Dense(self.hidden_dim, use_bias=self.use_bias and not self.use_bn,
                         dtype=self.dtype)(x)
            if self.use_bn:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype)(x)
            x = nn.relu(x)
        x = nn.Dense(self.out_dim, use_bias=self.use_bias and not self.last_bn,
                     dtype=self.dtype)(x)
        if self.last_bn:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             use_scale=False, use_bias=False, dtype=self.dtype)(x)
        return x


class LinearClassifier(nn.Module):
    """`[B, D]` features -> `[B, num_classes]` float32 logits (one Dense, computed in `dtype`)."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
