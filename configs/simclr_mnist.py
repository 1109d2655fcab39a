r"""SimCLR on MNIST (28x28), small convnet, then kNN / linear probe / fine-tune.

Sized for a 2-core CPU: convnet (16, 32, 64), batch 256, 3 epochs (704 steps,
about 13 min there); results in docs/BENCHMARKS.md. Reads the IDX files
(`train-images-idx3-ubyte.gz`, ...) from `input.data_dir` (default: the
repository's sibling `../shared/data/mnist`).

    python -m ssl_jax.main --config configs/simclr_mnist.py --workdir /tmp/simclr_mnist \
        --config.input.data_dir=/path/to/mnist

`:runlocal` is a seconds-long smoke run on 1,000 training images.
"""

from ssl_jax.config import mnist_config, runlocal


def get_config(arg: str | None = None):
    config = mnist_config("simclr")
    config.method.temperature = 0.2
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
