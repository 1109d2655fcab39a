r"""Denoising auto-encoder on CIFAR-10 (Vincent et al., ICML 2008).

The CIFAR-10 image-folder tars (`ssl_jax.config.cifar10_config`) with the
convnet (64, 128, 256) instead of that config's ResNet-18: the decoder mirrors
the encoder (`ssl_jax.models.decoders` has a mirror for the convnet and the MLP
only), so the code is the convnet's 256-d global average pool and a conv
decoder rebuilds the clean 32x32x3 view from it. Each view loses a random 25%
of its input dims (masking noise, `config.method.corruption`, set to 0 before
normalisation). Batch 256, 100 epochs with 5 of warm-up, AdamW 1e-3 (no batch
scaling), weight decay 1e-4, crops of 50-100% and flips. These sizes are this
library's choice, not a paper's recipe.

`:mlp` swaps in the fully connected auto-encoder: MLP encoder 3072 -> 1024 ->
512 -> 128 (the code) and its mirror.

    python -m ssl_jax.main --config configs/denoising_autoencoder_cifar10.py \
        --workdir /tmp/dae_cifar10

`:runlocal` (or `:mlp,runlocal`) is a seconds-long smoke run (tiny network, 500
training images).
"""

import pathlib

from ssl_jax.config import load_config_file
from ssl_jax.methods.autoencoder import DEFAULT_CORRUPTION


def get_config(arg: str | None = None):
    """configs/autoencoder_cifar10.py (with the same `arg`), corrupted by masking noise."""
    config = load_config_file(str(pathlib.Path(__file__).with_name("autoencoder_cifar10.py")), arg)
    config.method.name = "denoising_autoencoder"
    config.method.corruption.update(DEFAULT_CORRUPTION["denoising_autoencoder"])
    return config
