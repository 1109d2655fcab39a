r"""DirectPred on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips) with DirectPred's
settings (projector 512 -> 128, linear predictor from the correlation with
rho 0.3, eps 0.01, constant target decay 0.996).

    python -m ssl_jax.main --config configs/directpred_mnist.py --workdir /tmp/directpred_mnist

`:runlocal` is a seconds-long smoke run (tiny convnet, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("directpred")
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
