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


def confident_pseudo_label_loss(weak_logits: jax.Array, strong_logits: jax.Array,
                                threshold: float) -> tuple[jax.Array, jax.Array]:
    """FixMatch's unlabelled loss (Sohn et al. 2020, arXiv:2001.07685, eq. 2) and the
    fraction of the batch it keeps.

        q_b = softmax(stop_gradient(weak_logits_b))
        l_u = 1 / (mu B) sum_b 1[max q_b >= tau] CE(argmax q_b, strong_logits_b)

    The mean runs over all mu B unlabelled rows, the unconfident ones included (as the
    paper's code does), so the loss grows with the share of confident pseudo-labels.
    With threshold 0 every row is kept: Lee's (2013) Pseudo-Label, hard targets
    recomputed at every step. Computed in float32.
    """
    probs = jax.nn.softmax(jax.lax.stop_gradient(weak_logits).astype(jnp.float32), axis=-1)
    keep = jnp.max(probs, axis=-1) >= threshold
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(
        strong_logits.astype(jnp.float32), jnp.argmax(probs, axis=-1))
    return jnp.mean(jnp.where(keep, cross_entropy, 0.0)), jnp.mean(keep)


# --------------------------------------------------------------------------------------
# Joint-embedding methods: BYOL, SimSiam, Barlow Twins, VICReg, MoCo v2 / v3.
#
# The matrix products below ask for `Precision.HIGHEST`: under the default precision a
# float32 matmul runs as TF32 on Ampere-and-later GPUs and as one bfloat16 pass on TPU,
# which is not the float32 arithmetic that the PyTorch reference code does (its matmuls
# are full float32 by default). These products are small next to the network.
# --------------------------------------------------------------------------------------

_HIGHEST = jax.lax.Precision.HIGHEST


def _rowwise_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """cos(p_i, z_i) for every row i of two `[N, D]` arrays, in float32 (shape `[N]`)."""
    return jnp.sum(l2_normalize(p) * l2_normalize(z), axis=-1)


def byol_regression(p: jax.Array, z: jax.Array) -> jax.Array:
    """Normalised regression loss of BYOL.

    Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
    Learning", NeurIPS 2020 (arXiv:2006.07733), eq. (2); official code
    `byol/utils/helpers.py: regression_loss`.

        l_i = || p_i / ||p_i|| - z_i / ||z_i|| ||_2^2 = 2 - 2 cos(p_i, z_i)
        L   = 1/N sum_i l_i

    This is one direction of the loss only. The caller passes the online prediction
    as `p` and the target projection as `z` wrapped in `jax.lax.stop_gradient`, and
    symmetrises: `byol_regression(p1, sg(z2)) + byol_regression(p2, sg(z1))`.

    Args:
      p: `[N, D]` online predictions.
      z: `[N, D]` target projections (already stop-gradiented by the caller).

    Returns:
      Scalar float32 loss in [0, 4].
    """
    return jnp.mean(2.0 - 2.0 * _rowwise_cosine(p, z))


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """Negative cosine similarity D(p, z) of SimSiam.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
    (arXiv:2011.10566), eq. (1):

        D(p, z) = -1/N sum_i < p_i / ||p_i||, z_i / ||z_i|| >

    One direction only. The caller stop-gradients `z` and symmetrises:
    `L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`.

    Args:
      p: `[N, D]` predictor outputs.
      z: `[N, D]` projections of the other view (already stop-gradiented by the caller).

    Returns:
      Scalar float32 loss in [-1, 1].
    """
    return -jnp.mean(_rowwise_cosine(p, z))


def _batch_standardize(z: jax.Array, eps: float) -> jax.Array:
    """BatchNorm without affine over axis 0, as torch `BatchNorm1d(affine=False)` in
    training mode: (z - mean) / sqrt(biased var + eps), in float32."""
    z = z.astype(jnp.float32)
    mean = jnp.mean(z, axis=0, keepdims=True)
    var = jnp.mean(jnp.square(z - mean), axis=0, keepdims=True)
    return (z - mean) / jnp.sqrt(var + eps)


def _off_diagonal_square_sum(m: jax.Array) -> jax.Array:
    """sum_{i != j} m_ij^2 of a square matrix. The diagonal is masked out rather than
    subtracted, which would cancel catastrophically when it is ~1 and the rest ~0."""
    off_diagonal = jnp.where(jnp.eye(m.shape[0], dtype=bool), 0.0, m)
    return jnp.sum(jnp.square(off_diagonal))


