"""Text sources: token-id sequences int32 `[N, seq_len]` as `sources.ArrayDataset`s.

Two registered sources (`config.input.dataset`); paths are relative to
`config.input.data_dir` (absolute paths work too), the tokenizer is
`config.input.tokenizer` (`data.tokenizers`: byte, char or word with
`config.input.vocab_size` ids):

  text           a UTF-8 plain-text file `train_split` ("input.txt", e.g.
                 tiny-shakespeare), unlabelled, for language modelling. The
                 tokenizer is fitted on the whole file. The first
                 (1 - text_val_fraction) of its token stream is the train split,
                 the rest the test split (nanoGPT's 90/10 split of
                 tiny-shakespeare at the default 0.1). Each split is cut into
                 windows of seq_len tokens that start every text_stride tokens
                 (0 = seq_len: non-overlapping); a final partial window is
                 dropped. Next-token prediction reads a window w as inputs
                 w[:-1] and targets w[1:], so a window gives seq_len - 1
                 predictions.
  movie_reviews  Pang & Lee's polarity dataset v2.0 (B. Pang, L. Lee, "A
                 Sentimental Education: Sentiment Analysis Using Subjectivity
                 Summarization Based on Minimum Cuts", ACL 2004): 1,000
                 negative and 1,000 positive reviews, classes ("neg", "pos"),
                 read from the folder `data_dir/movie_reviews/{neg,pos}/`
                 if present, else from `data_dir/movie_reviews.zip` (NLTK's
                 package: members `movie_reviews/{neg,pos}/cvNNN_*.txt`). The
                 split is fixed by the cross-validation number NNN of the file
                 name: cv000-cv899 train (1,800 reviews), cv900-cv999 test
                 (200); train_split / test_split are not read. The tokenizer
                 is fitted on the train reviews only (its configs use "word").
                 A review becomes [CLS] + its first seq_len - 1 tokens, padded
                 on the right with PAD to seq_len.

`tokenizer_for(config_input)` gives the tokenizer a source used (to decode
samples, or to size a model's embedding table): fitting is deterministic and
cached on the corpus file's (or review folder's) path, size and modification
time and the tokenizer fields. `check_config` raises a ValueError naming the bad field.
"""

import functools
import pathlib
import re
import zipfile

import ml_collections
import numpy as np

from ssl_jax.data import formats, sources, tokenizers
from ssl_jax.data.formats import DataError

TEXT_DATASETS = ("text", "movie_reviews")
MOVIE_REVIEW_CLASSES = ("neg", "pos")
# cvNNN_*.txt with NNN below this is a training review, the rest test reviews.
MOVIE_REVIEW_FIRST_TEST_FOLD = 900
_REVIEW_NAME = re.compile(r"^cv(\d{3})_[^/]*\.txt$")


def check_config(config_input: ml_collections.ConfigDict):
    """A ValueError naming the field for bad text settings of a text dataset (nothing is
    checked for other datasets, which do not read these fields)."""
    if config_input.dataset not in TEXT_DATASETS:
        return
    if config_input.tokenizer not in tokenizers.TOKENIZERS:
        raise ValueError(f"config.input.tokenizer={config_input.tokenizer!r}: expected one of "
                         f"{list(tokenizers.TOKENIZERS)}")
    if config_input.tokenizer == "word" and config_input.vocab_size <= tokenizers.NUM_SPECIAL:
        raise ValueError(f"config.input.vocab_size={config_input.vocab_size}: the word "
                         f"tokenizer needs more than the {tokenizers.NUM_SPECIAL} special tokens")
    if config_input.seq_len < 2:
        raise ValueError(f"config.input.seq_len={config_input.seq_len}: must be >= 2 for "
                         f"dataset {config_input.dataset!r}")
    if config_input.text_stride < 0:
        raise ValueError(f"config.input.text_stride={config_input.text_stride}: must be >= 0 "
                         "(0 = seq_len, non-overlapping windows)")
    if not 0 < config_input.text_val_fraction < 1:
        raise ValueError(f"config.input.text_val_fraction={config_input.text_val_fraction}: "
                         "must be in (0, 1)")


