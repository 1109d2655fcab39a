r"""MAE (masked autoencoder) on MNIST (28x28), a small ViT, then kNN / linear probe / fine-tune.

The MNIST setting of `ssl_jax.config.mnist_config` (batch 256, 3 epochs) with a
ViT sized for a 2-core CPU: 128 wide, 4 blocks, 4 heads, 4x4 patches (a 7x7
grid of 49 patches, 12 visible at the 75% mask), features the mean of the patch
tokens (the decoder trains no CLS token), fixed 2-D sin-cos positions as the
paper; decoder 64 wide, 2 blocks, 4 heads. Pretraining as the paper (He et al.
2022, PRETRAIN.md): AdamW, lr 1.5e-4 x B/256 (the base rate `blr`), betas
(0.9, 0.95), weight decay 0.05, norm_pix loss; views are crops of 20-100% (the
paper's range) without flips (digits are not mirror-symmetric).

Fine-tuning (`config.finetune`) trains the same ViT with a linear head, from
the MAE encoder and from scratch: AdamW with MAE's fine-tuning rates (paper,
Table 9): lr 1e-3 x B/256 (2.5e-4 at batch 64), weight decay 0.05, betas
(0.9, 0.999); no layer-wise lr decay, mixup or drop-path (not in the trainer).

    python -m ssl_jax.main --config configs/mae_mnist.py --workdir /tmp/mae_mnist

`:runlocal` is a seconds-long smoke run (tiny ViT and decoder, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = mnist_config("mae")
    config.model = default_model_config("vit")
    config.model.update(dict(width=128, depth=4, num_heads=4, patch_size=4, pool="gap",
                             posemb="sincos2d"))
    config.method.view.crop_scale = (0.2, 1.0)
    config.method.decoder.update(dict(width=64, depth=2, num_heads=4))
    config.optim.update(dict(name="adamw", lr=1.5e-4, lr_scaling="linear", weight_decay=0.05,
                             b1=0.9, b2=0.95))
    config.finetune.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="linear",
                                      weight_decay=0.05, b1=0.9, b2=0.999))
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
        config.method.decoder.update(dict(width=16, depth=1, num_heads=2))
    return config
