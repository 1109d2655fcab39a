"""On-device augmentations: NumPy references for the deterministic parts, invariants and
statistics for the random ones, and the same output on 1 device as on 8."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssl_jax.data import augment

LUMA = np.array([0.299, 0.587, 0.114])


def random_image(seed: int, size: int = 12, channels: int = 3,
                 width: int | None = None) -> np.ndarray:
    """A float32 `[size, width or size, channels]` image, uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(size, width or size, channels)).astype(np.float32)


def random_batch(seed: int, batch: int, size: int, channels: int = 3) -> np.ndarray:
    """A uint8 `[batch, size, size, channels]` batch."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, size, size, channels), dtype=np.uint8)


def full_view(out_size: int) -> ml_collections.ConfigDict:
    """SimCLR's ImageNet view with solarization too: every op is in the program."""
    view = augment.simclr_view(out_size, jitter_strength=1.0, blur_prob=0.5)
    view.solarize_prob = 0.5
    return view


# Shared by the view tests, so that its single-device compilation is reused.
full_view_fn = jax.jit(functools.partial(augment.augment_view, view=full_view(8)))


def draws(key: jax.Array, count: int | None = None) -> jax.Array:
    """An op's uniform draws from `key`: a scalar, or `count` of them."""
    return jax.random.uniform(key, () if count is None else (count,))


RANDOM_OPS = {  # Each takes a key and draws what its op needs.
    "crop": lambda k, x: augment.random_resized_crop(draws(k, augment.CROP_DRAWS), x,
                                                     out_size=8),
    "flip": lambda k, x: augment.random_flip(draws(k), x, 1.0),
    "jitter": lambda k, x: augment.color_jitter(draws(k, augment.JITTER_DRAWS), x,
                                                brightness=0.8, contrast=0.8, saturation=0.8,
                                                hue=0.2, prob=1.0),
    "grayscale": lambda k, x: augment.random_grayscale(draws(k), x, 1.0),
    "blur": lambda k, x: augment.gaussian_blur(draws(k, augment.BLUR_DRAWS), x, prob=1.0,
                                               kernel_size=5),
    "solarize": lambda k, x: augment.solarize(draws(k), x, prob=1.0),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_op_shape_dtype_range_and_determinism(name, channels):
    op = jax.jit(RANDOM_OPS[name])
    image = jnp.asarray(random_image(0, channels=channels))
    out = op(jax.random.key(0), image)
    size = 8 if name == "crop" else 12
    assert out.shape == (size, size, channels) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(op(jax.random.key(0), image)), np.asarray(out))


@pytest.mark.parametrize("name", ["crop", "jitter", "blur"])
def test_different_draws_give_different_outputs(name):
    op = jax.jit(RANDOM_OPS[name])
    image = jnp.asarray(random_image(1))
    assert not np.allclose(op(jax.random.key(0), image), op(jax.random.key(1), image))


def test_prob_zero_is_identity():
    image = jnp.asarray(random_image(2))

    @jax.jit
    def all_ops(u, image):  # u = 0, the smallest draw: still never below a probability of 0.
        return [augment.random_flip(u[0], image, 0.0),
                augment.color_jitter(u[:augment.JITTER_DRAWS], image, brightness=0.8,
                                     contrast=0.8, saturation=0.8, hue=0.2, prob=0.0),
                augment.random_grayscale(u[0], image, 0.0),
                augment.gaussian_blur(u[:augment.BLUR_DRAWS], image, prob=0.0, kernel_size=5),
                augment.solarize(u[0], image, prob=0.0)]

    for out in all_ops(jnp.zeros(augment.JITTER_DRAWS), image):
        np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


# --- geometry --------------------------------------------------------------------------------

def test_flip_with_prob_one_reverses_columns():
    image = random_image(4, width=7)
    out = augment.random_flip(0.99, jnp.asarray(image), 1.0)
    np.testing.assert_array_equal(np.asarray(out), image[:, ::-1])


def test_flip_half_of_the_examples():
    images = jnp.asarray(random_image(5, size=4))[None].repeat(512, axis=0)
    u = jax.random.uniform(jax.random.key(6), (512,))
    out = jax.jit(jax.vmap(augment.random_flip))(u, images)
    flipped = np.asarray(jnp.all(out == images[:, :, ::-1], axis=(1, 2, 3)))
    kept = np.asarray(jnp.all(out == images, axis=(1, 2, 3)))
    assert np.all(flipped ^ kept)
    assert abs(flipped.sum() - 256) < 4 * np.sqrt(512 * 0.25)  # 4 standard deviations.