# --- plain text -----------------------------------------------------------------------------

def _text_path(config_input) -> pathlib.Path:
    return sources._split_path(sources.existing_data_dir(config_input), config_input,
                               "train_split", "input.txt")


def read_text(path: pathlib.Path) -> str:
    """The UTF-8 text of `path`; a DataError naming it if it is not UTF-8 or is empty."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from error
    if not text:
        raise DataError(f"{path}: the file is empty")
    return text


def windows(tokens: np.ndarray, seq_len: int, stride: int) -> np.ndarray:
    """int32 `[N, seq_len]`: `tokens[i * stride : i * stride + seq_len]` for every window that
    fits (a final partial one is dropped); N = 0 if fewer than seq_len tokens."""
    if len(tokens) < seq_len:
        return np.zeros((0, seq_len), np.int32)
    view = np.lib.stride_tricks.sliding_window_view(tokens, seq_len)[::stride]
    return np.ascontiguousarray(view, np.int32)


def load_text(config_input: ml_collections.ConfigDict) -> sources.ArrayDataset:
    """The "text" source (see the module docstring)."""
    check_config(config_input)
    path = _text_path(config_input)
    tokens = tokenizer_for(config_input).encode(read_text(path))
    num_train = int(len(tokens) * (1 - config_input.text_val_fraction))
    seq_len = config_input.seq_len
    stride = config_input.text_stride or seq_len
    splits = {}
    for split, part in (("train", tokens[:num_train]), ("test", tokens[num_train:])):
        splits[split] = windows(part, seq_len, stride)
        if not len(splits[split]):
            raise DataError(f"{path}: the {split} split has {len(part)} tokens, fewer than "
                            f"config.input.seq_len={seq_len} (config.input.text_val_fraction="
                            f"{config_input.text_val_fraction} of {len(tokens)} tokens is the "
                            "test split)")
    unlabeled = {split: np.full(len(w), formats.UNLABELED, np.int32)
                 for split, w in splits.items()}
    return sources.ArrayDataset(splits["train"], unlabeled["train"], splits["test"],
                                unlabeled["test"], class_names=())


# --- movie reviews --------------------------------------------------------------------------

def _movie_reviews_path(config_input) -> pathlib.Path:
    """The folder `movie_reviews` under data_dir if it exists, else `movie_reviews.zip`."""
    root = sources.existing_data_dir(config_input)
    for path in (root / "movie_reviews", root / "movie_reviews.zip"):
        if path.exists():
            return path
    raise FileNotFoundError(f"{root / 'movie_reviews'}: no such folder, nor "
                            f"{root / 'movie_reviews.zip'} (dataset 'movie_reviews')")


def _review_files(path: pathlib.Path) -> dict[str, bytes]:
    """{"<class>/<file name>": bytes} of every `<class>/cvNNN_*.txt` of the folder or zip."""
    if path.is_dir():
        return {f"{c}/{f.name}": f.read_bytes() for c in MOVIE_REVIEW_CLASSES
                for f in (path / c).glob("cv*.txt")}
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.removeprefix("movie_reviews/"): archive.read(name)
                    for name in archive.namelist()
                    if name.startswith(tuple(f"movie_reviews/{c}/cv"
                                             for c in MOVIE_REVIEW_CLASSES))}
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a readable zip archive ({error})") from error


@functools.lru_cache(maxsize=4)
def _movie_reviews(path: pathlib.Path, size: int, mtime_ns: int
                   ) -> dict[str, tuple[list[str], np.ndarray]]:
    """{"train" / "test": (review texts, labels)}, sorted by class then file name. Cached
    on the path's size and modification time."""
    del size, mtime_ns  # Cache keys only.
    splits = {"train": ([], []), "test": ([], [])}
    for name, content in sorted(_review_files(path).items()):
        label, file_name = name.split("/", 1)
        match = _REVIEW_NAME.match(file_name)
        if not match:
            raise DataError(f"{path}: {name!r} is not named cvNNN_*.txt, which gives its split")
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: {name!r} is not UTF-8 text ({error})") from error
        split = "train" if int(match.group(1)) < MOVIE_REVIEW_FIRST_TEST_FOLD else "test"
        splits[split][0].append(text)
        splits[split][1].append(MOVIE_REVIEW_CLASSES.index(label))
    for split, (texts, labels) in splits.items():
        missing = set(range(len(MOVIE_REVIEW_CLASSES))) - set(labels)
        if missing:
            raise DataError(f"{path}: no {split} reviews (cvNNN_*.txt, NNN "
                            f"{'<' if split == 'train' else '>='} "
                            f"{MOVIE_REVIEW_FIRST_TEST_FOLD}) of class "
                            f"{MOVIE_REVIEW_CLASSES[min(missing)]!r}")
    return {split: (texts, np.array(labels, np.int32))
            for split, (texts, labels) in splits.items()}


