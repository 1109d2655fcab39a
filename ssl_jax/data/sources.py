"""In-memory array sources: whole datasets as uint8 NumPy arrays on the host.

Small datasets fit in host memory as uint8, so the host only slices batches and
everything else happens on the device. Each source returns an `ArrayDataset`:
images `[N, H, W, C]` uint8, int32 labels, -1 everywhere for unlabelled data.
The file formats and their rules are in `data.formats`.

Registered names (`config.input.dataset`); split paths are relative to
`config.input.data_dir` (absolute paths work too), "" = the default shown:
  image_folder  `train_split` ("train") and `test_split` ("test"): each a
                directory tree `<class>/<image>` or the same inside a tar
                (`train` also finds `train.tar`, `train.tar.gz`, `train.tgz`).
                Classes: `data_dir/classes.txt` (one per line, in label order)
                if present, else the sorted class folders of the train split;
                the test split's folders must be among them.
                `labeled=False`: every image of the tree, no class folders
                needed. "." names data_dir itself.
  npz           `train_split` ("train.npz"), `test_split` ("test.npz"): arrays
                `images`, `labels`, optional `class_names`; a Keras-style file
                (`x_train`, `y_train`, `x_test`, `y_test`) serves both splits
                (its test split defaults to the same file). Classes:
                `class_names`, else 0 .. the largest label.
  idx           `train_split` ("train-images-idx3-ubyte"), `test_split`
                ("t10k-images-idx3-ubyte"): IDX image files, `.gz` optional;
                each labels file is the name with "images" -> "labels" and
                "idx3" -> "idx1". Classes: 0 .. the largest label.
  mnist         idx with MNIST's file names and classes 0..9.
  cifar10       image_folder with `cifar10-{train,test}.tar[.gz]` and classes.txt.
  digits        scikit-learn's bundled 8x8 digits (no files, no data_dir); a
                fixed stratified 80/20 train/test split.
  tfds          a prepared TFDS dataset (`tfds_pipeline.load_tfds_arrays`);
                data_dir "" = TFDS's default.
  text          `train_split` ("input.txt"): a UTF-8 plain-text file, cut into
                int32 windows of `seq_len` token ids (`tokenizer`), the last
                `text_val_fraction` of it the test split; unlabelled
                (`data.text`).
  movie_reviews Pang & Lee's polarity v2.0, `movie_reviews/{neg,pos}/` or
                `movie_reviews.zip` (NLTK's): [CLS] + tokens, padded to
                `seq_len`; cv000-cv899 train, cv900-cv999 test (`data.text`).

`labeled=False` drops the labels of any source (labels -1, class_names ()); for
the file sources, `test_split` "" then means no test split (empty test arrays
`[0, H, W, C]`), since only evaluation, which needs labels, reads it.
`skip_bad_images=True` skips undecodable images with a warning naming each
(image_folder, cifar10). Bad content raises `formats.DataError` naming the file.

`config.input.train_limit > 0` keeps a subset of the training split, for CPU
budgets: class-balanced (train_limit // num_classes per class, fixed choice) for
labelled data, the first train_limit of a fixed shuffle for unlabelled data
(tfds: the first train_limit examples, as its training stream reads).
"""

import dataclasses
import pathlib
from collections.abc import Callable

import ml_collections
import numpy as np

from ssl_jax.data import formats
from ssl_jax.data.formats import DataError, read_idx, read_image_folder_tar  # noqa: F401
from ssl_jax.evals.splits import labels_per_class_subset