def barlow_twins(
    z1: jax.Array, z2: jax.Array, off_diagonal_weight: float, eps: float = 1e-5
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Redundancy-reduction loss of Barlow Twins.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", ICML 2021 (arXiv:2103.03230), eqs. (1)-(2), as the official
    code `facebookresearch/barlowtwins/main.py` computes it. With each branch
    batch-normalised over the (global) batch without affine parameters,

        zn_b = (z_b - mean_n z_b) / sqrt(var_n z_b + eps)     (biased variance)
        C    = zn_1^T zn_2 / N                                  `[D, D]`
        on   = sum_i (1 - C_ii)^2
        off  = sum_{i != j} C_ij^2
        L    = on + lambda * off

    The paper's lambda is 5e-3; the official code uses 0.0051. The off-diagonal term
    grows with D^2, so lambda is roughly 1/D. N is the global batch: under `jax.jit`
    over a mesh the mean/variance and the product above are global (the official code
    gets the same from SyncBatchNorm and an all-reduce of C).

    Args:
      z1, z2: `[N, D]` projections of two views of the same N examples.
      off_diagonal_weight: lambda.
      eps: added to the variance, as in torch `BatchNorm1d` (default 1e-5).

    Returns:
      (loss, {"on_diagonal": on, "off_diagonal": off}), all scalar float32; the parts
      are unweighted.
    """
    n = z1.shape[0]
    c = jnp.matmul(_batch_standardize(z1, eps).T, _batch_standardize(z2, eps),
                   precision=_HIGHEST) / n
    on = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
    off = _off_diagonal_square_sum(c)
    loss = on + off_diagonal_weight * off
    return loss, {"on_diagonal": on, "off_diagonal": off}


def vicreg(
    z1: jax.Array,
    z2: jax.Array,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Variance-Invariance-Covariance regularisation loss of VICReg.

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906), eqs. (1)-(6), as the
    official code `facebookresearch/vicreg/main_vicreg.py` computes it. For `[N, D]`
    embeddings, with zc_b = z_b - mean_n z_b:

        s   = 1/(N D) sum_{n,d} (z1_nd - z2_nd)^2
        std_b = sqrt( Var_{ddof=1}(z_b) + eps )                 per dimension, `[D]`
        v   = mean_d relu(gamma - std_1)/2 + mean_d relu(gamma - std_2)/2
        C_b = zc_b^T zc_b / (N - 1)                             `[D, D]`
        c   = sum_{i != j} C_1,ij^2 / D + sum_{i != j} C_2,ij^2 / D
        L   = lambda s + mu v + nu c          (lambda = mu = 25, nu = 1)

    Note the /2 in v: the official code averages the variance terms of the two
    branches, whereas the paper (eq. 6) and solo-learn sum them; with the same mu the
    official code's variance term is half the paper's. The covariance terms are summed,
    as in both. The variance is the unbiased one (ddof = 1, torch's default), and N is
    the global batch (the official code gathers the embeddings with gradient).

    Args:
      z1, z2: `[N, D]` expander outputs of two views of the same N examples, N >= 2.
      invariance_weight, variance_weight, covariance_weight: lambda, mu, nu.
      gamma: target standard deviation.
      eps: added to the variance inside the square root.

    Returns:
      (loss, {"invariance": s, "variance": v, "covariance": c}), all scalar float32;
      the parts are unweighted.

    Raises:
      ValueError: when N < 2 (the unbiased variance needs two examples).
    """
    n, d = z1.shape
    if n < 2:
        raise ValueError(
            f"vicreg needs a batch of at least 2 examples (unbiased variance), got batch size {n}")
    z1 = z1.astype(jnp.float32)
    z2 = z2.astype(jnp.float32)
    invariance = jnp.mean(jnp.square(z1 - z2))

    def variance_and_covariance(z):
        zc = z - jnp.mean(z, axis=0, keepdims=True)
        std = jnp.sqrt(jnp.sum(jnp.square(zc), axis=0) / (n - 1) + eps)
        cov = jnp.matmul(zc.T, zc, precision=_HIGHEST) / (n - 1)
        return jnp.mean(jax.nn.relu(gamma - std)), _off_diagonal_square_sum(cov) / d

    v1, c1 = variance_and_covariance(z1)
    v2, c2 = variance_and_covariance(z2)
    variance = v1 / 2 + v2 / 2
    covariance = c1 + c2
    loss = (invariance_weight * invariance + variance_weight * variance
            + covariance_weight * covariance)
    return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


def moco_infonce(q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float) -> jax.Array:
    """InfoNCE with a queue of negatives, of MoCo v1/v2.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual
    Representation Learning", CVPR 2020 (arXiv:1911.05722), eq. (1); Chen, Fan,
    Girshick, He, "Improved Baselines with Momentum Contrastive Learning"
    (arXiv:2003.04297). With q_i, k_i l2-normalised here and the queue's K keys
    already normalised:

        logits_i = [ q_i . k_i, q_i . queue_1, ..., q_i . queue_K ] / tau    `[1 + K]`
        L = 1/N sum_i -log softmax(logits_i)_0

    The caller stop-gradients `k` (momentum encoder) and enqueues the keys of the global
    batch after the step. The queue is used as given (not re-normalised).

    Args:
      q: `[N, D]` queries.
      k: `[N, D]` positive keys.
      queue: `[K, D]` l2-normalised negative keys.
      temperature: tau > 0.

    Returns:
      Scalar float32 loss.
    """
    q = l2_normalize(q)
    k = l2_normalize(k)
    positives = jnp.sum(q * k, axis=-1, keepdims=True)
    negatives = jnp.matmul(q, queue.astype(jnp.float32).T, precision=_HIGHEST)
    logits = jnp.concatenate([positives, negatives], axis=1) / temperature
    labels = jnp.zeros((q.shape[0],), dtype=jnp.int32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def moco_v3_contrastive(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
    """Contrastive loss ctr(q, k) of MoCo v3 (in-batch negatives, no queue).

    Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
    Transformers", ICCV 2021 (arXiv:2104.02057), Algorithm 1; official code
    `facebookresearch/moco-v3/moco/builder.py: contrastive_loss`. With q, k
    l2-normalised over the global batch of N:

        logits = q k^T / tau                                   `[N, N]`
        ctr(q, k) = 2 tau * 1/N sum_i -log softmax(logits_i)_i

    The factor 2 tau is the official code's (it keeps the gradient scale roughly
    independent of tau). The caller stop-gradients `k` (momentum encoder) and
    symmetrises: `ctr(q1, k2) + ctr(q2, k1)`.

    Args:
      q: `[N, D]` queries (predictor outputs).
      k: `[N, D]` keys of the other view.
      temperature: tau > 0.

    Returns:
      Scalar float32 loss.
    """
    q = l2_normalize(q)
    k = l2_normalize(k)
    logits = jnp.matmul(q, k.T, precision=_HIGHEST) / temperature
    labels = jnp.arange(q.shape[0])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return 2.0 * temperature * ce
