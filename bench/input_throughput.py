r"""Input throughput (images/s) of every data source, on the real files in ../shared/data.

    python bench/input_throughput.py --data_root ../shared/data --workdir /tmp/input_bench

Two kinds of numbers, each the median of `--repeats` timings:

  load    `sources.load`: files -> uint8 arrays in host memory, once per run
          (train + test images / seconds). Sources: mnist (IDX .gz), cifar10
          (PNG image-folder .tar.gz), image_folder (the same PNGs as a directory
          tree), npz (CIFAR-10 written as a Keras-style .npz), tfds (CIFAR-10
          written as a locally built TFDS dataset, `load_tfds_arrays`).
  stream  the training stream that feeds every step, per global batch of
          `--batch_size`: `StepBatcher` slicing the in-memory CIFAR-10 arrays
          (augmentation then runs on the device), and `TFDSPipeline` reading the
          TFDS copy from disk, uncached (decode PNG, shuffle, batch), and with
          `host_crop` (two random resized crops per image on the host) on the
          same 32x32 images and on 256x256 JPEGs (CIFAR-10 upscaled: ImageNet's
          case, fused decode-and-crop to 224).

The derived copies (directory tree, .npz, TFDS datasets) are written under
`--workdir` once and reused. Compare the stream rates with the training step's
images/s (bench/step_input_ratio.py measures that ratio directly).
"""

import pathlib
import statistics
import tarfile
import time

import numpy as np
from absl import app, flags, logging

_DATA_ROOT = flags.DEFINE_string("data_root", "../shared/data", "The shared data folder.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/input_bench", "Where derived copies go.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per number (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 512, "Global batch of the stream numbers.")
_STREAM_BATCHES = flags.DEFINE_integer("stream_batches", 20, "Batches per stream timing.")
_JPEG_IMAGES = flags.DEFINE_integer("jpeg_images", 2000, "Images of the 256x256 JPEG set.")


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def input_config(dataset: str, data_dir: pathlib.Path, **fields):
    from ssl_jax.config import base_config

    config = base_config(dataset=dataset, image_size=32, batch_size=_BATCH.value,
                         data_dir=str(data_dir))
    config.input.update(fields)
    return config


def tfds_builder_class(images: np.ndarray, labels: np.ndarray, name: str, fmt: str):
    """A TFDS builder named `name` holding `images`/`labels` as its train split."""
    import tensorflow_datasets as tfds

    def info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=images.shape[1:], encoding_format=fmt),
            "label": tfds.features.ClassLabel(num_classes=10)}))

    def generate_examples(self, start, stop):
        del self
        for i in range(start, stop):
            yield i, {"image": images[i], "label": int(labels[i])}

    def split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(0, len(images)),
                "test": self._generate_examples(0, 1000)}

    # TFDS names a builder after its class (CamelCase -> snake_case).
    class_name = "".join(part.title() for part in name.split("_"))
    return type(class_name, (tfds.core.GeneratorBasedBuilder, ), dict(
        VERSION=tfds.core.Version("1.0.0"), _info=info, _split_generators=split_generators,
        _generate_examples=generate_examples))


def derived_copies(cifar, root: pathlib.Path, workdir: pathlib.Path) -> dict:
    """Directory tree, .npz and TFDS copies of CIFAR-10 (written once)."""
    tree = workdir / "cifar10_tree"
    if not (tree / "train").is_dir():
        for split in ("train", "test"):
            with tarfile.open(root / "cifar10" / f"cifar10-{split}.tar.gz") as tar:
                tar.extractall(tree / split, filter="data")
    npz = workdir / "cifar10.npz"
    if not npz.exists():
        np.savez(npz, x_train=cifar.train_inputs, y_train=cifar.train_labels,
                 x_test=cifar.test_inputs, y_test=cifar.test_labels)
    tfds_dir = workdir / "tfds"
    for name, images, fmt in (
            ("ssl_jax_bench_cifar", cifar.train_inputs, "png"),
            ("ssl_jax_bench_jpeg256", upscaled(cifar.train_inputs[:_JPEG_IMAGES.value]), "jpeg")):
        if not (tfds_dir / name).is_dir():
            builder = tfds_builder_class(images, cifar.train_labels, name, fmt)
            builder(data_dir=str(tfds_dir)).download_and_prepare()
    return dict(tree=tree, npz=npz, tfds=tfds_dir)


