"""Bad data gives an error that names the file (and the config field where one applies).

Missing paths are FileNotFoundError; bad content is `formats.DataError` (a
ValueError). `skip_bad_images` skips undecodable images with a warning naming
each, and keeps exactly the good ones. Hypothesis feeds random bytes as images
and IDX files, and random label arrays to npz files.
"""

import collections
import gzip
import io
import logging
import pathlib
import tarfile
import tempfile

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ssl_jax import config as config_lib
from ssl_jax import validate
from ssl_jax.data import formats, sources
from ssl_jax.data.formats import DataError

SETTINGS = settings(max_examples=30, deadline=None)


def input_config(dataset, data_dir="", **fields):
    config = config_lib.input_config(dataset, image_size=8, batch_size=64,
                                     data_dir=str(data_dir))
    config.update(fields)
    return config


def png(size=(4, 4), color=(10, 20, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def write_files(root: pathlib.Path, files: dict) -> pathlib.Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: pathlib.Path, files: dict) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def good_split(n=2, classes=("a", "b")) -> dict:
    return {f"{c}/{i}.png": png(color=(i, 3 * i, 5)) for c in classes for i in range(n)}


# --- missing paths --------------------------------------------------------------------------

TRIED = collections.Counter()  # What the property-based tests generated, by outcome.


@pytest.fixture(scope="module", autouse=True)
def print_what_was_tried():
    yield
    for kind, count in sorted(TRIED.items()):
        print(f"{count:4d} x {kind}")


@pytest.mark.parametrize("dataset", ["image_folder", "npz", "idx", "mnist", "cifar10"])
def test_missing_data_dir_names_the_field_in_validate_and_load(dataset, tmp_path):
    config = config_lib.base_config(dataset=dataset, data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"config.input.data_dir=.*nowhere"):
        validate.validate(config)
    with pytest.raises(FileNotFoundError, match=r"config.input.data_dir=.*nowhere"):
        sources.load(config.input)


def test_validate_needs_no_data_dir_for_digits_and_names_the_choices():
    validate.validate(config_lib.base_config(dataset="digits"))
    config = config_lib.base_config(dataset="imagefolder")
    with pytest.raises(ValueError, match=r"config.input.dataset='imagefolder'.*image_folder"):
        validate.validate(config)


@pytest.mark.parametrize("dataset,field,value", [
    ("image_folder", "train_split", "nope"), ("image_folder", "test_split", "nope"),
    ("npz", "train_split", "nope.npz"), ("npz", "test_split", "nope.npz"),
    ("idx", "train_split", "nope-images-idx3-ubyte"),
])
def test_missing_split_names_the_field_and_path(dataset, field, value, tmp_path):
    write_files(tmp_path / "train", good_split())
    write_files(tmp_path / "test", good_split())
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1])
    config = input_config(dataset, tmp_path, **{field: value})
    with pytest.raises(FileNotFoundError, match=f"config.input.{field}='{value}'") as error:
        sources.load(config)
    assert str(tmp_path / value) in str(error.value)


def test_missing_idx_labels_file_names_it(tmp_path):
    write_idx(tmp_path / "my-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    config = input_config("idx", tmp_path, train_split="my-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError, match="my-labels-idx1-ubyte"):
        sources.load(config)
    config.train_split = "my-pixels"
    (tmp_path / "my-pixels").write_bytes((tmp_path / "my-images-idx3-ubyte").read_bytes())
    with pytest.raises(DataError, match="config.input.train_split='my-pixels'.*labeled=False"):
        sources.load(config)


# --- empty, corrupt, unreadable -------------------------------------------------------------

def test_empty_folder_and_archive_name_the_path(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'train'}: the folder holds no images"):
        sources.load(input_config("image_folder", tmp_path))
    write_files(tmp_path / "train", {"a/readme.txt": b"hi", ".hidden/x.png": png()})
    with pytest.raises(DataError, match="1 other files were ignored, e.g. 'a/readme.txt'"):
        sources.load(input_config("image_folder", tmp_path))
    archive = write_tar(tmp_path / "empty.tar.gz", {"a/readme.txt": b"hi"})
    with pytest.raises(DataError, match=f"{archive}: the archive holds no images"):
        sources.load(input_config("image_folder", tmp_path, train_split="empty.tar.gz"))


