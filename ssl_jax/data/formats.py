"""File-format readers of the in-memory sources; every error names the bad file.

IDX (LeCun's MNIST format), optionally gzipped:
  magic `00 00 TT D` (TT: the element type, 0x08 uint8, 0x09 int8, 0x0B int16,
  0x0C int32, 0x0D float32, 0x0E float64; D: the number of dimensions), then D
  big-endian uint32 sizes, then the elements in row-major order, big-endian.

NumPy `.npz` (read with allow_pickle=False):
  `images` uint8 `[N, H, W]` or `[N, H, W, C]` (C = 1 or 3), optional `labels`
  (integers `[N]`, >= 0) and optional `class_names` (strings, one per class).
  Keras-style files (`mnist.npz`, `cifar10.npz`) hold both splits instead:
  `x_train`, `y_train`, `x_test`, `y_test`.

Image folder, a directory tree or the same tree inside a tar archive
(`.tar`, `.tar.gz`, `.tgz`, `.tar.bz2`, `.tar.xz`):
  labelled    `<class>/<image>`: the first path component is the class, images
              may sit deeper inside it (torchvision's ImageFolder layout).
  unlabelled  every image anywhere in the tree, labels -1.
  Images are the files ending in one of `IMAGE_SUFFIXES` (any case); other
  files and anything under a hidden (`.`-prefixed) name, such as macOS `._x.jpg`
  resource forks, are ignored. Files are listed in sorted path order, so a
  directory and its tar give the same order. Decoding (Pillow) gives uint8:
  grayscale images (Pillow modes 1, L, LA) one channel, every other mode RGB
  (alpha dropped); a split with both gets RGB throughout. Every image of a split
  must have the same size, since the split is held as one array.

`DataError` (a ValueError) is the error for bad content; a missing file or
folder is a FileNotFoundError.
"""

import dataclasses
import gzip
import io
import os
import pathlib
import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
from absl import logging

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm",
                  ".pnm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# Pillow modes decoded as one grayscale channel; every other mode becomes RGB.
GRAY_MODES = ("1", "L", "LA")
UNLABELED = -1


class DataError(ValueError):
    """A data file whose content cannot be used; the message names the file."""


# --- IDX ------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_maybe_gzip(path: pathlib.Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: pathlib.Path) -> np.ndarray:
    """The array of an IDX file (`.gz` decompressed), in native byte order."""
    path = pathlib.Path(path)
    try:
        with _open_maybe_gzip(path) as f:
            content = f.read()
    except (OSError, EOFError, zlib.error) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read the file ({error})") from error
    header = content[:4]
    if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic {header!r}; expected 00 00, a "
                        f"type byte in {sorted(_IDX_TYPES)} and the number of dimensions)")
    ndim = header[3]
    if len(content) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions announced, "
                        f"{len(content)} bytes in the file)")
    dims = struct.unpack(f">{ndim}I", content[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[header[2]])
    data = content[4 + 4 * ndim:]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path}: header says shape {dims} ({expected} bytes of data) "
                        f"but the file holds {len(data)}")
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def idx_labels_name(images_name: str) -> str:
    """The labels file of an IDX images file: "images" -> "labels", "idx3" -> "idx1"
    (`train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz`); "" if the name has no
    "images" in it."""
    if "images" not in images_name:
        return ""
    return images_name.replace("images", "labels").replace("idx3", "idx1")


# --- labels ---------------------------------------------------------------------------------

