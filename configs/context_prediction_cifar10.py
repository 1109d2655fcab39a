r"""Context prediction (Doersch, Gupta, Efros 2015) on CIFAR-10.

ResNet-18 with the CIFAR stem on the CIFAR-10 image-folder tars
(`ssl_jax.config.cifar10_config`). On 32x32 images the task is close to
degenerate (the paper's patches are 96x96 with a 48-pixel gap; it reports no
small-dataset number): here a 3x3 grid of 8x8 patches with gap 3 and jitter 1
fills the whole view (3*8 + 2*3 + 2*1 = 32), so the grid never moves and the
patches are at least one pixel apart (gap > 2 jitter). Each patch keeps one
colour channel and gets noise in the other two (`channel_dropout`, the
paper's counter to chromatic aberration).

The backbone is ResNet-18, as in every CIFAR-10 config, so that its kNN and
linear-probe rows compare with theirs; on an 8x8 patch the CIFAR stem keeps
8x8 and the three strided stages give 4x4, 2x2 and 1x1 maps, which is small
but well defined. Evaluation runs it on whole 32x32 images (final maps 4x4),
with BatchNorm statistics gathered on patches.

Recipe borrowed from the RotNet CIFAR-10 config (no official one exists for
this method): SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4,
cosine decay, 200 epochs, batch 256 images (512 patches).

    python -m ssl_jax.main --config configs/context_prediction_cifar10.py \
        --workdir /tmp/context_prediction_cifar10

`:runlocal` is a seconds-long smoke run (tiny ResNet, 500 training images).
"""

from ssl_jax.config import cifar10_config, runlocal


def get_config(arg: str | None = None):
    config = cifar10_config("context_prediction")
    config.method.update(dict(patch_size=8, gap=3, jitter=1, channel_dropout=True))
    config.input.batch_size = 256
    config.schedule.epochs = 200.0
    config.schedule.warmup_epochs = 0.0
    config.optim.update(dict(name="sgd", lr=0.1, lr_scaling="none", weight_decay=5e-4,
                             nesterov=True))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
    return config
