r"""Quickstart: SimCLR on scikit-learn's bundled digits, then kNN and linear probes.

Needs no download (the 1,797 8x8 digits ship inside scikit-learn) and runs in a
few minutes on a 2-core CPU. Prints test accuracy of the SSL encoder, of the
same encoder at random init, and of raw pixels, with 10 labels per class and
with all labels.

    python -m ssl_jax.main --config configs/quickstart.py --workdir /tmp/ssl_quickstart

`:runlocal` shrinks it to a seconds-long smoke run (what the tests use):

    python -m ssl_jax.main --config configs/quickstart.py:runlocal --workdir /tmp/ssl_smoke
"""

from ssl_jax.config import base_config, handwritten_digits, runlocal


def get_config(arg: str | None = None):
    config = base_config(dataset="digits", image_size=8, batch_size=256)
    handwritten_digits(config)
    config.method.temperature = 0.2
    config.model.widths = (32, 64, 128)
    config.schedule.epochs = 80.0
    config.schedule.warmup_epochs = 5.0
    config.checkpoint.every_steps = 200
    config.log.every_steps = 50
    if arg == "runlocal":
        runlocal(config)
    return config
