"""What the language-model pretext tasks (BERT's masked LM, GPT's next token) share.

A text backbone (`models.text_transformer`, bidirectional for BERT, causal for
GPT) gives every position a state h_t; the LM head turns it into logits over the
vocabulary,

    logits_t = W_out LayerNorm(GELU(W h_t + b)) + b_out            (BERT's MLM head)

and the loss is the token cross-entropy averaged over the positions a task
predicts (a boolean mask S over the global batch):

    L = 1/|S| sum_{(b, t) in S} -log softmax(logits_{b,t})[y_{b,t}]

in nats per predicted token. Each task (`LanguageModel.prediction_task`) says
what the network reads, what it predicts and where: BERT (Devlin et al.,
"BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019, arXiv:1810.04805) predicts the original token at
masked positions; GPT (Radford et al., "Improving Language Understanding by
Generative Pre-Training", OpenAI report, 2018) the next token at every position
whose next token is not padding.

The output matrix W_out is its own parameter, not tied to the input embedding
(BERT and GPT-2 tie them): the backbone stays a self-contained module the head
never reaches into, at the cost of vocab_size x width parameters.

Evaluation features (`features`, kNN / probes / fine-tuning) are the backbone's
pooled features (`config.model.pool`), never the LM head. The online linear
probe needs labels, so it is off (`config.method.online_probe=False`) for
unlabelled text such as the "text" source.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import diagnostics
from ssl_jax.evals import features as feature_extraction
from ssl_jax.methods import base
from ssl_jax.models import DTYPES, build_backbone

BACKBONE = "text_transformer"
# The key of the prediction task during evaluation (BERT's masks), so that the
# validation loss of a checkpoint is one number.
EVAL_TASK_SEED = 0


class LMHead(nn.Module):
    """`[..., width]` states -> `[..., vocab_size]` float32 logits: Dense(width) -> GELU ->
    LayerNorm -> Dense(vocab_size), BERT's transform then the output matrix."""

    vocab_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, states: jax.Array) -> jax.Array:
        x = nn.Dense(states.shape[-1], dtype=self.dtype, name="transform")(states)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(nn.gelu(x, approximate=False))
        return nn.Dense(self.vocab_size, dtype=self.dtype, name="output")(x).astype(jnp.float32)


class LanguageModelNet(base.ProbedNet):
    """Text backbone -> pooled features (probe) and vocabulary logits at every position,
    or only at `positions` (int `[B, P]`), which saves the LM head's cost elsewhere."""

    lm_head: nn.Module

    def __call__(self, tokens, train: bool, positions: jax.Array | None = None):
        pooled, states = self.backbone(tokens, train=train, return_tokens=True)
        if positions is not None:
            states = jnp.take_along_axis(states, positions[:, :, None], axis=1)
        return dict(features=pooled, logits=self.lm_head(states),
                    probe_logits=self.probe_logits(pooled))


def first_selected_positions(selected: jax.Array, count: int) -> jax.Array:
    """int `[B, count]`: per row, the positions of the first `count` True entries of bool
    `selected` `[B, L]` in order, then unselected positions (a static shape)."""
    return jnp.argsort(~selected, axis=1, stable=True)[:, :count]


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """`[B, L, V]` logits, `[B, L]` int targets -> `[B, L]` float32 -log p(target)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def masked_token_loss(logits: jax.Array, targets: jax.Array, selected: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and top-1 accuracy over the `selected` positions of the whole
    batch (0 when none is selected)."""
    weights = selected.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(weights), 1.0)
    loss = jnp.sum(token_cross_entropy(logits, targets) * weights) / count
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return loss, jnp.sum(correct * weights) / count


