"""Tests of ssl_jax.evals: weighted kNN, linear probe, label subsets and splits."""

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression

from ssl_jax.evals import (
    fit_linear_classifier,
    knn_accuracy,
    knn_predict,
    knn_predict_many,
    labels_per_class_subset,
    linear_probe,
    predict,
    stratified_split,
)


def _clusters(
    rng: np.random.Generator, num_classes: int, dim: int, n: int, center_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class centres N(0, center_scale^2 I) and n points centre + N(0, I), labels balanced."""
    centers = center_scale * rng.normal(size=(num_classes, dim))
    y = np.arange(n) % num_classes
    x = centers[y] + rng.normal(size=(n, dim))
    return x.astype(np.float32), y.astype(np.int32), centers


def _sample(
    rng: np.random.Generator, centers: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """n more points around the given centres, labels balanced."""
    y = np.arange(n) % centers.shape[0]
    x = centers[y] + rng.normal(size=(n, centers.shape[1]))
    return x.astype(np.float32), y.astype(np.int32)


def _knn_reference(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
    num_classes: int, k: int, temperature: float,
) -> np.ndarray:
    """Float64 weighted vote: sum of exp(cos / T) over the top-k neighbours of each class."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sim = b.astype(np.float64) @ a.T.astype(np.float64)
    k = min(k, len(train_x))
    preds = []
    for row in sim:
        top = np.argsort(-row)[:k]
        scores = np.zeros(num_classes)
        np.add.at(scores, train_y[top], np.exp(row[top] / temperature))
        preds.append(np.argmax(scores))
    return np.array(preds)


# --------------------------------------------------------------------- kNN


def test_knn_separable_clusters():
    rng = np.random.default_rng(0)
    train_x, train_y, centers = _clusters(rng, num_classes=10, dim=32, n=500, center_scale=3.0)
    test_x, test_y = _sample(rng, centers, n=300)
    acc = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=10, k=20)
    assert acc >= 0.99


@pytest.mark.parametrize(
    "k, temperature",
    [(1, 0.07), (5, 0.07), (20, 0.5), (50, 0.01), (1000, 0.1)],
)
def test_knn_matches_numpy_reference(k, temperature):
    rng = np.random.default_rng(k)
    num_classes = 7
    train_x = rng.normal(size=(200, 16)).astype(np.float32)
    train_y = rng.integers(0, num_classes, 200)
    test_x = rng.normal(size=(77, 16)).astype(np.float32)
    got = knn_predict(
        train_x, train_y, test_x,
        num_classes=num_classes, k=k, temperature=temperature, chunk_size=32,
    )
    want = _knn_reference(train_x, train_y, test_x, num_classes, k, temperature)
    assert got.shape == (77,)
    np.testing.assert_array_equal(got, want)


def test_knn_k1_is_cosine_nearest_neighbour():
    rng = np.random.default_rng(1)
    train_x = rng.normal(size=(150, 8)).astype(np.float32)
    train_y = rng.integers(0, 5, 150)
    test_x = rng.normal(size=(40, 8)).astype(np.float32)
    cos = (test_x / np.linalg.norm(test_x, axis=1, keepdims=True)) @ (
        train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    ).T
    got = knn_predict(train_x, train_y, test_x, num_classes=5, k=1)
    np.testing.assert_array_equal(got, train_y[np.argmax(cos, axis=1)])


def test_knn_k_clamped_and_chunking_invariant():
    rng = np.random.default_rng(2)
    train_x = rng.normal(size=(30, 8)).astype(np.float32)
    train_y = rng.integers(0, 3, 30)
    test_x = rng.normal(size=(45, 8)).astype(np.float32)
    kwargs = dict(num_classes=3, temperature=0.2)
    whole = knn_predict(train_x, train_y, test_x, k=30, **kwargs)
    np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=500, **kwargs), whole)
    np.testing.assert_array_equal(
        knn_predict(train_x, train_y, test_x, k=30, chunk_size=7, **kwargs), whole
    )
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(train_x, train_y, test_x, k=0, **kwargs)


def test_one_search_for_many_k_equals_one_search_per_k():
    rng = np.random.default_rng(3)
    train_x = rng.normal(size=(120, 6)).astype(np.float32)
    train_y = rng.integers(0, 4, 120)
    test_x = rng.normal(size=(50, 6)).astype(np.float32)
    kwargs = dict(num_classes=4, temperature=0.1, chunk_size=16)
    many = knn_predict_many(train_x, train_y, test_x, ks=(1, 5, 20, 500), **kwargs)
    for k in (1, 5, 20, 500):
        np.testing.assert_array_equal(many[k], knn_predict(train_x, train_y, test_x, k=k, **kwargs))
    assert not np.array_equal(many[1], many[20])


# ------------------------------------------------------------ linear probe


def test_linear_probe_separable():
    rng = np.random.default_rng(3)
    train_x, train_y, centers = _clusters(rng, num_classes=5, dim=20, n=500, center_scale=4.0)
    test_x, test_y = _sample(rng, centers, n=500)
    out = linear_probe(train_x, train_y, test_x, test_y, num_classes=5, steps=200)
    assert out["accuracy"] >= 0.99
    assert set(out["val_accuracy"]) == {0.0, 1e-4, 1e-3, 1e-2, 1e-1}
    # Every weight decay separates the validation split: the tie goes to the largest.
    assert all(acc == 1.0 for acc in out["val_accuracy"].values())
    assert out["best_weight_decay"] == pytest.approx(1e-1)


