r"""SimCLR on CIFAR-10 read through TFDS: configs/simclr_cifar10.py on the tf.data path.

The same recipe, loaded from that file (ResNet-18 with the CIFAR stem, batch
512, LARS base lr 0.5 x B/256, weight decay 1e-6, temperature 0.5, jitter
strength 0.5, no blur, 1000 epochs), but the training stream is `data.tfds_pipeline.TFDSPipeline` over the
prepared TFDS dataset "cifar10" (cached in memory, one 50,000-example shuffle
buffer: a full reshuffle every epoch), and the kNN / linear-probe stages read
both splits into memory with `tfds_pipeline.load_tfds_arrays`. Augmentation
happens on the device, as with the in-memory sources (`input.host_crop` False).

Nothing is downloaded: prepare the dataset once on a machine with network access,

    tfds build cifar10 --data_dir=/path/to/tensorflow_datasets

then copy the directory here and run

    python -m ssl_jax.main --config configs/simclr_tfds_cifar10.py --workdir /tmp/simclr_tfds \
        --config.input.data_dir=/path/to/tensorflow_datasets

(`input.data_dir` "" = TFDS's default, ~/tensorflow_datasets).

`:runlocal` is a seconds-long smoke run (tiny ResNet, the first 500 training images).
"""

import pathlib

from ssl_jax.config import load_config_file, runlocal


def get_config(arg: str | None = None):
    config = load_config_file(str(pathlib.Path(__file__).with_name("simclr_cifar10.py")))
    config.input.update(dict(
        dataset="tfds", data_dir="", tfds_name="cifar10", train_split="train",
        test_split="test", cache=True, shuffle_buffer=50_000, host_crop=False))
    if arg == "runlocal":
        runlocal(config, train_limit=500)
        config.input.shuffle_buffer = 500
        config.finetune.labels_per_class = 10
    return config
