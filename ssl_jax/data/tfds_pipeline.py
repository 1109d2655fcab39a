"""The tf.data / TFDS training stream (`config.input.dataset == "tfds"`).

Datasets too large for host memory (ImageNet) are read from a prepared TFDS
directory by tf.data, which also decodes and, for large images, random-crops on
the host. TensorFlow only ever serves as a host-side reader here: it is imported
lazily (importing this module does not import it), and is told to see no GPU.

Pipeline of one process, for the global batch size B and P processes:

    TFDS shard  ->  [cache]  ->  epoch e: shuffle(seed(seed, process, e))  ->  skip
      ->  decode + 2 random-resized crops (host_crop)  ->  batch(B / P)  ->  prefetch

Sharding. The training split (`input.train_split`, default "train", with TFDS
slicing such as "train[:90%]"; `input.train_limit > 0` keeps its first
train_limit examples) is cut into P equal contiguous shards, the remainder
dropped (`tfds.even_splits(..., drop_remainder=True)` arithmetic, done here so
that the counts are exact); process p reads only shard p. An epoch of process p
is every example of its shard exactly once, so over an epoch the processes visit
disjoint sets whose union is the split (less < P examples). The global batch of
a step is the concatenation of the processes' local batches, as in
`loader.StepBatcher`.

Epochs and determinism. A process's stream is the concatenation of its epochs
0, 1, 2, ...: epoch e is the shard in a fixed read order (files shuffled once by
a seed of (config.seed, process), `tfds.ReadConfig(shuffle_seed=...)`), passed
through a shuffle buffer (`input.shuffle_buffer`) seeded by (config.seed,
process, e). Batches are consecutive runs of B / P examples of that stream (a
batch may span an epoch boundary; none is dropped), so local position i =
step * B / P + j. `batches(s)` starts the stream at epoch i // shard_size (whole
epochs are skipped arithmetically) and `skip()`s i % shard_size examples inside
it, before any decoding or cropping: a resumed run sees exactly the batches an
uninterrupted run would, with no iterator state to checkpoint. The crop boxes
are stateless random functions of (config.seed, the example's global position
step * B + p * B / P + j, view), never of TF's stateful RNG. tf.data runs with
`deterministic = True`, so parallel decoding keeps the order.

Batch formats (this process's share b = B / P of each global batch):
  host_crop False  {"image": uint8 [b, H, W, C] at the stored size, "label": int32 [b]};
                   augmentation, crops included, happens on the device.
  host_crop True   {"crops": uint8 [b, NUM_CROPS, S, S, C], "label": int32 [b]} with
                   S = input.image_size: per view, its own random-resized crop
                   (area `method.view.crop_scale`, aspect `method.view.crop_ratio`,
                   10 attempts, else torchvision's centre-crop fallback) resized
                   to S x S. JPEGs are decoded only inside the box
                   (`tf.image.decode_and_crop_jpeg`); other formats are decoded whole.
Labels are -1 for unlabelled data (`input.labeled` False, or no "label" feature).

Options: `input.cache` caches the read examples in memory (decoded images for
host_crop False, the encoded bytes for host_crop True), before any random op.
`input.data_dir` is the TFDS data_dir ("" = TFDS's default), `input.tfds_try_gcs`
reads TFDS's public GCS copy. Nothing is ever downloaded: prepare the dataset
first (`tfds build NAME --data_dir DIR` on a machine with network access).

Limits. The file order is the same every epoch (TFDS takes its file-shuffle seed
as a Python int, while the epoch is a tensor inside `flat_map`); the examples are
reshuffled each epoch only within the shuffle buffer, which refills at every
epoch start (a short stall). `train_limit` keeps the first examples of the
split, not a class-balanced subset as `sources.load` does.

`load_tfds_arrays` reads small datasets (CIFAR-10, MNIST) whole into an
`ArrayDataset`, for the evaluation stages that need arrays (kNN, linear probe).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from ssl_jax.data.sources import ArrayDataset

# Views cropped per example on the host (host_crop): the two-view case of SimCLR and BYOL.
NUM_CROPS = 2
# Box draws of `tf.image.stateless_sample_distorted_bounding_box` before the fallback.
CROP_ATTEMPTS = 10
UNLABELED = -1
# The stream has no end: epochs e0, e0 + 1, ... up to this bound, never reached.
_LAST_EPOCH = 2**62
# Domain-separation tags of the seeds derived from config.seed.
_FILES, _SHUFFLE, _CROPS = 0, 1, 2

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]


@functools.cache
def _tf():
    """(tensorflow, tensorflow_datasets), imported on first use, TF kept off every GPU."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # Raised once TF has initialised its devices (someone else did).
        logging.warning("TensorFlow was initialised before the TFDS pipeline; it may hold a GPU")
    return tf, tfds


