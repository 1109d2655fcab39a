"""BERT's masked LM and GPT's next token: the masking, both losses against float64 NumPy,
causality, sampling, 1 == 8 devices, the lm_eval stage and a real tiny-shakespeare run."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import methods, sample, sharding, stages
from ssl_jax.config import base_config, runlocal
from ssl_jax.data import sources
from ssl_jax.data.tokenizers import CLS, MASK, NUM_SPECIAL, PAD, UNK
from ssl_jax.methods import bert, gpt, language_model
from ssl_jax.models import default_model_config
from test_joint_methods import assert_one_device_equals_eight, assert_validation_names

VOCAB = 260  # The byte tokenizer's.


def text_config(method: str, data_dir, seq_len: int = 16):
    """A seconds-long language-model run on the "text" file `data_dir/input.txt`."""
    config = base_config(dataset="text", data_dir=str(data_dir), method=method)
    config.input.update(dict(tokenizer="byte", seq_len=seq_len))
    config.model = default_model_config("text_transformer")
    config.model.update(dict(vocab_size=VOCAB, pool="gap", causal=method == "gpt"))
    config.eval.baselines = ()
    config.stages = ("pretrain", "lm_eval")
    runlocal(config)
    config.model.update(dict(width=16, depth=1, num_heads=2))
    return config


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """A small synthetic corpus: random words of 2-7 lower-case letters."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghij"), rng.integers(2, 8))) for _ in range(1500)]
    directory = tmp_path_factory.mktemp("text")
    (directory / "input.txt").write_text(" ".join(words))
    return directory


def built_method(config, seed: int = 0):
    """The method of `config` and fresh variables for a batch of its sequence length."""
    method = methods.build(config, num_classes=0)
    tokens = jnp.full((2, config.input.seq_len), NUM_SPECIAL, jnp.int32)
    return method, jax.jit(method.init)(jax.random.key(seed), {"tokens": tokens})


def numpy_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 -log softmax(logits)[target] per row of `[N, V]` logits."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets]


# --- BERT's masking -------------------------------------------------------------------------

