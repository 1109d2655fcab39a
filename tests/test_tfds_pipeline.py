"""The tf.data / TFDS training stream (`data.tfds_pipeline`), with no network access.

Two datasets: TFDS's `mock_data` for "cifar10" (random examples behind the real
features, with split sizes written as metadata), and a tiny dataset built here
from a `GeneratorBasedBuilder`: 40 JPEG-encoded 48x48 images whose pixels encode
their row, column and index, so every image is distinct and a crop shows where
it came from.
"""

import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from ssl_jax import stages  # noqa: E402
from ssl_jax.config import base_config  # noqa: E402
from ssl_jax.data import tfds_pipeline  # noqa: E402
from ssl_jax.data.tfds_pipeline import NUM_CROPS, TFDSPipeline  # noqa: E402

TINY_TRAIN, TINY_TEST, TINY_SIDE, TINY_CLASSES = 40, 8, 48, ("a", "b", "c", "d")


def tiny_image(index: int) -> np.ndarray:
    """48x48x3 uint8: red = 5 * row, green = 5 * column, blue = 5 * index."""
    rows, cols = np.mgrid[:TINY_SIDE, :TINY_SIDE]
    return np.stack([5 * rows, 5 * cols, np.full_like(rows, 5 * index)], -1).astype(np.uint8)


class SslJaxTinyImages(tfds.core.GeneratorBasedBuilder):
    """40 train + 8 test JPEGs with labels (index mod 4) and their index."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(TINY_SIDE, TINY_SIDE, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=TINY_CLASSES),
            "index": tfds.features.Scalar(dtype=np.int64),
        }))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples(0, TINY_TRAIN),
                "test": self._generate_examples(TINY_TRAIN, TINY_TRAIN + TINY_TEST)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": tiny_image(i), "label": i % len(TINY_CLASSES), "index": i}


class SslJaxTinyVariableImages(tfds.core.GeneratorBasedBuilder):
    """16 unlabelled JPEGs of sizes 40x56 .. 56x40, like ImageNet's varied sizes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")}))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(16):
            side = 40 + i
            yield i, {"image": tiny_image(i)[:side, :96 - side]}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    data_dir = tmp_path_factory.mktemp("tfds")
    SslJaxTinyImages(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def tfds_config(name: str, data_dir: str, batch_size: int, **input_fields):
    config = base_config(dataset="tfds", image_size=24, batch_size=batch_size)
    config.input.update(dict(tfds_name=name, data_dir=data_dir, shuffle_buffer=16,
                             **input_fields))
    return config


def take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def image_keys(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


def check_against_spec(pipeline: TFDSPipeline, batch: dict):
    spec = pipeline.spec()
    assert sorted(batch) == sorted(spec)
    for name, (shape, dtype) in spec.items():
        assert batch[name].shape == shape, name
        assert batch[name].dtype == dtype, name


# --- mock_data: cifar10 through the whole pipeline -------------------------------------------

def write_mock_metadata(data_dir: str, name: str, num_examples: int):
    """Split sizes for `mock_data`, which otherwise knows no splits."""
    builder = tfds.builder(name)  # mock_data points its data_dir at `data_dir`.
    splits = [tfds.core.SplitInfo(
        name=split, shard_lengths=[num_examples], num_bytes=0,
        filename_template=tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir, dataset_name=name, split=split, filetype_suffix="tfrecord"))
        for split in ("train", "test")]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)


def test_mock_cifar10_batches_match_spec(tmp_path):
    with tfds.testing.mock_data(num_examples=64, data_dir=str(tmp_path)):
        write_mock_metadata(str(tmp_path), "cifar10", 64)
        config = tfds_config("cifar10", "", batch_size=16, cache=True)
        pipeline = TFDSPipeline(config, process_index=0, process_count=1)
        assert pipeline.num_examples == 64
        assert pipeline.steps_per_epoch == 4.0
        assert pipeline.steps_for_epochs(1.5) == 6
        assert pipeline.spec() == {"image": ((16, 32, 32, 3), np.uint8),
                                   "label": ((16, ), np.int32)}
        batches = take(pipeline.batches(0), 5)
        arrays = tfds_pipeline.load_tfds_arrays(config)
        config.input.host_crop = True  # PNGs: decoded whole, then cropped.
        crop_pipeline = TFDSPipeline(config, process_index=0, process_count=1)
        crop_batch = next(crop_pipeline.batches(0))
    check_against_spec(crop_pipeline, crop_batch)
    assert crop_batch["crops"].shape == (16, NUM_CROPS, 24, 24, 3)
    for batch in batches:
        check_against_spec(pipeline, batch)
        assert ((batch["label"] >= 0) & (batch["label"] < 10)).all()
    assert arrays.train_inputs.shape == (64, 32, 32, 3) and arrays.train_inputs.dtype == np.uint8
    assert arrays.test_labels.dtype == np.int32 and arrays.num_classes == 10


