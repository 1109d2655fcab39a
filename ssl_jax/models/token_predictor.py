"""A narrow Transformer that predicts the tokens at query positions of a patch grid from
the tokens seen at context positions: MAE's decoder and I-JEPA's predictor.

    h_c = Dense(width)(context) + pos[context_positions]        [B, Kc, width]
    h_q = mask_token + pos[query_positions]                     [B, Kq, width]
    [_, h_q] = LayerNorm(Block^depth([h_c; h_q]))
    out = Dense(out_dim)(h_q)                                   [B, Kq, out_dim]

`pos` are the fixed 2-D sin-cos embeddings of the `grid` (rows, cols) of patches,
raster order. With the context = the visible patches and the queries = the masked
ones this is MAE's decoder (He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, arXiv:2111.06377): MAE unshuffles the full sequence before
adding positions, which self-attention (permutation-equivariant once positions are
added) makes the same computation as the concatenation here. With the queries = one
target block it is I-JEPA's predictor (Assran et al., "Self-Supervised Learning from
Images with a Joint-Embedding Predictive Architecture", CVPR 2023, arXiv:2301.08243).

`context_valid` / `query_valid` (`[B, K]` bool, default all True) mark padding
entries: no token attends to them, so subsets of varying size share static shapes.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.vit import TransformerBlock, dense_init, sincos_2d


class MaskedTokenPredictor(nn.Module):

    grid: tuple[int, int]
    width: int = 192
    depth: int = 4
    num_heads: int = 3
    out_dim: int = 192
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, context: jax.Array, context_positions: jax.Array,
                 query_positions: jax.Array, context_valid: jax.Array | None = None,
                 query_valid: jax.Array | None = None) -> jax.Array:
        pos = jnp.asarray(sincos_2d(*self.grid, self.width), self.dtype)
        h_context = nn.Dense(self.width, dtype=self.dtype, kernel_init=dense_init,
                             name="embed")(context.astype(self.dtype)) + pos[context_positions]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,))
        h_query = mask_token.astype(self.dtype) + pos[query_positions]
        x = jnp.concatenate([h_context, h_query], axis=1)
        mask = None
        if context_valid is not None or query_valid is not None:
            ones = lambda positions: jnp.ones(positions.shape, bool)  # noqa: E731
            valid = jnp.concatenate([
                ones(context_positions) if context_valid is None else context_valid,
                ones(query_positions) if query_valid is None else query_valid], axis=1)
            mask = valid[:, None, None, :]
        for i in range(self.depth):
            x = TransformerBlock(self.num_heads, self.mlp_ratio, dtype=self.dtype,
                                 name=f"block{i}")(x, mask)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        queries = x[:, context.shape[1]:]
        return nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=dense_init,
                        name="predict")(queries).astype(jnp.float32)
