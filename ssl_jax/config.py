"""The base config: every field of every section with its default.

Config files in `configs/` start from `base_config()` and override what their
(method, dataset) pair needs, so library code never guesses a default with
`config.get(key, default)`. Sections: seed, stages, method, model, input, optim,
schedule, eval, finetune, self_train, checkpoint, log, guard, mesh.
"""

import ml_collections

from ssl_jax import methods, optim
from ssl_jax.data import augment
from ssl_jax.models import default_model_config

# Per-channel statistics of the datasets with a registered source, in [0, 1] units.
NORMALIZATION = {
    "digits": ((0.2, ), (0.3, )),
    "mnist": ((0.1307, ), (0.3081, )),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
# Sources without their own statistics (a user's folder, TFDS) start from ImageNet's.
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def input_config(dataset: str, image_size: int, batch_size: int, data_dir: str = ""
                 ) -> ml_collections.ConfigDict:
    """The `input` section.

    dataset: a registered source name (see `data.sources`); data_dir: where its
    files are. train_split / test_split: a file or folder under data_dir for the
    local formats, a TFDS split string ("train[:90%]") for TFDS; "" = the
    source's default. labeled: False reads folders without class sub-folders.
    skip_bad_images: warn and skip undecodable images instead of failing.
    tfds_name / tfds_try_gcs / cache / shuffle_buffer / host_crop: the tf.data
    path (host_crop: decode + random-resized-crop on the host, the other
    augmentations on device). prefetch: batches placed on device ahead of the step.

    Text datasets (`data.text`: "text", "movie_reviews"; checked by
    `text.check_config`): tokenizer: "byte" (UTF-8 bytes), "char" (the corpus's
    characters) or "word" (the vocab_size - 4 most frequent words; vocab_size is
    read only for "word" and must exceed the 4 special tokens). seq_len: tokens
    per sequence, >= 2 (0 = not a text source). text_stride: "text" windows
    start every text_stride tokens (0 = seq_len, non-overlapping).
    text_val_fraction: the last fraction of a "text" file that is its test
    split, in (0, 1).
    """
    mean, std = NORMALIZATION.get(dataset, IMAGENET_NORMALIZATION)
    return ml_collections.ConfigDict(dict(
        dataset=dataset, data_dir=data_dir, train_split="", test_split="", labeled=True,
        skip_bad_images=False, batch_size=batch_size, image_size=image_size,
        mean=mean, std=std, train_limit=0, tfds_name="", tfds_try_gcs=False, cache=False,
        shuffle_buffer=10_000, host_crop=False, prefetch=2, tokenizer="byte", vocab_size=0,
        seq_len=0, text_stride=0, text_val_fraction=0.1))


def method_config(name: str, image_size: int) -> ml_collections.ConfigDict:
    """Every `config.method` field of the SSL method `name`, with its defaults."""
    if name not in methods.METHODS or not hasattr(methods.METHODS[name], "default_config"):
        ssl = sorted(n for n, m in methods.METHODS.items() if hasattr(m, "default_config"))
        raise ValueError(f"config.method.name={name!r}: expected one of {ssl}")
    return methods.METHODS[name].default_config(name, image_size)


def base_config(dataset: str = "digits", image_size: int = 8, batch_size: int = 256,
                data_dir: str = "", method: str = "simclr") -> ml_collections.ConfigDict:
    """`method` (default SimCLR) with a small convnet; every field present.

    guard (see `ssl_jax.guards`): on_nonfinite "stop" (raise at a step with a
    non-finite loss or gradients, saving nothing from it on) or "skip" (that step
    keeps the old state); min_embedding_std_ratio / min_rankme: log a collapse
    warning below these values of the logged metrics (0 = off).

    self_train (the `self_train` stage, `methods.fixmatch`): labels_per_class, B =
    batch_size labelled images and unlabeled_ratio x B unlabelled ones per step,
    threshold, unlabeled_weight, the weak and strong views; FixMatch's tau = 0.95,
    mu = 7, lambda_u = 1 by default.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.stages = ("pretrain", "knn", "linear_probe")
    c.method = method_config(method, image_size)
    c.model = default_model_config("convnet")
    c.input = input_config(dataset, image_size, batch_size, data_dir)
    c.optim = optim.default_optim_config()
    c.schedule = ml_collections.ConfigDict(dict(
        steps=0, epochs=100.0, warmup_epochs=10.0, final_lr_fraction=0.0))
    c.eval = ml_collections.ConfigDict(dict(
        batch_size=512, labels_per_class=(10, 0), knn_k=(20, 200), knn_temperature=0.07,
        probe_weight_decays=(0.0, 1e-4, 1e-3, 1e-2, 1e-1), probe_val_fraction=0.2,
        probe_steps=500, baselines=("random_init", "raw_pixels"), pretrained_checkpoints=""))
    finetune_optim = optim.default_optim_config()
    finetune_optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", weight_decay=1e-4))
    c.finetune = ml_collections.ConfigDict(dict(
        labels_per_class=10, batch_size=64, from_scratch_baseline=True,
        view=augment.crop_flip_view(image_size, crop_scale=(0.5, 1.0)),
        optim=finetune_optim,
        schedule=dict(steps=500, epochs=0.0, warmup_epochs=0.0, final_lr_fraction=0.0)))
    self_train_optim = ml_collections.ConfigDict(finetune_optim.to_dict())
    c.self_train = ml_collections.ConfigDict(dict(
        labels_per_class=10, batch_size=64, unlabeled_ratio=7, threshold=0.95,
        unlabeled_weight=1.0, from_scratch_baseline=True,
        weak_view=augment.crop_flip_view(image_size, crop_scale=(0.8, 1.0)),
        strong_view=augment.simclr_view(image_size),
        optim=self_train_optim,
        schedule=dict(steps=1000, epochs=0.0, warmup_epochs=0.0, final_lr_fraction=0.0)))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=1000, keep=3))
    c.log = ml_collections.ConfigDict(dict(every_steps=50))
    c.guard = ml_collections.ConfigDict(dict(
        on_nonfinite="stop", min_embedding_std_ratio=0.05, min_rankme=1.5))
    c.mesh = ml_collections.ConfigDict(dict(num_devices=-1))
    return c


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a config file, as `--config path[:arg]` would give it."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def method_sections(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """`config.method`, and each task's section of a multi-task method."""
    tasks = list(config.method.tasks.values()) if "tasks" in config.method else []
    return [config.method, *tasks]


def runlocal(config: ml_collections.ConfigDict, train_limit: int = 0) -> ml_collections.ConfigDict:
    """Shrink any config to a seconds-long CPU smoke run (tests, notebooks): tiny
    model and heads, batch 64, a handful of steps, every interval small enough to fire."""
    config.model.update(dict(widths=(8, 16), width=8, depth=2, num_heads=2))
    for section in method_sections(config):
        for head in ("projector", "predictor", "head"):
            if head in section:
                section[head].hidden_dim = 32
        if "projector" in section:
            section.projector.out_dim = 16
    config.input.batch_size = 64
    config.input.train_limit = train_limit
    config.schedule.steps = 6
    config.checkpoint.every_steps = 3
    config.log.every_steps = 2
    config.eval.probe_steps = 50
    config.eval.batch_size = 256
    config.finetune.schedule.steps = 4
    config.self_train.batch_size = 16
    config.self_train.schedule.steps = 4
    return config


def handwritten_digits(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Settings shared by the grayscale digit datasets (sklearn digits, MNIST): crops
    of 30-100% of the area and no flips (digits are not mirror-symmetric), AdamW at
    2e-3 with no batch scaling."""
    for section in method_sections(config):
        if "view" in section:
            section.view.update(dict(crop_scale=(0.3, 1.0), flip_prob=0.0))
    config.finetune.view.flip_prob = 0.0
    config.self_train.weak_view.flip_prob = 0.0
    config.self_train.strong_view.update(dict(crop_scale=(0.3, 1.0), flip_prob=0.0))
    config.optim.update(dict(name="adamw", lr=2e-3, lr_scaling="none", weight_decay=1e-4))
    return config


def mnist_config(method: str, data_dir: str = "../shared/data/mnist") -> ml_collections.ConfigDict:
    """`method` on MNIST (28x28 IDX files in `data_dir`), sized for a 2-core CPU:
    convnet (16, 32, 64), batch 256, 3 epochs (704 steps), AdamW 2e-3; stages
    pretrain, kNN, linear probe, fine-tune."""
    config = base_config(dataset="mnist", image_size=28, batch_size=256, data_dir=data_dir,
                         method=method)
    handwritten_digits(config)
    config.model.widths = (16, 32, 64)
    config.schedule.epochs = 3.0
    config.schedule.warmup_epochs = 0.2
    config.eval.probe_steps = 300
    config.checkpoint.every_steps = 500
    config.log.every_steps = 50
    config.stages = ("pretrain", "knn", "linear_probe", "finetune")
    return config


def cifar10_config(method: str, data_dir: str = "../shared/data/cifar10"
                   ) -> ml_collections.ConfigDict:
    """`method` on CIFAR-10 (the image-folder tars in `data_dir`): ResNet-18 with the
    CIFAR stem (3x3 conv, stride 1, no max-pool), 1000 epochs with 10 of warm-up,
    LARS; batch 512. Method configs set the optimizer's rates and the heads."""
    config = base_config(dataset="cifar10", image_size=32, batch_size=512, data_dir=data_dir,
                         method=method)
    config.model = default_model_config("resnet18")
    config.model.stem = "cifar"
    config.schedule.epochs = 1000.0
    config.schedule.warmup_epochs = 10.0
    config.eval.knn_temperature = 0.07
    config.finetune.labels_per_class = 100
    config.checkpoint.every_steps = 2000
    config.log.every_steps = 100
    config.stages = ("pretrain", "knn", "linear_probe")
    return config
