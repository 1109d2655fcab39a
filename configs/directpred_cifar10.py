r"""DirectPred on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`, 1000 epochs, 10 of warm-up), with the
authors' base setting (luckmatters `byol_config.yaml`): projector 512 -> 128,
linear predictor from the correlation (rho 0.3, eps 0.01), constant target
decay 0.996, SGD lr 0.03 (batch 128 there; x B/256 here), weight decay 4e-4.

    python -m ssl_jax.main --config configs/directpred_cifar10.py --workdir /tmp/directpred_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("directpred")
    config.input.batch_size = 256
    config.optim.update(dict(name="sgd", lr=0.06, lr_scaling="linear", weight_decay=4e-4))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
