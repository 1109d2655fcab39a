r"""SimSiam on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with the
paper's CIFAR setting (appendix D, 91.8% at 800 epochs): 2-layer projector
2048 -> 2048 ending in BN without affine, predictor 2048 -> 512 -> 2048, SGD
lr 0.03 x B/256, weight decay 5e-4, batch 512, crops of 20-100%; the predictor
keeps the peak learning rate throughout (`optim.constant_lr`, the official
`--fix-pred-lr`).

    python -m ssl_jax.main --config configs/simsiam_cifar10.py --workdir /tmp/simsiam_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("simsiam")
    config.method.view.crop_scale = (0.2, 1.0)
    config.method.projector.update(dict(hidden_dim=2048, out_dim=2048))
    config.method.predictor.hidden_dim = 512
    config.optim.update(dict(name="sgd", lr=0.03, lr_scaling="linear", weight_decay=5e-4,
                             constant_lr=("predictor", )))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