# --- the tiny JPEG dataset -------------------------------------------------------------------

def test_stored_images_one_epoch_is_the_split_once_and_epochs_reshuffle(tiny_dir):
    """Batch 12 does not divide 40: the stream still visits each image once per epoch."""
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=12)
    pipeline = TFDSPipeline(config, process_index=0, process_count=1)
    arrays = tfds_pipeline.load_tfds_arrays(config)
    batches = take(pipeline.batches(0), 7)  # 84 examples: epoch 0, epoch 1, 4 of epoch 2.
    for batch in batches:
        check_against_spec(pipeline, batch)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    keys = image_keys(images)
    split = dict(zip(image_keys(arrays.train_inputs), arrays.train_labels))
    assert len(split) == TINY_TRAIN
    assert sorted(keys[:40]) == sorted(split) and sorted(keys[40:80]) == sorted(split)
    assert keys[:40] != keys[40:80], "epochs 0 and 1 have the same order"
    assert all(split[k] == label for k, label in zip(keys, labels))
    assert arrays.train_inputs.shape == (TINY_TRAIN, TINY_SIDE, TINY_SIDE, 3)
    assert arrays.test_inputs.shape[0] == TINY_TEST and arrays.class_names == TINY_CLASSES
    # The decoded JPEGs are the training images (blue = 5 * index), up to JPEG's error.
    indices = np.round(arrays.train_inputs[..., 2].mean(axis=(1, 2)) / 5).astype(int)
    assert sorted(indices) == list(range(TINY_TRAIN))
    for image, index in zip(arrays.train_inputs, indices):
        assert np.abs(image.astype(int) - tiny_image(index)).mean() < 4
        assert arrays.train_labels[list(indices).index(index)] == index % len(TINY_CLASSES)


def test_processes_read_disjoint_shards_covering_the_split(tiny_dir):
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=8)
    seen = []
    for process in (0, 1):
        pipeline = TFDSPipeline(config, process_index=process, process_count=2)
        assert pipeline.num_examples == TINY_TRAIN and pipeline.steps_per_epoch == 5.0
        assert pipeline.spec()["image"][0][0] == 4
        batches = take(pipeline.batches(0), 5)  # One epoch: 5 local batches of 4.
        seen.append(image_keys(np.concatenate([b["image"] for b in batches])))
    all_keys = image_keys(tfds_pipeline.load_tfds_arrays(config).train_inputs)
    assert len(set(seen[0])) == len(set(seen[1])) == TINY_TRAIN // 2
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == set(all_keys)


def test_train_limit_and_split_slicing(tiny_dir):
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=6,
                         train_split="train[:50%]", train_limit=15)
    pipeline = TFDSPipeline(config, process_index=1, process_count=2)
    assert pipeline.num_examples == 14 and pipeline.shard_split == "train[7:14]"
    assert len(tfds_pipeline.load_tfds_arrays(config).train_inputs) == 15


def test_host_crops_resume_exactly(tiny_dir):
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=12, host_crop=True,
                         cache=True)
    pipeline = TFDSPipeline(config, process_index=0, process_count=1)
    assert pipeline.spec() == {"crops": ((12, NUM_CROPS, 24, 24, 3), np.uint8),
                               "label": ((12, ), np.int32)}
    uninterrupted = take(pipeline.batches(0), 6)
    resumed = take(pipeline.batches(3), 3)  # Step 3 starts 36 examples in, mid-epoch.
    for expected, got in zip(uninterrupted[3:], resumed):
        for name in expected:
            np.testing.assert_array_equal(expected[name], got[name])
    for batch in uninterrupted:
        check_against_spec(pipeline, batch)
        crops = batch["crops"].astype(int)
        assert (np.abs(crops[:, 0] - crops[:, 1]).mean(axis=(1, 2, 3)) > 1).all(), \
            "the two views of an example are the same crop"
    # A different seed gives other data.
    config.seed = 1
    other = next(TFDSPipeline(config, process_index=0, process_count=1).batches(0))
    assert not np.array_equal(other["crops"], uninterrupted[0]["crops"])


