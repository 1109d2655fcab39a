"""Context prediction (Doersch et al. 2015): the patch pairs and their labels, the gap
between patches, channel dropout, the loss against NumPy, 1 == 8 devices, a short real
run in which the position classifier learns, and the refused grid geometries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import metrics, train, validate
from ssl_jax.config import base_config, runlocal
from ssl_jax.data import sources
from ssl_jax.methods.context import (CHANNEL_NOISE_SCALE, drop_channels, patch_pair_corners,
                                     sample_patch_pairs)
from test_bert_gpt import numpy_cross_entropy
from test_joint_methods import (assert_one_device_equals_eight, built, digits,  # noqa: F401
                                learning_run, tiny_config)
from test_train import load_config


def grid_step(label: np.ndarray) -> np.ndarray:
    """(row, col) step of each label: raster order over the 3x3 grid, skipping the centre."""
    cell = label + (label >= 4)
    return np.stack([cell // 3 - 1, cell % 3 - 1], axis=-1)


def test_labels_match_offsets_and_patches_match_numpy_slices():
    patch, gap, jitter, height, width, n = 6, 4, 1, 32, 30, 4000
    images = jnp.asarray(np.random.default_rng(0).normal(size=(n, height, width, 2)),
                         jnp.float32)
    rng = jax.random.PRNGKey(3)
    centre, neighbour, labels = jax.device_get(sample_patch_pairs(rng, images, patch, gap,
                                                                  jitter))
    top_centre, top_neighbour, corner_labels = jax.device_get(
        patch_pair_corners(rng, n, height, width, patch, gap, jitter))
    np.testing.assert_array_equal(labels, corner_labels)

    difference = top_neighbour - top_centre
    stride = patch + gap
    np.testing.assert_array_equal(np.round(difference / stride), grid_step(labels))
    relative_jitter = difference - stride * grid_step(labels)
    assert relative_jitter.min() == -2 * jitter and relative_jitter.max() == 2 * jitter
    for top in (top_centre, top_neighbour):
        assert top.min() >= 0
        assert (top[:, 0] + patch).max() <= height and (top[:, 1] + patch).max() <= width
    # The centre cell sits one stride from the grid's origin, which leaves `jitter` to the edge.
    assert top_centre.min() >= stride
    assert top_centre[:, 0].max() <= height - stride - patch
    assert top_centre[:, 1].max() <= width - stride - patch

    images = np.asarray(images)
    for i in range(0, n, 97):
        (r, c), (rn, cn) = top_centre[i], top_neighbour[i]
        np.testing.assert_array_equal(centre[i], images[i, r:r + patch, c:c + patch])
        np.testing.assert_array_equal(neighbour[i], images[i, rn:rn + patch, cn:cn + patch])

    counts = np.bincount(labels, minlength=8)
    assert counts.shape == (8, )
    # n/8 = 500 per label, binomial std 21: +-100 is about 5 std.
    assert np.all(np.abs(counts - n / 8) < 100), counts

    again = jax.device_get(sample_patch_pairs(rng, jnp.asarray(images), patch, gap, jitter))
    for a, b in zip(again, (centre, neighbour, labels)):
        np.testing.assert_array_equal(a, b)
    other = jax.device_get(patch_pair_corners(jax.random.PRNGKey(4), n, height, width, patch,
                                              gap, jitter))
    assert not np.array_equal(other[0], top_centre)


def test_without_jitter_offsets_are_exact_multiples_of_the_stride():
    top_centre, top_neighbour, labels = jax.device_get(
        patch_pair_corners(jax.random.PRNGKey(0), 500, 28, 28, 8, 2, 0))
    np.testing.assert_array_equal(top_neighbour - top_centre, 10 * grid_step(labels))


@pytest.mark.parametrize("patch, gap, jitter", [(6, 3, 1), (8, 3, 1), (8, 1, 1)])
def test_closest_patches_are_gap_minus_twice_the_jitter_apart(patch, gap, jitter):
    """The MNIST (6, 3, 1) and CIFAR (8, 3, 1) grids keep the two patches at least one
    pixel apart; a grid with gap <= 2 jitter, such as (8, 1, 1), lets them overlap."""
    top_centre, top_neighbour, labels = jax.device_get(
        patch_pair_corners(jax.random.PRNGKey(1), 4000, 32, 32, patch, gap, jitter))
    step = grid_step(labels)
    # Pixels strictly between the patches along each axis in which they are offset.
    between = np.abs(top_neighbour - top_centre) - patch
    separation = np.where(step != 0, between, np.iinfo(np.int32).max).min(axis=1)
    assert separation.min() == gap - 2 * jitter
    if gap > 2 * jitter:
        assert separation.min() >= 1


def test_channel_dropout_keeps_one_channel_and_fills_the_others_with_small_noise():
    patches = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, (64, 6, 6, 3)), jnp.float32)
    dropped = np.asarray(drop_channels(jax.random.PRNGKey(0), patches))
    kept_channels = []
    for original, out in zip(np.asarray(patches), dropped):
        kept = [c for c in range(3) if np.array_equal(out[..., c], original[..., c])]
        assert len(kept) == 1
        kept_channels.append(kept[0])
        for c in set(range(3)) - set(kept):
            ratio = out[..., c].std() / original[..., kept[0]].std()
            assert 0.5 * CHANNEL_NOISE_SCALE < ratio < 1.5 * CHANNEL_NOISE_SCALE
            assert abs(out[..., c].mean()) < 0.02
    assert set(kept_channels) == {0, 1, 2}


def geometry_config(**method_fields):
    """Digits resized to 12x12 views: a 2-pixel-patch grid with gap 1, jitter 1 and 2
    pixels of room to move (2x10 of 12)."""
    config = tiny_config("context_prediction", patch_size=2, gap=1, jitter=1, **method_fields)
    config.method.view.out_size = 12
    return config


def test_loss_is_the_cross_entropy_of_the_head_logits(digits):  # noqa: F811
    run, state = built(geometry_config(), digits, 1)
    method, variables = run.method, state.variables()
    batch = jax.device_get(run.pipeline.batch(0))

    @jax.jit  # One compilation, not one per op.
    def loss_and_parts(params, batch, rng):
        centre, neighbour, whole, labels = method.pairs(rng, batch)
        out, _ = method.apply(params, variables, centre, train=True, neighbour=neighbour,
                              whole=whole)
        loss, (_, _, step_metrics) = method.loss(params, variables, batch, rng, state.step)
        return out["position_logits"], labels, loss, step_metrics

    logits, labels, loss, step_metrics = jax.device_get(
        loss_and_parts(state.params, batch, jax.random.PRNGKey(5)))
    logits = np.asarray(logits, np.float64)
    assert logits.shape == (batch["label"].shape[0], 8)
    expected = numpy_cross_entropy(logits, np.asarray(labels)).mean()

    np.testing.assert_allclose(step_metrics["context_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(step_metrics["context_accuracy"],
                               np.mean(logits.argmax(axis=1) == np.asarray(labels)))
    np.testing.assert_allclose(loss, expected + step_metrics["probe_loss"], rtol=1e-5)
    # Evaluation features: the backbone on whole 8x8 images (the patches were 2x2).
    features = jax.jit(method.features)(variables, batch["image"])
    assert features.shape == (batch["image"].shape[0], run.config.model.widths[-1])


def test_one_device_equals_eight_devices(digits):  # noqa: F811
    assert_one_device_equals_eight(geometry_config(), digits)


def test_position_classifier_learns_on_mnist(shared_data, tmp_path):
    """100 steps on real MNIST (the MNIST config's 6-pixel patches, gap 3, jitter 1,
    50-100% crops; tiny convnet): the position accuracy of the last five logged steps
    (640 pairs) is well above the 1/8 of chance (0.26, 0.30 and 0.32 measured with seeds 0, 1
    and 2; its binomial std is 0.02)."""
    config = load_config("context_prediction_mnist", None)
    config.input.data_dir = str(shared_data / "mnist")
    runlocal(config, train_limit=2000)
    config.input.batch_size = 128
    learning_run(config, 100, log_every=10)
    train.train(config, tmp_path, sources.load(config.input))
    accuracy = np.mean([r["context_accuracy"] for r in metrics.read_metrics(tmp_path)[-5:]])
    assert accuracy > 0.22, accuracy


@pytest.mark.parametrize("fields, message", [
    (dict(patch_size=3), "3*patch_size + 2*gap + 2*jitter = 3*3 + 2*1 + 2*0 = 11 > "
                         "config.method.view.out_size = 8"),
    (dict(gap=-1), "config.method.gap=-1: expected an integer >= 0"),
    (dict(channel_dropout=True), "config.method.channel_dropout=True: needs colour images"),
])
def test_bad_geometry_is_refused_naming_the_fields(fields, message):
    config = base_config(method="context_prediction")
    config.method.update(fields)
    with pytest.raises(ValueError) as error:
        validate.validate(config)
    assert message in str(error.value)
