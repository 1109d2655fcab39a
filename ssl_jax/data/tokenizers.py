"""Tokenizers that need no download: text <-> int32 token ids.

Every tokenizer shares the same four special ids, below its ordinary tokens:

  PAD = 0 (`<pad>`)    fills sequences up to their fixed length
  MASK = 1 (`<mask>`)  the input of a masked position (BERT's masked LM)
  UNK = 2 (`<unk>`)    a character or word outside the vocabulary
  CLS = 3 (`<cls>`)    the first token of a sequence to classify

Ordinary tokens have ids >= NUM_SPECIAL; `encode` never produces PAD, MASK or
CLS (the data sources add them), and UNK only for out-of-vocabulary items.
`decode` drops PAD and shows the other special ids as their names.

  byte  the UTF-8 bytes of the text: id = byte + NUM_SPECIAL, 260 ids, nothing
        is out of vocabulary (the byte-level input of Radford et al. 2019,
        "Language Models are Unsupervised Multitask Learners", OpenAI report,
        without BPE merges).
  char  the sorted distinct characters of a corpus (Karpathy's char-rnn /
        nanoGPT tiny-shakespeare setup).
  word  lower-cased tokens of WORD_PATTERN, the NUM_SPECIAL specials then the
        (vocab_size - NUM_SPECIAL) most frequent tokens of a corpus, ties broken
        alphabetically so the vocabulary is a function of the corpus alone.
"""

import abc
import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, MASK, UNK, CLS = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<mask>", "<unk>", "<cls>")
NUM_SPECIAL = len(SPECIAL_TOKENS)

TOKENIZERS = ("byte", "char", "word")

# Word tokens (matched on lower-cased text), in order of preference:
#   letters with internal apostrophes   don't, o'clock, know't
#   numbers with internal . or ,        1,000  3.14
#   any single other non-space mark     , . ! ? - " ( _
# Spaces separate tokens and are dropped; "state-of-the-art" is 7 tokens.
WORD_PATTERN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+(?:[.,]\d+)*|[^\w\s]|_")


class Tokenizer(abc.ABC):
    """Text <-> int32 ids in `[0, vocab_size)`; ids below NUM_SPECIAL are the specials."""

    name: str  # The config.input.tokenizer value that builds it.
    separator: str  # What decode puts between runs of ordinary tokens and special names.

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """The number of ids, specials included."""

    @abc.abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """int32 `[T]` ids of `text`, all >= NUM_SPECIAL except UNK."""

    @abc.abstractmethod
    def _decode_ordinary(self, ids: np.ndarray) -> str:
        """The text of a run of ordinary ids (all >= NUM_SPECIAL)."""

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of 1-D `ids`: PAD dropped, other specials as `<name>`, separated from
        the surrounding text by `separator`."""
        ids = np.asarray(ids).astype(np.int64)
        if ids.ndim != 1:
            raise ValueError(f"{self.name} tokenizer: decode takes a 1-D sequence of ids, got "
                             f"shape {ids.shape}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"{self.name} tokenizer: id {int(bad[0])} is outside "
                             f"[0, {self.vocab_size})")
        ids = ids[ids != PAD]
        pieces, start = [], 0
        for position in np.flatnonzero(ids < NUM_SPECIAL):
            if position > start:
                pieces.append(self._decode_ordinary(ids[start:position]))
            pieces.append(SPECIAL_TOKENS[ids[position]])
            start = position + 1
        if start < len(ids):
            pieces.append(self._decode_ordinary(ids[start:]))
        return self.separator.join(pieces)


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: id = byte + NUM_SPECIAL; decode replaces invalid UTF-8 with U+FFFD."""

    name = "byte"
    separator = ""

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + NUM_SPECIAL

    def _decode_ordinary(self, ids: np.ndarray) -> str:
        return (ids - NUM_SPECIAL).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class CharTokenizer(Tokenizer):
    """One id per character of `chars` (sorted, distinct): id = index + NUM_SPECIAL."""

    name = "char"
    separator = ""

    def __init__(self, chars: Sequence[str]):
        if list(chars) != sorted(set(chars)) or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: chars must be sorted, distinct single characters")
        self.chars = tuple(chars)
        self._codes = np.array([ord(c) for c in self.chars], np.uint32)

    @classmethod
    def fit(cls, text: str) -> "CharTokenizer":
        """The distinct characters of `text`, sorted by code point."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        if not len(self._codes):
            return np.full(len(codes), UNK, np.int32)
        index = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        return np.where(self._codes[index] == codes, index + NUM_SPECIAL, UNK).astype(np.int32)

    def _decode_ordinary(self, ids: np.ndarray) -> str:
        return "".join(self.chars[i - NUM_SPECIAL] for i in ids)


def word_tokens(text: str) -> list[str]:
    """The lower-cased WORD_PATTERN tokens of `text`, in order."""
    return WORD_PATTERN.findall(text.lower())


class WordTokenizer(Tokenizer):
    """One id per word of `words`: id = index + NUM_SPECIAL; other words -> UNK. Decode
    joins the words with single spaces."""

    name = "word"
    separator = " "

    def __init__(self, words: Sequence[str]):
        if len(set(words)) != len(words):
            raise ValueError("WordTokenizer: words must be distinct")
        self.words = tuple(words)
        self._ids = {word: i + NUM_SPECIAL for i, word in enumerate(self.words)}

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int) -> "WordTokenizer":
        """The (vocab_size - NUM_SPECIAL) most frequent tokens of `texts`, by decreasing
        count, ties in alphabetical order (fewer if the texts have fewer distinct tokens)."""
        if vocab_size <= NUM_SPECIAL:
            raise ValueError(f"WordTokenizer: vocab_size={vocab_size} must exceed the "
                             f"{NUM_SPECIAL} special tokens")
        counts = collections.Counter()
        for text in texts:
            counts.update(word_tokens(text))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([word for word, _ in ranked[:vocab_size - NUM_SPECIAL]])

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + len(self.words)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self._ids.get(w, UNK) for w in word_tokens(text)], np.int32)

    def _decode_ordinary(self, ids: np.ndarray) -> str:
        return " ".join(self.words[i - NUM_SPECIAL] for i in ids)


def build_tokenizer(config_input, corpus: list[str]) -> Tokenizer:
    """The tokenizer `config_input.tokenizer` names, fitted on `corpus` (char, word; byte
    needs none). A bad name, or vocab_size <= NUM_SPECIAL for "word", is a ValueError
    naming the field."""
    kind = config_input.tokenizer
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit("".join(corpus))
    if kind == "word":
        if config_input.vocab_size <= NUM_SPECIAL:
            raise ValueError(f"config.input.vocab_size={config_input.vocab_size}: the word "
                             f"tokenizer needs more than the {NUM_SPECIAL} special tokens")
        return WordTokenizer.fit(corpus, config_input.vocab_size)
    raise ValueError(f"config.input.tokenizer={kind!r}: expected one of {list(TOKENIZERS)}")