def test_corrupt_archive_names_it(tmp_path):
    (tmp_path / "train.tar.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(DataError, match="train.tar.gz: not a readable tar archive"):
        sources.load(input_config("image_folder", tmp_path))
    good = write_tar(tmp_path / "good.tar.gz", good_split(50)).read_bytes()
    (tmp_path / "train.tar.gz").write_bytes(good[:len(good) // 2])  # Truncated.
    with pytest.raises(DataError, match="train.tar.gz: not a readable tar archive"):
        sources.load(input_config("image_folder", tmp_path))


@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_corrupt_image_names_the_file_or_is_skipped_with_a_warning(kind, tmp_path, caplog):
    files = {**good_split(), "a/bad.png": b"not an image", "b/half.png": png()[:40]}
    if kind == "dir":
        write_files(tmp_path / "train", files)
    else:
        write_tar(tmp_path / "train.tar", files)
    write_files(tmp_path / "test", good_split(1))
    with pytest.raises(DataError, match="a/bad.png.*skip_bad_images=True"):
        sources.load(input_config("image_folder", tmp_path))
    with caplog.at_level(logging.WARNING):
        data = sources.load(input_config("image_folder", tmp_path, skip_bad_images=True))
    assert data.train_inputs.shape == (4, 4, 4, 3)
    np.testing.assert_array_equal(data.train_labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(data.train_inputs[:, 0, 0], [(i, 3 * i, 5) for i in (0, 1)] * 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a/bad.png" in w for w in warnings) and any("b/half.png" in w for w in warnings)
    assert any("skipped 2 of 6 images" in w for w in warnings)
    decoded = formats.read_image_folder(
        tmp_path / ("train" if kind == "dir" else "train.tar"), skip_bad=True)
    assert decoded.names == tuple(sorted(good_split())) and decoded.skipped == (
        "a/bad.png", "b/half.png")


def test_truncated_real_jpeg_is_skipped(tmp_path, shared_data, caplog):
    with tarfile.open(shared_data / "cifar10" / "cifar10-test.tar.gz") as archive:
        jpegs = [archive.extractfile(m).read() for _, m in zip(range(3), archive)]
    write_files(tmp_path, {"0.jpg": jpegs[0], "1.jpg": jpegs[1][:300], "2.jpg": jpegs[2]})
    with pytest.raises(DataError, match=f"{tmp_path / '1.jpg'}: not a decodable image"):
        formats.read_image_folder(tmp_path, labeled=False)
    with caplog.at_level(logging.WARNING):
        decoded = formats.read_image_folder(tmp_path, labeled=False, skip_bad=True)
    assert decoded.names == ("0.jpg", "2.jpg") and decoded.images.shape == (2, 32, 32, 3)
    assert any("1.jpg" in r.getMessage() for r in caplog.records)


def test_unreadable_file_is_named_and_skippable(tmp_path):
    write_files(tmp_path, {"0.png": png()})
    (tmp_path / "1.png").symlink_to(tmp_path / "gone.png")  # A dangling link.
    with pytest.raises(DataError, match=f"{tmp_path / '1.png'}: unreadable"):
        formats.read_image_folder(tmp_path, labeled=False)
    assert formats.read_image_folder(tmp_path, labeled=False, skip_bad=True).names == ("0.png",)


def test_all_images_bad_is_still_an_error(tmp_path):
    write_files(tmp_path / "train", {"a/0.png": b"x", "a/1.png": b"y"})
    with pytest.raises(DataError, match=r"none of the 2 images could be decoded.*'a/0.png'"):
        sources.load(input_config("image_folder", tmp_path, skip_bad_images=True))


# --- sizes, classes -------------------------------------------------------------------------

def test_mixed_sizes_name_the_file_its_size_and_the_expected_size(tmp_path):
    write_files(tmp_path / "train", {"a/0.png": png((4, 4)), "a/1.png": png((4, 4)),
                                     "b/2.png": png((5, 4)), "b/3.png": png((6, 6))})
    pattern = (f"{tmp_path / 'train' / 'b' / '2.png'}: image is 5x4 .* expected 4x4 like "
               f"{tmp_path / 'train' / 'a' / '0.png'}")
    for skip in (False, True):  # A size mismatch is never skipped.
        with pytest.raises(DataError, match=pattern):
            sources.load(input_config("image_folder", tmp_path, skip_bad_images=skip))
    write_files(tmp_path / "train", {"b/2.png": png((4, 4)), "b/3.png": png((4, 4))})
    write_files(tmp_path / "test", {"a/0.png": png((8, 8))})
    with pytest.raises(DataError, match=f"{tmp_path / 'test'}: images are 8x8 .* train split"):
        sources.load(input_config("image_folder", tmp_path))


def test_test_classes_must_be_train_classes(tmp_path):
    write_files(tmp_path / "train", good_split())
    write_files(tmp_path / "test", good_split(classes=("a", "c")))
    with pytest.raises(DataError, match=r"c/0.png.*folder 'c'.*class folders of the train"):
        sources.load(input_config("image_folder", tmp_path))
    (tmp_path / "classes.txt").write_text("b\na\nc\n")  # classes.txt sets names and order.
    data = sources.load(input_config("image_folder", tmp_path))
    assert data.class_names == ("b", "a", "c")
    np.testing.assert_array_equal(data.train_labels, [1, 1, 0, 0])
    np.testing.assert_array_equal(data.test_labels, [1, 1, 2, 2])
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(DataError, match=r"b/0.png.*folder 'b'.*classes.txt"):
        sources.load(input_config("image_folder", tmp_path))
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"classes.txt: class names listed twice: \['a'\]"):
        sources.load(input_config("image_folder", tmp_path))


def test_labelled_image_outside_a_class_folder_is_named(tmp_path):
    write_files(tmp_path / "train", {**good_split(), "loose.png": png()})
    with pytest.raises(DataError, match="loose.png is not inside a class folder.*labeled=False"):
        sources.load(input_config("image_folder", tmp_path))


def test_image_folder_tar_errors_name_the_member(tmp_path):
    good = write_tar(tmp_path / "good.tar", {"a/0.png": png(), "b/1.png": png()})
    images, labels = sources.read_image_folder_tar(good, ("a", "b"))
    assert images.shape == (2, 4, 4, 3) and list(labels) == [0, 1]
    corrupt = write_tar(tmp_path / "corrupt.tar", {"a/0.png": png(), "a/bad.png": b"not png"})
    with pytest.raises(ValueError, match="corrupt.tar: member 'a/bad.png'"):
        sources.read_image_folder_tar(corrupt, ("a",))
    mixed = write_tar(tmp_path / "mixed.tar", {"a/0.png": png(), "a/1.png": png((5, 4))})
    with pytest.raises(ValueError, match="mixed.tar: member 'a/1.png'"):
        sources.read_image_folder_tar(mixed, ("a",))
    unknown = write_tar(tmp_path / "unknown.tar", {"c/0.png": png()})
    with pytest.raises(ValueError, match="'c'"):
        sources.read_image_folder_tar(unknown, ("a",))


# --- npz ------------------------------------------------------------------------------------

def npz_config(tmp_path, **fields):
    return input_config("npz", tmp_path, **fields)


def save_test_npz(tmp_path):
    np.savez(tmp_path / "test.npz", images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1])


@pytest.mark.parametrize("arrays,message", [
    (dict(images=np.zeros((3, 4, 4), np.float32), labels=[0, 1, 1]),
     r"\['images'\].*uint8.*float32"),
    (dict(images=np.zeros((3, 4, 4, 2), np.uint8), labels=[0, 1, 1]), r"C in \(1, 3\)"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0, -1, 1]),
     r"\['labels'\]: labels must be >= 0, label 1 is -1"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1]), "3 images but 2 labels"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0.0, 1.0, 1.0]), "integers.*float64"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1, 2], class_names=["x", "y"]),
     r"label 2 is 2, out of range for 2 classes"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1, 2 ** 31]),
     r"label 2147483648 does not fit in int32"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1, 2 ** 21]),
     r"largest label 2097152.*corrupt"),
    (dict(images=np.zeros((3, 4, 4), np.uint8)), "no labels.*config.input.labeled=False"),
    (dict(pixels=np.zeros((3, 4, 4), np.uint8)), r"no 'images' array.*\['pixels'\]"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, None], object)),
     "cannot read array 'labels'.*pickled"),
])
def test_bad_npz_names_the_file(arrays, message, tmp_path):
    np.savez(tmp_path / "train.npz", **arrays)
    save_test_npz(tmp_path)
    with pytest.raises(DataError, match=f"{tmp_path / 'train.npz'}.*{message}"):
        sources.load(npz_config(tmp_path))


