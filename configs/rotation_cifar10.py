r"""Rotation prediction (RotNet) on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`) with the RotNet CIFAR-10 recipe (Gidaris et
al. 2018, `config/CIFAR10_RotNet_NIN4blocks.py`): batch 128 images (x 4
rotations), 200 epochs, SGD with Nesterov momentum 0.9, lr 0.1, weight decay
5e-4; cosine decay here instead of the paper's steps, random crops of 50-100%
and flips. The paper's network is NIN with 4 blocks and its best features are
block 2's; here the evaluation uses the ResNet's final features.

    python -m ssl_jax.main --config configs/rotation_cifar10.py --workdir /tmp/rotation_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("rotation")
    config.input.batch_size = 128
    config.schedule.epochs = 200.0
    config.schedule.warmup_epochs = 0.0
    config.optim.update(dict(name="sgd", lr=0.1, lr_scaling="none", weight_decay=5e-4,
                             nesterov=True))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
