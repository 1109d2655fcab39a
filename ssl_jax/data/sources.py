"""In-memory array sources: whole datasets as uint8 NumPy arrays on the host.

Small datasets (digits, MNIST, CIFAR-10) fit in host memory as uint8, so the
host only slices batches and everything else happens on the device. Each loader
returns an `ArrayDataset` with images `[N, H, W, C]` uint8 and int32 labels.

`config.input.train_limit > 0` keeps a class-balanced subset of the training
split (train_limit // num_classes per class, fixed choice), for CPU budgets.

Registered names (`config.input.dataset`):
  digits   scikit-learn's bundled 8x8 digits (ships in the wheel, no download);
           a fixed stratified 80/20 train/test split.
  mnist    the IDX files (optionally gzipped) in `config.input.data_dir`.
  cifar10  the image-folder tars `cifar10-{train,test}.tar[.gz]` and
           `classes.txt` in `config.input.data_dir` (`<class>/<name>.jpg`).
"""

import dataclasses
import gzip
import io
import pathlib
import struct
import tarfile

import ml_collections
import numpy as np

from ssl_jax.evals.splits import labels_per_class_subset


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A labelled dataset held in host memory."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def subset_train(self, indices: np.ndarray) -> "ArrayDataset":
        return dataclasses.replace(self, train_images=self.train_images[indices],
                                   train_labels=self.train_labels[indices])


def _existing_dir(data_dir: str, dataset: str) -> pathlib.Path:
    if not data_dir:
        raise ValueError(f"config.input.data_dir is empty: dataset {dataset!r} reads its files "
                         "from a directory; set --config.input.data_dir=/path/to/" + dataset)
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"config.input.data_dir={data_dir!r}: directory does not exist "
                                f"(dataset {dataset!r})")
    return path


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path:
    """`stem` or `stem.gz` inside `directory`, else a FileNotFoundError naming both."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory / stem}(.gz) not found")


def _open_maybe_gzip(path: pathlib.Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format): magic, big-endian uint32 dims, uint8 data."""
    with _open_maybe_gzip(path) as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] != 0x08:
            raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic {header!r})")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) "
                         f"but the file holds {data.size}")
    return data.reshape(dims)


def load_mnist(config: ml_collections.ConfigDict) -> ArrayDataset:
    root = _existing_dir(config.data_dir, "mnist")
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_file(root, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise ValueError(f"{root}: {split} has {len(images)} images but {len(labels)} labels")
        arrays[split] = (images[..., None], labels.astype(np.int32))
    return ArrayDataset(*arrays["train"], *arrays["test"], class_names=tuple(map(str, range(10))))


def read_image_folder_tar(path: pathlib.Path, class_names: tuple[str, ...]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Decode every `<class>/<image>` member of a (gzipped) tar into uint8 arrays.

    All images must share one size; labels are indices into `class_names`.
    """
    from PIL import Image  # Imported here: only the image-folder path needs Pillow.

    index = {name: i for i, name in enumerate(class_names)}
    images, labels = [], []
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile():
                continue
            class_name = pathlib.PurePosixPath(member.name).parent.name
            if class_name not in index:
                raise ValueError(f"{path}: member {member.name!r} is in folder {class_name!r}, "
                                 f"which is not one of the classes {class_names}")
            data = archive.extractfile(member).read()
            try:
                image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            except Exception as error:  # PIL raises several types for corrupt files.
                raise ValueError(f"{path}: member {member.name!r} is not a decodable image "
                                 f"({error})") from error
            if images and image.shape != images[0].shape:
                raise ValueError(f"{path}: member {member.name!r} has shape {image.shape}, "
                                 f"expected {images[0].shape} like the first image")
            images.append(image)
            labels.append(index[class_name])
    if not images:
        raise ValueError(f"{path}: the archive holds no images")
    return np.stack(images), np.asarray(labels, np.int32)


def load_cifar10(config: ml_collections.ConfigDict) -> ArrayDataset:
    root = _existing_dir(config.data_dir, "cifar10")
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise FileNotFoundError(f"{classes_file} not found (one class name per line)")
    class_names = tuple(line.strip() for line in classes_file.read_text().splitlines()
                        if line.strip())
    splits = {}
    for split in ("train", "test"):
        candidates = [root / f"cifar10-{split}.tar.gz", root / f"cifar10-{split}.tar"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"none of {[str(p) for p in candidates]} exists")
        splits[split] = read_image_folder_tar(path, class_names)
    return ArrayDataset(*splits["train"], *splits["test"], class_names=class_names)


def load_digits(config: ml_collections.ConfigDict) -> ArrayDataset:
    """scikit-learn's 8x8 digits (1,797 images, values 0..16) as uint8 0..255.

    The split is fixed (stratified 80/20 with seed 0) so that numbers are
    comparable between runs; `config.seed` does not change it.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    rng = np.random.default_rng(0)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test[rng.choice(members, size=len(members) // 5, replace=False)] = True
    return ArrayDataset(images[~test], labels[~test], images[test], labels[test],
                        class_names=tuple(map(str, range(10))))


DATASETS = {"digits": load_digits, "mnist": load_mnist, "cifar10": load_cifar10}


def load(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The dataset named by `config.dataset` (the `config.input` section)."""
    if config.dataset not in DATASETS:
        raise ValueError(f"config.input.dataset={config.dataset!r}: unknown dataset; "
                         f"expected one of {sorted(DATASETS)}")
    dataset = DATASETS[config.dataset](config)
    if config.train_limit > 0:
        per_class = config.train_limit // dataset.num_classes
        if per_class < 1:
            raise ValueError(f"config.input.train_limit={config.train_limit} is smaller than the "
                             f"number of classes ({dataset.num_classes})")
        dataset = dataset.subset_train(
            labels_per_class_subset(dataset.train_labels, per_class, seed=0))
    return dataset