def test_masking_selects_15_percent_of_ordinary_tokens_and_splits_them_80_10_10():
    """200k tokens: selection and split fractions within 5 binomial standard deviations;
    specials are never selected, never the random replacement, never changed."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(NUM_SPECIAL, VOCAB, (400, 500)).astype(np.int32)
    tokens[:, 0] = CLS
    tokens[:, -50:] = PAD
    tokens[rng.random(tokens.shape) < 0.02] = UNK
    tokens[rng.random(tokens.shape) < 0.01] = MASK
    corrupted, selected = map(np.asarray, jax.jit(bert.mask_tokens, static_argnums=2)(
        jax.random.key(0), jnp.asarray(tokens), VOCAB))
    ordinary = tokens >= NUM_SPECIAL

    def assert_fraction(count, total, p):
        assert abs(count / total - p) < 5 * math.sqrt(p * (1 - p) / total), (count / total, p)

    assert not selected[~ordinary].any()
    np.testing.assert_array_equal(corrupted[~selected], tokens[~selected])
    n = selected.sum()
    assert_fraction(n, ordinary.sum(), 0.15)
    to_mask = selected & (corrupted == MASK)
    to_other = selected & (corrupted != MASK) & (corrupted != tokens)
    # A random replacement equals the original with probability 1 / (VOCAB - NUM_SPECIAL).
    same = 1 / (VOCAB - NUM_SPECIAL)
    assert_fraction(to_mask.sum(), n, 0.8)
    assert_fraction(to_other.sum(), n, 0.1 * (1 - same))
    assert_fraction((selected & (corrupted == tokens)).sum(), n, 0.1 + 0.1 * same)
    replacements = corrupted[to_other]
    assert replacements.min() >= NUM_SPECIAL and replacements.max() < VOCAB
    # Uniform over the 256 ordinary ids: every one of them appears among ~2,800 draws.
    assert len(np.unique(replacements)) == VOCAB - NUM_SPECIAL


def test_masked_token_loss_matches_numpy_and_ignores_unselected_positions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32) * 3
    targets = rng.integers(0, 11, (3, 7)).astype(np.int32)
    selected = rng.random((3, 7)) < 0.3
    loss, accuracy = language_model.masked_token_loss(logits, targets, selected)
    expected = numpy_cross_entropy(logits[selected], targets[selected]).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(
        accuracy, np.mean(logits[selected].argmax(-1) == targets[selected]), rtol=1e-6)
    # Anything at the other positions changes nothing.
    logits2, targets2 = logits.copy(), targets.copy()
    logits2[~selected] = rng.normal(size=logits2[~selected].shape) * 10
    targets2[~selected] = (targets2[~selected] + 1) % 11
    np.testing.assert_allclose(
        language_model.masked_token_loss(logits2, targets2, selected)[0], loss, rtol=1e-6)


def test_bert_loss_is_the_cross_entropy_of_the_originals_at_selected_positions(text_dir):
    config = text_config("bert", text_dir)
    method, variables = built_method(config)
    tokens = jnp.asarray(np.random.default_rng(2).integers(NUM_SPECIAL, VOCAB, (4, 16)),
                         jnp.int32)
    rng = jax.random.key(3)
    batch = {"tokens": tokens, "label": -jnp.ones(4, jnp.int32)}
    loss, (_, _, step_metrics) = jax.jit(method.loss)(variables["params"], variables, batch,
                                                      rng, 0)
    corrupted, selected = jax.jit(bert.mask_tokens, static_argnums=2)(rng, tokens, VOCAB)
    logits = np.asarray(jax.jit(method.logits)(variables, corrupted))
    selected = np.asarray(selected)
    assert (np.asarray(corrupted)[selected] == MASK).any()
    expected = numpy_cross_entropy(logits[selected], np.asarray(tokens)[selected]).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(step_metrics["masked_fraction"], selected.mean(), rtol=1e-6)


def test_scoring_the_first_selected_positions_only(text_dir):
    """With max_predictions >= every row's selected count the loss is the all-position
    loss; with fewer, it is the loss over each row's first max_predictions selected
    positions, and dropped_fraction counts the rest."""
    config = text_config("bert", text_dir, seq_len=32)
    method, variables = built_method(config)
    tokens = jnp.asarray(np.random.default_rng(4).integers(NUM_SPECIAL, VOCAB, (4, 32)),
                         jnp.int32)
    batch, rng = {"tokens": tokens, "label": -jnp.ones(4, jnp.int32)}, jax.random.key(5)
    corrupted, selected = bert.mask_tokens(rng, tokens, VOCAB)
    selected = np.asarray(selected)
    counts = selected.sum(axis=1)
    assert counts.max() > 2 and counts.min() >= 1, counts
    logits = np.asarray(jax.jit(method.logits)(variables, corrupted))

    def loss_with(max_predictions: int):
        config.method.max_predictions = max_predictions
        method = methods.build(config, num_classes=0)
        loss, (_, _, step_metrics) = jax.jit(method.loss)(variables["params"], variables,
                                                          batch, rng, 0)
        return float(loss), float(step_metrics["dropped_fraction"])

    every_position = loss_with(0)
    np.testing.assert_allclose(loss_with(int(counts.max())), every_position, rtol=1e-5)
    kept = selected & (np.cumsum(selected, axis=1) <= 2)
    expected = numpy_cross_entropy(logits[kept], np.asarray(tokens)[kept]).mean()
    loss, dropped = loss_with(2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(dropped, 1 - kept.sum() / selected.sum(), rtol=1e-6)
    np.testing.assert_array_equal(
        language_model.first_selected_positions(jnp.asarray(selected), 2),
        np.argsort(~selected, axis=1, kind="stable")[:, :2])


# --- GPT ------------------------------------------------------------------------------------

def test_next_token_loss_matches_numpy_with_padding_ignored(text_dir):
    method = methods.build(text_config("gpt", text_dir), num_classes=0)
    rng = np.random.default_rng(4)
    tokens = rng.integers(NUM_SPECIAL, VOCAB, (3, 9)).astype(np.int32)
    tokens[1, 6:] = PAD
    tokens[2, 2:] = PAD
    logits = rng.normal(size=(3, 9, VOCAB)).astype(np.float32)
    inputs, targets, selected = method.prediction_task(jax.random.key(0), jnp.asarray(tokens))
    loss, _ = language_model.masked_token_loss(logits, targets, selected)
    per_token = [numpy_cross_entropy(logits[b, t:t + 1], tokens[b, t + 1:t + 2])[0]
                 for b in range(3) for t in range(8) if tokens[b, t + 1] != PAD]
    assert len(per_token) == 8 + 5 + 1
    np.testing.assert_array_equal(inputs, tokens)
    np.testing.assert_allclose(loss, np.mean(per_token), rtol=1e-6)


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_only_bert_sees_future_tokens(text_dir, name):
    """GPT's logits at positions < t ignore the token at t; BERT's do not."""
    method, variables = built_method(text_config(name, text_dir))
    tokens = np.random.default_rng(5).integers(NUM_SPECIAL, VOCAB, (1, 16)).astype(np.int32)
    changed = tokens.copy()
    changed[0, 10] = NUM_SPECIAL + (tokens[0, 10] - NUM_SPECIAL + 1) % (VOCAB - NUM_SPECIAL)
    logits_fn = jax.jit(method.logits)
    before, after = (np.asarray(logits_fn(variables, jnp.asarray(t))) for t in (tokens, changed))
    past_changes = np.abs(before[0, :10] - after[0, :10]).max()
    if name == "gpt":
        assert past_changes == 0.0
    else:
        assert past_changes > 1e-4
    assert np.abs(before[0, 10:] - after[0, 10:]).max() > 1e-4


def replayed_logits(logits_fn, variables, prompt, generated, seq_len):
    """The logits each sampling step saw, recomputed one window at a time: the last
    seq_len - 1 tokens (the last position of a window is never trained)."""
    text, out = list(prompt), []
    for token in generated:
        context = text[-(seq_len - 1):]
        window = np.full((1, seq_len), PAD, np.int32)
        window[0, :len(context)] = context
        out.append(np.asarray(logits_fn(variables, jnp.asarray(window)))[0, len(context) - 1])
        text.append(int(token))
    return np.stack(out)


def test_generate_is_deterministic_respects_top_k_and_compiles_once(text_dir):
    """24 tokens after a 5-token prompt with a 15-token context (so the window slides)."""
    config = text_config("gpt", text_dir)
    method, variables = built_method(config)
    prompt = np.arange(10, 15)
    cache_before = gpt._sample_tokens._cache_size()
    first = gpt.generate(method, variables, prompt, 24, jax.random.key(0), 1.0, top_k=3)
    again = gpt.generate(method, variables, prompt, 24, jax.random.key(0), 1.0, top_k=3)
    other = gpt.generate(method, variables, prompt, 24, jax.random.key(1), 1.0, top_k=3)
    greedy = gpt.generate(method, variables, np.arange(20, 40), 24, jax.random.key(0), 0.0)
    assert gpt._sample_tokens._cache_size() == cache_before + 1
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    logits_fn = jax.jit(method.logits)
    logits = replayed_logits(logits_fn, variables, prompt, first, config.input.seq_len)
    logits[:, PAD] = -np.inf  # Never sampled: the top 3 are of the other ids.
    top3 = np.argsort(logits, axis=-1)[:, -3:]
    assert all(token in allowed for token, allowed in zip(first, top3))
    # Untrained logits are flat: without the filter, 24 draws would leave the top 3.
    assert len(np.unique(first)) > 3
    greedy_logits = replayed_logits(logits_fn, variables, np.arange(20, 40), greedy,
                                    config.input.seq_len)
    greedy_logits[:, PAD] = -np.inf
    np.testing.assert_array_equal(greedy, greedy_logits.argmax(-1))
    with pytest.raises(ValueError, match="'gpt' model"):
        gpt.generate(*built_method(text_config("bert", text_dir)), prompt, 4, jax.random.key(0))


# --- configs, devices, stages ---------------------------------------------------------------

@pytest.mark.parametrize("name,field,value,message", [
    ("gpt", "model.causal", False, "config.model.causal=False"),
    ("bert", "model.causal", True, "config.model.causal=True"),
    ("gpt", "model.name", "vit", "config.model.name='vit'"),
    ("gpt", "method.online_probe", True, "config.method.online_probe=True"),
    ("bert", "method.mask_prob", 0.0, "config.method.mask_prob=0.0"),
    ("bert", "method.random_prob", 0.5, "config.method.random_prob=0.5"),
    ("bert", "method.max_predictions", -1, "config.method.max_predictions=-1"),
])
def test_bad_config_values_name_the_field(text_dir, name, field, value, message):
    assert_validation_names(text_config(name, text_dir), field, value, message)


@pytest.mark.parametrize("name", ["bert", "gpt"])
def test_one_device_equals_eight_devices(text_dir, name):
    config = text_config(name, text_dir)
    assert_one_device_equals_eight(config, sources.load(config.input))


def test_validation_loss_pads_the_last_batch_away(text_dir):
    """30 sequences in batches of 16: the same mean as one loss over all of them."""
    config = text_config("gpt", text_dir)
    method, variables = built_method(config)
    tokens = sources.load(config.input).test_inputs[:30]
    assert len(tokens) == 30
    mesh = sharding.make_mesh(8)
    value = language_model.validation_loss(method, variables, tokens, mesh, batch_size=16)
    _, targets, selected = method.prediction_task(jax.random.key(0), jnp.asarray(tokens))
    logits = jax.jit(method.logits)(variables, tokens)
    expected, _ = language_model.masked_token_loss(logits, targets, selected)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_gpt_learns_tiny_shakespeare_and_samples(shared_data, tmp_path):
    """100 steps of 32 windows of 32 bytes, 2-block width-32 GPT: the test-split loss falls
    from the uniform log(260) = 5.56 to below 3.2 nats/char, under the 3.35 of the train
    split's character frequencies, so it uses the context (measured 2.99); then sampling
    continues the prompt from the checkpoint."""
    config = text_config("gpt", shared_data / "text", seq_len=32)
    config.model.update(dict(width=32, depth=2, num_heads=2))
    config.optim.update(dict(name="adamw", lr=3e-3, lr_scaling="none", weight_decay=0.0))
    config.schedule.update(dict(steps=100, warmup_epochs=0.0))
    config.checkpoint.every_steps = 100
    config.eval.batch_size = 512
    config.log.every_steps = 50
    config.input.batch_size = 32
    config.mesh.num_devices = 1
    stages.run_stages(config, tmp_path)
    loss = json.loads((tmp_path / "results.json").read_text())["ssl"]["val loss (nats/token)"]
    assert loss < 3.2, loss
    text = sample.sample_text(config, str(tmp_path), "ROMEO:", 20, 0.8, 10, 0)
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sample.sample_text(config, str(tmp_path / "nothing"), "A", 5, 1.0, 0, 0)
    config.method = base_config(method="bert").method
    with pytest.raises(ValueError, match="'gpt'"):
        sample.sample_text(config, str(tmp_path), "A", 5, 1.0, 0, 0)
