r"""Context prediction (Doersch, Gupta, Efros 2015) on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, no flips) with crops of 50-100% of the area (the method's
default; the 30% crops of the other MNIST configs zoom in so far that most grid
cells hold a piece of one stroke, and the short test run learns the task more
slowly with them). On each 28x28 view a 3x3 grid of 6x6 patches with gap 3 and
jitter 1 (3*6 + 2*3 + 2*1 = 26 pixels): two patches are always at least one
pixel apart (gap > 2 jitter), so no stroke runs straight across their border.
A batch of 256 images gives 256 (centre, neighbour) pairs, 512 patches through
the shared backbone, and a 2-layer head (hidden 512) on the concatenated pair.
Evaluation uses the backbone on whole 28x28 images.

    python -m ssl_jax.main --config configs/context_prediction_mnist.py \
        --workdir /tmp/context_prediction_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("context_prediction")
    config.method.update(dict(patch_size=6, gap=3, jitter=1))
    config.method.view.crop_scale = (0.5, 1.0)
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
