r"""Every convolution of a ResNet backbone, timed alone in XLA and in PyTorch (issue #7).

    OMP_WAIT_POLICY=PASSIVE python bench/conv_layers.py --model resnet18 --stem cifar \
        --batch 256 --image_size 32

Where a train step's convolution time goes, kernel by kernel. The convolutions are the ones
the ssl_jax backbone really runs: `jax.make_jaxpr` of `ResNet.apply` lists each
`conv_general_dilated` (input and kernel shapes, strides, padding); equal ones are timed once
and counted. For each, three programs, each jitted alone (XLA) or called alone (PyTorch):

  forward      y = conv(x, W)
  input grad   dx = dL/dx from dy (not for the stem: nothing needs the image's gradient)
  weight grad  dW = dL/dW from x and dy

XLA's come from `jax.vjp` of the convolution the backbone calls,
`conv_backward.conv_general_dilated` (on the CPU its gradients are stride-1 convolutions laid
out for Eigen; `--rules=lax` times JAX's own rules instead), as in a train step; PyTorch's
are `torch.nn.functional.conv2d` and `aten.convolution_backward` with one output mask each,
channels-last. Times: best of `--reps` calls after one warm-up, ms. The totals weight each
row by its count. `--dtype` float32 (on a GPU: jax's default precision and torch's TF32, as
`bench/step_throughput.py`) or bfloat16.
"""

import collections
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags

from ssl_jax.models import conv_backward, resnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import machine  # noqa: E402  (a sibling script, not a package)

_MODEL = flags.DEFINE_enum("model", "resnet18", ["resnet18", "resnet50"], "Backbone.")
_STEM = flags.DEFINE_enum("stem", "cifar", list(resnet.STEMS), "ResNet stem.")
_BATCH = flags.DEFINE_integer("batch", 256, "Images per convolution (a step's 2 views).")
_SIZE = flags.DEFINE_integer("image_size", 32, "Image height and width.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per program; the best is kept.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Inputs, kernels and gradients (bfloat16: as a bf16 train step).")
_RULES = flags.DEFINE_enum("rules", "ssl_jax", ["ssl_jax", "lax"],
                           "XLA's gradients: conv_backward's (what ResNet runs) or JAX's own.")

Conv = collections.namedtuple("Conv", "x_shape w_shape strides padding")


def backbone_convolutions(model, batch: int, size: int) -> collections.Counter:
    """Counter of the `Conv`s that `model`'s training forward pass runs."""
    x = jnp.zeros((batch, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables)
    found = collections.Counter()

    def visit(inner):  # A Jaxpr; nested ones (pjit, remat) sit in equation params.
        for eqn in inner.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                lhs, rhs = (v.aval.shape for v in eqn.invars)
                found[Conv(lhs, rhs, tuple(eqn.params["window_strides"]),
                           tuple(map(tuple, eqn.params["padding"])))] += 1
            for param in eqn.params.values():
                param = getattr(param, "jaxpr", param)  # ClosedJaxpr -> Jaxpr
                if hasattr(param, "eqns"):
                    visit(param)

    visit(jaxpr.jaxpr)
    return found


def best_ms(call, reps: int, sync) -> float:
    call()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def time_xla(conv: Conv, x, w, dy, reps: int) -> list[float]:
    convolution = (conv_backward.conv_general_dilated if _RULES.value == "ssl_jax"
                   else jax.lax.conv_general_dilated)

    def apply(x, w):
        return convolution(x, w, conv.strides, conv.padding,
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(apply)
    input_grad = jax.jit(lambda w, dy: jax.vjp(lambda x_: apply(x_, w), x)[1](dy)[0])
    weight_grad = jax.jit(lambda x, dy: jax.vjp(lambda w_: apply(x, w_), w)[1](dy)[0])
    x, w, dy = (jax.device_put(a.astype(_DTYPE.value)) for a in (x, w, dy))

    def timed(program, *args):
        return best_ms(lambda: jax.block_until_ready(program(*args)), reps, lambda: None)
    return [timed(forward, x, w), timed(input_grad, w, dy), timed(weight_grad, x, dy)]


def time_torch(conv: Conv, x, w, dy, reps: int, device: torch.device) -> list[float]:
    def nchw(a, perm):
        return torch.from_numpy(a).permute(*perm).contiguous(
            memory_format=torch.channels_last).to(device, getattr(torch, _DTYPE.value))
    xt, dyt = nchw(x, (0, 3, 1, 2)), nchw(dy, (0, 3, 1, 2))
    wt = nchw(w, (3, 2, 0, 1))
    padding = tuple(lo for lo, _ in conv.padding)

    def backward(mask):
        return torch.ops.aten.convolution_backward(dyt, xt, wt, None, conv.strides, padding,
                                                   (1, 1), False, (0, 0), 1, mask)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        return [best_ms(lambda: torch.nn.functional.conv2d(xt, wt, stride=conv.strides,
                                                           padding=padding), reps, sync),
                best_ms(lambda: backward((True, False, False)), reps, sync),
                best_ms(lambda: backward((False, False, True)), reps, sync)]


def main(argv):
    del argv
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count())
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = getattr(resnet, _MODEL.value)(stem=_STEM.value)
    convolutions = backbone_convolutions(model, _BATCH.value, _SIZE.value)
    rng = np.random.default_rng(0)
    print(f"machine: {machine(device)}")
    print(f"command: python bench/conv_layers.py {' '.join(sys.argv[1:])}\n")
    print("| input (N, H, W, C) | kernel | stride | count | XLA fwd / dx / dW (ms) | "
          "PyTorch fwd / dx / dW (ms) | time XLA / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    totals = np.zeros((2, 3))
    for conv, count in convolutions.items():
        x = rng.standard_normal(conv.x_shape, dtype=np.float32)
        w = rng.standard_normal(conv.w_shape, dtype=np.float32) * 0.05
        out = jax.eval_shape(lambda x, w: jax.lax.conv_general_dilated(
            x, w, conv.strides, conv.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")),
            x, w).shape
        dy = rng.standard_normal(out, dtype=np.float32)
        xla = np.array(time_xla(conv, x, w, dy, _REPS.value))
        ref = np.array(time_torch(conv, x, w, dy, _REPS.value, device))
        if conv.x_shape[-1] == 3:  # The stem: the image needs no gradient.
            xla[1] = ref[1] = 0.0
        totals += count * np.stack([xla, ref])
        k_h, k_w, c_in, c_out = conv.w_shape
        print(f"| {conv.x_shape} | {k_h}x{k_w}, {c_in}->{c_out} | {conv.strides[0]} | {count} | "
              f"{' / '.join(f'{t:.1f}' if t else '-' for t in xla)} | "
              f"{' / '.join(f'{t:.1f}' if t else '-' for t in ref)} | "
              f"{xla.sum() / ref.sum():.2f} |", flush=True)
    print(f"| **all, weighted by count** | | | {sum(convolutions.values())} | "
          f"{' / '.join(f'{t:.0f}' for t in totals[0])} = {totals[0].sum():.0f} | "
          f"{' / '.join(f'{t:.0f}' for t in totals[1])} = {totals[1].sum():.0f} | "
          f"{totals[0].sum() / totals[1].sum():.2f} |")


if __name__ == "__main__":
    app.run(main)
