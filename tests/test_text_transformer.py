"""The text Transformer (BERT encoder / GPT decoder backbone), rotary embeddings, and the
token side of the method contract: token datasets, batches, the bag-of-tokens baseline,
the vocabulary check, and supervised training of a text backbone through the trainer."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import stages, train, validate
from ssl_jax.config import base_config, runlocal
from ssl_jax.data import formats, sources
from ssl_jax.models import build_backbone, default_model_config
from ssl_jax.models import rotary
from ssl_jax.models.text_transformer import TextTransformer
from test_joint_methods import learning_run


def numpy_rotate(x: np.ndarray) -> np.ndarray:
    """RoFormer's rotation, written per position and frequency with float64 loops."""
    out = np.empty_like(x, dtype=np.float64)
    _, length, _, dim = x.shape
    half = dim // 2
    for t in range(length):
        for k in range(half):
            angle = t * 10000.0 ** (-k / half)
            x1, x2 = x[:, t, :, k], x[:, t, :, k + half]
            out[:, t, :, k] = x1 * np.cos(angle) - x2 * np.sin(angle)
            out[:, t, :, k + half] = x1 * np.sin(angle) + x2 * np.cos(angle)
    return out


def test_rotary_rotation_matches_numpy_and_depends_on_relative_position():
    x = np.random.default_rng(0).normal(size=(2, 9, 3, 8)).astype(np.float32)
    np.testing.assert_allclose(rotary.rotate(jnp.asarray(x)), numpy_rotate(x), atol=1e-5)
    q, k = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    # The same query/key vectors at every position: <rot(q, s), rot(k, t)> is a function of s - t.
    rq = np.asarray(rotary.rotate(jnp.broadcast_to(jnp.asarray(q), (1, 9, 1, 8))))[0, :, 0]
    rk = np.asarray(rotary.rotate(jnp.broadcast_to(jnp.asarray(k), (1, 9, 1, 8))))[0, :, 0]
    scores = rq @ rk.T
    for offset in (-3, 0, 2):
        diagonal = np.diagonal(scores, offset)
        np.testing.assert_allclose(diagonal, diagonal[0], rtol=1e-4, atol=1e-4)
    assert abs(scores[0, 0] - scores[0, 3]) > 1e-3  # ... and it does depend on it.
    with pytest.raises(ValueError, match="even head dimension"):
        rotary.rotate(jnp.ones((1, 4, 1, 5)))


def _model(**fields):
    defaults = dict(vocab_size=30, width=16, depth=2, num_heads=2)
    return TextTransformer(**{**defaults, **fields})


@pytest.mark.parametrize("posemb", ["learn", "rope"])
def test_causal_states_never_depend_on_later_tokens(posemb):
    model = _model(causal=True, posemb=posemb)
    tokens = jnp.array([[5, 6, 7, 8, 9, 10, 0, 0]], jnp.int32)
    variables = model.init(jax.random.key(0), tokens, train=False)
    _, states = model.apply(variables, tokens, train=False, return_tokens=True)
    changed = tokens.at[0, 4].set(21)
    _, changed_states = model.apply(variables, changed, train=False, return_tokens=True)
    np.testing.assert_array_equal(states[:, :4], changed_states[:, :4])
    assert float(jnp.abs(states[:, 4:6] - changed_states[:, 4:6]).max()) > 1e-3
    bidirectional = _model(causal=False, posemb=posemb)
    _, states = bidirectional.apply(variables, tokens, train=False, return_tokens=True)
    _, changed_states = bidirectional.apply(variables, changed, train=False, return_tokens=True)
    assert float(jnp.abs(states[:, :4] - changed_states[:, :4]).max()) > 1e-3


def test_padding_changes_nothing_and_pools_are_right():
    """With rotary positions (no length-sized parameters) the same text padded to 6 or to
    10 tokens gives the same states and the same mean-pooled feature."""
    model = _model(posemb="rope", pool="gap")
    short = jnp.array([[3, 7, 8, 9, 0, 0]], jnp.int32)
    long = jnp.array([[3, 7, 8, 9, 0, 0, 0, 0, 0, 0]], jnp.int32)
    variables = model.init(jax.random.key(1), short, train=False)
    pooled, states = model.apply(variables, short, train=False, return_tokens=True)
    pooled_long, states_long = model.apply(variables, long, train=False, return_tokens=True)
    np.testing.assert_allclose(states[:, :4], states_long[:, :4], atol=1e-5)
    np.testing.assert_allclose(pooled, pooled_long, atol=1e-5)
    np.testing.assert_allclose(pooled, states[:, :4].mean(axis=1), atol=1e-5)
    cls_model = _model(posemb="rope", pool="cls")
    cls_pooled, states = cls_model.apply(variables, short, train=False, return_tokens=True)
    np.testing.assert_array_equal(cls_pooled, states[:, 0])


