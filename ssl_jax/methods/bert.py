"""BERT's masked language model: predict the original tokens at corrupted positions.

Devlin, Chang, Lee, Toutanova, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", NAACL 2019 (arXiv:1810.04805), sec. 3.1.

Each ordinary token (id >= `tokenizers.NUM_SPECIAL`: never PAD, MASK, UNK or
CLS) is selected with probability p = mask_prob (0.15); of the selected ones,
replace_prob (80%) become MASK, random_prob (10%) a uniformly random ordinary
id in [NUM_SPECIAL, vocab_size), the rest (10%) stay unchanged. A bidirectional
encoder reads the corrupted sequence and the loss is the cross-entropy of the
original token at the selected positions S only (`language_model`):

    L = 1/|S| sum_{(b, t) in S} -log p(x_{b,t} | corrupted x_b)

Selection is an independent Bernoulli(p) per token, as RoBERTa's dynamic
masking and the Hugging Face `DataCollatorForLanguageModeling` do: the number
of masked tokens varies from sequence to sequence (15% on average), whereas the
original `create_pretraining_data.py` masks exactly round(15%) positions per
sequence. The Bernoulli form keeps every shape static on the device and draws
new masks at every step (dynamic masking). Next-sentence prediction is left
out (RoBERTa found it unnecessary).

The LM head, whose vocabulary-wide output is most of a small model's cost,
scores only the first `max_predictions` selected positions of each sequence
(BERT's `max_predictions_per_seq`, 20 at 128 tokens); 0 scores every position.
Pick it well above the mean selected count (about mask_prob x length, binomial):
`dropped_fraction` logs the selected positions it leaves out.

Config (`config.method`): mask_prob, replace_prob, random_prob, max_predictions,
online_probe. Metrics: mlm_loss, mlm_accuracy (over scored positions),
masked_fraction (selected / ordinary tokens), dropped_fraction.
"""

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.tokenizers import MASK, NUM_SPECIAL
from ssl_jax.methods import language_model


def mask_tokens(rng: jax.Array, tokens: jax.Array, vocab_size: int, mask_prob: float = 0.15,
                replace_prob: float = 0.8, random_prob: float = 0.1
                ) -> tuple[jax.Array, jax.Array]:
    """BERT's corruption of int `[B, L]` tokens (module docstring).

    Returns the corrupted tokens and the bool `[B, L]` selected positions (the
    ones the loss predicts, corrupted or not).
    """
    select_rng, action_rng, random_rng = jax.random.split(rng, 3)
    ordinary = tokens >= NUM_SPECIAL
    selected = ordinary & jax.random.bernoulli(select_rng, mask_prob, tokens.shape)
    action = jax.random.uniform(action_rng, tokens.shape)
    to_mask = selected & (action < replace_prob)
    to_random = selected & (action >= replace_prob) & (action < replace_prob + random_prob)
    random_ids = jax.random.randint(random_rng, tokens.shape, NUM_SPECIAL, vocab_size,
                                    dtype=tokens.dtype)
    corrupted = jnp.where(to_mask, jnp.asarray(MASK, tokens.dtype),
                          jnp.where(to_random, random_ids, tokens))
    return corrupted, selected


class BERT(language_model.LanguageModel):

    causal = False
    task = "mlm"

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        config = super().default_config(name, image_size)
        config.update(dict(mask_prob=0.15, replace_prob=0.8, random_prob=0.1,
                           max_predictions=0))
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict):
        super().check_config(config)
        m = config.method
        if not 0 < m.mask_prob <= 1:
            raise ValueError(f"config.method.mask_prob={m.mask_prob}: must be in (0, 1]")
        for field in ("replace_prob", "random_prob"):
            if not 0 <= m[field] <= 1:
                raise ValueError(f"config.method.{field}={m[field]}: must be in [0, 1]")
        if m.replace_prob + m.random_prob > 1:
            raise ValueError(f"config.method.replace_prob={m.replace_prob} + "
                             f"config.method.random_prob={m.random_prob}: must be <= 1")
        if m.max_predictions < 0:
            raise ValueError(f"config.method.max_predictions={m.max_predictions}: must be >= 0 "
                             "(0 = every position)")
        if config.model.vocab_size <= NUM_SPECIAL:
            raise ValueError(f"config.model.vocab_size={config.model.vocab_size}: BERT needs "
                             f"ordinary tokens (ids >= {NUM_SPECIAL}) to mask")

    def prediction_task(self, rng, tokens):
        m = self.config.method
        corrupted, selected = mask_tokens(rng, tokens, self.config.model.vocab_size,
                                          m.mask_prob, m.replace_prob, m.random_prob)
        return corrupted, tokens, selected

    def max_predictions(self) -> int:
        return self.config.method.max_predictions

    def task_metrics(self, tokens, selected):
        ordinary = jnp.sum(tokens >= NUM_SPECIAL)
        count = jnp.sum(selected)
        scored = count
        if 0 < self.max_predictions() < tokens.shape[1]:
            scored = jnp.sum(jnp.minimum(jnp.sum(selected, axis=1), self.max_predictions()))
        return {"masked_fraction": count / jnp.maximum(ordinary, 1),
                "dropped_fraction": 1.0 - scored / jnp.maximum(count, 1)}
