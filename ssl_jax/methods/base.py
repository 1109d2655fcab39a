"""The method contract: what every SSL method gives the one generic train loop.

A method owns a Flax network and turns a raw global batch into a loss. The
trainer owns everything else (mesh, optimizer, schedules, checkpoints, logs).

    init(rng, batch)                         -> variables
    loss(params, variables, batch, rng, step) -> loss, (batch_stats, extra, metrics)
    after_step(variables, step)              -> variables
    features(variables, images)              -> backbone features for evaluation

`variables` is a dict with `params` (trained by the optimizer), `batch_stats`
(BatchNorm running statistics) and `extra` (method state that is not trained by
gradients: EMA targets, queues, predictor matrices). All are plain pytrees.

`batch` holds the raw global batch as the host produced it: `image` uint8
`[B, H, W, C]` (or, for text, `tokens` int32 `[B, L]`) and `label` int32 `[B]`. Views (crops, colour jitter, masks) are
made inside `loss`, on the device, from `rng`, so the jitted step is the only
place where pixels are touched. For large images the host may instead decode
and random-crop (`config.input.host_crop`): the batch then holds `crops` uint8
`[B, V, S, S, C]`, one crop per view, and `view(rng, batch, view, i)` takes
crop i and applies the rest of the chain on the device. Token ids have no
augmentation: their view is the tokens themselves (a language method masks or
shifts them inside its `loss`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import losses
from ssl_jax.data import augment
from ssl_jax.models.heads import LinearClassifier

Variables = dict


def is_tokens(inputs: jax.Array) -> bool:
    """Whether raw inputs are token ids (integer `[B, L]`) rather than images."""
    return inputs.ndim == 2 and jnp.issubdtype(inputs.dtype, jnp.integer)


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """(x - mean) / std per channel, for float images in [0, 1]."""
    return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


def online_probe_loss(config, probe_logits: jax.Array, labels: jax.Array):
    """Cross-entropy of the online linear probe (on stop-gradient features), tiled over
    views when `probe_logits` has several rows per label; zero when disabled."""
    if not config.method.online_probe:
        return jnp.float32(0.0), {}
    num_views = probe_logits.shape[0] // labels.shape[0]
    loss, accuracy = losses.classification_loss(probe_logits, jnp.tile(labels, num_views))
    return loss, {"probe_loss": loss, "probe_accuracy": accuracy}


class ProbedNet(nn.Module):
    """Base of the methods' networks: a `backbone` whose features `embed` returns, and an
    online linear `probe` (class logits) that `probe_logits` applies to detached features.
    Subclasses add their heads as fields and write `__call__`."""

    backbone: nn.Module
    num_classes: int

    def setup(self):
        self.probe = LinearClassifier(max(self.num_classes, 1))

    def embed(self, x, train: bool):
        return self.backbone(x, train=train)

    def probe_logits(self, features: jax.Array) -> jax.Array:
        return self.probe(jax.lax.stop_gradient(features))


class Method:
    """Base class: the network, preprocessing and evaluation features.

    Subclasses set `self.net` in `build_net` (a Flax module with a method
    `embed(x, train)` that returns backbone features) and implement `loss`.
    """

    def __init__(self, config: ml_collections.ConfigDict, num_classes: int, total_steps: int = 1):
        self.config = config
        self.num_classes = num_classes
        self.total_steps = total_steps  # Of the run: schedules inside the method (EMA decay).
        self.net = self.build_net()

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict):
        """ValueError naming the `config.method` field that this method cannot run with."""

    def build_net(self) -> nn.Module:
        raise NotImplementedError

    def preprocess(self, inputs: jax.Array) -> jax.Array:
        """Augmentation-free input of the network: images resized to the view size and
        normalised; token ids (integer `[B, L]`) unchanged."""
        if is_tokens(inputs):
            return inputs
        x = augment.center_view(inputs, self.config.input.image_size)
        return normalize(x, self.config.input.mean, self.config.input.std)

    def view_pixels(self, rng: jax.Array, batch: dict, view: ml_collections.ConfigDict,
                    index: int = 0) -> jax.Array:
        """Augmented view number `index` of a raw batch in [0, 1] pixel units (per-example
        keys from `rng`): from `image` on the device, or from the host's crop `crops[:, index]`."""
        if "crops" in batch:
            return augment.augment_view(rng, batch["crops"][:, index], view, crop=False)
        return augment.augment_view(rng, batch["image"], view)

    def view(self, rng: jax.Array, batch: dict, view: ml_collections.ConfigDict,
             index: int = 0) -> jax.Array:
        """`view_pixels`, normalised: the network's input; a token batch's own tokens."""
        if "tokens" in batch:
            return batch["tokens"]
        return self.normalize(self.view_pixels(rng, batch, view, index))

    def normalize(self, pixels: jax.Array) -> jax.Array:
        """[0, 1] pixels -> the network's input units (`config.input.mean/std`)."""
        return normalize(pixels, self.config.input.mean, self.config.input.std)

    @staticmethod
    def inputs(batch: dict) -> jax.Array:
        """The raw inputs of a batch: uint8 images (the first host crop when the host
        cropped) or int32 token ids."""
        if "tokens" in batch:
            return batch["tokens"]
        return batch["crops"][:, 0] if "crops" in batch else batch["image"]

    def init(self, rng: jax.Array, batch: dict) -> Variables:
        variables = self.net.init(rng, self.preprocess(self.inputs(batch)), train=False)
        return dict(params=variables["params"], batch_stats=variables.get("batch_stats", {}),
                    extra={})

    def apply(self, params, variables: Variables, x: jax.Array, *, train: bool, **kwargs):
        """Run the network; in train mode also return the updated BatchNorm statistics."""
        inputs = {"params": params, "batch_stats": variables["batch_stats"]}
        if not train:
            return self.net.apply(inputs, x, train=False, **kwargs), variables["batch_stats"]
        out, updates = self.net.apply(inputs, x, train=True, mutable=["batch_stats"], **kwargs)
        return out, updates.get("batch_stats", {})

    def loss(self, params, variables: Variables, batch: dict, rng: jax.Array, step: jax.Array):
        raise NotImplementedError

    def after_step(self, variables: Variables, step: jax.Array) -> Variables:
        """Updates outside the gradient step (EMA targets, queues); identity by default."""
        return variables

    def backbone_variables(self, variables: Variables) -> dict:
        """The pretrained backbone that fine-tuning starts from (`params` and `batch_stats`
        of the `backbone` module); a method whose evaluated encoder is another copy (an EMA
        target) says so here."""
        return {"params": variables["params"]["backbone"],
                "batch_stats": variables["batch_stats"].get("backbone", {})}

    def features(self, variables: Variables, inputs: jax.Array) -> jax.Array:
        """Backbone features (never the projector) of raw inputs, in eval mode."""
        out, _ = self.apply(variables["params"], variables, self.preprocess(inputs),
                            train=False, method="embed")
        return out.astype(jnp.float32)
