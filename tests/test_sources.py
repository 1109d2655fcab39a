"""In-memory sources read the real files of ../shared/data with the right counts and labels."""

import gzip
import io
import tarfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from ssl_jax.data import sources


def input_config(dataset, data_dir="", train_limit=0):
    return ml_collections.ConfigDict(dict(dataset=dataset, data_dir=str(data_dir),
                                          train_limit=train_limit))


def test_mnist_counts_and_first_labels(shared_data):
    data = sources.load(input_config("mnist", shared_data / "mnist"))
    assert data.train_images.shape == (60000, 28, 28, 1) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(data.train_labels),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(data.train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(data.test_labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_cifar10_counts_classes_and_train_limit(shared_data):
    data = sources.load(input_config("cifar10", shared_data / "cifar10", train_limit=1000))
    assert data.class_names[:3] == ("airplane", "automobile", "bird")
    assert data.train_images.shape == (1000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(data.train_labels), [100] * 10)
    assert data.test_images.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(data.test_labels), [1000] * 10)


def test_digits_split_is_fixed_and_stratified():
    a = sources.load(input_config("digits"))
    b = sources.load(input_config("digits"))
    assert len(a.train_labels) + len(a.test_labels) == 1797
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert a.train_images.max() == 255 and a.image_shape == (8, 8, 1)
    totals = np.bincount(a.train_labels) + np.bincount(a.test_labels)
    np.testing.assert_array_equal(np.bincount(a.test_labels), totals // 5)


def test_idx_with_wrong_size_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(100))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        sources.read_idx(path)


def _tar_with(tmp_path, members):
    path = tmp_path / "images.tar"
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _png(size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_folder_tar_errors_name_the_member(tmp_path):
    good = _tar_with(tmp_path, {"a/0.png": _png((4, 4)), "b/1.png": _png((4, 4))})
    images, labels = sources.read_image_folder_tar(good, ("a", "b"))
    assert images.shape == (2, 4, 4, 3) and list(labels) == [0, 1]
    corrupt = _tar_with(tmp_path, {"a/0.png": _png((4, 4)), "a/bad.png": b"not an image"})
    with pytest.raises(ValueError, match="a/bad.png"):
        sources.read_image_folder_tar(corrupt, ("a",))
    mixed = _tar_with(tmp_path, {"a/0.png": _png((4, 4)), "a/1.png": _png((5, 4))})
    with pytest.raises(ValueError, match="a/1.png"):
        sources.read_image_folder_tar(mixed, ("a",))
    unknown = _tar_with(tmp_path, {"c/0.png": _png((4, 4))})
    with pytest.raises(ValueError, match="'c'"):
        sources.read_image_folder_tar(unknown, ("a",))


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="cifar10.*digits.*mnist"):
        sources.load(input_config("imagenet"))