def test_full_crop_without_resize_is_identity():
    image = random_image(7, size=10)
    crop = jax.jit(functools.partial(augment.random_resized_crop, out_size=10, scale=(1.0, 1.0),
                                     ratio=(1.0, 1.0)))
    out = crop(draws(jax.random.key(0), augment.CROP_DRAWS), jnp.asarray(image))
    np.testing.assert_allclose(np.asarray(out), image, atol=1e-5)


def test_crop_and_resize_matches_numpy_bilinear():
    """Upsampling a box: separable linear interpolation at c_i = top + (i + 1/2) h / out - 1/2."""
    image = random_image(8, size=10, width=12)
    top, left, height, width, out_size = 2.5, 1.0, 4.0, 6.0, 9
    got = jax.jit(augment.crop_and_resize, static_argnums=5)(jnp.asarray(image), top, left, height,
                                                            width, out_size)
    rows = top + (np.arange(out_size) + 0.5) * height / out_size - 0.5
    cols = left + (np.arange(out_size) + 0.5) * width / out_size - 0.5
    along_rows = np.stack([[np.interp(rows, np.arange(10), image[:, j, c]) for j in range(12)]
                           for c in range(3)], axis=-1)  # [W, out, C]
    want = np.stack([[np.interp(cols, np.arange(12), along_rows[:, i, c]) for i in range(out_size)]
                     for c in range(3)], axis=-1)  # [out, out, C]
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_crop_boxes_lie_inside_the_image_with_the_drawn_area_and_aspect():
    height, width, scale, ratio = 20, 30, (0.08, 1.0), (3 / 4, 4 / 3)
    sample = jax.jit(jax.vmap(lambda u: augment.sample_crop_box(u, height, width, scale, ratio)))
    u = jax.random.uniform(jax.random.key(9), (2000, augment.CROP_DRAWS))
    top, left, h, w = map(np.asarray, sample(u))
    eps = 1e-4
    assert np.all(top >= 0) and np.all(left >= 0)
    assert np.all(top + h <= height + eps) and np.all(left + w <= width + eps)
    fraction = h * w / (height * width)
    assert np.all(fraction >= scale[0] - eps) and np.all(fraction <= scale[1] + eps)
    assert np.all(w / h >= ratio[0] - eps) and np.all(w / h <= ratio[1] + eps)
    assert fraction.min() < 0.15 and fraction.max() > 0.6  # The range is explored.
    assert top.std() > 1.0 and left.std() > 1.0


def test_crop_fallback_is_the_centred_box_with_clamped_aspect():
    # An area of twice the image never fits: torchvision's centre-crop fallback.
    sample = jax.jit(lambda u: augment.sample_crop_box(u, 10, 40, (2.0, 2.0), (0.75, 4 / 3)))
    top, left, h, w = sample(draws(jax.random.key(0), augment.CROP_DRAWS))
    np.testing.assert_allclose([top, left, h, w], [0.0, (40 - 40 / 3) / 2, 10.0, 40 / 3],
                               rtol=1e-6)


# --- colour ----------------------------------------------------------------------------------

def test_grayscale_uses_the_luma_weights():
    image = random_image(10)
    out = np.asarray(augment.random_grayscale(0.99, jnp.asarray(image), 1.0))
    np.testing.assert_allclose(out, np.repeat((image @ LUMA)[..., None], 3, axis=-1), atol=1e-6)
    gray = random_image(10, channels=1)
    np.testing.assert_array_equal(np.asarray(augment.grayscale(jnp.asarray(gray))), gray)


def test_brightness_contrast_saturation_match_numpy():
    image = random_image(11)
    factor = 1.3
    gray = (image @ LUMA)[..., None]
    want = {
        augment.adjust_brightness: np.clip(image * factor, 0, 1),
        augment.adjust_contrast: np.clip(gray.mean() + factor * (image - gray.mean()), 0, 1),
        augment.adjust_saturation: np.clip(gray + factor * (image - gray), 0, 1),
    }
    for adjust, expected in want.items():
        np.testing.assert_allclose(np.asarray(adjust(jnp.asarray(image), factor)), expected,
                                   atol=1e-6, err_msg=adjust.__name__)
    # Factor 0: black, the mean grey, the grayscale image.
    np.testing.assert_allclose(augment.adjust_saturation(jnp.asarray(image), 0.0),
                               np.repeat(gray, 3, axis=-1), atol=1e-6)


def test_hsv_round_trip_matches_colorsys():
    image = random_image(12, size=6)
    image[0, 0] = [0.4, 0.4, 0.4]  # A grey: hue and saturation 0.
    image[0, 1] = [0.0, 0.0, 0.0]
    round_trip = jax.jit(lambda x: (augment.rgb_to_hsv(x),
                                    augment.hsv_to_rgb(augment.rgb_to_hsv(x))))
    hsv, rgb = round_trip(jnp.asarray(image))
    want = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in image.reshape(-1, 3)])
    np.testing.assert_allclose(np.asarray(hsv).reshape(-1, 3), want, atol=1e-6)
    np.testing.assert_allclose(rgb, image, atol=1e-6)


