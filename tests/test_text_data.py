"""Tokenizers and text sources: exact round trips, fixed vocabularies, windows that equal
slices of the encoded corpus, and the real tiny-shakespeare and movie-review files."""

import pathlib
import re
import zipfile

import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax.data import formats, sources, text, tokenizers
from ssl_jax.data.tokenizers import CLS, MASK, NUM_SPECIAL, PAD, UNK

SAMPLE = ("Ünïcödé text — with emoji 🙂, tabs\tand\nnew lines; CJK 漢字. "
          "<pad> <mask> <cls> are plain text here.")


def input_config(dataset, data_dir, **fields):
    """The real `input` section of config.py, with `fields` overridden."""
    config = config_lib.input_config(dataset, image_size=0, batch_size=64,
                                     data_dir=str(data_dir))
    config.update(fields)
    return config


# --- tokenizers -----------------------------------------------------------------------------

def test_special_ids_and_names():
    assert (PAD, MASK, UNK, CLS, NUM_SPECIAL) == (0, 1, 2, 3, 4)
    assert tokenizers.SPECIAL_TOKENS == ("<pad>", "<mask>", "<unk>", "<cls>")


def test_byte_tokenizer_round_trips_any_text():
    tokenizer = tokenizers.ByteTokenizer()
    ids = tokenizer.encode(SAMPLE)
    assert tokenizer.vocab_size == 260 and ids.dtype == np.int32
    np.testing.assert_array_equal(ids, np.frombuffer(SAMPLE.encode(), np.uint8) + 4)
    assert tokenizer.decode(ids) == SAMPLE
    assert tokenizer.decode(ids.tolist()) == SAMPLE  # A list works as well as an array.
    assert tokenizer.decode([ord("a") + 4, 0xFF + 4]) == "a\ufffd"  # Invalid UTF-8.


def test_char_tokenizer_round_trips_and_maps_unknown_chars_to_unk():
    tokenizer = tokenizers.CharTokenizer.fit(SAMPLE)
    assert tokenizer.chars == tuple(sorted(set(SAMPLE)))
    assert tokenizer.vocab_size == NUM_SPECIAL + len(set(SAMPLE))
    ids = tokenizer.encode(SAMPLE)
    np.testing.assert_array_equal(ids, [tokenizer.chars.index(c) + 4 for c in SAMPLE])
    assert tokenizer.decode(ids) == SAMPLE
    unknown = tokenizer.encode("aZ€a")  # Z and € are not in SAMPLE.
    np.testing.assert_array_equal(unknown, [ids[SAMPLE.index("a")], UNK, UNK,
                                            ids[SAMPLE.index("a")]])
    assert tokenizer.decode(unknown) == "a<unk><unk>a"


def test_word_tokens_follow_the_documented_pattern():
    assert tokenizers.word_tokens("Don't STOP: 3.14, 1,000 o'clock-ish_x!") == [
        "don't", "stop", ":", "3.14", ",", "1,000", "o'clock", "-", "ish", "_", "x", "!"]


def test_word_vocabulary_is_ordered_by_frequency_then_alphabet():
    texts = ["b a c a", "c b d e", "a . e"]  # a 3, b 2, c 2, e 2, d 1, . 1
    tokenizer = tokenizers.WordTokenizer.fit(texts, vocab_size=NUM_SPECIAL + 4)
    assert tokenizer.words == ("a", "b", "c", "e")
    assert tokenizers.WordTokenizer.fit(texts[::-1], NUM_SPECIAL + 4).words == tokenizer.words
    everything = tokenizers.WordTokenizer.fit(texts, vocab_size=100)
    assert everything.words == ("a", "b", "c", "e", ".", "d")  # "." < "d".
    assert everything.vocab_size == NUM_SPECIAL + 6


