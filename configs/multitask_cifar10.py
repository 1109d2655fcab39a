r"""Multi-task pretraining on CIFAR-10: SimCLR + rotation prediction on one ResNet-18.

Doersch & Zisserman, "Multi-task Self-Supervised Visual Learning", ICCV 2017.
The SimCLR task is configs/simclr_cifar10.py's (temperature 0.5, projector
2048 -> 128, colour jitter 0.5, no blur; LARS base lr 0.5 x B/256, weight
decay 1e-6, batch 512, 1000 epochs); the rotation task (weight 0.5) is RotNet's
with crops of 50-100% and flips. Both share the CIFAR-stem ResNet-18.

    python -m ssl_jax.main --config configs/multitask_cifar10.py --workdir /tmp/multitask_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("multitask")
    simclr, rotation = config.method.tasks.simclr, config.method.tasks.rotation
    simclr.temperature = 0.5
    simclr.projector.update(dict(hidden_dim=2048, out_dim=128, num_layers=2))
    rotation.weight = 0.5
    config.optim.update(dict(name="lars", lr=0.5, lr_scaling="linear", weight_decay=1e-6))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
        config.finetune.labels_per_class = 10
    return config
