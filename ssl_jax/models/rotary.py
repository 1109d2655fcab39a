"""Rotary position embeddings (Su et al., "RoFormer: Enhanced Transformer with Rotary
Position Embedding", arXiv:2104.09864).

Each query and key vector is split into halves (x1, x2) of size D/2 and rotated by
an angle that grows with its position t:

    theta_k = 10000^(-k / (D/2)),  k = 0 .. D/2 - 1
    rot(x, t) = [x1 cos(t theta) - x2 sin(t theta),  x1 sin(t theta) + x2 cos(t theta)]

so the dot product <rot(q, s), rot(k, t)> depends on the positions only through
s - t: attention sees relative positions, and no position parameters are learned.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn


def rotate(x: jax.Array, base: float = 10000.0) -> jax.Array:
    """`x` `[B, L, heads, D]` (D even) rotated by its position t = 0 .. L-1 along axis 1."""
    length, dim = x.shape[1], x.shape[-1]
    if dim % 2:
        raise ValueError(f"rotary position embeddings need an even head dimension, got {dim}")
    half = dim // 2
    theta = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = jnp.arange(length, dtype=jnp.float32)[:, None] * theta  # [L, D/2]
    cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x.dtype)


def rotary_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                     mask: jax.Array | None = None, dtype=None, precision=None) -> jax.Array:
    """Self-attention with queries and keys rotated by their positions (an `attention_fn`
    for `flax.linen.MultiHeadDotProductAttention`, which passes only the keyword
    arguments named in this signature); softmax in float32, no dropout."""
    return nn.dot_product_attention(rotate(query), rotate(key), value, mask=mask, dtype=dtype,
                                    precision=precision, force_fp32_for_softmax=True)