def test_word_tokenizer_round_trips_modulo_spacing_and_maps_oov_to_unk():
    corpus = ["The cat sat on the mat.", "Don't feed the cat, it's 3.5 kg!"]
    tokenizer = tokenizers.WordTokenizer.fit(corpus, vocab_size=100)
    for sentence in corpus:
        assert tokenizer.decode(tokenizer.encode(sentence)) == " ".join(
            tokenizers.word_tokens(sentence))
    ids = tokenizer.encode("the DOG sat")
    np.testing.assert_array_equal(ids, [tokenizer.words.index("the") + 4, UNK,
                                        tokenizer.words.index("sat") + 4])
    assert tokenizer.decode(ids) == "the <unk> sat"


def test_encode_never_emits_pad_mask_or_cls_and_decode_shows_specials():
    byte = tokenizers.ByteTokenizer()
    for tokenizer in (byte, tokenizers.CharTokenizer.fit(SAMPLE[:20]),
                      tokenizers.WordTokenizer.fit([SAMPLE[:40]], vocab_size=8)):
        ids = tokenizer.encode(SAMPLE)
        assert ids.dtype == np.int32 and ids.min() >= UNK and ids.max() < tokenizer.vocab_size
        assert not np.isin(ids, [PAD, MASK, CLS]).any()
    ab = byte.encode("ab").tolist()
    assert byte.decode([CLS, *ab, MASK, ab[0], UNK, PAD, PAD]) == "<cls>ab<mask>a<unk>"
    words = tokenizers.WordTokenizer(["hi", "there"])
    assert words.decode([CLS, 4, MASK, 5, PAD]) == "<cls> hi <mask> there"
    with pytest.raises(ValueError, match="id 260 is outside"):
        byte.decode([5, 260])


def test_build_tokenizer_dispatches_and_names_bad_fields():
    corpus = ["to be or not to be"]
    fields = input_config("text", "", tokenizer="char")
    assert tokenizers.build_tokenizer(fields, corpus).chars == tuple(sorted(set(corpus[0])))
    fields.update(dict(tokenizer="word", vocab_size=6))
    assert tokenizers.build_tokenizer(fields, corpus).words == ("be", "to")
    fields.tokenizer = "byte"
    assert isinstance(tokenizers.build_tokenizer(fields, corpus), tokenizers.ByteTokenizer)
    fields.tokenizer = "bpe"
    with pytest.raises(ValueError, match=r"config.input.tokenizer='bpe'"):
        tokenizers.build_tokenizer(fields, corpus)
    fields.update(dict(tokenizer="word", vocab_size=4))
    with pytest.raises(ValueError, match=r"config.input.vocab_size=4"):
        tokenizers.build_tokenizer(fields, corpus)


# --- the "text" source on a small file ------------------------------------------------------

@pytest.fixture
def corpus_file(tmp_path):
    """1,000 characters of pseudo-random text over 20 distinct characters."""
    rng = np.random.default_rng(0)
    content = "".join(rng.choice(list("abcdefghij klmnop\nqé"), 1000))
    (tmp_path / "input.txt").write_text(content, encoding="utf-8")
    return tmp_path, content


