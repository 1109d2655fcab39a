"""Label-free health checks of a representation, logged during pretraining.

RankMe (Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing the downstream
performance of pretrained self-supervised representations by their rank",
ICML 2023, arXiv:2210.02885): the effective rank of a batch of embeddings
Z `[N, D]` with singular values sigma_1..sigma_min(N,D),

    p_k = sigma_k / ||sigma||_1 + eps,   RankMe(Z) = exp(-sum_k p_k log p_k)

between 1 (every embedding on one line) and min(N, D) (a flat spectrum); eps = 1e-7.

Collapse alarm (SimSiam, Chen & He 2021, arXiv:2011.10566, sec. 4.1): the std
over the batch of each dimension of the l2-normalised embeddings, averaged over
dimensions. Complete collapse gives 0; embeddings spread like a Gaussian give
about 1/sqrt(D). Reported with its ratio to 1/sqrt(D).
"""

import contextlib
import contextvars

import jax
import jax.numpy as jnp

from ssl_jax.losses import l2_normalize

RANKME_EPS = 1e-7
_RANK_WHEN: contextvars.ContextVar = contextvars.ContextVar("rank_when", default=None)


@contextlib.contextmanager
def rank_only_when(predicate: jax.Array):
    """Within it, `representation_metrics` computes RankMe only where the traced bool
    `predicate` holds and gives NaN elsewhere, through `lax.cond`, whose other branch does
    not run. The trainer passes "this step is logged": the two SVDs are read only then,
    and on a GPU an SVD (cuSOLVER) of a `[2B, D]` batch costs milliseconds every step."""
    token = _RANK_WHEN.set(predicate)
    try:
        yield
    finally:
        _RANK_WHEN.reset(token)


def rankme(embeddings: jax.Array, eps: float = RANKME_EPS) -> jax.Array:
    """exp(entropy of the l1-normalised singular values) of `[N, D]` embeddings, float32."""
    sigma = jnp.linalg.svd(embeddings.astype(jnp.float32), compute_uv=False)
    p = sigma / jnp.maximum(jnp.sum(sigma), 1e-30) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def normalized_std(embeddings: jax.Array) -> jax.Array:
    """Mean over dimensions of the batch std of the l2-normalised embeddings."""
    return jnp.mean(jnp.std(l2_normalize(embeddings), axis=0))


def representation_metrics(features: jax.Array, embeddings: jax.Array) -> dict:
    """RankMe of backbone features and of embeddings; the collapse alarm of embeddings.

    Computed on stop-gradient inputs (monitoring only); RankMe NaN where `rank_only_when`
    says so."""
    features, embeddings = jax.lax.stop_gradient((features, embeddings))
    std = normalized_std(embeddings)

    def ranks():
        return rankme(features), rankme(embeddings)

    when = _RANK_WHEN.get()
    if when is None:
        rank_features, rank_embeddings = ranks()
    else:
        rank_features, rank_embeddings = jax.lax.cond(
            when, ranks, lambda: (jnp.float32(jnp.nan),) * 2)
    return {"rankme_features": rank_features, "rankme_embeddings": rank_embeddings,
            "embedding_std": std,
            "embedding_std_ratio": std * jnp.sqrt(jnp.float32(embeddings.shape[-1]))}