def test_host_crop_boxes_follow_the_view_config(tiny_dir):
    """Red and green encode row and column: a crop's value range gives its box."""
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=8, host_crop=True)
    config.input.image_size = 48
    config.method.view.update(dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)))
    full = next(TFDSPipeline(config, process_index=0, process_count=1).batches(0))["crops"]
    stored = tfds_pipeline.load_tfds_arrays(config).train_inputs
    stored_keys = set(image_keys(stored))
    assert set(image_keys(full.reshape(-1, 48, 48, 3))) <= stored_keys, \
        "a crop of the whole image at its own size is not the decoded image"

    config.method.view.update(dict(crop_scale=(0.2, 0.3), crop_ratio=(0.75, 4 / 3)))
    crops = next(TFDSPipeline(config, process_index=0, process_count=1).batches(0))["crops"]
    rows = np.ptp(crops[..., 0].astype(float), axis=(2, 3)) / 5 + 1
    cols = np.ptp(crops[..., 1].astype(float), axis=(2, 3)) / 5 + 1
    area = rows * cols / TINY_SIDE**2
    assert ((area > 0.12) & (area < 0.4)).all(), area


def test_center_window_is_torchvisions_fallback():
    assert tfds_pipeline.center_window(100, 50, (0.75, 4 / 3)).numpy().tolist() == \
        [16, 0, 67, 50]
    assert tfds_pipeline.center_window(50, 100, (0.75, 4 / 3)).numpy().tolist() == \
        [0, 16, 50, 67]
    assert tfds_pipeline.center_window(40, 40, (0.75, 4 / 3)).numpy().tolist() == [0, 0, 40, 40]


def test_unlabeled_data_has_label_minus_one(tiny_dir):
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=8, labeled=False)
    batch = next(TFDSPipeline(config, process_index=0, process_count=1).batches(0))
    assert (batch["label"] == -1).all()


# --- through the stages, as `python -m ssl_jax.main` runs them ---------------------------------

def stages_config(name: str, data_dir: str, stages: tuple[str, ...]):
    config = tfds_config(name, data_dir, batch_size=8, host_crop=True)
    config.stages = stages
    config.schedule.update(dict(steps=2, warmup_epochs=0.0))
    config.model.widths = (8, 16)
    config.method.projector.update(dict(hidden_dim=16, out_dim=8))
    config.eval.update(dict(labels_per_class=(0, ), knn_k=(3, ), baselines=()))
    return config


def test_variable_size_images_pretrain_from_the_stream(tmp_path):
    """ImageNet's case: images of many sizes cannot be held as one array; pretraining
    reads host crops from the stream and never asks for the arrays."""
    data_dir = str(tmp_path / "tfds")
    SslJaxTinyVariableImages(data_dir=data_dir).download_and_prepare()
    config = stages_config("ssl_jax_tiny_variable_images", data_dir, ("pretrain", ))
    stages.run_stages(config, tmp_path / "run")
    assert (tmp_path / "run" / "pretrain" / "checkpoints" / "2").is_dir()
    config.stages = ("pretrain", "knn")
    with pytest.raises(ValueError, match=r"images of variable shape"):
        stages.run_stages(config, tmp_path / "run")


def test_pretrain_from_the_stream_then_knn_on_the_arrays(tiny_dir, tmp_path):
    config = stages_config("ssl_jax_tiny_images", tiny_dir, ("pretrain", "knn"))
    results = stages.run_stages(config, tmp_path)
    accuracy = results["ssl"]["kNN k=3 (all labels)"]
    assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "pretrain" / "checkpoints" / "2").is_dir()


# --- errors ----------------------------------------------------------------------------------

def test_missing_or_unknown_dataset_names_the_config_field(tmp_path):
    config = tfds_config("cifar10", str(tmp_path), batch_size=8)
    with pytest.raises(FileNotFoundError, match=r"config.input.tfds_name='cifar10'.*tfds build"):
        TFDSPipeline(config, process_index=0, process_count=1)
    with pytest.raises(FileNotFoundError, match=r"config.input.tfds_name='cifar10'"):
        tfds_pipeline.load_tfds_arrays(config)
    config.input.tfds_name = "no_such_dataset_xyz"
    with pytest.raises(ValueError, match=r"config.input.tfds_name='no_such_dataset_xyz'"):
        TFDSPipeline(config, process_index=0, process_count=1)
    config.input.tfds_name = ""
    with pytest.raises(ValueError, match=r"config.input.tfds_name is empty"):
        TFDSPipeline(config, process_index=0, process_count=1)


def test_bad_fields_are_named(tiny_dir):
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=9)
    with pytest.raises(ValueError, match=r"config.input.batch_size=9"):
        TFDSPipeline(config, process_index=0, process_count=2)
    config = tfds_config("ssl_jax_tiny_images", tiny_dir, batch_size=8, train_split="valid")
    with pytest.raises(ValueError, match=r"config.input.train_split='valid'"):
        TFDSPipeline(config, process_index=0, process_count=1)


def test_importing_the_module_does_not_import_tensorflow():
    code = ("import sys, ssl_jax, ssl_jax.data.tfds_pipeline; "
            "assert 'tensorflow' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=pathlib.Path(__file__).resolve().parents[1],
                   env={**os.environ, "JAX_PLATFORMS": "cpu"})
