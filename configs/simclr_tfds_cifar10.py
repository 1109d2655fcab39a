r"""SimCLR on CIFAR-10 read through TFDS: configs/simclr_cifar10.py on the tf.data path.

The same recipe (ResNet-18 with the CIFAR stem, batch 512, LARS base lr 0.5 x
B/256, weight decay 1e-6, temperature 0.5, jitter strength 0.5, no blur, 1000
epochs), but the training stream is `data.tfds_pipeline.TFDSPipeline` over the
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

from ssl_jax.config import NORMALIZATION, base_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = base_config(dataset="tfds", image_size=32, batch_size=512)
    config.input.update(dict(
        tfds_name="cifar10", train_split="train", test_split="test", cache=True,
        shuffle_buffer=50_000, host_crop=False))
    config.input.mean, config.input.std = NORMALIZATION["cifar10"]
    config.model = default_model_config("resnet18")
    config.model.stem = "cifar"
    config.method.temperature = 0.5
    config.method.projector.update(dict(hidden_dim=2048, out_dim=128, num_layers=2))
    config.optim.update(dict(name="lars", lr=0.5, lr_scaling="linear", weight_decay=1e-6))
    config.schedule.epochs = 1000.0
    config.schedule.warmup_epochs = 10.0
    config.eval.knn_temperature = 0.07
    config.finetune.labels_per_class = 100
    config.checkpoint.every_steps = 2000
    config.log.every_steps = 100
    config.stages = ("pretrain", "knn", "linear_probe")
    if arg == "runlocal":
        runlocal(config, train_limit=500)
        config.input.shuffle_buffer = 500
        config.finetune.labels_per_class = 10
    return config
