"""Auto-encoder and denoising auto-encoder: the corruptions against NumPy counts, the
loss against a float64 reference with the clean view as target, the decoders' output
shapes, 1 == 8 devices, a short real-MNIST run, and config errors naming the field."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import metrics, sharding, train, validate
from ssl_jax.config import mnist_config, runlocal
from ssl_jax.data import sources
from ssl_jax.methods.autoencoder import corrupt
from ssl_jax.models import build_backbone, default_model_config
from ssl_jax.models.decoders import ConvDecoder, MLPDecoder, build_decoder
from test_joint_methods import (assert_trees_close, assert_validation_names, built,  # noqa: F401
                                digits, learning_run, tiny_config)

SIGMAS = 5.0  # Tolerance of the binomial counts, in standard deviations.


def _pixels(shape=(50, 40, 40, 1), seed=0):
    """Float images strictly inside (0, 1), so no clean value is 0 or 1."""
    return jnp.asarray(np.random.default_rng(seed).uniform(0.01, 0.99, shape), jnp.float32)


def _assert_binomial(count: int, n: int, p: float):
    assert abs(count - n * p) < SIGMAS * np.sqrt(n * p * (1 - p)), (count, n * p)


# --- corruptions ------------------------------------------------------------------------------

def test_masking_zeros_about_amount_of_the_dims_and_keeps_the_rest():
    images = _pixels()
    out = np.asarray(corrupt(jax.random.key(0), images, "masking", 0.25))
    zeroed = out == 0.0
    _assert_binomial(zeroed.sum(), zeroed.size, 0.25)
    np.testing.assert_array_equal(out[~zeroed], np.asarray(images)[~zeroed])


def test_salt_and_pepper_sets_about_amount_to_0_or_1_in_equal_numbers():
    images = _pixels()
    out = np.asarray(corrupt(jax.random.key(0), images, "salt_and_pepper", 0.3))
    changed = out != np.asarray(images)
    _assert_binomial(changed.sum(), changed.size, 0.3)
    assert set(np.unique(out[changed])) == {0.0, 1.0}
    _assert_binomial((out[changed] == 1.0).sum(), changed.sum(), 0.5)
    np.testing.assert_array_equal(out[~changed], np.asarray(images)[~changed])


def test_gaussian_noise_has_the_asked_std_and_zero_mean():
    images = _pixels()
    noise = np.asarray(corrupt(jax.random.key(0), images, "gaussian", 0.2), np.float64) - images
    n = noise.size  # 80,000: the sample std is within ~0.3% of 0.2 (5 sigma: 1.3%).
    np.testing.assert_allclose(noise.std(), 0.2, rtol=0.02)
    assert abs(noise.mean()) < SIGMAS * 0.2 / np.sqrt(n)


def test_none_is_the_identity_and_the_key_decides_the_corruption():
    images = _pixels((4, 8, 8, 3))
    np.testing.assert_array_equal(corrupt(jax.random.key(0), images, "none", 0.0), images)
    for kind, amount in (("gaussian", 0.1), ("masking", 0.25), ("salt_and_pepper", 0.25)):
        a, b, c = (corrupt(jax.random.key(k), images, kind, amount) for k in (0, 0, 1))
        np.testing.assert_array_equal(a, b)
        assert np.any(np.asarray(a) != np.asarray(c)), kind


# --- the loss ---------------------------------------------------------------------------------

def test_loss_is_the_squared_error_to_the_clean_view(digits):  # noqa: F811
    """Network input: the masked view; target: the clean one. Reference in float64 from
    the network's reconstruction."""
    config = tiny_config("denoising_autoencoder")
    config.model.name = "mlp"
    run, state = built(config, digits, 1)
    method, variables = run.method, state.variables()
    batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
    rng = jax.random.key(3)
    loss, (_, _, step_metrics) = jax.jit(method.loss)(state.params, variables, batch, rng,
                                                      state.step)
    clean, noisy = jax.jit(method.clean_and_corrupted)(rng, batch)
    mean, std = np.asarray(run.config.input.mean), np.asarray(run.config.input.std)
    clean_pixels = np.asarray(clean, np.float64) * std + mean
    noisy_pixels = np.asarray(noisy, np.float64) * std + mean
    # Masking in [0, 1] pixel units: every dim is the clean pixel or 0, and about 25% of
    # the dims that were not already 0 are.
    masked = np.abs(noisy_pixels) < 1e-5
    np.testing.assert_allclose(noisy_pixels[~masked], clean_pixels[~masked], atol=1e-5)
    not_black = clean_pixels > 1e-3
    _assert_binomial(masked[not_black].sum(), not_black.sum(), 0.25)

    def reconstruct(x):
        out, _ = jax.jit(lambda p, v, x: method.apply(p, v, x, train=True))(
            state.params, variables, x)
        return np.asarray(out["reconstruction"], np.float64)

    reconstruction = reconstruct(noisy)
    assert reconstruction.shape == clean.shape
    reference = np.mean((reconstruction - np.asarray(clean, np.float64)) ** 2)
    np.testing.assert_allclose(step_metrics["reconstruction_loss"], reference, rtol=1e-5)
    np.testing.assert_allclose(loss, reference + step_metrics["probe_loss"], rtol=1e-5)
    # Neither the corrupted view as target nor the clean view as input gives the loss: each
    # misses it by 100x the tolerance of the match above (an untrained network's error is
    # mostly the target's own size, so the margins are a few tenths of a percent).
    to_noisy = np.mean((reconstruction - np.asarray(noisy, np.float64)) ** 2)
    from_clean = np.mean((reconstruct(clean) - np.asarray(clean, np.float64)) ** 2)
    for wrong in (to_noisy, from_clean):
        assert abs(wrong - reference) > 1e-3 * reference, (wrong, reference)

    # The code of the clean image is the evaluation feature.
    features = jax.jit(method.features)(variables, batch["image"])
    assert features.shape == (batch["image"].shape[0], run.config.model.widths[-1])


