r"""MoCo v3 on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with
solo-learn's CIFAR recipe (93.10% online linear at 1000 epochs): temperature
0.2, projector and predictor 4096 -> 256 ending in BN without affine,
momentum 0.99 -> 1 (cosine), LARS lr 0.3 x B/256, weight decay 1e-6, batch 256,
BYOL's views without blur.

`:vit` is the paper's ViT setting (Chen, Xie, He 2021, arXiv:2104.02057, sec. 4
and CONFIG.md) scaled to 32 px: ViT-S with 4x4 patches, the random patch
projection frozen (`optim.frozen`, the paper's stability fix), 3-layer
projector, AdamW lr 1.5e-4 x B/256, weight decay 0.1, 40 warm-up epochs.

    python -m ssl_jax.main --config configs/mocov3_cifar10.py --workdir /tmp/mocov3_cifar10
    python -m ssl_jax.main --config configs/mocov3_cifar10.py:vit --workdir /tmp/mocov3_vit

`:runlocal` (or `:vit,runlocal`) is a seconds-long smoke run (tiny network, 500
training images).
"""

from ssl_jax.config import cifar10_config, runlocal
from ssl_jax.data import augment
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    args = set((arg or "").split(","))
    config = cifar10_config("mocov3")
    config.input.batch_size = 256
    config.method.view, config.method.per_view = augment.byol_views(32, blur=False)
    config.method.projector.update(dict(hidden_dim=4096, out_dim=256))
    config.method.predictor.hidden_dim = 4096
    config.optim.update(dict(name="lars", lr=0.3, lr_scaling="linear", weight_decay=1e-6))
    if "vit" in args:
        config.model = default_model_config("vit_s")
        config.model.patch_size = 4
        config.method.projector.num_layers = 3
        config.optim.update(dict(name="adamw", lr=1.5e-4, weight_decay=0.1, b2=0.95,
                                 frozen=("patch_embed", )))
        config.schedule.warmup_epochs = 40.0
    if "runlocal" in args:
        runlocal(config, train_limit=500)
    return config
