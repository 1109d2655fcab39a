"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

    patches  = Conv(p x p, stride p)(image)            [B, N, D], N = HW / p^2
    tokens   = patches + posemb                        learned, or fixed 2-D sin-cos
    tokens   = [CLS; tokens]                           only when pool='cls'
    tokens   = Block^depth(tokens); LayerNorm          pre-LN blocks
    feature  = tokens[:, 0] (pool='cls') or mean over tokens (pool='gap')

Position embeddings cover the patch tokens only (as big_vision; MAE adds the
patch positions before masking the same way). `posemb='sincos2d'` are the fixed
2-D sin-cos embeddings of MAE (He et al. 2022) and MoCo v3 (Chen et al. 2021).
`return_tokens=True` returns `(feature, tokens)` with every final token
(`[B, 1 + N, D]` with CLS first, or `[B, N, D]`), for MAE and I-JEPA.

Encoding a subset of the patches (MAE's visible patches, I-JEPA's context block):
`keep` `[B, K]` int indices into the N patches (raster order) selects, per
example, which patch tokens (with their position embeddings) enter the blocks;
`keep_valid` `[B, K]` bool marks padding entries (False) that no token attends
to and that 'gap' pooling skips, so subsets of varying size share one static
shape. The CLS token, when present, is always kept.

Variants (`VARIANTS`): Ti (192 wide, 12 deep, 3 heads), S (384, 12, 6),
B (768, 12, 12). `TransformerBlock` is shared with the text Transformer. `remat=True`
recomputes each block's activations in the backward pass instead of keeping them
(`nn.remat`): less memory for about one more forward pass.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.models.rotary import rotary_attention

VARIANTS = {
    "ti": dict(width=192, depth=12, num_heads=3),
    "s": dict(width=384, depth=12, num_heads=6),
    "b": dict(width=768, depth=12, num_heads=12),
}
POOLS = ("cls", "gap")
POSEMBS = ("learn", "sincos2d")

dense_init = nn.initializers.xavier_uniform()


class TransformerBlock(nn.Module):
    """Pre-LN block: x + MHSA(LN(x), mask); x + MLP(LN(x)), MLP = Dense -> GELU -> Dense.

    `mask` (broadcastable to `[B, heads, Lq, Lk]`, True = attend) allows causal
    or padding masks. The softmax runs in float32 whatever `dtype` is. `rotary`:
    queries and keys carry rotary position embeddings (`models.rotary`).
    """

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32
    rotary: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        width = x.shape[-1]
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, kernel_init=dense_init,
            attention_fn=(rotary_attention if self.rotary else functools.partial(
                nn.dot_product_attention, force_fp32_for_softmax=True)),
            name="attn")(y, y, mask=mask)
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
        y = nn.Dense(int(width * self.mlp_ratio), dtype=self.dtype, kernel_init=dense_init,
                     name="mlp_in")(y)
        y = nn.Dense(width, dtype=self.dtype, kernel_init=dense_init, name="mlp_out")(
            nn.gelu(y, approximate=False))
        return x + y


def pool_tokens(x: jax.Array, valid: jax.Array, pool: str) -> jax.Array:
    """`[B, N, D]` tokens -> `[B, D]`: the first token ('cls') or the mean of the tokens
    where bool `valid` `[B, N]` is True ('gap'; zeros when none is)."""
    if pool == "cls":
        return x[:, 0]
    weights = valid.astype(x.dtype)[:, :, None]
    return jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)


def sincos_2d(height: int, width: int, dim: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embeddings `[height * width, dim]`, rows in raster order.

    Columns: [sin(x w), cos(x w), sin(y w), cos(y w)], w_k = 10000^(-k / (dim / 4)),
    as MAE's `get_2d_sincos_pos_embed`.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega
    out_x = xs.reshape(-1, 1) * omega
    return np.concatenate([np.sin(out_x), np.cos(out_x), np.sin(out_y), np.cos(out_y)],
                          axis=1).astype(np.float32)


class ViT(nn.Module):
    """`[B, H, W, C]` normalised images -> `[B, width]` features (and optionally all tokens).

    H and W must be multiples of `patch_size`. `train` is accepted for the common
    backbone interface; the network has no dropout, so it changes nothing.
    """

    width: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 16
    mlp_ratio: float = 4.0
    pool: str = "cls"
    posemb: str = "learn"
    remat: bool = False
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return self.width

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, return_tokens: bool = False,
                 keep: jax.Array | None = None, keep_valid: jax.Array | None = None
                 ) -> jax.Array | tuple[jax.Array, jax.Array]:
        if self.pool not in POOLS:
            raise ValueError(f"ViT pool={self.pool!r}: expected one of {list(POOLS)}")
        if self.posemb not in POSEMBS:
            raise ValueError(f"ViT posemb={self.posemb!r}: expected one of {list(POSEMBS)}")
        height, width = x.shape[1:3]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"ViT: image size {height}x{width} is not divisible by the patch "
                             f"size {self.patch_size} (config.model.patch_size)")
        x = nn.Conv(self.width, (self.patch_size, self.patch_size), strides=self.patch_size,
                    padding="VALID", dtype=self.dtype, name="patch_embed")(x.astype(self.dtype))
        n, h, w, d = x.shape
        x = x.reshape(n, h * w, d)
        if self.posemb == "learn":
            pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w, d))
        else:
            pos = jnp.asarray(sincos_2d(h, w, d))[None]
        x = x + pos.astype(self.dtype)
        if keep is not None:
            x = jnp.take_along_axis(x, keep[:, :, None], axis=1)
        valid = jnp.ones(x.shape[:2], bool) if keep_valid is None else keep_valid
        if self.pool == "cls":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, d)), x], axis=1)
            valid = jnp.concatenate([jnp.ones((n, 1), bool), valid], axis=1)
        mask = None if keep_valid is None else valid[:, None, None, :]
        block = nn.remat(TransformerBlock) if self.remat else TransformerBlock
        for i in range(self.depth):
            x = block(self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i}")(x, mask)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        pooled = pool_tokens(x, valid, self.pool)
        return (pooled, x) if return_tokens else pooled
