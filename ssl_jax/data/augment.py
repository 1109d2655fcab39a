"""On-device image augmentation, jitted, with independent draws per example.

Views are made inside the jitted train step from the raw uint8 batch, so the
host only decodes and batches. Every op maps a float32 `[H, W, C]` image in
[0, 1] to one in [0, 1] and takes its uniform draws `u` ~ U[0, 1) first (a
scalar, or a vector of the length its `*_DRAWS` constant gives). `augment_view`
makes all the draws of a view at once, u = uniform(key, (B, VIEW_DRAWS)), and
vmaps the chain over the batch with example i reading row i. The draws so depend
only on the key and the example's index, never on how the batch is sharded over
devices (the pixels agree up to float rounding, as XLA compiles each per-device
shape). One draw per view, not one per op and example, also keeps compilation
short: each traced Threefry hash costs XLA:CPU about 0.3 s to compile, and drawing
per op and example would put eight in a view (bench/compile_time.py: the view
compiles in half the time). Images with C == 1 skip the colour-only ops
(saturation, hue, grayscale).

Probabilities and strengths are plain Python numbers, read at trace time: an op
whose probability (or strength) is 0 is left out of the traced program.

SimCLR's recipe (Chen et al. 2020, arXiv:2002.05709, appendix A):
random resized crop (area 0.08-1, aspect 3/4-4/3) + horizontal flip, colour
jitter (0.8s, 0.8s, 0.8s, 0.2s) with p=0.8 in random order, grayscale p=0.2,
Gaussian blur p=0.5 (sigma 0.1-2, kernel 10% of the side); CIFAR-10: s=0.5, no blur.
"""

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L") and torchvision.
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop.
CROP_DRAWS = 2 * CROP_ATTEMPTS + 2  # An area and an aspect per attempt, then the corner.
JITTER_DRAWS = 9  # Four strengths, four order keys, whether to apply.
BLUR_DRAWS = 2  # Sigma, whether to apply.
# `augment_image`'s row of draws: crop, flip, jitter, grayscale, blur, solarize.
VIEW_DRAW_SIZES = (CROP_DRAWS, 1, JITTER_DRAWS, 1, BLUR_DRAWS, 1)
VIEW_DRAWS = sum(VIEW_DRAW_SIZES)

Interval = Sequence[float]  # (low, high)
Scalar = jax.Array | float


def _between(u: jax.Array, low: float, high: float) -> jax.Array:
    """Maps u ~ U[0, 1) to low + (high - low) u ~ U[low, high)."""
    return low + (high - low) * u


def _coin(u: Scalar, prob: float) -> jax.Array:
    """True with probability `prob`: u < prob, u ~ U[0, 1) (never for 0, always for 1)."""
    return u < prob


# --- geometry --------------------------------------------------------------------------------

def crop_and_resize(image: jax.Array, top: Scalar, left: Scalar, height: Scalar, width: Scalar,
                    out_size: int) -> jax.Array:
    """Bilinear resize of the box [top, top + height) x [left, left + width) to out_size^2.

    The box is in (float) pixels. `jax.image.scale_and_translate` maps an input
    coordinate y to y s + t; per axis s = out_size / height, t = -top s sends the
    box onto [0, out_size). Downsampling widens the triangle kernel by 1/s
    (antialiasing, as PIL's resize used by torchvision).
    """
    scale = jnp.stack([out_size / height, out_size / width]).astype(jnp.float32)
    translation = -jnp.stack([top, left]).astype(jnp.float32) * scale
    return jax.image.scale_and_translate(image, (out_size, out_size, image.shape[2]), (0, 1),
                                         scale, translation, "linear", antialias=True)


