"""Transformer over token ids: the encoder of BERT and the decoder of GPT.

    x      = Embed(tokens) (+ learned position embedding, posemb='learn')
    x      = Block^depth(x, mask); LayerNorm      pre-LN blocks, shared with the ViT
    mask   = key is not padding (and, causal=True, key position <= query position)
    pooled = x at position 0 (pool='cls', the `[CLS]` the data puts first) or the
             mean over non-padding positions (pool='gap')

BERT (Devlin et al., NAACL 2019, arXiv:1810.04805) is the bidirectional encoder;
GPT (Radford et al. 2018) the same stack with the causal mask. `posemb='rope'` uses
rotary embeddings (Su et al., arXiv:2104.09864) in every block instead of learned
positions. Padding is `data.tokenizers.PAD` = 0 and sits at the end of a
sequence (right padding), so a causal model's outputs at real tokens never depend
on it. `return_tokens=True` returns `(pooled, tokens [B, L, width])` for the
language-model heads. `remat=True` recomputes each block in the backward pass (as the ViT).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.vit import TransformerBlock, pool_tokens

PAD_ID = 0  # data.tokenizers.PAD; kept here so that models do not import the data layer.
BYTE_VOCAB_SIZE = 260  # data.tokenizers.ByteTokenizer: 4 special ids + 256 bytes.
POOLS = ("cls", "gap")
POSEMBS = ("learn", "rope")


class TextTransformer(nn.Module):
    """int `[B, L]` token ids -> `[B, width]` features (and optionally every token's state)."""

    vocab_size: int
    width: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    pool: str = "gap"
    posemb: str = "learn"
    causal: bool = False
    remat: bool = False
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return self.width

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool, return_tokens: bool = False
                 ) -> jax.Array | tuple[jax.Array, jax.Array]:
        if self.vocab_size <= 0:
            raise ValueError(f"TextTransformer: vocab_size={self.vocab_size} "
                             "(config.model.vocab_size) must be positive")
        if self.pool not in POOLS:
            raise ValueError(f"TextTransformer pool={self.pool!r} (config.model.pool): expected "
                             f"one of {list(POOLS)}")
        if self.posemb not in POSEMBS:
            raise ValueError(f"TextTransformer posemb={self.posemb!r} (config.model.posemb): "
                             f"expected one of {list(POSEMBS)}")
        length = tokens.shape[1]
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                     dtype=self.dtype, name="embed")(tokens)
        if self.posemb == "learn":
            pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, length, self.width))
            x = x + pos.astype(self.dtype)
        valid = tokens != PAD_ID
        mask = valid[:, None, None, :]
        if self.causal:
            mask = mask & jnp.tril(jnp.ones((length, length), bool))[None, None]
        block = nn.remat(TransformerBlock) if self.remat else TransformerBlock
        for i in range(self.depth):
            x = block(self.num_heads, self.mlp_ratio, dtype=self.dtype,
                      rotary=self.posemb == "rope", name=f"block{i}")(x, mask)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        pooled = pool_tokens(x, valid, self.pool)
        return (pooled, x) if return_tokens else pooled