def check_labels(labels: np.ndarray, num_images: int, where: str,
                 num_classes: int | None = None) -> np.ndarray:
    """`labels` as int32 after checking: integers, `[num_images]`, >= 0 and, when
    `num_classes` is given, < num_classes. `where` (the file) starts every error."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional [N], got shape {labels.shape}")
    if len(labels) != num_images:
        raise DataError(f"{where}: {num_images} images but {len(labels)} labels")
    if labels.size and labels.min() < 0:
        i = int(np.argmax(labels < 0))
        raise DataError(f"{where}: labels must be >= 0, label {i} is {labels[i]}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        i = int(np.argmax(labels >= num_classes))
        raise DataError(f"{where}: label {i} is {labels[i]}, out of range for {num_classes} "
                        f"classes (labels must lie in [0, {num_classes}))")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise DataError(f"{where}: label {labels.max()} does not fit in int32")
    return labels.astype(np.int32)


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 `[N, H, W]` or `[N, H, W, C]` (C = 1 or 3) as `[N, H, W, C]`."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 (0..255), got dtype {images.dtype}; "
                        "convert first, e.g. np.round(x * 255).astype(np.uint8) for floats in "
                        "[0, 1]")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images must have shape [N, H, W] or [N, H, W, C] with C in "
                        f"(1, 3), got {images.shape}")
    return images


# --- NumPy .npz -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NpzSplit:
    """One split of a .npz file: images `[N, H, W, C]` uint8, labels int32 `[N]` or None,
    class names or None."""

    path: pathlib.Path
    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None


def is_keras_npz(path: pathlib.Path) -> bool:
    """Whether a .npz holds Keras-style `x_train` / `x_test` arrays (both splits)."""
    with _open_npz(path) as arrays:
        return "x_train" in arrays.files


def _open_npz(path: pathlib.Path):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # zipfile.BadZipFile, ValueError, OSError, EOFError, ...
        raise DataError(f"{path}: not a readable .npz file ({type(error).__name__}: "
                        f"{error})") from error


def _npz_array(arrays, path: pathlib.Path, key: str) -> np.ndarray:
    try:
        return arrays[key]
    except Exception as error:  # Object arrays (allow_pickle=False), corrupt members.
        raise DataError(f"{path}: cannot read array {key!r} ({type(error).__name__}: "
                        f"{error}); arrays must be plain numeric or string arrays, not "
                        "pickled objects") from error


def read_npz(path: pathlib.Path, split: str = "train") -> NpzSplit:
    """The `split` ("train" or "test") of a .npz: `images` / `labels` / `class_names`, or
    `x_{split}` / `y_{split}` in a Keras-style file. Labels are checked against
    `class_names` when the file has them."""
    path = pathlib.Path(path)
    with _open_npz(path) as arrays:
        if "images" in arrays.files:
            image_key, label_key = "images", "labels"
        elif f"x_{split}" in arrays.files:
            image_key, label_key = f"x_{split}", f"y_{split}"
        else:
            raise DataError(f"{path}: no 'images' array (nor Keras-style 'x_{split}'); the "
                            f"file holds {sorted(arrays.files)}")
        images = check_images(_npz_array(arrays, path, image_key), f"{path} [{image_key!r}]")
        class_names = None
        if "class_names" in arrays.files:
            names = _npz_array(arrays, path, "class_names")
            if names.ndim != 1 or names.dtype.kind not in "US":
                raise DataError(f"{path}: 'class_names' must be a 1-D array of strings, got "
                                f"dtype {names.dtype} shape {names.shape}")
            class_names = tuple(str(n.decode() if isinstance(n, bytes) else n) for n in names)
        labels = None
        if label_key in arrays.files:
            labels = check_labels(_npz_array(arrays, path, label_key), len(images),
                                  f"{path} [{label_key!r}]",
                                  None if class_names is None else len(class_names))
    return NpzSplit(path, images, labels, class_names)


# --- image folders: listing -----------------------------------------------------------------

def is_archive(path: pathlib.Path) -> bool:
    """Whether `path` names a tar archive by its suffix (see ARCHIVE_SUFFIXES)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _is_image(name: str) -> bool:
    parts = pathlib.PurePosixPath(name).parts
    return (name.lower().endswith(IMAGE_SUFFIXES)
            and not any(p.startswith(".") for p in parts))


def _scan_directory(root: pathlib.Path) -> tuple[list[str], list[str]]:
    """(image names, other names): POSIX paths relative to `root`."""
    images, others = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        relative = pathlib.Path(folder).relative_to(root)
        for file in files:
            name = (relative / file).as_posix()
            (images if _is_image(name) else others).append(name)
    return images, others


