r"""BYOL on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with BYOL's heads
(projector and predictor 512 -> 128), a target EMA going 0.99 -> 1 (cosine) and
the asymmetric views without blur: view 2 solarizes with p = 0.2.

    python -m ssl_jax.main --config configs/byol_mnist.py --workdir /tmp/byol_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("byol")
    config.method.per_view.solarize_prob = (0.0, 0.2)
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