INPUT_KEYS = ("image", "tokens")


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in host memory: inputs and int32 `[N]` labels, in `[0, num_classes)`
    when labelled, all -1 (and no class names) when not.

    Inputs are either images, uint8 `[N, H, W, C]`, or token sequences, int32 `[N, L]`
    (ids in `[0, vocab_size)`, padded with `data.tokenizers.PAD`). `input_key` is the
    name the training batch gives them ("image" or "tokens"), which tells a method
    which kind of input it gets.
    """

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        for split in ("train", "test"):
            inputs, labels = getattr(self, f"{split}_inputs"), getattr(self, f"{split}_labels")
            is_image = inputs.ndim == 4 and inputs.dtype == np.uint8
            is_tokens = inputs.ndim == 2 and inputs.dtype == np.int32
            if not (is_image or is_tokens):
                raise DataError(f"{split} inputs must be uint8 images [N, H, W, C] or int32 "
                                f"token ids [N, L], got {inputs.dtype} {inputs.shape}")
            if labels.shape != inputs.shape[:1]:
                raise DataError(f"{split}: {len(inputs)} inputs but labels of shape "
                                f"{labels.shape}")
            if labels.size and self.labeled and not 0 <= labels.min() <= labels.max() < len(
                    self.class_names):
                raise DataError(f"{split} labels lie in [{labels.min()}, {labels.max()}], "
                                f"outside [0, {len(self.class_names)}) of the class names")
            if labels.size and not self.labeled and (labels != formats.UNLABELED).any():
                raise DataError(f"{split}: unlabelled data (no class names) must have labels "
                                f"{formats.UNLABELED}")
        if len(self.test_inputs) and (self.test_inputs.shape[1:] != self.train_inputs.shape[1:]
                                      or self.test_inputs.dtype != self.train_inputs.dtype):
            raise DataError(f"test inputs are {self.test_inputs.dtype} "
                            f"{self.test_inputs.shape[1:]} but train inputs "
                            f"{self.train_inputs.dtype} {self.train_inputs.shape[1:]}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labeled(self) -> bool:
        """Whether there are labels (evaluation stages need them); False: all are -1."""
        return bool(self.class_names)

    @property
    def input_key(self) -> str:
        """The batch key of the inputs: "image" or "tokens"."""
        return "image" if self.train_inputs.ndim == 4 else "tokens"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """`(H, W, C)` of the images or `(L,)` of the token sequences."""
        return tuple(self.train_inputs.shape[1:])

    def subset_train(self, indices: np.ndarray) -> "ArrayDataset":
        return dataclasses.replace(self, train_inputs=self.train_inputs[indices],
                                   train_labels=self.train_labels[indices])

    def unlabeled(self) -> "ArrayDataset":
        """The same inputs with every label -1 and no class names."""
        return dataclasses.replace(
            self, class_names=(),
            train_labels=np.full(len(self.train_inputs), formats.UNLABELED, np.int32),
            test_labels=np.full(len(self.test_inputs), formats.UNLABELED, np.int32))


# --- paths ----------------------------------------------------------------------------------

def existing_data_dir(config: ml_collections.ConfigDict) -> pathlib.Path:
    """`config.data_dir` as a path, else a FileNotFoundError naming the field."""
    data_dir, dataset = config.data_dir, config.dataset
    if not data_dir:
        raise FileNotFoundError(f"config.input.data_dir is empty: dataset {dataset!r} reads its "
                                "files from a directory; set --config.input.data_dir=/path/to/"
                                f"{dataset}")
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"config.input.data_dir={data_dir!r}: directory does not exist "
                                f"(dataset {dataset!r})")
    return path


def _with_suffixes(path: pathlib.Path, suffixes: tuple[str, ...]) -> list[pathlib.Path]:
    """`path`, then `path` with each suffix appended, then without a final .gz."""
    candidates = [path] + [path.with_name(path.name + s) for s in suffixes]
    if path.name.endswith(".gz"):
        candidates.append(path.with_name(path.name[:-3]))
    return candidates


def _split_path(root: pathlib.Path, config, field: str, default: str,
                suffixes: tuple[str, ...] = ()) -> pathlib.Path:
    """`config.<field>` (or `default` if it is "") under `root`, the first existing of
    `_with_suffixes`; else a FileNotFoundError naming the field and the path."""
    value = config.get(field, "") or default
    path = root / pathlib.Path(value).expanduser()
    candidates = _with_suffixes(path, suffixes)
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        tried = ", ".join(c.name for c in candidates[1:])
        raise FileNotFoundError(f"config.input.{field}={value!r}: {path} does not exist"
                                + (f" (nor {tried})" if tried else ""))
    return found


def _check_same_size(train: tuple[pathlib.Path, np.ndarray],
                     test: tuple[pathlib.Path, np.ndarray]):
    (train_path, train_images), (test_path, test_images) = train, test
    if len(test_images) and test_images.shape[1:3] != train_images.shape[1:3]:
        raise DataError(f"{test_path}: images are {test_images.shape[2]}x{test_images.shape[1]} "
                        f"(width x height) but those of the train split {train_path} are "
                        f"{train_images.shape[2]}x{train_images.shape[1]}")


def _labeled(config) -> bool:
    return config.get("labeled", True)


def _reads_test(config) -> bool:
    """Labelled data always has a test split; unlabelled data only if test_split is set."""
    return _labeled(config) or bool(config.get("test_split", ""))


# Labels without class names name the classes 0 .. the largest label; a larger largest
# label than this is taken for a corrupt file rather than a million classes.
MAX_NUMBERED_CLASSES = 1 << 20


def _numbered_classes(*splits: tuple[pathlib.Path, np.ndarray]) -> tuple[str, ...]:
    """Class names "0", "1", ... up to the largest label of the (path, labels) splits."""
    path, top = max(((p, int(labels.max(initial=-1))) for p, labels in splits),
                    key=lambda item: item[1])
    if top >= MAX_NUMBERED_CLASSES:
        raise DataError(f"{path}: largest label {top}, which would make {top + 1} classes (at "
                        f"most {MAX_NUMBERED_CLASSES} without class names); is the file "
                        "corrupt?")
    return tuple(map(str, range(top + 1)))


def _no_images(like: np.ndarray) -> np.ndarray:
    return np.zeros((0, *like.shape[1:]), np.uint8)


def _unlabeled(train_images: np.ndarray, test_images: np.ndarray) -> ArrayDataset:
    return ArrayDataset(train_images, np.full(len(train_images), formats.UNLABELED, np.int32),
                        test_images, np.full(len(test_images), formats.UNLABELED, np.int32),
                        class_names=())


# --- image folders --------------------------------------------------------------------------

def load_image_folder(config: ml_collections.ConfigDict,
                      defaults: tuple[str, str] = ("train", "test")) -> ArrayDataset:
    """The "image_folder" source; `defaults`: the split paths used for "" ones."""
    root = existing_data_dir(config)
    labeled, skip_bad = _labeled(config), config.get("skip_bad_images", False)
    folder = (".tar", ".tar.gz", ".tgz")
    train_path = _split_path(root, config, "train_split", defaults[0], folder)
    class_names, class_source = None, ""
    if labeled and (root / "classes.txt").is_file():
        class_names = formats.read_class_names(root / "classes.txt")
        class_source = f"listed in {root / 'classes.txt'}"
    train = formats.read_image_folder(train_path, class_names, labeled=labeled,
                                      skip_bad=skip_bad, class_source=class_source)
    if not _reads_test(config):
        return ArrayDataset(train.images, train.labels, _no_images(train.images),
                            np.zeros(0, np.int32), class_names=train.class_names)
    test_path = _split_path(root, config, "test_split", defaults[1], folder)
    test = formats.read_image_folder(
        test_path, train.class_names, labeled=labeled, skip_bad=skip_bad,
        class_source=class_source or f"the class folders of the train split {train_path}")
    train_images, test_images = _same_channels(train.images, test.images)
    _check_same_size((train_path, train_images), (test_path, test_images))
    return ArrayDataset(train_images, train.labels, test_images, test.labels,
                        class_names=train.class_names)


def _same_channels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale splits become RGB when the other split is RGB."""
    if a.shape[-1] == 1 and b.shape[-1] == 3:
        a = np.repeat(a, 3, -1)
    if b.shape[-1] == 1 and a.shape[-1] == 3:
        b = np.repeat(b, 3, -1)
    return a, b