def test_hue_rotation():
    image = random_image(13, size=6)
    image[0, :3] = np.eye(3)  # red, green, blue
    adjust_hue = jax.jit(augment.adjust_hue)
    np.testing.assert_allclose(adjust_hue(jnp.asarray(image), 0.0), image, atol=1e-6)
    rotated = np.asarray(adjust_hue(jnp.asarray(image), 1 / 3))
    np.testing.assert_allclose(rotated[0, :3], np.roll(np.eye(3), 1, axis=1),
                               atol=1e-6)  # red -> green, green -> blue, blue -> red
    want = [colorsys.hsv_to_rgb((h + 1 / 3) % 1, s, v)
            for h, s, v in (colorsys.rgb_to_hsv(*pixel) for pixel in image.reshape(-1, 3))]
    np.testing.assert_allclose(rotated.reshape(-1, 3), want, atol=1e-5)
    gray = random_image(13, channels=1)
    np.testing.assert_array_equal(np.asarray(augment.adjust_hue(jnp.asarray(gray), 0.25)), gray)


def test_jitter_factors_lie_in_their_ranges():
    image = jnp.full((4, 4, 3), 0.5)  # Bright enough that the brightness factor is not clipped.

    @jax.jit
    @jax.vmap
    def brightness_only(u):
        return augment.color_jitter(u, image, brightness=0.4, contrast=0.0, saturation=0.0,
                                    hue=0.0, prob=1.0)

    u = jax.random.uniform(jax.random.key(0), (64, augment.JITTER_DRAWS))
    factors = np.asarray(brightness_only(u))[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.min() < 0.7 and factors.max() > 1.3


def test_jitter_order_is_random():
    """Brightness and contrast in the order drawn: they differ once values clip."""
    image = jnp.asarray(random_image(14))

    @jax.jit
    @jax.vmap
    def jitter_and_references(u):
        out = augment.color_jitter(u, image, brightness=0.9, contrast=0.9, saturation=0.0,
                                   hue=0.0, prob=1.0)
        # The draw layout documented by color_jitter.
        b, c = 0.1 + 1.8 * u[0], 0.1 + 1.8 * u[1]
        b_first = augment.adjust_contrast(augment.adjust_brightness(image, b), c)
        c_first = augment.adjust_brightness(augment.adjust_contrast(image, c), b)
        return out, b_first, c_first, u[4] < u[5]

    out, b_first, c_first, brightness_first = map(
        np.asarray, jitter_and_references(
            jax.random.uniform(jax.random.key(1), (64, augment.JITTER_DRAWS))))
    np.testing.assert_allclose(out[brightness_first], b_first[brightness_first], atol=1e-6)
    np.testing.assert_allclose(out[~brightness_first], c_first[~brightness_first], atol=1e-6)
    assert 10 < brightness_first.sum() < 54
    assert np.abs(b_first - c_first).max() > 0.1  # The two orders are distinguishable.


# --- filters ---------------------------------------------------------------------------------

def numpy_blur(image: np.ndarray, sigma: float, kernel_size: int) -> np.ndarray:
    """Reflect-padded separable Gaussian, one 1-D convolution per row and column."""
    d = np.arange(kernel_size) - kernel_size // 2
    kernel = np.exp(-d ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    r = kernel_size // 2
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(3)], mode="reflect")
        out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded)
    return out


def test_gaussian_kernel_is_normalised_and_matches_numpy():
    kernel = np.asarray(augment.gaussian_kernel(1.5, 7))
    d = np.arange(-3, 4)
    want = np.exp(-d ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(kernel, want / want.sum(), rtol=1e-6)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)


def test_blur_matches_numpy_and_preserves_constants():
    image = random_image(15, width=9)
    blur = jax.jit(augment.blur, static_argnums=2)
    np.testing.assert_allclose(blur(jnp.asarray(image), 1.2, 5), numpy_blur(image, 1.2, 5),
                               atol=1e-6)
    constant = jnp.full((12, 12, 3), 0.3)
    out = jax.jit(functools.partial(augment.gaussian_blur, prob=1.0, kernel_size=7))(
        draws(jax.random.key(0), augment.BLUR_DRAWS), constant)
    np.testing.assert_allclose(out, constant, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        augment.blur(jnp.asarray(image), 1.0, 4)


def test_solarize_matches_numpy():
    image = random_image(16)
    out = augment.solarize(0.99, jnp.asarray(image), prob=1.0, threshold=0.5)
    np.testing.assert_array_equal(np.asarray(out), np.where(image < 0.5, image, 1 - image))


# --- views -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction,out_size,want", [(0.1, 224, 23), (0.1, 96, 9), (0.1, 32, 3),
                                                     (0.1, 8, 3), (0.5, 14, 7), (0.5, 16, 9)])
