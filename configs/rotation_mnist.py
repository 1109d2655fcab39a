r"""Rotation prediction (RotNet) on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips), each image in all four
rotations (a batch of 256 images is 1,024 network inputs), a linear rotation
classifier on the backbone features.

    python -m ssl_jax.main --config configs/rotation_mnist.py --workdir /tmp/rotation_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("rotation")
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
