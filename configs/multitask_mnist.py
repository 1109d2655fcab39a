r"""Multi-task pretraining on MNIST: SimCLR + rotation prediction on one backbone.

Doersch & Zisserman, "Multi-task Self-Supervised Visual Learning", ICCV 2017: the
weighted sum of several pretext losses on a shared trunk. Here
L = 1.0 * NT-Xent (tau 0.2, as configs/simclr_mnist.py) + 0.5 * rotation CE
(as configs/rotation_mnist.py); every other setting is `mnist_config`'s (convnet
16/32/64, batch 256, AdamW 2e-3). Each task draws its own views of the batch.

    python -m ssl_jax.main --config configs/multitask_mnist.py --workdir /tmp/multitask_mnist

`:runlocal` is a seconds-long smoke run on 1,000 training images.
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("multitask")
    config.method.tasks.simclr.temperature = 0.2
    config.method.tasks.rotation.weight = 0.5
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