# --- networks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", [ConvDecoder((16, 32, 64)), ConvDecoder((8, 16)),
                                     MLPDecoder((64, 16))])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_decoders_output_exactly_the_image_shape(decoder, image_shape):
    output, _ = jax.eval_shape(lambda code: decoder.init_with_output(
        jax.random.key(0), code, image_shape, train=False), jnp.ones((2, 16)))
    assert output.shape == (2, *image_shape)


def test_mlp_encoder_code_is_the_unclipped_bottleneck_and_other_backbones_have_no_decoder():
    config = default_model_config("mlp")
    config.widths = (32, 8)
    encoder = build_backbone(config)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 28, 28, 1)), jnp.float32)
    code = encoder.apply(encoder.init(jax.random.key(0), x, train=False), x, train=False)
    assert code.shape == (16, 8) and encoder.feature_dim == 8
    assert np.any(np.asarray(code) < 0)  # No ReLU on the bottleneck.
    assert isinstance(build_decoder(config), MLPDecoder)
    with pytest.raises(ValueError, match="config.model.name='resnet18'"):
        build_decoder(default_model_config("resnet18"))


# --- invariants -------------------------------------------------------------------------------

def _on_devices(config, dataset, num_devices: int):
    """(loss, grads, corrupted input) of the first step's batch on `num_devices`."""
    run, state = built(config, dataset, num_devices)
    batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
    rng = jax.random.fold_in(run.train_rng, 0)
    (loss, _, grads), (_, noisy) = jax.jit(lambda s, b, r: (
        train.loss_and_grads(run.method, s, b, r), run.method.clean_and_corrupted(r, b)))(state, batch, rng)
    return jax.device_get((loss, grads, noisy))


@pytest.mark.parametrize("method,model,kind", [("denoising_autoencoder", "convnet", "gaussian"),
                                               ("autoencoder", "mlp", "none")])
def test_one_device_equals_eight_devices(digits, method, model, kind):  # noqa: F811
    """Same corrupted input, loss and gradients. The conv DAE runs with Gaussian noise:
    masking makes patches of equal pixels, and where two values of a max-pool window tie
    up to rounding, 1 and 8 devices may route the gradient to different pixels (measured
    with masking: gradients ~1e-3 apart at 2 of 12 step keys, at none with average
    pooling in place of max pooling)."""
    config = tiny_config(method)
    config.model.name = model
    config.method.corruption.update(dict(kind=kind, amount=0.25))
    (loss_1, grads_1, noisy_1), (loss_8, grads_8, noisy_8) = (
        _on_devices(config, digits, n) for n in (1, 8))
    np.testing.assert_array_equal(noisy_1, noisy_8)
    np.testing.assert_allclose(loss_1, loss_8, rtol=1e-5)
    assert_trees_close(grads_1, grads_8)


def test_masked_inputs_are_the_same_on_one_and_eight_devices(digits):  # noqa: F811
    config = tiny_config("denoising_autoencoder")
    inputs = []
    for num_devices in (1, 8):
        config.mesh.num_devices = num_devices
        run = train.build(config, digits)
        batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
        inputs.append(jax.device_get(jax.jit(run.method.clean_and_corrupted)(jax.random.key(5), batch)))
    np.testing.assert_array_equal(inputs[0][1], inputs[1][1])
    assert np.mean(inputs[0][1] != inputs[0][0]) > 0.1  # Corrupted indeed.


def test_denoising_autoencoder_learns_to_reconstruct_mnist(shared_data, tmp_path):
    """100 steps on real MNIST (MLP 784-256-32, masking 25%, batch 128, whole images):
    the reconstruction loss falls from 1.47 at step 1 to 0.37 (measured), well below
    the 0.71 of predicting every image by the mean image (a code that carries nothing)."""
    config = mnist_config("denoising_autoencoder", data_dir=str(shared_data / "mnist"))
    runlocal(config, train_limit=2000)
    config.model.update(dict(name="mlp", widths=(256, 32)))
    config.method.view.update(dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)))
    config.input.batch_size = 128
    learning_run(config, 100, log_every=1)
    train.train(config, tmp_path, sources.load(config.input))
    logged = metrics.read_metrics(tmp_path)
    first, last = logged[0]["reconstruction_loss"], logged[-1]["reconstruction_loss"]
    assert last < 0.55 and last < 0.4 * first, (first, last)


# --- config errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,message", [
    ("method.corruption.kind", "blur", "config.method.corruption.kind='blur'"),
    ("method.corruption.amount", 1.5, "config.method.corruption.amount=1.5"),
    ("method.corruption.amount", 0.0, "config.method.corruption.amount=0.0"),
    ("model.name", "resnet18", "config.model.name='resnet18'"),
])
def test_bad_config_values_name_the_field(field, value, message):
    assert_validation_names(tiny_config("denoising_autoencoder"), field, value, message)


def test_gaussian_std_must_be_at_most_one_pixel_range():
    config = tiny_config("denoising_autoencoder")
    config.method.corruption.update(dict(kind="gaussian", amount=2.0))
    with pytest.raises(ValueError, match=r"config.method.corruption.amount=2.0.*\(0, 1\]"):
        validate.validate(config)
