r"""MoCo v3 on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with MoCo v3's heads
(projector and predictor end in BN without affine; 512 -> 128), temperature 0.2,
momentum 0.99 -> 1 (cosine).

    python -m ssl_jax.main --config configs/mocov3_mnist.py --workdir /tmp/mocov3_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("mocov3")
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
