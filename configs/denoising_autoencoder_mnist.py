r"""Denoising auto-encoder on MNIST (Vincent et al., ICML 2008).

The MNIST setting of `ssl_jax.config.mnist_config` (convnet 16/32/64, batch 256,
3 epochs, AdamW 2e-3, crops of 30-100% and no flips). Each view loses a random
25% of its pixels (masking noise, `config.method.corruption`, set to 0 before
normalisation), and a conv decoder that mirrors the convnet
(`ssl_jax.models.decoders`) rebuilds the clean view from the 64-d code. Loss:
mean squared error to the clean view, in normalised pixel units.

`:mlp` swaps in the fully connected auto-encoder of the paper's kind: MLP encoder
784 -> 512 -> 256 -> 64 (the code) and its mirror 64 -> 256 -> 512 -> 784.

    python -m ssl_jax.main --config configs/denoising_autoencoder_mnist.py --workdir /tmp/dae_mnist
    python -m ssl_jax.main --config configs/denoising_autoencoder_mnist.py:mlp \
        --workdir /tmp/dae_mlp_mnist --config.method.corruption.kind=gaussian \
        --config.method.corruption.amount=0.3

`:runlocal` (or `:mlp,runlocal`) is a seconds-long smoke run (tiny network, 1,000
training images).
"""

import pathlib

from ssl_jax.config import load_config_file
from ssl_jax.methods.autoencoder import DEFAULT_CORRUPTION


def get_config(arg: str | None = None):
    """configs/autoencoder_mnist.py (with the same `arg`), corrupted by masking noise."""
    config = load_config_file(str(pathlib.Path(__file__).with_name("autoencoder_mnist.py")), arg)
    config.method.name = "denoising_autoencoder"
    config.method.corruption.update(DEFAULT_CORRUPTION["denoising_autoencoder"])
    return config