def test_npz_labels_checked_against_the_other_files_class_names(tmp_path):
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1],
             class_names=["x", "y"])
    np.savez(tmp_path / "test.npz", images=np.zeros((1, 4, 4), np.uint8), labels=[2])
    with pytest.raises(DataError, match=f"{tmp_path / 'test.npz'}.*out of range for 2 classes"):
        sources.load(npz_config(tmp_path))


def test_corrupt_npz_names_it(tmp_path):
    (tmp_path / "train.npz").write_bytes(b"PK\x03\x04 garbage")
    save_test_npz(tmp_path)
    with pytest.raises(DataError, match="train.npz: not a readable .npz file"):
        sources.load(npz_config(tmp_path))


LABEL_SHAPES = st.sampled_from([(4,), (4,), (4,), (3,), (5,), (4, 1), ()])
LABEL_ARRAYS = st.one_of(  # Mostly the right shape, values around the valid range.
    hnp.arrays(st.sampled_from([np.int8, np.int64]), LABEL_SHAPES, elements=st.integers(-2, 4)),
    hnp.arrays(np.uint8, LABEL_SHAPES, elements=st.integers(0, 4)),
    hnp.arrays(np.float32, LABEL_SHAPES, elements=st.sampled_from([0.0, 1.0, 2.5])),
    hnp.arrays(np.bool_, LABEL_SHAPES))


