r"""VICReg on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with
solo-learn's CIFAR recipe (92.07% online linear at 1000 epochs): projector
2048-2048-2048, weights 25 / 25 / 1, LARS lr 0.3 x B/256, weight decay 1e-4,
batch 256, crops of 20-100%, solarize p 0.1, no blur.

    python -m ssl_jax.main --config configs/vicreg_cifar10.py --workdir /tmp/vicreg_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("vicreg")
    config.input.batch_size = 256
    config.method.view.update(dict(crop_scale=(0.2, 1.0), solarize_prob=0.1))
    config.method.projector.update(dict(hidden_dim=2048, out_dim=2048, num_layers=3))
    config.optim.update(dict(name="lars", lr=0.3, lr_scaling="linear", weight_decay=1e-4))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
