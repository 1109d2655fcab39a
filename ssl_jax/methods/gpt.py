"""GPT's next-token prediction, and sampling text from a trained model.

Radford, Narasimhan, Salimans, Sutskever, "Improving Language Understanding by
Generative Pre-Training", OpenAI report, 2018 (and Radford et al., "Language
Models are Unsupervised Multitask Learners", 2019, for the byte-level input).

A causal transformer reads a window x_1..x_L; the output at position t predicts
x_{t+1} (`language_model`):

    L = -1/|S| sum_{(b, t) in S} log p(x_{b,t+1} | x_{b,1..t}),  S = {t < L : x_{b,t+1} != PAD}

in nats per predicted token. The network reads the whole window and the last
position has no target; the causal mask makes the prediction at t independent of
x_{t+1..L}, and right padding (`tokenizers.PAD`) never influences a real token.

`generate` samples a continuation of a prompt autoregressively with a fixed
`[1, seq_len]` window (one compiled loop for any prompt), temperature and top-k
filtering. The context is the last seq_len - 1 tokens (a sliding window once
the text is longer): training never has a target at the last position, so its
output is untrained.

Config (`config.method`): online_probe. Metrics: next_token_loss (nats/token),
next_token_accuracy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.data.tokenizers import PAD
from ssl_jax.methods import language_model

# Logit of the tokens sampling excludes: large and finite (never -inf, see losses.py).
EXCLUDED_LOGIT = -1e9


class GPT(language_model.LanguageModel):

    causal = True
    task = "next_token"

    def prediction_task(self, rng, tokens):
        del rng  # Deterministic.
        targets = jnp.pad(tokens[:, 1:], ((0, 0), (0, 1)), constant_values=PAD)
        return tokens, targets, targets != PAD


def filter_and_sample(rng: jax.Array, logits: jax.Array, temperature: jax.Array,
                      top_k: jax.Array) -> jax.Array:
    """One id from `[V]` logits: PAD excluded, only the top_k largest logits kept (0 = all;
    ties with the k-th are kept), softmax(logits / temperature); temperature 0 = argmax."""
    logits = logits.astype(jnp.float32).at[PAD].set(EXCLUDED_LOGIT)
    vocab_size = logits.shape[0]
    kth_largest = jnp.sort(logits)[vocab_size - jnp.clip(top_k, 1, vocab_size)]
    logits = jnp.where((top_k > 0) & (logits < kth_largest), EXCLUDED_LOGIT, logits)
    sampled = jax.random.categorical(rng, logits / jnp.maximum(temperature, 1e-6))
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("method", "num_tokens"))
def _sample_tokens(method: GPT, variables, window: jax.Array, length: jax.Array,
                   rng: jax.Array, temperature: jax.Array, top_k: jax.Array,
                   num_tokens: int) -> jax.Array:
    """`num_tokens` ids following `window[0, :length]` (`window`: `[1, L]`, right-padded,
    at most L - 1 tokens)."""
    context = window.shape[1] - 1
    padding = jnp.full((1, 1), PAD, window.dtype)

    def step(i, carry):
        window, length, generated = carry
        logits = method.logits(variables, window)[0, length - 1]
        token = filter_and_sample(jax.random.fold_in(rng, i), logits, temperature, top_k)
        # A full context drops its oldest token; the new one follows the last.
        shifted = jnp.concatenate([window[:, 1:], padding], axis=1)
        window = jnp.where(length == context, shifted, window)
        window = window.at[0, jnp.minimum(length, context - 1)].set(token)
        return window, jnp.minimum(length + 1, context), generated.at[i].set(token)

    carry = (window, length, jnp.zeros((num_tokens,), jnp.int32))
    return jax.lax.fori_loop(0, num_tokens, step, carry)[2]


def generate(method: GPT, variables, prompt_ids, num_tokens: int, rng: jax.Array,
             temperature: float = 1.0, top_k: int = 0) -> np.ndarray:
    """int32 `[num_tokens]` ids sampled after the 1-D `prompt_ids`, each from the last
    `config.input.seq_len - 1` tokens. One compilation per (method, num_tokens)."""
    if not isinstance(method, GPT):
        raise ValueError(f"generate needs a 'gpt' model, got config.method.name="
                         f"{method.config.method.name!r}")
    prompt_ids = np.asarray(prompt_ids, np.int32).reshape(-1)
    if not len(prompt_ids):
        raise ValueError("generate needs a prompt of at least one token")
    if (prompt_ids == PAD).any():
        raise ValueError(f"the prompt holds the padding id {PAD}, which the model ignores")
    if temperature < 0 or top_k < 0:
        raise ValueError(f"temperature={temperature} and top_k={top_k} must be >= 0")
    seq_len = method.config.input.seq_len
    context = prompt_ids[-(seq_len - 1):]
    window = np.full((1, seq_len), PAD, np.int32)
    window[0, :len(context)] = context
    return np.asarray(_sample_tokens(
        method, variables, jnp.asarray(window), jnp.int32(len(context)), rng,
        jnp.float32(temperature), jnp.int32(top_k), num_tokens))