@SETTINGS
@given(labels=LABEL_ARRAYS, with_names=st.booleans())
@example(labels=np.array([0, -1, 2, 1], np.int8), with_names=False)  # Negative.
@example(labels=np.array([0, 3, 2, 1], np.int64), with_names=True)  # Past class_names.
@example(labels=np.array([0, 3, 2, 1], np.int64), with_names=False)  # Valid: 4 classes.
@example(labels=np.array([0, 1, 2], np.uint8), with_names=False)  # Too few.
def test_random_npz_labels_load_iff_valid(labels, with_names):
    """Valid labels load exactly; any other array is a DataError naming the file."""
    num_images, names = 4, ["n0", "n1", "n2"]
    arrays = dict(images=np.zeros((num_images, 4, 4), np.uint8), labels=labels)
    if with_names:
        arrays["class_names"] = names
    valid = (np.issubdtype(labels.dtype, np.integer) and labels.shape == (num_images,)
             and labels.min() >= 0 and (not with_names or labels.max() < len(names)))
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        np.savez(root / "train.npz", **arrays)
        save_test_npz(root)
        TRIED[f"random npz labels: {'valid, loaded' if valid else 'refused naming the file'}"] += 1
        if valid:
            data = sources.load(npz_config(root))
            np.testing.assert_array_equal(data.train_labels, labels)
            assert data.num_classes == (3 if with_names else max(int(labels.max()), 1) + 1)
        else:
            with pytest.raises(DataError, match=str(root / "train.npz")):
                sources.load(npz_config(root))


# --- idx ------------------------------------------------------------------------------------

def write_idx(path: pathlib.Path, array: np.ndarray, type_byte: int = 0x08):
    data = (b"\x00\x00" + bytes([type_byte, array.ndim])
            + np.array(array.shape, ">u4").tobytes() + array.tobytes())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("labels,message", [
    (np.array([0, 1, 10], np.uint8), r"t10k-labels-idx1-ubyte.gz: label 2 is 10, out of range "
                                     r"for 10 classes"),
    (np.array([0, 1], np.uint8), "t10k-labels-idx1-ubyte.gz: 3 images but 2 labels"),
])
def test_bad_mnist_labels_name_the_labels_file(labels, message, tmp_path):
    for prefix, n in (("train", 3), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 4, 4), np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([0, 1, 2], np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=message):
        sources.load(input_config("mnist", tmp_path))


