r"""SimCLR on CIFAR-10: ResNet-18 with the CIFAR stem, the official CIFAR recipe.

Chen et al. 2020 (README command for CIFAR-10): ResNet-18, batch 512, LARS
lr 1.0 (x B/256 here: base 0.5), weight decay 1e-6, temperature 0.5, colour
jitter strength 0.5, no blur, 1000 epochs for ~91% linear accuracy. Reads the
image-folder tars `cifar10-{train,test}.tar.gz` + `classes.txt` from
`input.data_dir` (default `../shared/data/cifar10`).

    python -m ssl_jax.main --config configs/simclr_cifar10.py --workdir /tmp/simclr_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("simclr")
    config.method.temperature = 0.5
    config.method.projector.update(dict(hidden_dim=2048, out_dim=128, num_layers=2))
    config.optim.update(dict(name="lars", lr=0.5, lr_scaling="linear", weight_decay=1e-6))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
        config.finetune.labels_per_class = 10
    return config
