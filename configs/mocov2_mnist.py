r"""MoCo v2 on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with the MoCo CIFAR-10
demo's settings: queue of 4096 keys, temperature 0.2, constant momentum 0.99,
symmetric loss, split BN in 8 groups with shuffled keys.

    python -m ssl_jax.main --config configs/mocov2_mnist.py --workdir /tmp/mocov2_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("mocov2")
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
