r"""Compile time of the on-device augmentation: one uniform draw per view against one
Threefry hash per op and example, side by side in one process.

    python bench/compile_time.py --repeats 5

Each traced `jax.random` call puts its own Threefry hash in the program, and XLA:CPU
takes a few tenths of a second to compile each one. `augment.augment_view` draws all
of a view's uniforms at once, u = uniform(key, (B, VIEW_DRAWS)); the reference here
(`per_op_view`) runs the same ops on the same layout of draws, but makes them the way
a straightforward version would: a key per example (`split(key, B)`), a key per op
(`split(key, 6)`) and a uniform call per op, eight hashes in all. The second pair of
rows times the whole SimCLR train step of the quickstart config (1 device, two views)
with each. Compilations alternate between the variants, each from a fresh function
so nothing is cached; the table gives the median seconds and the mean ratio of the
repeats, with its standard deviation.
"""

import contextlib

import functools
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from ssl_jax.data import augment

_REPEATS = flags.DEFINE_integer("repeats", 5, "Compilations per variant (at least 2).",
                                 lower_bound=2)
_BATCH = flags.DEFINE_integer("batch_size", 256, "Images per view.")
_SIZE = flags.DEFINE_integer("image_size", 32, "Image side (the view's out_size too).")


def per_op_view(key: jax.Array, images: jax.Array, view, crop: bool = True) -> jax.Array:
    """`augment.augment_view` with a key per example and per op: eight Threefry hashes."""
    def one(key, image):
        keys = jax.random.split(key, len(augment.VIEW_DRAW_SIZES))
        u = jnp.concatenate([jax.random.uniform(k, (n,))
                             for k, n in zip(keys, augment.VIEW_DRAW_SIZES)])
        return augment.augment_image(u, image, view, crop)

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), augment.to_float(images))


def compile_seconds(fn, *args) -> float:
    """Trace, lower and compile a fresh `jax.jit(fn)`; seconds."""
    start = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - start


@contextlib.contextmanager
def views_made_by(view_fn):
    """Methods make their views with `view_fn` instead of `augment.augment_view`."""
    original = augment.augment_view
    augment.augment_view = view_fn
    try:
        yield
    finally:
        augment.augment_view = original


def quickstart_step_seconds(view_fn) -> float:
    """Compile seconds of the quickstart config's SimCLR train step on one device, its
    views made by `view_fn`."""
    from ssl_jax import sharding, train
    from ssl_jax.config import load_config_file
    from ssl_jax.data import sources

    config = load_config_file("configs/quickstart.py")
    config.mesh.num_devices = 1
    run = train.build(config, sources.load(config.input))
    state = train.init_state(run)
    batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
    with views_made_by(view_fn):
        return compile_seconds(lambda s, b: train.train_step(run, s, b), state, batch)


def row(name: str, seconds: list[float], ratios: list[float] | None = None) -> str:
    ratio = (f"{statistics.mean(ratios):.2f} ± {statistics.stdev(ratios):.2f}" if ratios
             else "1")
    return f"| {name} | {statistics.median(seconds):.2f} | {ratio} |"


def main(argv):
    del argv
    jax.config.update("jax_threefry_partitionable", False)  # As the tests run.
    view = augment.simclr_view(_SIZE.value, jitter_strength=1.0, blur_prob=0.5)
    view.solarize_prob = 0.5  # Every op in the program.
    images = jnp.zeros((_BATCH.value, _SIZE.value, _SIZE.value, 3), jnp.uint8)
    key = jax.random.key(0)
    compile_seconds(lambda x: x + 1, jnp.ones(3))  # Backend start-up, not counted.
    one_draw = augment.augment_view
    seconds = {name: [] for name in ("view", "view_per_op", "step", "step_per_op")}
    for _ in range(_REPEATS.value):
        seconds["view"].append(compile_seconds(
            functools.partial(one_draw, view=view), key, images))
        seconds["view_per_op"].append(compile_seconds(
            functools.partial(per_op_view, view=view), key, images))
        seconds["step"].append(quickstart_step_seconds(one_draw))
        seconds["step_per_op"].append(quickstart_step_seconds(per_op_view))
    ratio = lambda a, b: [x / y for x, y in zip(seconds[a], seconds[b])]  # noqa: E731
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}; view: batch "
          f"{_BATCH.value}, {_SIZE.value}x{_SIZE.value}x3, SimCLR ops + solarize; "
          f"{_REPEATS.value} compilations each")
    print("| program | compile (s), median | ratio one draw / per op |")
    print("|---|---|---|")
    print(row("view, one uniform draw (augment_view)", seconds["view"],
              ratio("view", "view_per_op")))
    print(row("view, a hash per op and example (per_op_view)", seconds["view_per_op"]))
    print(row("quickstart SimCLR train step, 1 device, augment_view", seconds["step"],
              ratio("step", "step_per_op")))
    print(row("the same step with per_op_view", seconds["step_per_op"]))


if __name__ == "__main__":
    app.run(main)