def load_cifar10(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The "cifar10" preset of image_folder: `cifar10-{train,test}.tar[.gz]`, classes.txt."""
    return load_image_folder(config, defaults=("cifar10-train", "cifar10-test"))


# --- npz ------------------------------------------------------------------------------------

def load_npz(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The "npz" source (see the module docstring for the file layout)."""
    root = existing_data_dir(config)
    train_path = _split_path(root, config, "train_split", "train.npz")
    train = formats.read_npz(train_path, "train")
    if not _reads_test(config):
        return _unlabeled(train.images, _no_images(train.images))
    test_default = str(train_path) if formats.is_keras_npz(train_path) else "test.npz"
    test = formats.read_npz(_split_path(root, config, "test_split", test_default), "test")
    train_images, test_images = _same_channels(train.images, test.images)
    _check_same_size((train.path, train_images), (test.path, test_images))
    if not _labeled(config):
        return _unlabeled(train_images, test_images)
    for split in (train, test):
        if split.labels is None:
            raise DataError(f"{split.path}: no labels (array 'labels', or 'y_train' / 'y_test' "
                            "in a Keras-style file); set config.input.labeled=False to read "
                            "the images without labels")
    class_names = train.class_names
    if test.class_names is not None and class_names is not None and (
            test.class_names != class_names):
        raise DataError(f"{test.path}: its class_names {test.class_names} differ from those "
                        f"of {train.path} {class_names}")
    class_names = class_names or test.class_names
    if class_names is None:
        class_names = _numbered_classes((train.path, train.labels), (test.path, test.labels))
    for split in (train, test):  # A file without class_names, checked against the other's.
        formats.check_labels(split.labels, len(split.images), str(split.path), len(class_names))
    return ArrayDataset(train_images, train.labels, test_images, test.labels, class_names)


# --- idx ------------------------------------------------------------------------------------

MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")


def _read_idx_split(root: pathlib.Path, config, field: str, default: str, labeled: bool,
                    num_classes: int | None
                    ) -> tuple[pathlib.Path, np.ndarray, np.ndarray | None]:
    path = _split_path(root, config, field, default, (".gz",))
    images = formats.check_images(read_idx(path), str(path))
    if not labeled:
        return path, images, None
    labels_name = formats.idx_labels_name(path.name)
    if not labels_name:
        raise DataError(f"config.input.{field}={path.name!r}: cannot name its labels file "
                        "(the name must contain 'images', which becomes 'labels'); set "
                        "config.input.labeled=False to read the images without labels")
    candidates = _with_suffixes(path.with_name(labels_name), (".gz",))
    labels_path = next((c for c in candidates if c.is_file()), None)
    if labels_path is None:
        raise FileNotFoundError(f"{candidates[0]}: the labels file of {path} "
                                f"(config.input.{field}) does not exist (nor "
                                f"{', '.join(c.name for c in candidates[1:])})")
    labels = formats.check_labels(read_idx(labels_path), len(images), str(labels_path),
                                  num_classes or MAX_NUMBERED_CLASSES)
    return path, images, labels


def load_idx(config: ml_collections.ConfigDict, num_classes: int | None = None
             ) -> ArrayDataset:
    """The "idx" source; `num_classes` None: 0 .. the largest label."""
    root = existing_data_dir(config)
    labeled = _labeled(config)
    train_path, train_images, train_labels = _read_idx_split(
        root, config, "train_split", MNIST_FILES[0], labeled, num_classes)
    if not _reads_test(config):
        return _unlabeled(train_images, _no_images(train_images))
    test_path, test_images, test_labels = _read_idx_split(
        root, config, "test_split", MNIST_FILES[1], labeled, num_classes)
    train_images, test_images = _same_channels(train_images, test_images)
    _check_same_size((train_path, train_images), (test_path, test_images))
    if not labeled:
        return _unlabeled(train_images, test_images)
    class_names = (tuple(map(str, range(num_classes))) if num_classes else _numbered_classes(
        (train_path, train_labels), (test_path, test_labels)))
    return ArrayDataset(train_images, train_labels, test_images, test_labels, class_names)


def load_mnist(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The "mnist" preset of idx: MNIST's file names, classes 0..9."""
    return load_idx(config, num_classes=10)


# --- bundled and TFDS -----------------------------------------------------------------------

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


def load_tfds(config: ml_collections.ConfigDict) -> ArrayDataset:
    """Both splits of a prepared TFDS dataset (`config.input.tfds_name`)."""
    from ssl_jax.data import tfds_pipeline  # Imports TensorFlow: only on this path.

    return tfds_pipeline.load_tfds_arrays(config)


# --- text (`data.text` builds on ArrayDataset, so it is imported on use) --------------------

def load_text(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The "text" source: windows of token ids of a plain-text file (`data.text`)."""
    from ssl_jax.data import text

    return text.load_text(config)


def load_movie_reviews(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The "movie_reviews" source: labelled, padded token sequences (`data.text`)."""
    from ssl_jax.data import text

    return text.load_movie_reviews(config)


# --- registry -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
    """A registered dataset: its loader, whether it reads files from
    `config.input.data_dir` (which must then exist), and whether the loader applies
    `config.input.train_limit` itself."""

    load: Callable[[ml_collections.ConfigDict], ArrayDataset]
    reads_data_dir: bool = True
    applies_train_limit: bool = False


DATASETS = {
    "image_folder": Source(load_image_folder),
    "npz": Source(load_npz),
    "idx": Source(load_idx),
    "mnist": Source(load_mnist),
    "cifar10": Source(load_cifar10),
    "digits": Source(load_digits, reads_data_dir=False),
    "tfds": Source(load_tfds, reads_data_dir=False, applies_train_limit=True),
    "text": Source(load_text),
    "movie_reviews": Source(load_movie_reviews),
}


def source(config: ml_collections.ConfigDict) -> Source:
    """The registered source of `config.dataset` (the `config.input` section)."""
    if config.dataset not in DATASETS:
        raise ValueError(f"config.input.dataset={config.dataset!r}: unknown dataset; "
                         f"expected one of {sorted(DATASETS)}")
    return DATASETS[config.dataset]


def check_data_dir(config: ml_collections.ConfigDict):
    """A FileNotFoundError naming `config.input.data_dir` if the source reads files from it
    and it is not an existing directory (cheap: for `validate`, before anything runs)."""
    if source(config).reads_data_dir:
        existing_data_dir(config)


def _limit_train(dataset: ArrayDataset, limit: int) -> ArrayDataset:
    if not dataset.labeled:
        if limit > len(dataset.train_inputs):
            raise ValueError(f"config.input.train_limit={limit} is larger than the training "
                             f"split ({len(dataset.train_inputs)} examples)")
        rng = np.random.default_rng(0)
        return dataset.subset_train(np.sort(rng.permutation(len(dataset.train_inputs))[:limit]))
    per_class = limit // dataset.num_classes
    if per_class < 1:
        raise ValueError(f"config.input.train_limit={limit} is smaller than the number of "
                         f"classes ({dataset.num_classes})")
    try:
        return dataset.subset_train(labels_per_class_subset(dataset.train_labels, per_class,
                                                            seed=0))
    except ValueError as error:
        raise ValueError(f"config.input.train_limit={limit} ({per_class} per class): "
                         f"{error}") from error


def load(config: ml_collections.ConfigDict) -> ArrayDataset:
    """The dataset named by `config.dataset` (the `config.input` section)."""
    chosen = source(config)
    dataset = chosen.load(config)
    if not _labeled(config) and dataset.labeled:
        dataset = dataset.unlabeled()
    if config.train_limit > 0 and not chosen.applies_train_limit:
        dataset = _limit_train(dataset, config.train_limit)
    if dataset.input_key == "image":
        _check_normalisation(config, dataset.train_inputs.shape[-1])
    return dataset


def _check_normalisation(config: ml_collections.ConfigDict, channels: int):
    """`config.mean` / `config.std` give one value, or one per channel of the images (a
    grayscale image broadcasts to as many channels as they give)."""
    for field in ("mean", "std"):
        if channels > 1 and len(config[field]) not in (1, channels):
            raise ValueError(f"config.input.{field}={tuple(config[field])}: the images have "
                             f"{channels} channel(s); give 1 value or {channels}")
