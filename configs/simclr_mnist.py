r"""SimCLR on MNIST (28x28), small convnet, then kNN / linear probe / fine-tune.

Sized for a 2-core CPU: convnet (16, 32, 64), batch 256, 3 epochs (704 steps,
about 13 min there); results in docs/BENCHMARKS.md. Reads the IDX files
(`train-images-idx3-ubyte.gz`, ...) from `input.data_dir` (default: the
repository's sibling `../shared/data/mnist`).

    python -m ssl_jax.main --config configs/simclr_mnist.py --workdir /tmp/simclr_mnist \
        --config.input.data_dir=/path/to/mnist

`:runlocal` is a seconds-long smoke run on 1,000 training images.
"""

from ssl_jax.config import base_config, handwritten_digits, runlocal


def get_config(arg: str | None = None):
    config = base_config(dataset="mnist", image_size=28, batch_size=256,
                         data_dir="../shared/data/mnist")
    handwritten_digits(config)
    config.model.widths = (16, 32, 64)
    config.schedule.epochs = 3.0
    config.schedule.warmup_epochs = 0.2
    config.eval.probe_steps = 300
    config.checkpoint.every_steps = 500
    config.log.every_steps = 50
    config.stages = ("pretrain", "knn", "linear_probe", "finetune")
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