class LanguageModel(base.Method):
    """Base of BERT and GPT: the net, the loss over a task's positions, evaluation.

    Subclasses set `causal` (the attention the task needs), `task` (the metric
    prefix) and implement `prediction_task`.
    """

    causal: bool
    task: str

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        del image_size  # Token inputs.
        return ml_collections.ConfigDict(dict(name=name, online_probe=False))

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict):
        name = config.method.name
        if config.model.name != BACKBONE:
            raise ValueError(f"config.model.name={config.model.name!r}: method {name!r} needs "
                             f"the {BACKBONE!r} backbone")
        if config.model.causal != cls.causal:
            reason = ("predicts each token from the ones before it" if cls.causal
                      else "reads both sides of a masked token")
            raise ValueError(f"config.model.causal={config.model.causal}: method {name!r} "
                             f"{reason}; set it to {cls.causal}")
        unlabelled = config.input.dataset == "text" or not config.input.labeled
        if config.method.online_probe and unlabelled:
            raise ValueError(f"config.method.online_probe=True: dataset "
                             f"{config.input.dataset!r} has no labels here; set it to False")

    def build_net(self):
        return LanguageModelNet(
            backbone=build_backbone(self.config.model),
            lm_head=LMHead(self.config.model.vocab_size, dtype=DTYPES[self.config.model.dtype]),
            num_classes=self.num_classes)

    def prediction_task(self, rng: jax.Array, tokens: jax.Array
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """int `[B, L]` tokens -> (network input `[B, L]`, targets `[B, L]`, bool `[B, L]`
        positions whose target counts)."""
        raise NotImplementedError

    def task_metrics(self, tokens: jax.Array, selected: jax.Array) -> dict:
        """Extra metrics of the task (none by default)."""
        return {}

    def max_predictions(self) -> int:
        """Positions per sequence the LM head scores in training: the first this many
        selected ones (BERT's `max_predictions_per_seq`); 0 = every position."""
        return 0

    def loss(self, params, variables, batch, rng, step):
        tokens = self.inputs(batch)
        inputs, targets, selected = self.prediction_task(rng, tokens)
        positions, scored = None, selected
        if 0 < self.max_predictions() < tokens.shape[1]:
            positions = first_selected_positions(selected, self.max_predictions())
            targets = jnp.take_along_axis(targets, positions, axis=1)
            scored = jnp.take_along_axis(selected, positions, axis=1)
        out, batch_stats = self.apply(params, variables, inputs, train=True, positions=positions)
        loss, accuracy = masked_token_loss(out["logits"], targets, scored)
        probe, probe_metrics = base.online_probe_loss(self.config, out["probe_logits"],
                                                      batch["label"])
        metrics = {f"{self.task}_loss": loss, f"{self.task}_accuracy": accuracy,
                   **self.task_metrics(tokens, selected), **probe_metrics,
                   **diagnostics.representation_metrics(out["features"], out["features"])}
        return loss + probe, (batch_stats, variables["extra"], metrics)

    def logits(self, variables, tokens: jax.Array) -> jax.Array:
        """float32 `[B, L, vocab_size]` logits of token inputs, in eval mode."""
        out, _ = self.apply(variables["params"], variables, tokens, train=False)
        return out["logits"]

    def token_loss(self, variables, tokens: jax.Array) -> jax.Array:
        """float32 `[B, 2]`: per sequence, the summed cross-entropy of its predicted tokens
        and their number, for the eval-mode task with the fixed key `EVAL_TASK_SEED`."""
        inputs, targets, selected = self.prediction_task(jax.random.key(EVAL_TASK_SEED), tokens)
        weights = selected.astype(jnp.float32)
        losses = token_cross_entropy(self.logits(variables, inputs), targets) * weights
        return jnp.stack([jnp.sum(losses, axis=1), jnp.sum(weights, axis=1)], axis=1)


def validation_loss(method: LanguageModel, variables, tokens: np.ndarray,
                    mesh: jax.sharding.Mesh, batch_size: int) -> float:
    """Mean cross-entropy (nats per predicted token) of the pretext task over all of
    `tokens` `[N, L]`, in batches of `batch_size` sharded over `mesh`."""
    sums = feature_extraction.extract(method.token_loss, variables, tokens, mesh, batch_size)
    sums = sums.astype(np.float64)
    return float(sums[:, 0].sum() / max(sums[:, 1].sum(), 1.0))