def _read_movie_reviews(path: pathlib.Path) -> dict[str, tuple[list[str], np.ndarray]]:
    stat = path.stat()
    return _movie_reviews(path, stat.st_size, stat.st_mtime_ns)


def classification_sequence(ids: np.ndarray, seq_len: int) -> np.ndarray:
    """int32 `[seq_len]`: CLS, the first seq_len - 1 of `ids`, then PAD to seq_len."""
    sequence = np.full(seq_len, tokenizers.PAD, np.int32)
    sequence[0] = tokenizers.CLS
    kept = ids[:seq_len - 1]
    sequence[1:1 + len(kept)] = kept
    return sequence


def load_movie_reviews(config_input: ml_collections.ConfigDict) -> sources.ArrayDataset:
    """The "movie_reviews" source (see the module docstring)."""
    check_config(config_input)
    reviews = _read_movie_reviews(_movie_reviews_path(config_input))
    tokenizer = tokenizer_for(config_input)
    arrays = {}
    for split, (texts, labels) in reviews.items():
        arrays[split] = np.stack([classification_sequence(tokenizer.encode(t),
                                                          config_input.seq_len)
                                  for t in texts]), labels.copy()  # Not the cached array.
    return sources.ArrayDataset(*arrays["train"], *arrays["test"],
                                class_names=MOVIE_REVIEW_CLASSES)


# --- tokenizers -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _fitted_tokenizer(dataset: str, path: pathlib.Path, size: int, mtime_ns: int,
                      kind: str, vocab_size: int) -> tokenizers.Tokenizer:
    del size, mtime_ns  # Cache keys only: a rewritten file is read again.
    if dataset == "text":
        corpus = [read_text(path)]
    else:
        corpus = _read_movie_reviews(path)["train"][0]
    fields = ml_collections.ConfigDict(dict(tokenizer=kind, vocab_size=vocab_size))
    return tokenizers.build_tokenizer(fields, corpus)


def tokenizer_for(config_input: ml_collections.ConfigDict) -> tokenizers.Tokenizer:
    """The tokenizer the text source `config_input.dataset` uses: fitted on the whole file
    (text) or on the train reviews (movie_reviews); byte needs no fitting."""
    if config_input.dataset not in TEXT_DATASETS:
        raise ValueError(f"config.input.dataset={config_input.dataset!r} is not a text "
                         f"dataset ({list(TEXT_DATASETS)}), so it has no tokenizer")
    path = (_text_path(config_input) if config_input.dataset == "text"
            else _movie_reviews_path(config_input))
    stat = path.stat()
    return _fitted_tokenizer(config_input.dataset, path, stat.st_size, stat.st_mtime_ns,
                             config_input.tokenizer, config_input.vocab_size)