def test_bad_idx_files_name_the_file(tmp_path):
    (tmp_path / "a-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00")
    with pytest.raises(DataError, match="a-images-idx3-ubyte: not an IDX file"):
        sources.read_idx(tmp_path / "a-images-idx3-ubyte")
    (tmp_path / "b.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    with pytest.raises(DataError, match="b.gz: cannot read the file"):
        sources.read_idx(tmp_path / "b.gz")
    write_idx(tmp_path / "c-images-idx3-ubyte", np.zeros((2, 3, 3), ">f4"), type_byte=0x0D)
    with pytest.raises(DataError, match="c-images-idx3-ubyte.*uint8.*float32"):
        sources.load(input_config("idx", tmp_path, train_split="c-images-idx3-ubyte",
                                  labeled=False))


@SETTINGS
@given(content=st.one_of(st.binary(max_size=64),
                         st.binary(max_size=40).map(lambda b: b"\x00\x00\x08\x02" + b)))
def test_random_bytes_as_idx_read_or_raise_data_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "x-images-idx3-ubyte"
        path.write_bytes(content)
        try:
            array = sources.read_idx(path)
        except DataError as error:
            TRIED["random bytes as an IDX file: refused naming the file"] += 1
            assert str(path) in str(error)
        else:
            TRIED["random bytes as an IDX file: a consistent array"] += 1
            assert array.size == len(content) - 4 - 4 * content[3]


# --- random bytes as images -----------------------------------------------------------------

def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


VALID_PNG = encoded("PNG")
VALID = {fmt: encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF")}


def mutated(fmt: str, changes: dict[int, int]) -> bytes:
    data = bytearray(VALID[fmt])
    for offset, value in changes.items():
        data[offset % len(data)] = value
    return bytes(data)


# Pillow raises more than OSError for damaged files (hence `except Exception` there).
PNG_SHORT_IHDR = mutated("PNG", {11: 9})  # IHDR length 13 -> 9: ValueError.
BMP_HUGE = mutated("BMP", {25: 21})  # Height ~3.5e8: DecompressionBombError.


def test_pillow_raises_more_than_oserror_for_damaged_files():
    with pytest.raises(ValueError):
        formats.decode_image(PNG_SHORT_IHDR)
    with pytest.raises(Image.DecompressionBombError):
        formats.decode_image(BMP_HUGE)


@SETTINGS
@given(content=st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: VALID_PNG[:16] + b),  # A PNG header, then noise.
    st.binary(max_size=200).map(lambda b: b"\xff\xd8\xff\xe0" + b),  # A JPEG marker.
    st.integers(0, len(VALID_PNG)).map(lambda n: VALID_PNG[:n]),  # A truncated PNG.
    st.builds(mutated, st.sampled_from(sorted(VALID)),  # A few bytes of a valid file changed.
              st.dictionaries(st.integers(0, 1000), st.integers(0, 255), max_size=3)),
), skip_bad=st.booleans())
@example(content=PNG_SHORT_IHDR, skip_bad=False)
@example(content=BMP_HUGE, skip_bad=True)
@example(content=VALID["BMP"], skip_bad=False)
def test_random_bytes_as_an_image_are_named_or_skipped(content, skip_bad):
    """Random bytes next to a good image: a DataError naming the file, or skipped with
    skip_bad_images, or (when they decode to a 4x4 image) a second image."""
    try:
        decodes = formats.decode_image(content).shape[:2] == (4, 4)
    except Exception:
        decodes = False
    with tempfile.TemporaryDirectory() as tmp:
        root = write_files(pathlib.Path(tmp), {"a/good.png": VALID_PNG, "a/x.png": content})
        try:
            decoded = formats.read_image_folder(root, skip_bad=skip_bad)
        except DataError as error:
            TRIED["random bytes as an image: refused naming the file"] += 1
            assert str(root / "a" / "x.png") in str(error)
            assert not decodes
        else:
            TRIED[f"random bytes as an image: {'decoded' if decodes else 'skipped'}"] += 1
            assert decoded.names == (("a/good.png", "a/x.png") if decodes else ("a/good.png",))
            assert skip_bad or decodes
            np.testing.assert_array_equal(decoded.images[0, 0, 0], (10, 20, 30))


# --- train_limit ----------------------------------------------------------------------------

def test_train_limit_errors_name_the_field(tmp_path):
    write_files(tmp_path / "train", good_split(3))
    write_files(tmp_path / "test", good_split(1))
    with pytest.raises(ValueError, match="config.input.train_limit=1 is smaller"):
        sources.load(input_config("image_folder", tmp_path, train_limit=1))
    with pytest.raises(ValueError, match=r"config.input.train_limit=8 \(4 per class\)"):
        sources.load(input_config("image_folder", tmp_path, train_limit=8))
    with pytest.raises(ValueError, match="config.input.train_limit=7 is larger"):
        sources.load(input_config("image_folder", tmp_path, train_split="train",
                                  labeled=False, train_limit=7))