def upscaled(images: np.ndarray, side: int = 256) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(x).resize((side, side), Image.BILINEAR))
                     for x in images])


def load_rates(root: pathlib.Path, copies: dict) -> list[tuple[str, str, float]]:
    from ssl_jax.data import sources

    cases = [
        ("mnist", "IDX .gz", input_config("mnist", root / "mnist")),
        ("cifar10", "PNG tree in .tar.gz", input_config("cifar10", root / "cifar10")),
        ("image_folder", "PNG directory tree", input_config("image_folder", copies["tree"])),
        ("npz", "Keras-style .npz", input_config("npz", copies["npz"].parent,
                                                 train_split=copies["npz"].name)),
        ("tfds", "TFDS PNG records", input_config("tfds", copies["tfds"],
                                                  tfds_name="ssl_jax_bench_cifar")),
    ]
    rows = []
    for name, fmt, config in cases:
        sources.load(config.input)  # Warm the page cache and imports.
        data = sources.load(config.input)
        count = len(data.train_inputs) + len(data.test_inputs)
        seconds = median_seconds(lambda c=config: sources.load(c.input), _REPEATS.value)
        rows.append((name, fmt, count / seconds))
        print(f"load {name:13s} {count} images  {count / seconds:12,.0f} images/s", flush=True)
    return rows


def stream_rate(batches, batch_size: int) -> float:
    next(batches)  # Start-up (threads, first shuffle buffer fill) is not steady state.
    n = _STREAM_BATCHES.value

    def run():
        for _ in range(n):
            next(batches)

    return n * batch_size / median_seconds(run, _REPEATS.value)


def stream_rates(cifar, copies: dict) -> list[tuple[str, str, float]]:
    from ssl_jax.data import loader, tfds_pipeline

    b = _BATCH.value
    rows = []
    batcher = loader.StepBatcher({"image": cifar.train_inputs, "label": cifar.train_labels}, b,
                                  seed=0)
    rows.append(("StepBatcher", "CIFAR-10 uint8 arrays, 32x32", stream_rate(batcher.batches(0), b)))
    cases = [
        ("TFDSPipeline", "CIFAR-10 PNG, decode", "ssl_jax_bench_cifar", 32, False),
        ("TFDSPipeline host_crop", "CIFAR-10 PNG, decode + 2 crops to 32", "ssl_jax_bench_cifar",
         32, True),
        ("TFDSPipeline host_crop", "256x256 JPEG, fused decode-and-crop, 2 crops to 224",
         "ssl_jax_bench_jpeg256", 224, True),
    ]
    for name, what, tfds_name, size, host_crop in cases:
        config = input_config("tfds", copies["tfds"], tfds_name=tfds_name, host_crop=host_crop,
                              cache=False, shuffle_buffer=10_000)
        config.input.image_size = size
        pipeline = tfds_pipeline.TFDSPipeline(config, process_index=0, process_count=1)
        rows.append((name, what, stream_rate(pipeline.batches(0), b)))
    for name, what, rate in rows:
        print(f"stream {name:24s} {what:55s} {rate:10,.0f} images/s", flush=True)
    return rows


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TFDS logs every split it opens.
    from ssl_jax.data import sources

    root = pathlib.Path(_DATA_ROOT.value).resolve()
    workdir = pathlib.Path(_WORKDIR.value)
    workdir.mkdir(parents=True, exist_ok=True)
    cifar = sources.load(input_config("cifar10", root / "cifar10").input)
    copies = derived_copies(cifar, root, workdir)
    loads = load_rates(root, copies)
    streams = stream_rates(cifar, copies)
    print("\n| stage | source | files | images/s |\n|---|---|---|---|")
    for stage, rows in (("load", loads), ("stream", streams)):
        for name, what, rate in rows:
            print(f"| {stage} | {name} | {what} | {rate:,.0f} |")


if __name__ == "__main__":
    app.run(main)
