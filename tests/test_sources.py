"""In-memory sources read the real files of ../shared/data with the right counts and labels.

Every local format reads real images: MNIST through the idx preset and the generic
"idx" source, CIFAR-10 through the preset and the generic "image_folder" source
(tar and directory tree), an npz of real MNIST arrays, and an unlabelled folder of
real CIFAR-10 JPEGs. The 60,000 CIFAR-10 JPEGs are decoded once (module fixture).
"""

import gzip
import io
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from ssl_jax import config as config_lib
from ssl_jax.data import formats, sources

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")


def input_config(dataset, data_dir="", **fields):
    """The real `input` section of config.py, with `fields` overridden."""
    config = config_lib.input_config(dataset, image_size=32, batch_size=64,
                                     data_dir=str(data_dir))
    config.update(fields)
    return config


def pil_decode(data: bytes) -> np.ndarray:
    """An independent decode: Pillow straight to RGB."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def mnist(shared_data):
    return sources.load(input_config("mnist", shared_data / "mnist"))


@pytest.fixture(scope="module")
def cifar10(shared_data):
    """The preset, whole test split, 1,000-image class-balanced train subset."""
    return sources.load(input_config("cifar10", shared_data / "cifar10", train_limit=1000))


@pytest.fixture(scope="module")
def cifar_members(shared_data):
    """{member name: JPEG bytes}: the first 30 images of each class of the real test tar."""
    members = {}
    with tarfile.open(shared_data / "cifar10" / "cifar10-test.tar.gz") as archive:
        for member in archive:
            if member.isfile() and int(member.name.split("/")[1][:4]) < 30:
                members[member.name] = archive.extractfile(member).read()
    assert len(members) == 300
    return members


def write_tree(root, members):
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def cifar_tree(tmp_path_factory, cifar_members):
    """A directory tree `<class>/<image>.jpg` extracted from the real test tar."""
    return write_tree(tmp_path_factory.mktemp("cifar_tree"), cifar_members)


# --- MNIST: IDX ------------------------------------------------------------------------------

def test_mnist_counts_and_first_labels(mnist):
    assert mnist.train_inputs.shape == (60000, 28, 28, 1) and mnist.train_inputs.dtype == np.uint8
    assert mnist.test_inputs.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(mnist.train_labels), MNIST_TRAIN_COUNTS)
    np.testing.assert_array_equal(mnist.train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(mnist.test_labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    assert mnist.labeled and mnist.class_names == tuple("0123456789")


def test_idx_with_explicit_splits_reads_the_named_files(shared_data, mnist):
    """Swapped splits prove the names are honoured; ".gz" is found when left out."""
    data = sources.load(input_config("idx", shared_data / "mnist",
                                     train_split="t10k-images-idx3-ubyte",
                                     test_split="train-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.train_inputs, mnist.test_inputs)
    np.testing.assert_array_equal(data.train_labels, mnist.test_labels)
    np.testing.assert_array_equal(data.test_inputs, mnist.train_inputs)
    np.testing.assert_array_equal(np.bincount(data.test_labels), MNIST_TRAIN_COUNTS)
    assert data.class_names == tuple("0123456789")  # 0 .. the largest label.


def test_idx_unlabeled_needs_no_labels_file_and_no_test_split(shared_data, tmp_path, mnist):
    shutil.copy(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", tmp_path)
    data = sources.load(input_config("idx", tmp_path, labeled=False, train_limit=500,
                                     train_split="t10k-images-idx3-ubyte.gz"))
    assert not data.labeled and data.class_names == ()
    assert data.train_inputs.shape == (500, 28, 28, 1) and set(data.train_labels) == {-1}
    assert data.test_inputs.shape == (0, 28, 28, 1) and data.test_labels.shape == (0,)
    # The first 500 of a fixed shuffle: distinct real test images, the same every time.
    again = sources.load(input_config("idx", tmp_path, labeled=False, train_limit=500,
                                      train_split="t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.train_inputs, again.train_inputs)
    flat = mnist.test_inputs.reshape(10000, -1)
    rows = {row.tobytes(): i for i, row in enumerate(flat)}
    found = [rows[image.tobytes()] for image in data.train_inputs.reshape(500, -1)]
    assert len(set(found)) == 500 and found != list(range(500))


def test_idx_reads_wider_element_types(tmp_path):
    """Labels stored as big-endian int32 (IDX type 0x0C) read back as the same numbers."""
    labels = np.array([3, 1, 700], ">i4")
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0c\x01" + np.array([3], ">u4").tobytes() + labels.tobytes())
    np.testing.assert_array_equal(sources.read_idx(path), [3, 1, 700])


def test_idx_with_wrong_size_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(100))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        sources.read_idx(path)


# --- npz ------------------------------------------------------------------------------------

def test_npz_of_real_mnist_arrays(tmp_path, mnist):
    train, test = slice(0, 3000), slice(0, 1000)
    np.savez(tmp_path / "train.npz", images=mnist.train_inputs[train, ..., 0],
             labels=mnist.train_labels[train])
    np.savez(tmp_path / "test.npz", images=mnist.test_inputs[test],
             labels=mnist.test_labels[test].astype(np.int64))
    data = sources.load(input_config("npz", tmp_path))
    np.testing.assert_array_equal(data.train_inputs, mnist.train_inputs[train])
    np.testing.assert_array_equal(data.train_labels, mnist.train_labels[train])
    np.testing.assert_array_equal(data.test_inputs, mnist.test_inputs[test])
    np.testing.assert_array_equal(data.test_labels, mnist.test_labels[test])
    assert data.class_names == tuple("0123456789") and data.train_labels.dtype == np.int32
    # class_names in the file name the classes.
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine", "unused"])
    np.savez(tmp_path / "named.npz", images=mnist.test_inputs[test],
             labels=mnist.test_labels[test], class_names=names)
    named = sources.load(input_config("npz", tmp_path, train_split="named.npz"))
    assert named.class_names[:2] == ("zero", "one") and named.num_classes == 11


def test_keras_style_npz_serves_both_splits(tmp_path, mnist):
    np.savez(tmp_path / "mnist.npz", x_train=mnist.train_inputs[:2000, ..., 0],
             y_train=mnist.train_labels[:2000].astype(np.uint8),
             x_test=mnist.test_inputs[:500, ..., 0], y_test=mnist.test_labels[:500])
    for test_split in ("", "mnist.npz"):
        data = sources.load(input_config("npz", tmp_path, train_split="mnist.npz",
                                         test_split=test_split, train_limit=100))
        assert data.train_inputs.shape == (100, 28, 28, 1)
        np.testing.assert_array_equal(np.bincount(data.train_labels), [10] * 10)
        np.testing.assert_array_equal(data.test_inputs, mnist.test_inputs[:500])
        np.testing.assert_array_equal(data.test_labels, mnist.test_labels[:500])


# --- CIFAR-10: image folders ----------------------------------------------------------------

def test_cifar10_counts_classes_and_train_limit(cifar10):
    assert cifar10.class_names == CIFAR_CLASSES
    assert cifar10.train_inputs.shape == (1000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(cifar10.train_labels), [100] * 10)
    assert cifar10.test_inputs.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(cifar10.test_labels), [1000] * 10)


def test_image_folder_reads_a_tar_and_a_directory_tree(shared_data, cifar10, cifar_tree,
                                                       cifar_members):
    """train_split: the real test tar; test_split: a directory tree extracted from it."""
    data = sources.load(input_config("image_folder", shared_data / "cifar10",
                                     train_split="cifar10-test.tar.gz",
                                     test_split=str(cifar_tree)))
    assert data.class_names == CIFAR_CLASSES  # From classes.txt.
    np.testing.assert_array_equal(data.train_inputs, cifar10.test_inputs)
    np.testing.assert_array_equal(data.train_labels, cifar10.test_labels)
    assert data.test_inputs.shape == (300, 32, 32, 3)
    names = sorted(cifar_members)  # The directory is read in sorted path order.
    np.testing.assert_array_equal(
        data.test_labels, [CIFAR_CLASSES.index(name.split("/")[0]) for name in names])
    np.testing.assert_array_equal(data.test_inputs,
                                  np.stack([pil_decode(cifar_members[n]) for n in names]))


def test_image_folder_default_splits_and_class_folders(tmp_path, cifar_members):
    """No classes.txt: classes are the sorted folders of "train"; "test" holds a subset;
    "train" is found as a directory or as train.tar.gz, with the same result."""
    chosen = {n: b for n, b in cifar_members.items() if n.split("/")[0] in ("ship", "cat", "dog")}
    write_tree(tmp_path / "dirs" / "train", chosen)
    write_tree(tmp_path / "dirs" / "test", {n: b for n, b in chosen.items() if "dog" in n})
    from_dirs = sources.load(input_config("image_folder", tmp_path / "dirs"))
    assert from_dirs.class_names == ("cat", "dog", "ship")
    np.testing.assert_array_equal(np.bincount(from_dirs.train_labels), [30, 30, 30])
    np.testing.assert_array_equal(from_dirs.test_labels, [1] * 30)
    (tmp_path / "tars").mkdir()
    with tarfile.open(tmp_path / "tars" / "train.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "dirs" / "train", arcname=".")  # Members "./cat/0000.jpg".
    shutil.copytree(tmp_path / "dirs" / "test", tmp_path / "tars" / "test")
    from_tars = sources.load(input_config("image_folder", tmp_path / "tars"))
    assert from_tars.class_names == from_dirs.class_names
    for field in ("train_inputs", "train_labels", "test_inputs", "test_labels"):
        np.testing.assert_array_equal(getattr(from_tars, field), getattr(from_dirs, field))


def test_unlabeled_folder_of_real_images(tmp_path, cifar_members):
    """Images anywhere in the tree (no class folders), labels -1, no test split."""
    names = sorted(cifar_members)[::2]
    layout = {}
    for i, name in enumerate(names):  # Some at the root, some nested two deep.
        layout[f"img{i:03d}.jpg" if i % 3 == 0 else f"a/b{i % 2}/img{i:03d}.jpg"] = name
    write_tree(tmp_path, {new: cifar_members[old] for new, old in layout.items()})
    (tmp_path / "notes.txt").write_text("not an image")
    config = input_config("image_folder", tmp_path, train_split=".", labeled=False)
    data = sources.load(config)
    assert not data.labeled and data.class_names == () and data.num_classes == 0
    assert data.train_inputs.shape == (150, 32, 32, 3) and set(data.train_labels) == {-1}
    assert data.test_inputs.shape == (0, 32, 32, 3) and data.test_labels.shape == (0,)
    np.testing.assert_array_equal(
        data.train_inputs, np.stack([pil_decode(cifar_members[layout[n]])
                                     for n in sorted(layout)]))
    config.train_limit = 40
    limited = sources.load(config)
    assert limited.train_inputs.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(limited.train_inputs, sources.load(config).train_inputs)


def test_grayscale_images_keep_one_channel_unless_mixed_with_rgb(tmp_path, mnist,
                                                                 cifar_members):
    for i in range(4):
        Image.fromarray(mnist.test_inputs[i, ..., 0]).save(tmp_path / f"gray{i}.png")
    gray = sources.load(input_config("image_folder", tmp_path, train_split=".", labeled=False))
    assert gray.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(gray.train_inputs, mnist.test_inputs[:4])
    # An RGB image of the same size in the folder: every image becomes RGB.
    rgb = pil_decode(next(iter(cifar_members.values())))
    Image.fromarray(np.resize(rgb, (28, 28, 3))).save(tmp_path / "rgb.png")
    mixed = sources.load(input_config("image_folder", tmp_path, train_split=".",
                                      labeled=False))
    assert mixed.input_shape == (28, 28, 3)
    np.testing.assert_array_equal(mixed.train_inputs[:4],
                                  np.repeat(mnist.test_inputs[:4], 3, axis=-1))


def test_listing_for_other_pipelines(tmp_path, cifar_tree, cifar_members):
    """`list_image_folder` gives paths / bytes with labels without decoding; a tar whose
    members are out of order still yields them in the listing's sorted order."""
    listing = formats.list_image_folder(cifar_tree, CIFAR_CLASSES)
    assert listing.names == tuple(sorted(cifar_members))
    for path, name, label in zip(listing.paths()[::37], listing.names[::37],
                                 listing.labels[::37]):
        assert path.endswith(name) and CIFAR_CLASSES[label] == name.split("/")[0]
    shuffled = list(cifar_members)[::-7]
    with tarfile.open(tmp_path / "shuffled.tar", "w") as archive:
        for name in shuffled:
            info = tarfile.TarInfo(name)
            info.size = len(cifar_members[name])
            archive.addfile(info, io.BytesIO(cifar_members[name]))
    in_tar = formats.list_image_folder(tmp_path / "shuffled.tar")
    assert in_tar.names == tuple(sorted(shuffled)) and in_tar.in_archive
    assert [(n, b) for n, b in in_tar.iter_bytes()] == [(n, cifar_members[n])
                                                       for n in sorted(shuffled)]


