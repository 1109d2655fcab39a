r"""A 2-D convolution whose backward pass is laid out for XLA:CPU's Eigen kernels (issue #7).

`conv_general_dilated` is a drop-in for `lax.conv_general_dilated` (Flax:
`nn.Conv(..., conv_general_dilated=conv_general_dilated)`). The forward pass is lax's; the
gradients are the same numbers (to float rounding), computed as stride-1 convolutions that
XLA:CPU runs on Eigen without expensive copies. Per spatial axis, with stride s, padding
(pl, pr), kernel size K and xpad the zero-padded input:

    y[n, o]  = sum_k xpad[n, s o + k] . w[k]                      (forward, lax)
    dW[k]    = sum_{n, o} xpad[n, s o + k]^T dy[n, o]             (weight gradient)
    dx[n, i] = sum_{o, k : s o + k - pl = i} dy[n, o] . w[k]^T     (input gradient)

**Weight gradient.** JAX's transpose rule hands XLA a convolution whose batch axis is x's
channels and whose feature axis is x's batch; XLA:CPU first copies x to `[C, H, W, N]`. That
copy is a full transpose, and XLA fuses into it the BatchNorm, ReLU and residual additions
that produced x, recomputed with strided reads from up to three convolution outputs: in the
ResNet-18 CIFAR step at batch 128 these copies took 2.1 s of a 7 s step (`docs/BENCHMARKS.md`,
"Convolution gradients for XLA:CPU"). Here the roles swap: dy is the input (batch = its
channels, features = its batch) and x the kernel, so x is copied to `[H, W, N, C]` (runs of
C contiguous values: cheap, recomputation included) and only dy, most often already in
memory, is fully transposed. Where x has fewer elements than dy (a stem convolution over
3 colour channels) JAX's rule is already the cheaper one and is kept. For stride s the
input splits into s^2 phases x_r[m] = x[s m + r]; with k - pl = s t + r,

    dW[s t + pl + r] = sum_{n, o} x_r[n, o + t]^T dy[n, o]   (one stride-1 convolution per
                                                            phase r)

**Input gradient, s > 1.** JAX's rule is a convolution with base (input) dilation s, which
XLA:CPU does not give to Eigen but runs as a generic loop (0.4 s of the step above). Here,
for the output phase i = s m + r, with c = (r + pl) mod s and e = (r + pl - c) / s,

    dx[s m + r] = sum_q dy[m + e - q] . w[s q + c]^T   (the sub-pixel decomposition of a
                                                      transposed convolution)

s^2 stride-1 convolutions with the sub-kernels w[c::s], interleaved back into dx.

Only CPU programs change: `lax.platform_dependent` keeps JAX's rule on GPU and TPU, where
the convolution libraries take the usual layouts. lax runs the whole convolution, gradients
included, for what this module does not rearrange: other dimension numbers than
NHWC/HWIO/NHWC, dilation, feature groups, an explicit `precision`. JAX's weight-gradient
rule also stays where a phase of x has fewer rows than its convolution with dy needs (dy
would have to be cropped: e.g. a 3x3 kernel at stride 3, padding 1, on 10 rows).
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)


def _weight_grad_phases(size: int, out: int, k: int, s: int, pl: int
                        ) -> list[tuple[int, int, int, int, int]] | None:
    """Along one axis: per phase r of x, (r, first kernel tap k0, padding of dy (lo, hi), taps);
    the taps are k0, k0 + s, ... . None where dy would need cropping (negative padding)."""
    phases = []
    for r in range(s):
        offsets = [(tap - pl - r) // s for tap in range(k) if (tap - pl - r) % s == 0]
        if not offsets:
            continue
        lo, hi = max(offsets), len(range(r, size, s)) - min(offsets) - out
        if lo < 0 or hi < 0:
            return None
        phases.append((r, s * min(offsets) + pl + r, lo, hi, len(offsets)))
    return phases


def weight_grad(x: jax.Array, dy: jax.Array, kernel_size: Sequence[int],
                strides: tuple[int, int], padding: Padding) -> jax.Array | None:
    """dW `[kh, kw, C_in, C_out]` with x as the kernel of a stride-1 convolution per phase (see
    the module docstring); None where a phase would need dy cropped."""
    per_axis = [_weight_grad_phases(x.shape[1 + a], dy.shape[1 + a], kernel_size[a], strides[a],
                                    padding[a][0]) for a in range(2)]
    if None in per_axis:
        return None
    (sh, sw), (rows, cols) = strides, per_axis
    dw = jnp.zeros((*kernel_size, x.shape[3], dy.shape[3]), dy.dtype)
    for rh, kh0, lo_h, hi_h, taps_h in rows:
        for rw, kw0, lo_w, hi_w, taps_w in cols:
            # Batch: dy's channels; features: the images; kernel: phase (rh, rw) of x.
            out = lax.conv_general_dilated(dy, x[:, rh::sh, rw::sw], (1, 1),
                                           ((lo_h, hi_h), (lo_w, hi_w)),
                                           dimension_numbers=("CHWN", "IHWO", "NHWC"))
            taps = jnp.flip(out, (1, 2)).transpose(1, 2, 3, 0).astype(dw.dtype)
            dw = dw.at[kh0:kh0 + sh * (taps_h - 1) + 1:sh,
                       kw0:kw0 + sw * (taps_w - 1) + 1:sw].set(taps)
    return dw


def input_grad(dy: jax.Array, w: jax.Array, x_shape: Sequence[int], strides: tuple[int, int],
               padding: Padding) -> jax.Array:
    """dx `x_shape` as s_h * s_w stride-1 convolutions of dy, one per phase of dx, interleaved
    (see the module docstring)."""
    n, height, width, channels = x_shape
    (kh, kw), (sh, sw) = w.shape[:2], strides
    rows_per_phase, cols_per_phase = -(-height // sh), -(-width // sw)
    phase_rows = []
    for rh in range(sh):
        phase_cols = []
        for rw in range(sw):
            phase_cols.append(_input_grad_phase(dy, w, (height, width), (kh, kw), strides,
                                                padding, (rh, rw), (rows_per_phase,
                                                                    cols_per_phase)))
        phase_rows.append(jnp.stack(phase_cols, axis=3))  # [n, rows, cols, s_w, C_in]
    dx = jnp.stack(phase_rows, axis=2)  # [n, rows, s_h, cols, s_w, C_in]
    dx = dx.reshape(n, rows_per_phase * sh, cols_per_phase * sw, channels)
    return dx[:, :height, :width]


def _input_grad_phase(dy: jax.Array, w: jax.Array, size: tuple[int, int],
                      kernel_size: tuple[int, int], strides: tuple[int, int], padding: Padding,
                      phase: tuple[int, int], padded_size: tuple[int, int]) -> jax.Array:
    """dx[:, r_h::s_h, r_w::s_w], zero-padded at the end to `padded_size`."""
    sub, pads, crop, lengths = [], [], [], []
    for a in range(2):
        s, r, pl = strides[a], phase[a], padding[a][0]
        c = (r + pl) % s
        e = (r + pl - c) // s
        taps = len(range(c, kernel_size[a], s))
        if taps == 0:  # no kernel tap lands on this phase
            return jnp.zeros((dy.shape[0], *padded_size, w.shape[2]), dy.dtype)
        lengths.append(len(range(r, size[a], s)))
        sub.append(slice(c, None, s))
        lo = taps - 1 - e  # dy's padding before its first row; negative: rows to skip
        start = max(-lo, 0)
        stop = min(dy.shape[1 + a], lengths[a] + taps - 1 - lo)
        crop.append(slice(start, stop))
        pads.append((max(lo, 0), lengths[a] + taps - 1 - max(lo, 0) - (stop - start)))
    kernel = jnp.flip(w[sub[0], sub[1]], (0, 1))
    out = lax.conv_general_dilated(dy[:, crop[0], crop[1]], kernel, (1, 1), pads,
                                   dimension_numbers=("NHWC", "HWOI", "NHWC"))
    return jnp.pad(out, ((0, 0), (0, padded_size[0] - lengths[0]),
                         (0, padded_size[1] - lengths[1]), (0, 0)))


def _lax_grads(x, w, dy, strides, padding):
    _, vjp = jax.vjp(functools.partial(_conv, strides=strides, padding=padding), x, w)
    return vjp(dy)


def _cpu_grads(x, w, dy, strides, padding):
    dw = None if x.size < dy.size else weight_grad(x, dy, w.shape[:2], strides, padding)
    if dw is None:  # JAX's rule for the weight gradient alone
        dw, = jax.linear_transpose(lambda w: _conv(x, w, strides, padding), w)(dy)
    if strides == (1, 1):
        dx, = jax.linear_transpose(lambda x: _conv(x, w, strides, padding), x)(dy)
    else:
        dx = input_grad(dy, w, x.shape, strides, padding)
    return dx.astype(x.dtype), dw.astype(w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu_backward(x, w, strides, padding):
    return _conv(x, w, strides, padding)


def _forward(x, w, strides, padding):
    return _conv(x, w, strides, padding), (x, w)


def _backward(strides, padding, residuals, dy):
    x, w = residuals
    return lax.platform_dependent(
        x, w, dy, cpu=functools.partial(_cpu_grads, strides=strides, padding=padding),
        default=functools.partial(_lax_grads, strides=strides, padding=padding))


_conv_cpu_backward.defvjp(_forward, _backward)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> jax.Array:
    """`lax.conv_general_dilated`, whose gradients on the CPU are computed as in the module
    docstring (2-D NHWC/HWIO convolutions without dilation or groups; lax otherwise)."""
    lax_conv = functools.partial(
        lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
    if lhs.ndim != 4 or rhs.ndim != 4:
        return lax_conv()
    standard = lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
    given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    undilated = all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
    if (given != standard or not undilated or feature_group_count != 1
            or batch_group_count != 1 or precision is not None
            or preferred_element_type is not None):
        return lax_conv()
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_cpu_backward(lhs, rhs, strides, padding)
