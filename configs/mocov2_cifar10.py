r"""MoCo v2 on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with the
official MoCo CIFAR-10 demo's setting (symmetric: kNN 85.3 / 88.5 / 89.7 at
200 / 400 / 800 epochs): queue of 4096 keys, temperature 0.1, momentum 0.99,
split BN in 8 groups with shuffled keys, SGD lr 0.06 at batch 512 (0.03 x
B/256), weight decay 5e-4, projector 2048 -> 128.

    python -m ssl_jax.main --config configs/mocov2_cifar10.py --workdir /tmp/mocov2_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("mocov2")
    config.method.update(dict(temperature=0.1, queue_size=4096, symmetric=True, bn_splits=8))
    config.method.projector.update(dict(hidden_dim=2048, out_dim=128))
    config.optim.update(dict(name="sgd", lr=0.03, lr_scaling="linear", weight_decay=5e-4))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
