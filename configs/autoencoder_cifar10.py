r"""Auto-encoder (no corruption) on CIFAR-10.

The CIFAR-10 image-folder tars (`ssl_jax.config.cifar10_config`) with the
convnet (64, 128, 256) instead of that config's ResNet-18: the decoder mirrors
the encoder (`ssl_jax.models.decoders` has a mirror for the convnet and the MLP
only), so the code is the convnet's 256-d global average pool and a conv
decoder rebuilds the 32x32x3 view from it. Batch 256, 100 epochs with 5 of
warm-up, AdamW 1e-3 (no batch scaling), weight decay 1e-4, crops of 50-100% and
flips. These sizes are this library's choice, not a paper's recipe.

`:mlp` swaps in the fully connected auto-encoder: MLP encoder 3072 -> 1024 ->
512 -> 128 (the code) and its mirror.

    python -m ssl_jax.main --config configs/autoencoder_cifar10.py --workdir /tmp/ae_cifar10

`:runlocal` (or `:mlp,runlocal`) is a seconds-long smoke run (tiny network, 500
training images).
"""

from ssl_jax.config import cifar10_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    args = set((arg or "").split(","))
    config = cifar10_config("autoencoder")
    config.model = default_model_config("mlp" if "mlp" in args else "convnet")
    config.model.widths = (1024, 512, 128) if "mlp" in args else (64, 128, 256)
    config.input.batch_size = 256
    config.schedule.epochs = 100.0
    config.schedule.warmup_epochs = 5.0
    config.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", weight_decay=1e-4))
    if "runlocal" in args:
        runlocal(config, train_limit=500)
    return config