def derive_seed(seed: int, *tags: int) -> int:
    """A well-mixed 32-bit seed from config.seed and integer tags (process, purpose)."""
    entropy = [int(seed) % 2**32, *(int(t) for t in tags)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _input(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `input` section of a whole config, or the section itself."""
    return config.input if "input" in config else config


# --- the dataset on disk ---------------------------------------------------------------------

def open_builder(input_config: ml_collections.ConfigDict):
    """The prepared TFDS builder of `input.tfds_name` in `input.data_dir`, else an error
    that names both and says how to prepare it (this code never downloads)."""
    _, tfds = _tf()
    name, data_dir = input_config.tfds_name, input_config.data_dir
    if not name:
        raise ValueError("config.input.tfds_name is empty: config.input.dataset='tfds' reads "
                         "the TFDS dataset of that name, e.g. 'cifar10' or 'imagenet2012'")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None,
                               try_gcs=input_config.tfds_try_gcs)
    except tfds.core.registered.DatasetNotFoundError as error:
        first_line = str(error).splitlines()[0]
        raise ValueError(f"config.input.tfds_name={name!r}: TFDS has no such dataset "
                         f"({first_line})") from None
    if not builder.is_prepared():
        where = f"config.input.data_dir={data_dir!r}" if data_dir else "TFDS's default data_dir"
        raise FileNotFoundError(
            f"config.input.tfds_name={name!r}: not prepared in {where} (looked for "
            f"{builder.data_dir}); this pipeline never downloads (tfds.load(download=False)). "
            f"Prepare it on a machine with network access, `tfds build {name} --data_dir DIR` "
            "(datasets with manual downloads, such as imagenet2012, need their archives in "
            "DIR/downloads/manual first), then copy DIR here and set "
            "--config.input.data_dir=DIR, or set --config.input.tfds_try_gcs=True to read "
            "TFDS's public GCS copy where one exists")
    return builder


def _image_feature(builder, input_config):
    """The `image` feature (a `tfds.features.Image`), else a ValueError naming the dataset."""
    _, tfds = _tf()
    features = builder.info.features
    if "image" not in features or not isinstance(features["image"], tfds.features.Image):
        raise ValueError(f"config.input.tfds_name={input_config.tfds_name!r}: expected an "
                         f"'image' feature of type tfds.features.Image, got features "
                         f"{list(features.keys())}")
    return features["image"]


def _has_labels(builder) -> bool:
    _, tfds = _tf()
    features = builder.info.features
    return "label" in features and isinstance(features["label"], tfds.features.ClassLabel)


def split_ranges(split: str, builder, field: str) -> list[tuple[str, int, int]]:
    """A TFDS split string ("train[:90%]+validation") as absolute (name, start, stop) parts."""
    _, tfds = _tf()
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
            builder.info.splits)
    except (ValueError, KeyError) as error:
        raise ValueError(f"{field}={split!r}: not a split of {builder.name} "
                         f"(splits {list(builder.info.splits.keys())}): {error}") from None
    # TFDS leaves a boundary at the split's start or end as None.
    return [(i.splitname, i.from_ or 0,
             builder.info.splits[i.splitname].num_examples if i.to is None else i.to)
            for i in instructions]


def sub_split(ranges: Sequence[tuple[str, int, int]], start: int, stop: int) -> str:
    """Examples [start, stop) of the concatenated `ranges`, as a TFDS split string."""
    parts, offset = [], 0
    for name, lo, hi in ranges:
        first, last = max(start - offset, 0), min(stop - offset, hi - lo)
        if first < last:
            parts.append(f"{name}[{lo + first}:{lo + last}]")
        offset += hi - lo
    if not parts:
        raise ValueError(f"examples [{start}, {stop}) are outside the split {ranges}")
    return "+".join(parts)


def _limited_ranges(input_config, builder) -> tuple[list[tuple[str, int, int]], int]:
    """The training split's parts and its size, after `input.train_limit`."""
    ranges = split_ranges(input_config.train_split or "train", builder,
                          "config.input.train_split")
    total = sum(hi - lo for _, lo, hi in ranges)
    if input_config.train_limit > 0:
        total = min(total, input_config.train_limit)
    return ranges, total


def _deterministic_options():
    tf, _ = _tf()
    options = tf.data.Options()
    options.deterministic = True
    return options


# --- host-side crops -------------------------------------------------------------------------

def center_window(height, width, ratio: Sequence[float]):
    """torchvision's fallback box (top, left, h, w): the centred box of the whole image
    with its aspect ratio (w / h) clamped to `ratio`."""
    tf, _ = _tf()
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    in_ratio = w / h
    crop_w = tf.where(in_ratio > ratio[1], tf.round(h * ratio[1]), w)
    crop_h = tf.where(in_ratio < ratio[0], tf.round(w / ratio[0]), h)
    crop_h = tf.cast(tf.minimum(crop_h, h), tf.int32)
    crop_w = tf.cast(tf.minimum(crop_w, w), tf.int32)
    return tf.stack([(height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w])


def crop_window(shape, seed, scale: Sequence[float], ratio: Sequence[float]):
    """int32 [top, left, h, w] of a random-resized-crop box for an image of `shape`
    ([height, width, ...]), a stateless function of `seed` (int64 [2]).

    `stateless_sample_distorted_bounding_box` draws up to CROP_ATTEMPTS boxes of
    area fraction in `scale` and aspect ratio in `ratio`; when none fits it returns
    the whole image, which is replaced by `center_window` (equal to the whole image
    whenever the image's own aspect ratio is inside `ratio`).
    """
    tf, _ = _tf()
    height, width = shape[0], shape[1]
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([height, width, 1]), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed, min_object_covered=0.0, aspect_ratio_range=tuple(ratio),
        area_range=tuple(scale), max_attempts=CROP_ATTEMPTS, use_image_if_no_bounding_boxes=True)
    sampled = tf.stack([begin[0], begin[1], size[0], size[1]])
    failed = tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
    return tf.where(failed, center_window(height, width, ratio), sampled)


def _resize_uint8(image, size: int):
    """Bilinear, antialiased resize of an [h, w, C] image to [size, size, C] uint8."""
    tf, _ = _tf()
    resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def random_resized_crops(encoded, seeds, size: int, scale: Sequence[float],
                         ratio: Sequence[float], channels: int):
    """uint8 [len(seeds), size, size, channels]: one random-resized crop of the encoded
    image per seed. JPEGs: the fused `decode_and_crop_jpeg` decodes only each box;
    other formats are decoded whole, then cropped."""
    tf, _ = _tf()

    def jpeg_crops():
        shape = tf.image.extract_jpeg_shape(encoded)
        crops = [tf.image.decode_and_crop_jpeg(encoded, crop_window(shape, s, scale, ratio),
                                               channels=channels) for s in seeds]
        return tf.stack([_resize_uint8(c, size) for c in crops])

    def decoded_crops():
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image.set_shape([None, None, channels])
        shape = tf.shape(image)
        crops = []
        for s in seeds:
            top, left, h, w = tf.unstack(crop_window(shape, s, scale, ratio))
            crops.append(_resize_uint8(image[top:top + h, left:left + w], size))
        return tf.stack(crops)

    crops = tf.cond(tf.io.is_jpeg(encoded), jpeg_crops, decoded_crops)
    crops.set_shape([len(seeds), size, size, channels])
    return crops


# --- the training stream ---------------------------------------------------------------------

class TFDSPipeline:
    """The training stream of `config.input` read with TFDS + tf.data (module docstring).

    Implements the trainer's pipeline interface (`loader.Pipeline`): global
    batch `s` is the same for every run with the same config, whatever step a
    run starts from, and each process yields its own share of it.
    """

    def __init__(self, config: ml_collections.ConfigDict, *, process_index: int | None = None,
                 process_count: int | None = None):
        # A snapshot: later edits of `config` must not change what spec() promised.
        self.config = config.copy_and_resolve_references()
        self.input = self.config.input
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        self._check_config()
        self.global_batch_size = self.input.batch_size
        self.local_batch_size = self.global_batch_size // self.process_count
        self.builder = open_builder(self.input)
        image = _image_feature(self.builder, self.input)
        self.image_shape = tuple(image.shape)
        self.channels = self.image_shape[-1] or 3
        if not self.input.host_crop and None in self.image_shape:
            raise ValueError(
                f"config.input.host_crop=False batches images at their stored size, but "
                f"config.input.tfds_name={self.input.tfds_name!r} has images of variable shape "
                f"{self.image_shape}; set config.input.host_crop=True")
        self.labeled = self.input.labeled and _has_labels(self.builder)
        self.num_classes = self.builder.info.features["label"].num_classes if self.labeled else 0
        ranges, total = _limited_ranges(self.input, self.builder)
        self.shard_size = total // self.process_count
        if self.shard_size < 1:
            raise ValueError(f"config.input.train_split={self.input.train_split!r} (train_limit "
                             f"{self.input.train_limit}) has {total} examples, fewer than the "
                             f"{self.process_count} processes")
        self.num_examples = self.shard_size * self.process_count
        first = self.process_index * self.shard_size
        self.shard_split = sub_split(ranges, first, first + self.shard_size)
        self._file_seed = derive_seed(config.seed, _FILES, self.process_index)
        self._shuffle_seed = derive_seed(config.seed, _SHUFFLE, self.process_index)
        self._crop_seed = derive_seed(config.seed, _CROPS)

    def _check_config(self):
        inp = self.input
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process_index={self.process_index} is not in "
                             f"[0, process_count={self.process_count})")
        if inp.batch_size <= 0 or inp.batch_size % self.process_count:
            raise ValueError(f"config.input.batch_size={inp.batch_size} is not a positive "
                             f"multiple of the number of processes ({self.process_count})")
        if inp.shuffle_buffer < 0:
            raise ValueError(f"config.input.shuffle_buffer={inp.shuffle_buffer}: must be >= 0 "
                             "(0 or 1: no shuffling)")
        if inp.host_crop and inp.image_size <= 0:
            raise ValueError(f"config.input.image_size={inp.image_size}: host_crop needs the "
                             "crop side, > 0")

    # -- the Pipeline interface --

    @property
    def steps_per_epoch(self) -> float:
        return self.num_examples / self.global_batch_size

    def steps_for_epochs(self, epochs: float) -> int:
        return max(1, math.ceil(epochs * self.steps_per_epoch))

    def spec(self) -> Spec:
        """Shape and dtype of each array of this process's batch."""
        b = self.local_batch_size
        label = ((b, ), np.dtype(np.int32))
        if self.input.host_crop:
            s = self.input.image_size
            return {"crops": ((b, NUM_CROPS, s, s, self.channels), np.dtype(np.uint8)),
                    "label": label}
        return {"image": ((b, *self.image_shape), np.dtype(np.uint8)), "label": label}

    def batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        """This process's share of global batches start_step, start_step + 1, ... (forever)."""
        return self.dataset(start_step).as_numpy_iterator()

    # -- the tf.data pipeline --

    def dataset(self, start_step: int = 0):
        """The tf.data.Dataset behind `batches(start_step)`."""
        tf, _ = _tf()
        if start_step < 0:
            raise ValueError(f"start_step={start_step}: must be >= 0")
        first = start_step * self.local_batch_size
        epoch, offset = divmod(first, self.shard_size)
        examples = self._read()
        ds = tf.data.Dataset.range(epoch, _LAST_EPOCH).flat_map(
            lambda e: self._shuffled_epoch(examples, e))
        ds = ds.skip(offset).enumerate(start=first)
        ds = ds.map(self._finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(self.local_batch_size, drop_remainder=True,
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE).with_options(_deterministic_options())

    def _read(self):
        """This process's shard as {"image", "label"}, in a fixed order, cached if asked.

        Images are decoded by TFDS, except with host_crop, where they stay encoded
        for the fused decode-and-crop."""
        tf, tfds = _tf()
        read_config = tfds.ReadConfig(
            shuffle_seed=self._file_seed, shuffle_reshuffle_each_iteration=False,
            try_autocache=False, options=_deterministic_options())
        decoders = {"image": tfds.decode.SkipDecoding()} if self.input.host_crop else None
        ds = self.builder.as_dataset(split=self.shard_split, shuffle_files=True,
                                     decoders=decoders, read_config=read_config)
        ds = ds.map(self._select, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.cache() if self.input.cache else ds

    def _select(self, example):
        tf, _ = _tf()
        label = (tf.cast(example["label"], tf.int32) if self.labeled
                 else tf.constant(UNLABELED, tf.int32))
        return {"image": example["image"], "label": label}

    def _shuffled_epoch(self, examples, epoch):
        """Epoch `epoch` (an int64 tensor): `examples` through a buffer seeded by
        (config.seed, process, epoch)."""
        tf, _ = _tf()
        buffer = min(self.input.shuffle_buffer, self.shard_size)
        if buffer <= 1:
            return examples
        seed = tf.random.stateless_uniform(
            [], seed=tf.stack([tf.constant(self._shuffle_seed, tf.int64), epoch]),
            minval=0, maxval=2**31 - 1, dtype=tf.int64)
        return examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)

    def global_position(self, local_position):
        """Position in the global stream of this process's example `local_position`:
        step * B + process * b + j, for local position step * b + j."""
        step, j = local_position // self.local_batch_size, local_position % self.local_batch_size
        return (step * self.global_batch_size + self.process_index * self.local_batch_size + j)

    def _finish(self, local_position, example):
        """The batch element: the stored image, or NUM_CROPS host crops seeded by position."""
        tf, _ = _tf()
        if not self.input.host_crop:
            return example
        position = self.global_position(local_position)
        seeds = [tf.stack([tf.constant(self._crop_seed, tf.int64), position * NUM_CROPS + v])
                 for v in range(NUM_CROPS)]
        view = self.config.method.view
        crops = random_resized_crops(example["image"], seeds, self.input.image_size,
                                     view.crop_scale, view.crop_ratio, self.channels)
        return {"crops": crops, "label": example["label"]}


# --- whole splits in memory, for the evaluation stages -----------------------------------------

def _read_split_arrays(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    _, tfds = _tf()
    ds = builder.as_dataset(split=split, batch_size=-1, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False))
    arrays = tfds.as_numpy(ds)
    return np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int32)


def load_tfds_arrays(config: ml_collections.ConfigDict) -> ArrayDataset:
    """Train and test splits of a small TFDS dataset (CIFAR-10, MNIST) as uint8 arrays.

    `config` is the whole config or its `input` section. Train: `input.train_split`
    ("" = "train"), its first `input.train_limit` examples when > 0 (the examples
    `TFDSPipeline` reads, before sharding); test: `input.test_split` ("" = "test").
    Class names come from the "label" feature. Every process holds all of it.
    """
    inp = _input(config)
    builder = open_builder(inp)
    image = _image_feature(builder, inp)
    if None in image.shape:
        raise ValueError(f"config.input.tfds_name={inp.tfds_name!r}: images of variable shape "
                         f"{image.shape} cannot be held as one array; load_tfds_arrays is for "
                         "small fixed-size datasets (cifar10, mnist)")
    if not _has_labels(builder):
        raise ValueError(f"config.input.tfds_name={inp.tfds_name!r}: the evaluation arrays need "
                         "a 'label' ClassLabel feature")
    ranges, total = _limited_ranges(inp, builder)
    train = _read_split_arrays(builder, sub_split(ranges, 0, total))
    test_split = inp.test_split or "test"
    split_ranges(test_split, builder, "config.input.test_split")  # A clear error if missing.
    test = _read_split_arrays(builder, test_split)
    return ArrayDataset(*train, *test,
                        class_names=tuple(builder.info.features["label"].names))
