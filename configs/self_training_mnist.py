r"""Self-training on MNIST with 10 labels per class: SimCLR pretraining, then FixMatch
(`self_train`) set against plain fine-tuning on the same 100 labels, each from the
pretrained encoder and from random init.

The pretraining is `configs/simclr_mnist.py`'s (convnet (16, 32, 64), 3 epochs).
FixMatch: B = 64 labelled and 7 x 64 unlabelled images per step (every training
image's pixels; no label of theirs is read), tau = 0.95, lambda_u = 1, 1,000 steps of
AdamW at 1e-3; weak view a crop of 80-100 % of the area, strong view SimCLR's crop
(30-100 %) and colour distortions. Results in docs/BENCHMARKS.md.

    python -m ssl_jax.main --config configs/self_training_mnist.py --workdir /tmp/st_mnist \
        --config.input.data_dir=/path/to/mnist

`:runlocal` is a seconds-long smoke run on 1,000 training images.
"""

import pathlib

from ssl_jax.config import load_config_file


def get_config(arg: str | None = None):
    """`configs/simclr_mnist.py` (its `:runlocal` too), then fine-tuning and self-training."""
    config = load_config_file(str(pathlib.Path(__file__).with_name("simclr_mnist.py")), arg)
    config.stages = ("pretrain", "finetune", "self_train")
    return config
