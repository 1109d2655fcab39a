r"""Auto-encoder (no corruption) on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips); the convnet's global
average pool gives the 64-d code, and a conv decoder that mirrors the convnet
(`ssl_jax.models.decoders`) rebuilds the 28x28 view from it. Loss: mean
squared error to the view, in normalised pixel units.

`:mlp` swaps in the fully connected auto-encoder: MLP encoder 784 -> 512 -> 256
-> 64 (the code) and its mirror 64 -> 256 -> 512 -> 784.

    python -m ssl_jax.main --config configs/autoencoder_mnist.py --workdir /tmp/autoencoder_mnist
    python -m ssl_jax.main --config configs/autoencoder_mnist.py:mlp --workdir /tmp/ae_mlp_mnist

`:runlocal` (or `:mlp,runlocal`) is a seconds-long smoke run (tiny network, 1,000
training images).
"""

from ssl_jax.config import mnist_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    args = set((arg or "").split(","))
    config = mnist_config("autoencoder")
    if "mlp" in args:
        config.model = default_model_config("mlp")
        config.model.widths = (512, 256, 64)
    if "runlocal" in args:
        runlocal(config, train_limit=1000)
    return config