def test_blur_kernel_size_is_the_nearest_odd_integer(fraction, out_size, want):
    assert augment.blur_kernel_size(fraction, out_size) == want


def test_simclr_view_follows_the_paper():
    view = augment.simclr_view(32, jitter_strength=0.5, blur_prob=0.0)
    assert (view.brightness, view.contrast, view.saturation, view.hue) == pytest.approx(
        (0.4, 0.4, 0.4, 0.1))
    assert (view.jitter_prob, view.grayscale_prob, view.flip_prob) == (0.8, 0.2, 0.5)
    assert tuple(view.crop_scale) == (0.08, 1.0) and view.blur_prob == 0.0


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_view_shape_range_and_keys(channels):
    images = jnp.asarray(random_batch(17, 8, 12, channels))
    out = full_view_fn(jax.random.key(0), images)
    assert out.shape == (8, 8, 8, channels) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(full_view_fn(jax.random.key(0), images)),
                                  np.asarray(out))
    assert not np.allclose(full_view_fn(jax.random.key(1), images), out)
    # Per-example draws: image 0 moved to index 7 gets another view.
    assert not np.allclose(out[0], full_view_fn(jax.random.key(0), images[::-1])[7])


def test_augment_view_is_independent_of_sharding():
    """Same keys, same draws: equal up to float rounding (XLA may fuse per-device shapes
    differently, which changes the last bit of a few pixels)."""
    images = random_batch(18, 8, 12)
    key = jax.random.key(2)
    single = full_view_fn(key, jnp.asarray(images))  # On the default device.
    assert len(single.sharding.device_set) == 1
    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.size == 8
    sharded_images = jax.device_put(images, NamedSharding(mesh, PartitionSpec("data")))
    sharded = full_view_fn(key, sharded_images)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=0, atol=1e-6)


def test_center_view_converts_and_resizes():
    images = random_batch(19, 2, 8)
    np.testing.assert_allclose(augment.center_view(jnp.asarray(images), 8), images / 255.0,
                               rtol=1e-6)
    resized = augment.center_view(jnp.asarray(images), 16)
    assert resized.shape == (2, 16, 16, 3) and resized.dtype == jnp.float32
    with pytest.raises(TypeError, match="uint8"):
        augment.center_view(jnp.asarray(images, jnp.float32), 8)


def test_host_cropped_views_skip_the_crop_and_use_their_own_crop():
    """`crop=False` (images the host already cropped) keeps the pixels when they have the
    view's size and only resizes otherwise; a method's view i reads `crops[:, i]`."""
    from ssl_jax.config import base_config
    from ssl_jax.methods import build

    view = augment.simclr_view(8, jitter_strength=0.0, blur_prob=0.0)
    view.update(dict(flip_prob=0.0, grayscale_prob=0.0, jitter_prob=0.0))
    images = jnp.asarray(random_batch(20, 4, 8, 3))
    kept = augment.augment_view(jax.random.key(0), images, view, crop=False)
    np.testing.assert_allclose(np.asarray(kept), np.asarray(images) / 255.0, atol=1e-7)
    cropped = augment.augment_view(jax.random.key(0), images, view)
    assert not np.allclose(np.asarray(cropped), np.asarray(kept))
    resized = augment.augment_view(jax.random.key(0), jnp.asarray(random_batch(21, 4, 16, 3)),
                                   view, crop=False)
    assert resized.shape == (4, 8, 8, 3)

    config = base_config(image_size=8)
    config.method.view = view
    method = build(config, num_classes=10)
    other = jnp.asarray(random_batch(22, 4, 8, 3))
    batch = {"crops": jnp.stack([images, other], axis=1)}
    for index, source in enumerate((images, other)):
        got = method.view(jax.random.key(1), batch, view, index)
        assert not np.allclose(got, method.view(jax.random.key(1), batch, view, 1 - index))
        np.testing.assert_allclose(
            np.asarray(got), np.asarray((source / 255.0 - jnp.asarray(config.input.mean))
                                        / jnp.asarray(config.input.std)), atol=1e-5)


def test_a_view_hashes_its_key_once():
    """All of a view's draws come from one Threefry hash: each traced hash costs XLA:CPU
    ~0.3 s of compilation, and one per op and example would be eight per view."""
    lowered = full_view_fn.lower(jax.random.key(0), jnp.asarray(random_batch(23, 8, 12)))
    assert lowered.as_text().count("func.func private @threefry2x32") == 1