def test_bad_model_fields_are_named():
    tokens = jnp.ones((1, 4), jnp.int32)
    for fields, match in ((dict(vocab_size=0), "config.model.vocab_size"),
                          (dict(pool="max"), "config.model.pool"),
                          (dict(posemb="sincos2d"), "config.model.posemb")):
        with pytest.raises(ValueError, match=match):
            _model(**fields).init(jax.random.key(0), tokens, train=False)


def test_registry_builds_the_text_backbone_from_config_fields():
    config = default_model_config("text_transformer")
    config.update(dict(vocab_size=50, width=24, depth=1, num_heads=3, causal=True,
                       posemb="rope", pool="gap"))
    backbone = build_backbone(config)
    assert isinstance(backbone, TextTransformer) and backbone.feature_dim == 24
    assert (backbone.vocab_size, backbone.causal, backbone.posemb) == (50, True, "rope")


def test_bag_of_tokens_is_the_relative_frequency_without_padding():
    tokens = np.array([[4, 5, 5, 0], [6, 6, 6, 6], [0, 0, 0, 0]], np.int32)
    bag = stages.bag_of_tokens(tokens, vocab_size=8)
    expected = np.zeros((3, 8), np.float32)
    expected[0, 4], expected[0, 5] = 1 / 3, 2 / 3
    expected[1, 6] = 1.0
    np.testing.assert_allclose(bag, expected)


def test_token_datasets_are_checked():
    tokens = np.array([[4, 5, 0], [6, 7, 8]], np.int32)
    labels = np.array([0, 1], np.int32)
    data = sources.ArrayDataset(tokens, labels, tokens, labels, ("a", "b"))
    assert (data.input_key, data.input_shape) == ("tokens", (3,))
    with pytest.raises(formats.DataError, match="int32 token ids"):
        sources.ArrayDataset(tokens.astype(np.int64), labels, tokens, labels, ("a", "b"))
    with pytest.raises(formats.DataError, match="test inputs"):
        sources.ArrayDataset(tokens, labels, tokens[:, :2], labels, ("a", "b"))
    with pytest.raises(ValueError, match="bag_of_tokens"):
        stages.raw_inputs("raw_pixels", data, vocab_size=9)


def keyword_dataset(count: int, seed: int) -> sources.ArrayDataset:
    """Sequences of ids 4..19 with random lengths; label 1 iff id 7 occurs."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, 20, size=(count, 12)).astype(np.int32)
    lengths = rng.integers(6, 13, size=count)
    tokens[np.arange(12)[None, :] >= lengths[:, None]] = 0
    labels = (tokens == 7).any(axis=1).astype(np.int32)
    half = count // 2
    return sources.ArrayDataset(tokens[:half], labels[:half], tokens[half:], labels[half:],
                                ("absent", "present"))


def text_classifier_config(vocab_size: int = 20):
    config = base_config(method="simclr")
    runlocal(config)
    config.model = default_model_config("text_transformer")
    config.model.update(dict(vocab_size=vocab_size, width=32, depth=1, num_heads=2, pool="gap",
                             posemb="rope"))
    ft = stages.finetune_config(config).to_dict()
    ft["optim"].update(lr=3e-3)
    ft["input"]["batch_size"] = 64
    config = type(config)(ft)
    learning_run(config, 150, log_every=50)
    return config


def test_a_text_backbone_trains_through_the_one_trainer(tmp_path):
    """The supervised method on token batches: a 1-block Transformer learns 'does id 7
    occur' (prior ~55%) to > 85% test accuracy in 150 steps (measured 100%; 99% on 8 devices)."""
    data = keyword_dataset(2048, seed=0)
    config = text_classifier_config()
    validate.validate(config)
    run = train.train(config, tmp_path, data)
    logits = run.method.logits(run.state.variables(), jnp.asarray(data.test_inputs))
    accuracy = float(np.mean(np.asarray(logits).argmax(-1) == data.test_labels))
    prior = max(data.test_labels.mean(), 1 - data.test_labels.mean())
    assert accuracy > max(0.85, prior + 0.2), (accuracy, prior)


def test_vocab_size_smaller_than_the_data_is_refused(tmp_path):
    data = keyword_dataset(128, seed=1)
    with pytest.raises(ValueError, match=r"config.model.vocab_size=10: the data has token id 19"):
        train.build(text_classifier_config(vocab_size=10), data)
    assert dataclasses.replace(data).input_key == "tokens"
