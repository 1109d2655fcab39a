r"""VICReg on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with a 3-layer
512-512-512 projector and the paper's weights 25 / 25 / 1.

    python -m ssl_jax.main --config configs/vicreg_mnist.py --workdir /tmp/vicreg_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("vicreg")
    config.method.projector.update(dict(hidden_dim=512, out_dim=512, num_layers=3))
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
