r"""BYOL on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with solo-learn's
CIFAR recipe (README: 92.58% online linear at 1000 epochs): projector and
predictor 4096 -> 256, target 0.99 -> 1, LARS lr 1.0 x B/256, weight decay
1e-5, batch 256; BYOL's asymmetric views without blur (view 2 solarizes, p 0.2).

    python -m ssl_jax.main --config configs/byol_cifar10.py --workdir /tmp/byol_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal
from ssl_jax.data import augment


def get_config(arg: str | None = None):
    config = cifar10_config("byol")
    config.input.batch_size = 256
    config.method.view, config.method.per_view = augment.byol_views(32, blur=False)
    config.method.projector.update(dict(hidden_dim=4096, out_dim=256))
    config.method.predictor.hidden_dim = 4096
    config.optim.update(dict(name="lars", lr=1.0, lr_scaling="linear", weight_decay=1e-5))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