def test_fit_linear_classifier_matches_sklearn():
    """Same objective as sklearn's LogisticRegression with C = 1 / (wd * N)."""
    rng = np.random.default_rng(4)
    num_classes, n, wd = 6, 1200, 1e-2
    train_x, train_y, centers = _clusters(rng, num_classes, dim=16, n=n, center_scale=0.4)
    train_x = 3.0 * train_x + 1.0  # standardisation must undo this
    test_x, test_y = _sample(rng, centers, n=2000)
    test_x = 3.0 * test_x + 1.0

    params = fit_linear_classifier(
        train_x, train_y, num_classes=num_classes, weight_decay=wd, steps=500,
        learning_rate=0.1, seed=0,
    )
    np.testing.assert_allclose(params.mean, train_x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(params.std, train_x.std(0), rtol=1e-5)
    ours = np.asarray(predict(params, test_x))

    mean, std = train_x.mean(0), train_x.std(0)
    clf = LogisticRegression(C=1.0 / (wd * n), max_iter=5000, tol=1e-10)
    clf.fit((train_x - mean) / std, train_y)
    theirs = clf.predict((test_x - mean) / std)

    def objective(kernel, bias):
        logits = ((train_x - mean) / std) @ kernel + bias
        ce = -np.mean(log_softmax(logits, axis=1)[np.arange(n), train_y])
        return ce + 0.5 * wd * np.sum(kernel**2)

    ours_obj = objective(np.asarray(params.kernel), np.asarray(params.bias))
    assert ours_obj == pytest.approx(objective(clf.coef_.T, clf.intercept_), rel=1e-3)
    acc_ours, acc_theirs = np.mean(ours == test_y), np.mean(theirs == test_y)
    assert 0.4 < acc_theirs < 0.95  # genuinely overlapping classes
    assert abs(acc_ours - acc_theirs) <= 0.02
    assert np.mean(ours == theirs) >= 0.97


def test_linear_probe_selection_ignores_test_set():
    rng = np.random.default_rng(5)
    train_x, train_y, centers = _clusters(rng, num_classes=4, dim=64, n=240, center_scale=0.5)
    test_x, test_y = _sample(rng, centers, n=400)
    kwargs = dict(num_classes=4, weight_decays=(0.0, 1e-2, 1.0), steps=150, seed=1)
    clean = linear_probe(train_x, train_y, test_x, test_y, **kwargs)
    assert len(set(clean["val_accuracy"].values())) > 1  # the selection is not a tie
    permuted = linear_probe(train_x, train_y, test_x, rng.permutation(test_y), **kwargs)
    noise = rng.normal(size=test_x.shape).astype(np.float32)
    other_x = linear_probe(train_x, train_y, noise, test_y, **kwargs)
    for out in (permuted, other_x):
        assert out["best_weight_decay"] == clean["best_weight_decay"]
        assert out["val_accuracy"] == clean["val_accuracy"]
    assert permuted["accuracy"] < clean["accuracy"]


def test_linear_probe_rejects_out_of_range_labels():
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="labels must lie"):
        fit_linear_classifier(x, np.arange(10), num_classes=5, weight_decay=0.0)


# ------------------------------------------------------------------ splits


def _labels() -> np.ndarray:
    """Shuffled labels with class sizes 3, 10, 25, 1, 7 for classes 0, 1, 2, 5, 9."""
    labels = np.repeat([0, 1, 2, 5, 9], [3, 10, 25, 1, 7])
    return np.random.default_rng(0).permutation(labels)


def test_labels_per_class_subset():
    labels = _labels()
    labels = labels[labels != 5]  # the singleton class
    idx = labels_per_class_subset(labels, per_class=3, seed=0)
    assert np.all(np.diff(idx) > 0)
    classes, counts = np.unique(labels[idx], return_counts=True)
    np.testing.assert_array_equal(classes, [0, 1, 2, 9])
    np.testing.assert_array_equal(counts, 3)
    np.testing.assert_array_equal(idx, labels_per_class_subset(labels, per_class=3, seed=0))
    other_seeds = [labels_per_class_subset(labels, per_class=3, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(idx, other) for other in other_seeds)
    everything = labels_per_class_subset(labels, per_class=0, seed=0)
    np.testing.assert_array_equal(everything, np.arange(len(labels)))


def test_labels_per_class_subset_too_few_examples():
    with pytest.raises(ValueError, match="class 0 has 3 examples"):
        labels_per_class_subset(_labels(), per_class=4, seed=0)


def test_stratified_split():
    labels = _labels()
    train_idx, val_idx = stratified_split(labels, val_fraction=0.2, seed=0)
    assert np.intersect1d(train_idx, val_idx).size == 0
    union = np.sort(np.concatenate([train_idx, val_idx]))
    np.testing.assert_array_equal(union, np.arange(len(labels)))
    # round(0.2 n) clipped to [1, n - 1]; the singleton class 5 stays in train.
    expected_val = {0: 1, 1: 2, 2: 5, 5: 0, 9: 1}
    for cls, n_val in expected_val.items():
        assert np.sum(labels[val_idx] == cls) == n_val
        assert np.sum(labels[train_idx] == cls) == np.sum(labels == cls) - n_val
    again = stratified_split(labels, val_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again[1], val_idx)
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, val_fraction=0.0, seed=0)
