"""RotNet rotation prediction: the rotated copies and their labels, 1 == 8 devices,
and a short real run in which the rotation classifier learns."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import metrics, train
from ssl_jax.config import mnist_config, runlocal
from ssl_jax.data import sources
from ssl_jax.methods.rotation import all_rotations
from test_joint_methods import assert_one_device_equals_eight, digits, tiny_config  # noqa: F401


def test_every_image_appears_in_all_four_rotations_with_its_label():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (3, 5, 5, 2)), jnp.uint8)
    rotated, labels = all_rotations(images)
    assert rotated.shape == (12, 5, 5, 2)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 3))
    for k in range(4):
        for i in range(3):
            # np.rot90 on (H, W): k quarter turns counter-clockwise.
            np.testing.assert_array_equal(rotated[3 * k + i], np.rot90(np.asarray(images[i]), k))
    # A quarter turn moves the top-right pixel to the top-left.
    np.testing.assert_array_equal(rotated[3 + 0][0, 0], images[0][0, -1])


def test_non_square_views_are_refused():
    with pytest.raises(ValueError, match="square views"):
        all_rotations(jnp.zeros((2, 4, 6, 1)))


def test_one_device_equals_eight_devices(digits):  # noqa: F811
    assert_one_device_equals_eight(tiny_config("rotation"), digits)


def test_rotation_classifier_learns_on_mnist(shared_data, tmp_path):
    """60 steps on real MNIST (tiny convnet): rotation accuracy well above the 25% of
    chance (0.47 measured)."""
    config = mnist_config("rotation", data_dir=str(shared_data / "mnist"))
    runlocal(config, train_limit=2000)
    config.input.batch_size = 128
    config.schedule.steps = 60
    config.log.every_steps = 20
    config.mesh.num_devices = 1
    train.train(config, tmp_path, sources.load(config.input))
    last = metrics.read_metrics(tmp_path)[-1]
    assert last["rotation_accuracy"] > 0.4, last