def sample_crop_box(u: jax.Array, height: int, width: int, scale: Interval,
                    ratio: Interval) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(top, left, h, w) of torchvision's RandomResizedCrop, its 10 attempts vectorised.

    `u`: CROP_DRAWS uniforms. Each attempt draws an area fraction a ~ U(scale) and
    log r ~ U(log ratio), giving w = sqrt(a H W r), h = sqrt(a H W / r); the first
    attempt with w <= W and h <= H is used, with its corner uniform over the valid
    positions.
    If none fits, torchvision's fallback: the centred box of the whole image with
    its aspect ratio clamped to `ratio`. Unlike torchvision, sides and corner are
    not rounded to whole pixels (the bilinear resampling handles sub-pixel boxes).
    """
    area = height * width * _between(u[:CROP_ATTEMPTS], scale[0], scale[1])
    aspect = jnp.exp(_between(u[CROP_ATTEMPTS:-2], math.log(ratio[0]), math.log(ratio[1])))
    w = jnp.sqrt(area * aspect)
    h = jnp.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = jnp.argmax(fits)
    fallback_h, fallback_w = float(height), float(width)
    if width / height < ratio[0]:
        fallback_h = width / ratio[0]
    elif width / height > ratio[1]:
        fallback_w = height * ratio[1]
    found = jnp.any(fits)
    h = jnp.where(found, h[first], fallback_h)
    w = jnp.where(found, w[first], fallback_w)
    top = jnp.where(found, u[-2], 0.5) * (height - h)
    left = jnp.where(found, u[-1], 0.5) * (width - w)
    return top, left, h, w


def random_resized_crop(u: jax.Array, image: jax.Array, *, out_size: int,
                        scale: Interval = (0.08, 1.0),
                        ratio: Interval = (3 / 4, 4 / 3)) -> jax.Array:
    """Inception-style crop (Szegedy et al. 2015) resized to out_size^2 (`sample_crop_box`)."""
    top, left, h, w = sample_crop_box(u, image.shape[0], image.shape[1], scale, ratio)
    return crop_and_resize(image, top, left, h, w, out_size)


def random_flip(u: Scalar, image: jax.Array, prob: float = 0.5) -> jax.Array:
    """Horizontal flip x[:, ::-1] with probability `prob` (when u < prob)."""
    return jnp.where(_coin(u, prob), image[:, ::-1], image)


# --- colour ----------------------------------------------------------------------------------

def grayscale(image: jax.Array) -> jax.Array:
    """Luma 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2) in every channel; identity for C == 1."""
    if image.shape[-1] == 1:
        return image
    gray = image @ jnp.asarray(LUMA, image.dtype)
    return jnp.repeat(gray[..., None], image.shape[-1], axis=-1)


def adjust_brightness(image: jax.Array, factor: Scalar) -> jax.Array:
    """clip(f x, 0, 1) (torchvision's adjust_brightness)."""
    return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor: Scalar) -> jax.Array:
    """clip(m + f (x - m), 0, 1), m the mean luma of the image (torchvision's adjust_contrast)."""
    mean = jnp.mean(grayscale(image)[..., 0])
    return jnp.clip(mean + factor * (image - mean), 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor: Scalar) -> jax.Array:
    """clip(g + f (x - g), 0, 1), g the grayscale image; identity for C == 1."""
    gray = grayscale(image)
    return jnp.clip(gray + factor * (image - gray), 0.0, 1.0)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """RGB -> HSV, all in [0, 1] (hue in turns), as Python's colorsys.

    v = max, s = (max - min) / max, and hue the sector formula: h = (g - b) / d,
    2 + (b - r) / d or 4 + (r - g) / d where r, g or b is the max, over 6, mod 1
    (d = max - min; h = 0 for greys).
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = jnp.max(rgb, axis=-1)
    delta = value - jnp.min(rgb, axis=-1)
    safe_delta = jnp.where(delta > 0, delta, 1.0)
    saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
    hue = jnp.where(value == r, (g - b) / safe_delta,
                    jnp.where(value == g, 2.0 + (b - r) / safe_delta,
                              4.0 + (r - g) / safe_delta))
    hue = jnp.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """HSV -> RGB, the inverse of `rgb_to_hsv`.

    Channel n of (r, g, b) = (5, 3, 1) is v - v s clip(min(k, 4 - k), 0, 1) with
    k = (n + 6h) mod 6 (the closed form of the sector table).
    """
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6.0) % 6.0
        channels.append(value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0))
    return jnp.stack(channels, axis=-1)


def adjust_hue(image: jax.Array, delta: Scalar) -> jax.Array:
    """Rotate the HSV hue by `delta` turns: h -> (h + delta) mod 1; identity for C == 1."""
    if image.shape[-1] == 1:
        return image
    hsv = rgb_to_hsv(image)
    hsv = hsv.at[..., 0].set((hsv[..., 0] + delta) % 1.0)
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def color_jitter(u: jax.Array, image: jax.Array, *, brightness: float, contrast: float,
                 saturation: float, hue: float, prob: float) -> jax.Array:
    """torchvision's ColorJitter (as in SimCLR), applied with probability `prob`.

    Brightness, contrast and saturation factors ~ U[max(0, 1 - s), 1 + s], hue
    delta ~ U[-h, h]; the ops run in a uniformly random order, each clipping to
    [0, 1]. An op with strength 0 is the identity and is left out, as are
    saturation and hue for C == 1. The JITTER_DRAWS uniforms `u` hold it all:
    u[0:4] the four parameters, argsort(u[4:4 + n]) the order of the n ops kept,
    u[8] < prob whether to apply.
    """
    colour = image.shape[-1] > 1
    strengths = (brightness, contrast, saturation if colour else 0.0, hue if colour else 0.0)
    u_param, u_order, u_apply = jnp.split(u, [4, 8])
    ops: list[Callable[[jax.Array], jax.Array]] = []
    for adjust, strength, u in zip((adjust_brightness, adjust_contrast, adjust_saturation),
                                   strengths, u_param):
        if strength > 0:
            ops.append(functools.partial(adjust, factor=_between(u, max(0.0, 1 - strength),
                                                                 1 + strength)))
    if strengths[3] > 0:
        ops.append(functools.partial(adjust_hue, delta=_between(u_param[3], -hue, hue)))
    if not ops:
        return image
    order = jnp.argsort(u_order[:len(ops)])
    # One traced copy of the ops inside the loop keeps the compiled program small.
    jittered = jax.lax.fori_loop(0, len(ops), lambda i, x: jax.lax.switch(order[i], ops, x),
                                 image)
    return jnp.where(u_apply[0] < prob, jittered, image)


def random_grayscale(u: Scalar, image: jax.Array, prob: float) -> jax.Array:
    """`grayscale(image)` with probability `prob` (when u < prob)."""
    return jnp.where(_coin(u, prob), grayscale(image), image)


# --- filters ---------------------------------------------------------------------------------

def gaussian_kernel(sigma: Scalar, kernel_size: int) -> jax.Array:
    """Normalised 1-D Gaussian: w_d = exp(-d^2 / (2 sigma^2)) / sum, d = -r..r, r = size // 2."""
    d = jnp.arange(kernel_size) - kernel_size // 2
    weights = jnp.exp(-jnp.square(d) / (2.0 * jnp.square(sigma)))
    return weights / jnp.sum(weights)


