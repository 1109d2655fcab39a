"""Index bookkeeping for evaluations: per-class label subsets and validation splits.

Plain NumPy: these functions only pick indices, nothing here is numeric work.
Every function is deterministic given its seed.
"""

import numpy as np
import numpy.typing as npt


def _class_indices(labels: npt.ArrayLike) -> dict[int, np.ndarray]:
    """Map each class present in `labels` (ascending) to its example indices."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("labels is empty")
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def labels_per_class_subset(labels: npt.ArrayLike, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` examples drawn at random, without replacement, from each class.

    The semi-supervised protocol of SimCLR / BYOL (train on 1% or 10% of the
    ImageNet labels) takes a fixed number of labelled examples per class.

    Args:
      labels: `[N]` integer labels.
      per_class: examples kept per class; `<= 0` keeps every example.
      seed: seed of the draw.

    Returns:
      Sorted int64 indices into `labels`, `per_class` of each class present.

    Raises:
      ValueError: if a class has fewer than `per_class` examples.
    """
    by_class = _class_indices(labels)
    if per_class <= 0:
        return np.arange(len(np.asarray(labels)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, idx in by_class.items():
        if idx.size < per_class:
            raise ValueError(
                f"class {cls} has {idx.size} examples, fewer than per_class={per_class}"
            )
        chosen.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _num_val(class_size: int, val_fraction: float) -> int:
    """round(val_fraction * n), clipped to [1, n - 1]; 0 for a singleton class."""
    return min(max(round(val_fraction * class_size), 1), class_size - 1)


def stratified_split(
    labels: npt.ArrayLike, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train / validation parts, class by class.

    A class of n examples sends round(val_fraction * n) of them, clipped to
    [1, n - 1], to validation: every class keeps at least one train example,
    and gets at least one validation example whenever it has two or more.

    Args:
      labels: `[N]` integer labels of the set to split (a train set; never the
        test set, which must not be used for model selection).
      val_fraction: fraction of each class held out, in (0, 1).
      seed: seed of the shuffle.

    Returns:
      `(train_idx, val_idx)`: sorted, disjoint int64 indices covering `range(N)`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for idx in _class_indices(labels).values():
        idx = rng.permutation(idx)
        n_val = _num_val(idx.size, val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return (
        np.sort(np.concatenate(train)).astype(np.int64),
        np.sort(np.concatenate(val)).astype(np.int64),
    )
