"""SimCLR: contrastive learning of two augmented views with the NT-Xent loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning
of Visual Representations", ICML 2020 (arXiv:2002.05709).

    h = f(view), z = g(h)          backbone f, projector MLP g
    L = NT-Xent(z1, z2; tau)       negatives: the other 2N-2 views of the global batch

Both views go through the network in one forward pass, so (synchronised, global)
BatchNorm normalises them together as in the official code. An online linear
probe is trained on `stop_gradient(h)` for monitoring (BYOL's practice); it never
sends gradients into the encoder.

Config (`config.method`): temperature, projector (hidden_dim, out_dim,
num_layers), view (an augmentation view, see `data.augment`), online_probe.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.heads import LinearClassifier, MLPHead


class EncoderWithProjector(nn.Module):
    """Backbone -> projector, plus an online linear probe on the detached features."""

    backbone: nn.Module
    projector: nn.Module
    num_classes: int

    def setup(self):
        self.probe = LinearClassifier(max(self.num_classes, 1))

    def embed(self, x, train: bool):
        return self.backbone(x, train=train)

    def __call__(self, x, train: bool):
        h = self.backbone(x, train=train)
        z = self.projector(h, train=train)
        return h, z, self.probe(jax.lax.stop_gradient(h))


def build_encoder_with_projector(config, num_classes: int) -> EncoderWithProjector:
    head = config.method.projector
    return EncoderWithProjector(
        backbone=build_backbone(config.model),
        projector=MLPHead(hidden_dim=head.hidden_dim, out_dim=head.out_dim,
                          num_layers=head.num_layers),
        num_classes=num_classes)


def online_probe_loss(method: base.Method, probe_logits: jax.Array, labels: jax.Array):
    """Cross-entropy of the online probe on every view; zero when disabled."""
    if not method.config.method.online_probe:
        return jnp.float32(0.0), {}
    num_views = probe_logits.shape[0] // labels.shape[0]
    loss, accuracy = losses.classification_loss(probe_logits, jnp.tile(labels, num_views))
    return loss, {"probe_loss": loss, "probe_accuracy": accuracy}


class SimCLR(base.Method):

    def build_net(self):
        return build_encoder_with_projector(self.config, self.num_classes)

    def loss(self, params, variables, batch, rng, step):
        rng1, rng2 = jax.random.split(rng)
        view = self.config.method.view
        x = jnp.concatenate([self.view(rng1, batch, view, 0), self.view(rng2, batch, view, 1)])
        (_, z, probe_logits), batch_stats = self.apply(params, variables, x, train=True)
        z1, z2 = jnp.split(z, 2)
        contrastive = losses.nt_xent(z1, z2, self.config.method.temperature)
        probe, probe_metrics = online_probe_loss(self, probe_logits, batch["label"])
        metrics = {"contrastive_loss": contrastive, **probe_metrics}
        return contrastive + probe, (batch_stats, variables["extra"], metrics)
