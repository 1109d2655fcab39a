r"""SimCLR on MNIST (28x28), small convnet, then kNN / linear probe / fine-tune.

Reads the IDX files (`train-images-idx3-ubyte.gz`, ...) from `input.data_dir`
(default: the repository's sibling `../shared/data/mnist`).

    python -m ssl_jax.main --config configs/simclr_mnist.py --workdir /tmp/simclr_mnist \
        --config.input.data_dir=/path/to/mnist

`:runlocal` is a seconds-long smoke run on 1,000 training images.
"""

from ssl_jax.config import base_config


def get_config(arg: str | None = None):
    config = base_config(dataset="mnist", image_size=28, batch_size=256,
                         data_dir="../shared/data/mnist")
    view = config.method.view
    view.crop_scale = (0.3, 1.0)
    view.flip_prob = 0.0  # Digits are not mirror-symmetric.
    config.method.temperature = 0.2
    config.model.widths = (32, 64, 128)
    config.optim.update(dict(name="adamw", lr=2e-3, lr_scaling="none", weight_decay=1e-4))
    config.schedule.epochs = 10.0
    config.schedule.warmup_epochs = 1.0
    config.eval.probe_steps = 300
    config.finetune.view.flip_prob = 0.0
    config.checkpoint.every_steps = 500
    config.log.every_steps = 50
    config.stages = ("pretrain", "knn", "linear_probe", "finetune")
    if arg == "runlocal":
        config.input.train_limit = 1000
        config.model.widths = (8, 16)
        config.method.projector.hidden_dim = 32
        config.method.projector.out_dim = 16
        config.input.batch_size = 64
        config.schedule.steps = 4
        config.checkpoint.every_steps = 2
        config.log.every_steps = 2
        config.eval.probe_steps = 50
        config.finetune.schedule.steps = 4
    return config
