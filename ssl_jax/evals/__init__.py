"""Frozen-feature evaluation: weighted kNN, linear probe, label subsets and splits."""

from ssl_jax.evals.knn import knn_accuracies, knn_accuracy, knn_predict, knn_predict_many
from ssl_jax.evals.linear_probe import (
    LinearClassifier,
    fit_linear_classifier,
    linear_probe,
    predict,
)
from ssl_jax.evals.splits import labels_per_class_subset, stratified_split

__all__ = [
    "LinearClassifier",
    "fit_linear_classifier",
    "knn_accuracies",
    "knn_accuracy",
    "knn_predict",
    "knn_predict_many",
    "labels_per_class_subset",
    "linear_probe",
    "predict",
    "stratified_split",
]
