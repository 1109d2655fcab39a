"""ssl_jax.models.conv_backward: lax's convolution with CPU-friendly gradients.

The gradients must equal those of JAX's own rules for every stride, padding and kernel
size, including the cases that fall back to them; and on the CPU the compiled program must
be the rearranged one (no base-dilated convolution, no `[C, H, W, N]` copy of the input).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ssl_jax.models import conv_backward

NHWC = ("NHWC", "HWIO", "NHWC")


def _grads(conv, x, w, **kwargs):
    """(y, dx, dW) of sum(sin(conv(x, w))): a non-constant cotangent dy = cos(y)."""
    def loss(x, w):
        return jnp.sum(jnp.sin(conv(x, w, **kwargs)))
    return (conv(x, w, **kwargs), *jax.grad(loss, argnums=(0, 1))(x, w))


def _inputs(hw, channels_in, channels_out, kernel, dtype=jnp.float32):
    x = jax.random.normal(jax.random.key(0), (2, *hw, channels_in), dtype)
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, channels_in, channels_out), dtype)
    return x, w


def _assert_close(actual, expected, rtol=2e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kernel, stride, padding, hw", [
    (3, 1, 1, (8, 8)),
    (3, 2, 1, (8, 8)),
    (3, 2, 1, (9, 7)),            # odd sizes: phases of unequal length
    (1, 2, 0, (8, 9)),            # strided 1x1 shortcut: one phase has no kernel tap
    (7, 2, 3, (15, 16)),          # ImageNet stem
    (3, 1, "SAME", (5, 6)),
    (3, 2, "VALID", (9, 8)),
    (3, 2, ((0, 1), (1, 0)), (8, 8)),  # asymmetric padding
    (2, 3, 0, (10, 11)),          # stride larger than the kernel
    (3, 3, 1, (10, 11)),          # weight gradient falls back to lax (dy would need cropping)
])
@pytest.mark.parametrize("channels", [(4, 3), (3, 4)], ids=["cin>cout", "cin<cout"])
def test_gradients_equal_lax(kernel, stride, padding, hw, channels):
    x, w = _inputs(hw, *channels, kernel)
    if isinstance(padding, int):
        padding = ((padding, padding),) * 2
    kwargs = dict(window_strides=(stride, stride), padding=padding, dimension_numbers=NHWC)
    expected = _grads(lax.conv_general_dilated, x, w, **kwargs)
    actual = _grads(conv_backward.conv_general_dilated, x, w, **kwargs)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        _assert_close(a, e)


def test_weight_grad_declines_padding_it_cannot_express():
    x, w = _inputs((10, 11), 4, 3, 3)
    y = lax.conv_general_dilated(x, w, (3, 3), ((1, 1), (1, 1)), dimension_numbers=NHWC)
    assert conv_backward.weight_grad(x, y, (3, 3), (3, 3), ((1, 1), (1, 1))) is None


def test_bfloat16_gradients_keep_their_dtype():
    x, w = _inputs((8, 8), 8, 8, 3, jnp.bfloat16)
    kwargs = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)), dimension_numbers=NHWC)
    expected = _grads(lax.conv_general_dilated, x, w, **kwargs)
    actual = _grads(conv_backward.conv_general_dilated, x, w, **kwargs)
    for a, e in zip(actual, expected):
        assert a.dtype == jnp.bfloat16
        _assert_close(a, e, rtol=3e-2)


@pytest.mark.parametrize("kwargs", [
    dict(dimension_numbers=("NCHW", "OIHW", "NCHW")),
    dict(dimension_numbers=None),                      # lax's default: NCHW
    dict(dimension_numbers=NHWC, rhs_dilation=(2, 2)),
    dict(dimension_numbers=NHWC, feature_group_count=2),
    dict(dimension_numbers=NHWC, precision=lax.Precision.HIGHEST),
], ids=["nchw", "default-dims", "dilated", "groups", "precision"])
def test_other_convolutions_are_lax(kwargs):
    x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8))
    if kwargs["dimension_numbers"] == NHWC:
        x = x.transpose(0, 2, 3, 1)
    groups = kwargs.get("feature_group_count", 1)
    w_shape = (3, 3, 4 // groups, 6)
    if kwargs["dimension_numbers"] != NHWC:
        w_shape = (6, 4, 3, 3)
    w = jax.random.normal(jax.random.key(1), w_shape)
    expected = _grads(lax.conv_general_dilated, x, w, window_strides=(1, 1), padding="SAME",
                      **kwargs)
    actual = _grads(conv_backward.conv_general_dilated, x, w, window_strides=(1, 1),
                    padding="SAME", **kwargs)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


def _compiled_gradient(conv, x, w, stride):
    loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), ((1, 1), (1, 1)),
                                             dimension_numbers=NHWC)))
    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU program")
def test_cpu_program_has_no_base_dilation_nor_channel_major_copy():
    x, w = _inputs((16, 16), 16, 8, 3)
    channel_major = "f32[16,16,16,2]"  # x as [C, H, W, N]: JAX's rule for the weight gradient
    lax_text = _compiled_gradient(lax.conv_general_dilated, x, w, 1)
    ours_text = _compiled_gradient(conv_backward.conv_general_dilated, x, w, 1)
    assert channel_major in lax_text and channel_major not in ours_text
    lax_text = _compiled_gradient(lax.conv_general_dilated, x, w, 2)
    ours_text = _compiled_gradient(conv_backward.conv_general_dilated, x, w, 2)
    assert "lhs_dilate" in lax_text and "lhs_dilate" not in ours_text


def test_flax_conv_with_it_has_lax_kernel_gradient():
    import flax.linen as nn
    conv = functools.partial(nn.Conv, 6, (3, 3), strides=2, padding=1, use_bias=False)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    params = conv().init(jax.random.key(1), x)
    grads = [jax.grad(lambda p: jnp.sum(jnp.sin(module.apply(p, x))))(params)
             for module in (conv(), conv(conv_general_dilated=conv_backward.conv_general_dilated))]
    _assert_close(grads[1]["params"]["kernel"], grads[0]["params"]["kernel"])
