"""Pure loss functions of the SSL methods, each with its formula and paper.

Every loss here is written on the *global* batch. The train step runs under
`jax.jit` over a device mesh with the batch sharded on `'data'`, so a matrix
product of all embeddings against all embeddings already sees the negatives of
every device; XLA inserts the collectives. No hand-written `all_gather`.

Logits are computed in float32 whatever the compute dtype of the model, and
masked entries use a large finite constant (not `-inf`, which gives NaN when it
meets a zero one-hot weight).
"""

import jax
import jax.numpy as jnp
import optax

# SimCLR's official code subtracts this on the self-similarity diagonal.
LARGE_NUM = 1e9


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) along `axis`, computed in float32."""
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
    """Normalised-temperature cross-entropy (NT-Xent) of SimCLR.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020 (arXiv:2002.05709), eq. (1).

    With the 2N views u = [z1; z2], l2-normalised, s_ij = u_i . u_j:

        l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )
        L = 1/(2N) sum_{k=1..N} [ l(k, k+N) + l(k+N, k) ]

    The positive stays in the denominator; only the self-similarity is removed.
    This is the paper's mean over 2N anchors; the official TF code sums the two
    directions (2x this value), which only rescales the learning rate.

    Args:
      z1, z2: `[N, D]` embeddings of two views of the same N examples.
      temperature: tau > 0.

    Returns:
      Scalar float32 loss.
    """
    n = z1.shape[0]
    u = l2_normalize(jnp.concatenate([z1, z2], axis=0))
    logits = (u @ u.T) / temperature
    logits = logits - LARGE_NUM * jnp.eye(2 * n, dtype=logits.dtype)
    positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return optax.softmax_cross_entropy_with_integer_labels(logits, positives).mean()


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and accuracy for integer labels (float32)."""
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, accuracy