def blur(image: jax.Array, sigma: Scalar, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur (rows, then columns) with reflect padding, as torchvision's.

    y[i] = sum_d w_d x[reflect(i + d)], the kernel from `gaussian_kernel`.
    """
    if kernel_size % 2 == 0 or kernel_size // 2 >= min(image.shape[0], image.shape[1]):
        raise ValueError(f"kernel_size must be odd and smaller than twice the image side, "
                         f"got {kernel_size} for an image of shape {image.shape}")
    weights = gaussian_kernel(sigma, kernel_size)
    radius = kernel_size // 2
    for axis in (0, 1):
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius, radius)
        padded = jnp.pad(image, pad, mode="reflect")
        size = image.shape[axis]
        image = sum(weights[i] * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
                    for i in range(kernel_size))
    return image


def gaussian_blur(u: jax.Array, image: jax.Array, *, prob: float, kernel_size: int,
                  sigma: Interval = (0.1, 2.0)) -> jax.Array:
    """`blur` with sigma ~ U(sigma), applied with probability `prob` (SimCLR appendix A).

    `u`: BLUR_DRAWS uniforms, (sigma, apply when < prob)."""
    u_sigma, u_apply = u
    blurred = blur(image, _between(u_sigma, sigma[0], sigma[1]), kernel_size)
    return jnp.where(u_apply < prob, blurred, image)


def solarize(u: Scalar, image: jax.Array, *, prob: float,
             threshold: float = 0.5) -> jax.Array:
    """x -> x if x < threshold else 1 - x, with probability `prob` (when u < prob; BYOL,
    arXiv:2006.07733)."""
    return jnp.where(_coin(u, prob), jnp.where(image < threshold, image, 1.0 - image), image)


# --- views -----------------------------------------------------------------------------------

def blur_kernel_size(fraction: float, out_size: int) -> int:
    """The odd integer nearest to fraction * out_size, 2 floor(x / 2) + 1, at least 3."""
    return max(3, 2 * math.floor(fraction * out_size / 2) + 1)


def simclr_view(out_size: int, jitter_strength: float = 1.0, blur_prob: float = 0.5,
                crop_scale: Interval = (0.08, 1.0)) -> ml_collections.ConfigDict:
    """SimCLR's augmentation recipe as a view config (see the module docstring)."""
    s = jitter_strength
    return ml_collections.ConfigDict(dict(
        out_size=out_size, crop_scale=tuple(crop_scale), crop_ratio=(3 / 4, 4 / 3),
        flip_prob=0.5, jitter_prob=0.8, brightness=0.8 * s, contrast=0.8 * s,
        saturation=0.8 * s, hue=0.2 * s, grayscale_prob=0.2, blur_prob=blur_prob,
        blur_sigma=(0.1, 2.0), blur_kernel_fraction=0.1, solarize_prob=0.0))


def crop_flip_view(out_size: int, crop_scale: Interval = (0.5, 1.0), flip_prob: float = 0.5
                   ) -> ml_collections.ConfigDict:
    """Random-resized crop (+ horizontal flip) and nothing else: no colour jitter, grayscale,
    blur or solarisation. The view of the pretext tasks that must not be solved from
    colour cues, or whose targets are pixels (RotNet, context prediction, auto-encoders,
    MAE, I-JEPA), and of fine-tuning."""
    view = simclr_view(out_size, jitter_strength=0.0, blur_prob=0.0, crop_scale=crop_scale)
    view.update(dict(jitter_prob=0.0, grayscale_prob=0.0, flip_prob=flip_prob))
    return view


def byol_views(out_size: int, blur: bool = True) -> tuple[ml_collections.ConfigDict,
                                                            ml_collections.ConfigDict]:
    """BYOL's asymmetric pair (Grill et al. 2020, arXiv:2006.07733, table 6): both views
    crop (0.08-1) + flip + jitter (0.4, 0.4, 0.2, 0.1) p=0.8 + grayscale p=0.2; view 1
    blurs with p=1.0 and never solarizes, view 2 blurs with p=0.1 and solarizes with
    p=0.2. `blur=False` drops the blur (small images: solo-learn's CIFAR recipe).

    Returns (view, per_view): the shared view config and the per-view fields, as
    `config.method.view` / `config.method.per_view` take them."""
    view = simclr_view(out_size, jitter_strength=0.5, blur_prob=1.0 if blur else 0.0)
    view.update(dict(saturation=0.2, hue=0.1))
    per_view = ml_collections.ConfigDict(dict(
        blur_prob=(1.0, 0.1) if blur else (0.0, 0.0), solarize_prob=(0.0, 0.2)))
    return view, per_view


def augment_image(u: jax.Array, image: jax.Array, view: ml_collections.ConfigDict,
                  crop: bool = True) -> jax.Array:
    """crop -> flip -> colour jitter -> grayscale -> blur -> solarize, for one image.

    `u`: the VIEW_DRAWS uniforms of the example, split among the ops as
    VIEW_DRAW_SIZES says; ops with probability 0 are skipped. `crop=False` is for
    images the host already cropped: they are only resized to `view.out_size`
    (when not already that size).
    """
    u_crop, u_flip, u_jitter, u_gray, u_blur, u_solarize = jnp.split(
        u, list(itertools.accumulate(VIEW_DRAW_SIZES[:-1])))
    if crop:
        x = random_resized_crop(u_crop, image, out_size=view.out_size, scale=view.crop_scale,
                                ratio=view.crop_ratio)
    elif image.shape[:2] != (view.out_size, view.out_size):
        x = jax.image.resize(image, (view.out_size, view.out_size, image.shape[2]), "linear")
    else:
        x = image
    if view.flip_prob > 0:
        x = random_flip(u_flip[0], x, view.flip_prob)
    if view.jitter_prob > 0:
        x = color_jitter(u_jitter, x, brightness=view.brightness, contrast=view.contrast,
                         saturation=view.saturation, hue=view.hue, prob=view.jitter_prob)
    if view.grayscale_prob > 0:
        x = random_grayscale(u_gray[0], x, view.grayscale_prob)
    if view.blur_prob > 0:
        x = gaussian_blur(u_blur, x, prob=view.blur_prob, sigma=view.blur_sigma,
                          kernel_size=blur_kernel_size(view.blur_kernel_fraction, view.out_size))
    if view.solarize_prob > 0:
        x = solarize(u_solarize[0], x, prob=view.solarize_prob)
    # Convex filters (resize, luma, blur) can overshoot [0, 1] by a float32 rounding step.
    return jnp.clip(x, 0.0, 1.0)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]: x / 255."""
    if images.dtype != jnp.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.astype(jnp.float32) / 255.0


def augment_view(key: jax.Array, images: jax.Array, view: ml_collections.ConfigDict,
                 crop: bool = True) -> jax.Array:
    """One view of a uint8 batch `[B, H, W, C]` -> float32 `[B, out, out, C]` in [0, 1].

    Example i uses row i of u = uniform(key, (B, VIEW_DRAWS)); `view` is read at trace
    time (close over it).
    """
    u = jax.random.uniform(key, (images.shape[0], VIEW_DRAWS))
    return jax.vmap(functools.partial(augment_image, view=view, crop=crop))(u, to_float(images))


def center_view(images: jax.Array, out_size: int) -> jax.Array:
    """The deterministic evaluation input: [0, 1] floats, bilinearly resized to out_size^2.

    Images already out_size x out_size are only converted; others are resized
    whole (no crop, so a non-square image changes its aspect ratio).
    """
    x = to_float(images)
    if x.shape[1:3] == (out_size, out_size):
        return x
    return jax.image.resize(x, (x.shape[0], out_size, out_size, x.shape[-1]), "linear")
