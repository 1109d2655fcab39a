"""Self-training (FixMatch, the `self_train` stage): its unlabelled loss against NumPy, the
labelled + unlabelled batches, 1 == 8 devices, and on real MNIST a gain over the same
labels alone."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses, stages, train, validate
from ssl_jax.config import base_config, mnist_config, runlocal
from ssl_jax.data import loader, sources
from ssl_jax.evals import features, labels_per_class_subset
from test_bert_gpt import numpy_cross_entropy
from test_joint_methods import (assert_trees_close, assert_validation_names, digits,  # noqa: F401
                                first_batch_loss_and_grads)


def numpy_pseudo_label_loss(weak, strong, threshold):
    """FixMatch's l_u written out: hard targets from the weak logits' softmax, kept at
    confidence >= threshold, cross-entropy of the strong logits, mean over all rows."""
    q = np.exp(weak - weak.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    keep = q.max(1) >= threshold
    cross_entropy = numpy_cross_entropy(strong, q.argmax(1))
    return np.sum(cross_entropy * keep) / len(weak), keep.mean()


@pytest.mark.parametrize("threshold", [0.0, 0.6, 1.0])
def test_pseudo_label_loss_matches_numpy(threshold):
    rng = np.random.default_rng(0)
    weak, strong = 2.0 * rng.normal(size=(2, 64, 10))
    loss, kept = losses.confident_pseudo_label_loss(jnp.asarray(weak, jnp.float32),
                                                    jnp.asarray(strong, jnp.float32), threshold)
    want_loss, want_kept = numpy_pseudo_label_loss(weak, strong, threshold)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kept, want_kept)
    if threshold == 0.6:  # Some rows kept, some not: the threshold itself is exercised.
        assert 0.1 < want_kept < 0.9
    if threshold == 1.0:
        assert want_kept == 0.0 and float(loss) == 0.0


def test_pseudo_labels_send_no_gradient_through_the_weak_view():
    rng = np.random.default_rng(1)
    weak, strong = (jnp.asarray(a, jnp.float32) for a in 2.0 * rng.normal(size=(2, 32, 10)))
    d_weak, d_strong = jax.grad(
        lambda w, s: losses.confident_pseudo_label_loss(w, s, 0.5)[0], argnums=(0, 1))(
            weak, strong)
    assert not np.any(d_weak)
    assert np.abs(d_strong).max() > 0


def test_batches_hold_b_labelled_and_mu_b_unlabelled_examples():
    labeled = {"image": np.arange(10)[:, None], "label": np.arange(10) % 3}
    unlabeled = {"unlabeled_image": 1000 + np.arange(100)[:, None]}
    batcher = loader.LabeledUnlabeledBatcher(labeled, unlabeled, 4, 20, seed=0)
    batches = list(itertools.islice(batcher.batches(0), 5))
    assert batcher.steps_per_epoch == 5 and batcher.global_batch_size == 24
    assert {k: v[0] for k, v in batcher.spec().items()} == {
        "image": (4, 1), "label": (4,), "unlabeled_image": (20, 1)}
    # One epoch of the unlabelled stream sees each unlabelled example once; the labelled
    # rows come from the labelled set only, with their own labels.
    seen = np.concatenate([b["unlabeled_image"][:, 0] for b in batches])
    np.testing.assert_array_equal(np.sort(seen), 1000 + np.arange(100))
    for b in batches:
        assert b["image"].max() < 10
        np.testing.assert_array_equal(b["label"], b["image"][:, 0] % 3)
    # The batch of a step is a function of the step: a resumed stream continues exactly.
    resumed = list(itertools.islice(loader.LabeledUnlabeledBatcher(
        labeled, unlabeled, 4, 20, seed=0).batches(3), 2))
    for a, b in zip(resumed, batches[3:]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="share the keys"):
        loader.LabeledUnlabeledBatcher(labeled, {"image": unlabeled["unlabeled_image"]}, 4, 20, 0)


def self_train_run_config(num_devices: int, threshold: float):
    config = base_config()
    runlocal(config)
    config.self_train.threshold = threshold
    config.mesh.num_devices = num_devices
    validate.validate(config)
    return stages.self_train_config(config)


def test_one_device_equals_eight_devices(digits):  # noqa: F811
    """Same labelled and unlabelled batch and key: same loss and gradients. Threshold 0
    keeps every pseudo-label, so the unlabelled branch has gradients too."""
    few = digits.subset_train(labels_per_class_subset(digits.train_labels, 10, 0))
    results = []
    for n in (1, 8):
        run = train.build(self_train_run_config(n, threshold=0.0), few, digits.train_inputs)
        assert run.pipeline.spec()["unlabeled_image"][0][0] == 7 * 16
        results.append(first_batch_loss_and_grads(run, train.init_state(run)))
    (loss1, (_, _, metrics), grads1), (loss8, _, grads8) = results
    np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
    assert_trees_close(grads1, grads8)
    assert metrics["pseudo_label_rate"] == 1.0 and metrics["pseudo_label_loss"] > 0


def test_self_train_config_errors_name_the_field():
    config = base_config()
    runlocal(config)
    config.stages = ("pretrain", "self_train")
    assert_validation_names(config.copy_and_resolve_references(), "self_train.threshold", 1.5,
                            "config.self_train.threshold=1.5")
    assert_validation_names(config.copy_and_resolve_references(), "self_train.unlabeled_ratio",
                            0, "config.self_train.unlabeled_ratio=0")
    assert_validation_names(config.copy_and_resolve_references(), "self_train.batch_size", 12,
                            "config.self_train.batch_size=12")


def test_fixmatch_outside_the_self_train_stage_says_how_to_run_it(digits):  # noqa: F811
    config = self_train_run_config(1, threshold=0.95)
    run = train.build(config, digits)  # No unlabelled inputs: a plain labelled stream.
    with pytest.raises(ValueError, match="run it as the 'self_train' stage"):
        first_batch_loss_and_grads(run, train.init_state(run))


def test_pseudo_labels_beat_the_same_labels_alone_on_mnist(shared_data, tmp_path):
    """100 MNIST labels (10/class) and 4,000 unlabelled images seen as 14x14 views, 200
    steps of B = 16 from random init: FixMatch (mu = 3, tau = 0.9) against supervised
    training on the same labels with the same steps and batch. Measured (seeds 0-2):
    83.5 / 80.9 / 84.8 % alone, 87.9 / 86.8 / 88.5 % with the pseudo-labels."""
    config = mnist_config("simclr", data_dir=str(shared_data / "mnist"))
    runlocal(config, train_limit=4000)
    config.model.widths = (16, 32, 64)
    config.input.image_size = 14
    for view in (config.method.view, config.finetune.view, config.self_train.weak_view,
                 config.self_train.strong_view):
        view.out_size = 14
    for section in (config.finetune, config.self_train):
        section.update(dict(batch_size=16))
        section.schedule.steps = 200
    config.self_train.update(dict(threshold=0.9, unlabeled_ratio=3))
    config.checkpoint.every_steps = 200
    config.log.every_steps = 50
    config.mesh.num_devices = 1
    validate.validate(config)
    data = sources.load(config.input)
    few = data.subset_train(labels_per_class_subset(data.train_labels, 10, config.seed))
    accuracy = {}
    for name, run_config, unlabeled in (
            ("supervised", stages.finetune_config(config), None),
            ("fixmatch", stages.self_train_config(config), data.train_inputs)):
        run = train.train(run_config, tmp_path / name, few, unlabeled_inputs=unlabeled)
        logits = features.extract(run.method.logits, run.state.variables(), data.test_inputs,
                                  run.mesh, 512)
        accuracy[name] = np.mean(logits.argmax(-1) == data.test_labels)
    assert accuracy["supervised"] > 0.7, accuracy
    assert accuracy["fixmatch"] > accuracy["supervised"] + 0.02, accuracy