def _scan_archive(root: pathlib.Path, keep_bytes: bool
                  ) -> tuple[list[str], list[str], dict[str, bytes]]:
    """(image member names, other member names, {name: bytes} if keep_bytes) in one pass."""
    images, others, blobs = [], [], {}
    try:
        with tarfile.open(root) as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = pathlib.PurePosixPath(member.name).as_posix()  # Drops "./".
                if not _is_image(name):
                    others.append(name)
                    continue
                images.append(name)
                if keep_bytes:
                    blobs[name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataError(f"{root}: not a readable tar archive ({type(error).__name__}: "
                        f"{error})") from error
    return images, others, blobs


def _no_images_error(root: pathlib.Path, others: list[str]) -> DataError:
    kind = "archive" if is_archive(root) or root.is_file() else "folder"
    message = f"{root}: the {kind} holds no images (files ending in {', '.join(IMAGE_SUFFIXES)})"
    if others:
        message += f"; {len(others)} other files were ignored, e.g. {sorted(others)[0]!r}"
    return DataError(message)


@dataclasses.dataclass(frozen=True)
class ImageList:
    """The image files of one image-folder split, in sorted path order.

    root: the directory or the tar archive. names: POSIX paths relative to a
    directory root, or member names of an archive. labels: int32 `[N]`, indices
    into class_names, or -1 everywhere for an unlabelled folder (class_names ()).
    """

    root: pathlib.Path
    names: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def in_archive(self) -> bool:
        return self.root.is_file()

    def describe(self, name: str) -> str:
        """How errors name one image: the file's path, or the archive and member name."""
        return f"{self.root}: member {name!r}" if self.in_archive else str(self.root / name)

    def paths(self) -> list[str]:
        """Absolute file paths of a directory root (e.g. for tf.data's `read_file`)."""
        if self.in_archive:
            raise ValueError(f"{self.root}: images inside an archive have no file paths; "
                             "read them with iter_bytes()")
        return [str(self.root / name) for name in self.names]

    def iter_bytes(self) -> Iterator[tuple[str, bytes]]:
        """(name, encoded bytes) in `names` order; one sequential pass over an archive."""
        if not self.in_archive:
            for name in self.names:
                yield name, (self.root / name).read_bytes()
            return
        order = {name: i for i, name in enumerate(self.names)}
        pending, next_index = {}, 0
        with tarfile.open(self.root) as archive:
            for member in archive:
                name = pathlib.PurePosixPath(member.name).as_posix()
                if member.isfile() and name in order and order[name] >= next_index:
                    pending[order[name]] = archive.extractfile(member).read()
                while next_index in pending:
                    yield self.names[next_index], pending.pop(next_index)
                    next_index += 1
        if next_index < len(self.names):
            raise DataError(f"{self.root}: member {self.names[next_index]!r} disappeared "
                            "since the archive was listed")


def _label(root: pathlib.Path, names: list[str], class_names: tuple[str, ...] | None,
           labeled: bool, class_source: str) -> ImageList:
    names = tuple(sorted(set(names)))
    if not labeled:
        return ImageList(root, names, np.full(len(names), UNLABELED, np.int32), ())
    listing = ImageList(root, names, np.zeros(0, np.int32), ())
    folders = []
    for name in names:
        parts = pathlib.PurePosixPath(name).parts
        if len(parts) < 2:
            raise DataError(f"{listing.describe(name)} is not inside a class folder: a labelled "
                            "image folder is laid out <class>/<image> (set "
                            "config.input.labeled=False for images without classes)")
        folders.append(parts[0])
    if class_names is None:
        class_names, class_source = tuple(sorted(set(folders))), ""
    index = {name: i for i, name in enumerate(class_names)}
    for name, folder in zip(names, folders):
        if folder not in index:
            source = f" ({class_source})" if class_source else ""
            raise DataError(f"{listing.describe(name)} is in folder {folder!r}, which is not one "
                            f"of the {len(class_names)} classes{source}: {class_names}")
    labels = np.array([index[f] for f in folders], np.int32)
    return ImageList(root, names, labels, tuple(class_names))


def _require(root: pathlib.Path):
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such directory or archive")


def list_image_folder(root: pathlib.Path, class_names: tuple[str, ...] | None = None, *,
                      labeled: bool = True, class_source: str = "") -> ImageList:
    """The images of a directory tree or tar archive, with their labels.

    class_names: the classes and their order (labels are indices into it); None =
    the sorted class folders found. A folder outside class_names is an error that
    quotes `class_source` (where the names came from). labeled=False: every image,
    labels -1. Nothing is decoded. An archive is read through once here, and once
    more by `ImageList.iter_bytes` (`read_image_folder` reads it only once).
    """
    root = pathlib.Path(root)
    _require(root)
    if root.is_dir():
        names, others = _scan_directory(root)
    else:
        names, others, _ = _scan_archive(root, keep_bytes=False)
    if not names:
        raise _no_images_error(root, others)
    return _label(root, names, class_names, labeled, class_source)


def read_class_names(path: pathlib.Path) -> tuple[str, ...]:
    """Class names, one per line (blank lines and surrounding spaces ignored)."""
    names = tuple(line.strip() for line in pathlib.Path(path).read_text().splitlines()
                  if line.strip())
    if not names:
        raise DataError(f"{path}: no class names (expected one name per line)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}: class names listed twice: {duplicates}")
    return names


# --- image folders: decoding ----------------------------------------------------------------

def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 `[H, W]` (modes in GRAY_MODES) or `[H, W, 3]`.

    Raises whatever Pillow raises for a corrupt or unsupported file.
    """
    from PIL import Image  # Imported here: only the image-folder path needs Pillow.

    with Image.open(io.BytesIO(data)) as image:
        mode = "L" if image.mode in GRAY_MODES else "RGB"
        if image.mode == mode:
            image.load()
            return np.asarray(image)
        return np.asarray(image.convert(mode))


@dataclasses.dataclass(frozen=True)
class DecodedImages:
    """A decoded split: images uint8 `[N, H, W, C]`, labels int32 `[N]`, the names of the
    kept images (`ImageList.names` order) and of the skipped ones."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...]
    skipped: tuple[str, ...]


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def decode_images(listing: ImageList, skip_bad: bool = False,
                  blobs: Iterable[tuple[str, bytes]] | None = None) -> DecodedImages:
    """Decode every image of `listing`, in its order; `blobs`: (name, bytes) pairs in that
    order (default: the files of a directory, or `iter_bytes()` of an archive).

    An unreadable or undecodable file is a DataError naming it, or with skip_bad
    a warning naming it (and one summary warning with the count); if no image
    is left that is an error too. An image of another size than the first is
    always an error: it names the file, its size and the expected one.
    """
    if blobs is None:  # Files are read inside the loop, so an unreadable one is skippable.
        blobs = (listing.iter_bytes() if listing.in_archive
                 else ((name, listing.root / name) for name in listing.names))
    images, kept, skipped, first = [], [], [], None
    for index, (name, data) in enumerate(blobs):
        try:
            if isinstance(data, pathlib.Path):
                data = data.read_bytes()
            image = decode_image(data)
        except Exception as error:  # Pillow raises many types for corrupt files.
            reason = (f"unreadable ({error})" if isinstance(error, OSError)
                      and not isinstance(data, bytes) else
                      f"not a decodable image ({type(error).__name__}: {error})")
            if not skip_bad:
                raise DataError(f"{listing.describe(name)}: {reason}; set "
                                "config.input.skip_bad_images=True to skip such files"
                                ) from error
            logging.warning("skipping %s: %s", listing.describe(name), reason)
            skipped.append(name)
            continue
        if first is None:
            first = name, image
        elif image.shape[:2] != first[1].shape[:2]:
            raise DataError(
                f"{listing.describe(name)}: image is {_size(image)} (width x height), expected "
                f"{_size(first[1])} like {listing.describe(first[0])}; in-memory sources hold "
                "a split as one array, so every image must have the same size (resize them "
                "first)")
        images.append(image)
        kept.append(index)
    total = len(kept) + len(skipped)
    if not images:
        raise DataError(f"{listing.root}: none of the {total} images could be decoded "
                        f"(config.input.skip_bad_images=True skipped every one, e.g. "
                        f"{skipped[0]!r})")
    if skipped:
        logging.warning("%s: skipped %d of %d images that could not be decoded "
                        "(config.input.skip_bad_images=True)", listing.root, len(skipped), total)
    if any(image.ndim == 3 for image in images):  # Some are RGB: all become RGB.
        images = [np.repeat(i[..., None], 3, -1) if i.ndim == 2 else i for i in images]
    else:
        images = [i[..., None] for i in images]
    return DecodedImages(np.stack(images), listing.labels[kept], listing.class_names,
                         tuple(listing.names[i] for i in kept), tuple(skipped))


def read_image_folder(root: pathlib.Path, class_names: tuple[str, ...] | None = None, *,
                      labeled: bool = True, skip_bad: bool = False,
                      class_source: str = "") -> DecodedImages:
    """`list_image_folder` then `decode_images`, reading an archive only once."""
    root = pathlib.Path(root)
    _require(root)
    if root.is_dir():
        return decode_images(list_image_folder(root, class_names, labeled=labeled,
                                               class_source=class_source), skip_bad)
    names, others, blobs = _scan_archive(root, keep_bytes=True)
    if not names:
        raise _no_images_error(root, others)
    listing = _label(root, names, class_names, labeled, class_source)
    return decode_images(listing, skip_bad, ((name, blobs[name]) for name in listing.names))


def read_image_folder_tar(path: pathlib.Path, class_names: tuple[str, ...]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a labelled `<class>/<image>` tar with the given classes."""
    decoded = read_image_folder(path, class_names)
    return decoded.images, decoded.labels