# --- digits and the registry ----------------------------------------------------------------

def test_digits_split_is_fixed_and_stratified():
    a = sources.load(input_config("digits"))
    b = sources.load(input_config("digits"))
    assert len(a.train_labels) + len(a.test_labels) == 1797
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert a.train_inputs.max() == 255 and a.input_shape == (8, 8, 1)
    totals = np.bincount(a.train_labels) + np.bincount(a.test_labels)
    np.testing.assert_array_equal(np.bincount(a.test_labels), totals // 5)


def test_labeled_false_drops_the_labels_of_any_source():
    data = sources.load(input_config("digits", labeled=False, train_limit=100))
    assert not data.labeled and set(data.train_labels) == {-1} == set(data.test_labels)
    assert len(data.train_inputs) == 100


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="cifar10.*digits.*idx.*image_folder.*mnist.*npz"):
        sources.load(input_config("imagenet"))


def test_registry_knows_which_sources_read_data_dir(tmp_path):
    for name in ("digits", "tfds"):
        sources.check_data_dir(input_config(name))  # No data_dir needed.
    for name in ("image_folder", "npz", "idx", "mnist", "cifar10"):
        with pytest.raises(FileNotFoundError, match="config.input.data_dir"):
            sources.check_data_dir(input_config(name))
        with pytest.raises(FileNotFoundError, match="nowhere"):
            sources.check_data_dir(input_config(name, tmp_path / "nowhere"))
        sources.check_data_dir(input_config(name, tmp_path))
