r"""I-JEPA on CIFAR-10.

32x32 images with 4x4 patches (an 8x8 grid), a ViT-Tiny encoder (width 192, 12 blocks,
3 heads) with mean pooling and a narrow predictor (width 96, 4 blocks, the encoder's 3
heads): the setting of community CIFAR-10 ports of I-JEPA. There is no official CIFAR
number for I-JEPA (the paper reports ImageNet only), so any result here is unverified.
Masks, loss and EMA are the paper's (`ssl_jax.methods.ijepa`); views are crops of
30-100% only. Optimizer as the official code: AdamW, betas (0.9, 0.999), weight decay
0.04 (constant here; officially 0.04 -> 0.4), peak lr 1e-3 at batch 512 (no batch
scaling) after 40 warm-up epochs, cosine decay over the 1000 epochs of
`ssl_jax.config.cifar10_config`.

    python -m ssl_jax.main --config configs/ijepa_cifar10.py --workdir /tmp/ijepa_cifar10

`:runlocal` is a seconds-long smoke run (tiny ViT and predictor, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = cifar10_config("ijepa")
    config.model = default_model_config("vit")  # ViT-Tiny: 192 wide, 12 deep, 3 heads.
    config.model.update(dict(patch_size=4, pool="gap"))
    config.method.predictor.update(dict(hidden_dim=96, depth=4))
    config.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", weight_decay=0.04,
                             b1=0.9, b2=0.999))
    config.schedule.warmup_epochs = 40.0
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