@pytest.mark.parametrize("stride, expected_train, expected_test", [
    (0, 900 // 16, 100 // 16), (5, (900 - 16) // 5 + 1, (100 - 16) // 5 + 1)])
def test_text_windows_are_slices_of_the_encoded_corpus(corpus_file, stride, expected_train,
                                                       expected_test):
    root, content = corpus_file
    config = input_config("text", root, tokenizer="char", seq_len=16, text_stride=stride)
    data = sources.load(config)
    tokenizer = text.tokenizer_for(config)
    encoded = tokenizer.encode(content)
    assert tokenizer.chars == tuple(sorted(set(content))) and len(encoded) == 1000
    assert data.input_key == "tokens" and data.input_shape == (16, )
    assert data.train_inputs.shape == (expected_train, 16)
    assert data.test_inputs.shape == (expected_test, 16)
    assert not data.labeled and data.class_names == ()
    assert set(data.train_labels) == {-1} == set(data.test_labels)
    step = stride or 16
    for split, start in (("train", 0), ("test", 900)):  # The 90/10 boundary at token 900.
        for i, window in enumerate(getattr(data, f"{split}_inputs")):
            np.testing.assert_array_equal(window, encoded[start + i * step:
                                                          start + i * step + 16])
    assert (expected_train - 1) * step + 16 <= 900 < expected_train * step + 16


def test_text_train_limit_and_absolute_path(corpus_file, tmp_path_factory):
    root, _ = corpus_file
    full = sources.load(input_config("text", root, seq_len=8, tokenizer="byte"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    limited = sources.load(input_config("text", elsewhere, seq_len=8, tokenizer="byte",
                                        train_limit=10, labeled=False,
                                        train_split=str(root / "input.txt")))
    assert limited.train_inputs.shape == (10, 8)
    rows = {row.tobytes() for row in full.train_inputs}
    assert all(row.tobytes() in rows for row in limited.train_inputs)
    np.testing.assert_array_equal(limited.test_inputs, full.test_inputs)


# --- bad inputs -----------------------------------------------------------------------------

def test_bad_text_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.input.train_split='input.txt'"):
        sources.load(input_config("text", tmp_path, seq_len=8))
    (tmp_path / "input.txt").write_bytes(b"")
    with pytest.raises(formats.DataError, match=r"input.txt: the file is empty"):
        sources.load(input_config("text", tmp_path, seq_len=8))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1") * 50)
    with pytest.raises(formats.DataError, match=r"latin1.txt: not UTF-8"):
        sources.load(input_config("text", tmp_path, seq_len=8, train_split="latin1.txt"))
    (tmp_path / "short.txt").write_text("x" * 100)
    with pytest.raises(formats.DataError, match=r"short.txt: the test split has 10 tokens, "
                                                r"fewer than config.input.seq_len=20"):
        sources.load(input_config("text", tmp_path, seq_len=20, train_split="short.txt"))
    with pytest.raises(FileNotFoundError, match="movie_reviews.zip"):
        sources.load(input_config("movie_reviews", tmp_path, seq_len=8))
    (tmp_path / "movie_reviews.zip").write_bytes(b"not a zip")
    with pytest.raises(formats.DataError, match="movie_reviews.zip: not a readable zip"):
        sources.load(input_config("movie_reviews", tmp_path, seq_len=8))


@pytest.mark.parametrize("fields, message", [
    (dict(seq_len=0), r"config.input.seq_len=0"),
    (dict(seq_len=1), r"config.input.seq_len=1"),
    (dict(text_stride=-1), r"config.input.text_stride=-1"),
    (dict(text_val_fraction=0.0), r"config.input.text_val_fraction=0.0"),
    (dict(text_val_fraction=1.0), r"config.input.text_val_fraction=1.0"),
    (dict(tokenizer="bpe"), r"config.input.tokenizer='bpe'"),
    (dict(tokenizer="word", vocab_size=4), r"config.input.vocab_size=4"),
])
def test_bad_text_fields_name_the_field(corpus_file, fields, message):
    root, _ = corpus_file
    config = input_config("text", root, **{"seq_len": 8, **fields})
    with pytest.raises(ValueError, match=message):
        text.check_config(config)
    with pytest.raises(ValueError, match=message):
        sources.load(config)
    text.check_config(input_config("mnist", root, **fields))  # Not read by image sources.


# --- real data ------------------------------------------------------------------------------

def test_tiny_shakespeare_char_vocabulary_and_byte_windows(shared_data):
    root = shared_data / "text"
    content = (root / "input.txt").read_text(encoding="utf-8")
    char = text.tokenizer_for(input_config("text", root, tokenizer="char", seq_len=256))
    assert len(char.chars) == 65 and char.vocab_size == 65 + 4
    assert char.decode(char.encode(content)) == content
    config = input_config("text", root, tokenizer="byte", seq_len=1000)
    data = sources.load(config)
    raw = (root / "input.txt").read_bytes()
    boundary = int(len(raw) * 0.9)  # ASCII: one token per byte.
    assert len(raw) == 1_115_394 and boundary == 1_003_854
    assert data.train_inputs.shape == (1003, 1000) and data.test_inputs.shape == (111, 1000)
    byte = text.tokenizer_for(config)
    assert byte.decode(data.train_inputs.reshape(-1)) == raw[:1_003_000].decode()
    assert byte.decode(data.test_inputs.reshape(-1)) == raw[boundary:boundary + 111_000].decode()


def reference_reviews(zip_path: pathlib.Path) -> dict[str, list[tuple[str, int]]]:
    """(text, label) of each split, read independently of data.text."""
    splits = {"train": [], "test": []}
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(archive.namelist()):
            match = re.fullmatch(r"movie_reviews/(neg|pos)/cv(\d{3})_\d+\.txt", name)
            if match:
                split = "train" if int(match.group(2)) < 900 else "test"
                splits[split].append((archive.read(name).decode(),
                                      ("neg", "pos").index(match.group(1))))
    return splits


def test_movie_reviews_splits_classes_and_sequences(shared_data, tmp_path):
    root = shared_data / "text"
    config = input_config("movie_reviews", root, tokenizer="word", vocab_size=5000,
                          seq_len=400)
    data = sources.load(config)
    assert data.class_names == ("neg", "pos") and data.input_key == "tokens"
    assert data.train_inputs.shape == (1800, 400) and data.test_inputs.shape == (200, 400)
    np.testing.assert_array_equal(np.bincount(data.train_labels), [900, 900])
    np.testing.assert_array_equal(np.bincount(data.test_labels), [100, 100])
    tokenizer = text.tokenizer_for(config)
    assert tokenizer.vocab_size == 5000
    assert tokenizer.words == tokenizers.WordTokenizer.fit(  # Fitted on the train reviews.
        [t for t, _ in reference_reviews(root / "movie_reviews.zip")["train"]], 5000).words
    for split, reviews in reference_reviews(root / "movie_reviews.zip").items():
        inputs, labels = getattr(data, f"{split}_inputs"), getattr(data, f"{split}_labels")
        np.testing.assert_array_equal(labels, [label for _, label in reviews])
        assert (inputs[:, 0] == CLS).all() and not (inputs[:, 1:] == CLS).any()
        padding = inputs == PAD
        assert (np.sort(padding, axis=1) == padding).all()  # PAD only after every token.
        for row, (review, _) in zip(inputs, reviews):
            ids = tokenizer.encode(review)[:399]
            np.testing.assert_array_equal(row[1:1 + len(ids)], ids)
    lengths = (data.train_inputs != PAD).sum(1)  # Some reviews are shorter than 400 tokens.
    assert 0 < (lengths < 400).sum() < 1800
    # The extracted folder reads the same as the zip.
    with zipfile.ZipFile(root / "movie_reviews.zip") as archive:
        archive.extractall(tmp_path)
    folder = sources.load(input_config("movie_reviews", tmp_path, tokenizer="word",
                                       vocab_size=5000, seq_len=400, train_limit=100))
    np.testing.assert_array_equal(np.bincount(folder.train_labels), [50, 50])
    np.testing.assert_array_equal(folder.test_inputs, data.test_inputs)
    assert text.tokenizer_for(input_config("movie_reviews", tmp_path, tokenizer="word",
                                           vocab_size=5000, seq_len=8)).words == tokenizer.words


def test_tokenizer_for_is_cached_and_deterministic(shared_data):
    config = input_config("movie_reviews", shared_data / "text", tokenizer="char", seq_len=8)
    first = text.tokenizer_for(config)
    assert text.tokenizer_for(config.copy_and_resolve_references()) is first
    text._fitted_tokenizer.cache_clear()
    text._movie_reviews.cache_clear()
    refitted = text.tokenizer_for(config)
    assert refitted is not first and refitted.chars == first.chars
    with pytest.raises(ValueError, match="config.input.dataset='mnist' is not a text"):
        text.tokenizer_for(input_config("mnist", shared_data / "mnist"))
