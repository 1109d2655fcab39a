r"""SimSiam on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with SimSiam's heads
scaled down: projector 512 -> 512 ending in BN without affine, bottleneck
predictor 512 -> 128 -> 512.

    python -m ssl_jax.main --config configs/simsiam_mnist.py --workdir /tmp/simsiam_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("simsiam")
    config.method.projector.update(dict(hidden_dim=512, out_dim=512))
    config.method.predictor.hidden_dim = 128
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
