"""Weighted k-nearest-neighbour classifier on frozen features.

Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", CVPR 2018 (arXiv:1805.01978), section 3.4, as used by DINO's
`eval_knn.py` (Caron et al., ICCV 2021, arXiv:2104.14294):

    s_i     = cos(x, x_i)                      for the k nearest train points
    w_i     = exp(s_i / T)
    score_c = sum_{i in top-k} w_i * [y_i == c]
    y_hat   = argmax_c score_c
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from ssl_jax.losses import l2_normalize

_l2_normalize_jit = jax.jit(l2_normalize)


@functools.partial(jax.jit, static_argnames=("ks", "num_classes"))
def _knn_chunk(
    train_x: jax.Array,
    train_y: jax.Array,
    test_x: jax.Array,
    temperature: float,
    *,
    ks: tuple[int, ...],
    num_classes: int,
) -> jax.Array:
    """Weighted-vote predictions `[len(ks), chunk]` for one chunk of test points.

    One `top_k` with the largest k serves every k (its neighbours come sorted
    by similarity, so the k nearest are its first k columns). `train_x` is
    already l2-normalised. The weights are computed as exp((s_i - max_j s_j) / T):
    dividing every weight of a test point by the same positive constant leaves
    its argmax unchanged and keeps exp finite for small T.
    """
    sim = l2_normalize(test_x) @ train_x.T
    top_sim, top_idx = jax.lax.top_k(sim, max(ks))
    weights = jnp.exp((top_sim - top_sim[:, :1]) / temperature)
    votes = jax.nn.one_hot(train_y[top_idx], num_classes, dtype=weights.dtype)
    return jnp.stack([
        jnp.argmax(jnp.einsum("nk,nkc->nc", weights[:, :k], votes[:, :k]), axis=-1)
        for k in ks])


def knn_predict_many(
    train_x: npt.ArrayLike,
    train_y: npt.ArrayLike,
    test_x: npt.ArrayLike,
    *,
    num_classes: int,
    ks: tuple[int, ...],
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> dict[int, np.ndarray]:
    """Predict test labels by the temperature-weighted vote of the k nearest train points,
    for every k in `ks` at the cost of one neighbour search.

    Test points are processed `chunk_size` at a time, so memory is
    `O(chunk_size * N_train)`; the last chunk is zero-padded to the same size
    so the jitted kernel compiles once per call shape.

    Args:
      train_x: `[N_train, D]` features.
      train_y: `[N_train]` integer labels in `[0, num_classes)`.
      test_x: `[N_test, D]` features.
      num_classes: number of classes C.
      ks: neighbours per test point; each clamped to `N_train`.
      temperature: T of the weights exp(s / T); DINO uses 0.07.
      chunk_size: test points per jitted call.

    Returns:
      `{k: [N_test] int32 predicted labels}` for the requested k (before clamping).
    """
    if min(ks) < 1:
        raise ValueError(f"k must be >= 1, got {min(ks)}")
    train_x = _l2_normalize_jit(jnp.asarray(train_x))
    train_y = jnp.asarray(train_y, dtype=jnp.int32)
    test_x = np.asarray(test_x, dtype=np.float32)
    clamped = tuple(min(k, train_x.shape[0]) for k in ks)
    n_test = test_x.shape[0]
    if n_test == 0:
        return {k: np.zeros((0,), dtype=np.int32) for k in ks}
    chunk_size = max(1, min(chunk_size, n_test))
    preds = []
    for start in range(0, n_test, chunk_size):
        chunk = test_x[start:start + chunk_size]
        n = chunk.shape[0]
        chunk = np.pad(chunk, ((0, chunk_size - n), (0, 0)))
        out = _knn_chunk(train_x, train_y, chunk, temperature, ks=clamped,
                         num_classes=num_classes)
        preds.append(np.asarray(out[:, :n]))
    stacked = np.concatenate(preds, axis=1).astype(np.int32)
    return {k: stacked[i] for i, k in enumerate(ks)}


def knn_predict(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike, *,
                num_classes: int, k: int, temperature: float = 0.07,
                chunk_size: int = 1024) -> np.ndarray:
    """`knn_predict_many` for a single k: `[N_test]` int32 predicted labels."""
    return knn_predict_many(train_x, train_y, test_x, num_classes=num_classes, ks=(k,),
                            temperature=temperature, chunk_size=chunk_size)[k]


def knn_accuracies(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                   test_y: npt.ArrayLike, *, num_classes: int, ks: tuple[int, ...],
                   temperature: float = 0.07, chunk_size: int = 1024) -> dict[int, float]:
    """Top-1 accuracy in [0, 1] for every k in `ks`, from one neighbour search."""
    preds = knn_predict_many(train_x, train_y, test_x, num_classes=num_classes, ks=ks,
                             temperature=temperature, chunk_size=chunk_size)
    return {k: float(np.mean(p == np.asarray(test_y))) for k, p in preds.items()}


def knn_accuracy(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                 test_y: npt.ArrayLike, *, num_classes: int, k: int, temperature: float = 0.07,
                 chunk_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1] of the weighted kNN vote with one k."""
    return knn_accuracies(train_x, train_y, test_x, test_y, num_classes=num_classes, ks=(k,),
                          temperature=temperature, chunk_size=chunk_size)[k]
