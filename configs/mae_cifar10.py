r"""MAE (masked autoencoder) on CIFAR-10.

The CIFAR-10 image-folder tars (`ssl_jax.config.cifar10_config`: 1000 epochs,
10 of warm-up, warmup-cosine) with solo-learn's MAE CIFAR recipe
(`scripts/pretrain/cifar/mae.yaml`): ViT-S with 4x4 patches (an 8x8 grid, 16
patches visible at the 75% mask), features the mean of the patch tokens (the
decoder trains no CLS token); decoder 512 wide, 8 blocks, 16 heads; norm_pix
loss; batch 256, AdamW lr 2e-4 x B/256, weight decay 0.05, betas (0.9, 0.95).
Positions are the paper's fixed 2-D sin-cos embeddings;
views are the paper's crops of 20-100% + flips (solo-learn crops 8-100%).

Fine-tuning (`config.finetune`, when added to `config.stages`) trains the same
ViT with a linear head: AdamW with MAE's fine-tuning rates (He et al. 2022,
Table 9): lr 1e-3 x B/256, weight decay 0.05, betas (0.9, 0.999); no
layer-wise lr decay, mixup or drop-path (not in the trainer).

    python -m ssl_jax.main --config configs/mae_cifar10.py --workdir /tmp/mae_cifar10

`:runlocal` is a seconds-long smoke run (a tiny ViT of the same patch grid and a
tiny decoder, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = cifar10_config("mae")
    config.model = default_model_config("vit_s")
    config.model.update(dict(patch_size=4, pool="gap", posemb="sincos2d"))
    config.input.batch_size = 256
    config.method.decoder.update(dict(width=512, depth=8, num_heads=16))
    config.optim.update(dict(name="adamw", lr=2e-4, lr_scaling="linear", weight_decay=0.05,
                             b1=0.9, b2=0.95))
    config.finetune.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="linear",
                                      weight_decay=0.05, b1=0.9, b2=0.999))
    if arg == "runlocal":
        config.model.name = "vit"  # Sized by `runlocal`, unlike the fixed ViT-S.
        runlocal(config, train_limit=500)
        config.method.decoder.update(dict(width=16, depth=1, num_heads=2))
    return config
