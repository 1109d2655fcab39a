"""RotNet: learn features by predicting which of four rotations an image went through.

Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting
Image Rotations", ICLR 2018 (arXiv:1803.07728).

Every image of the batch appears in all four rotations y in {0, 90, 180, 270}
degrees (the paper finds this better than sampling one), and a classifier on
the backbone features predicts y:

    L = -1/(4N) sum_i sum_y log softmax(F(rot(x_i, y)))_y

The images are first augmented once (`config.method.view`, e.g. crop + flip),
then rotated on the device with `jnp.rot90`, so views must be square. The
online linear probe (class labels, stop-gradient) sees the upright copies only.

Config (`config.method`): view, head (hidden_dim, num_layers: 1 = linear),
online_probe.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import diagnostics, losses
from ssl_jax.data import augment
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.heads import MLPHead

NUM_ROTATIONS = 4


def all_rotations(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`[N, S, S, C]` -> the N images rotated by 0, 90, 180, 270 degrees (counter-clockwise),
    stacked `[4N, S, S, C]`, and the rotation labels `[4N]` (0, ..., 0, 1, ..., 3)."""
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"rotation prediction needs square views, got {images.shape[1:3]} "
                         "(config.method.view.out_size)")
    rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
    labels = jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), images.shape[0])
    return rotated, labels


class RotationNet(base.ProbedNet):
    """Backbone -> rotation classifier, plus an online linear probe on detached features."""

    head: nn.Module

    def __call__(self, x, train: bool):
        h = self.backbone(x, train=train)
        return dict(features=h, rotation_logits=self.head(h, train=train).astype(jnp.float32),
                    probe_logits=self.probe_logits(h))


class Rotation(base.Method):

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        view = augment.crop_flip_view(image_size, crop_scale=(0.5, 1.0))
        return ml_collections.ConfigDict(dict(
            name=name, online_probe=True, view=view, head=dict(hidden_dim=512, num_layers=1)))

    def build_net(self):
        head = self.config.method.head
        return RotationNet(
            backbone=build_backbone(self.config.model),
            head=MLPHead(hidden_dim=head.hidden_dim, out_dim=NUM_ROTATIONS,
                         num_layers=head.num_layers),
            num_classes=self.num_classes)

    def loss(self, params, variables, batch, rng, step):
        x, rotation_labels = all_rotations(self.view(rng, batch, self.config.method.view))
        out, batch_stats = self.apply(params, variables, x, train=True)
        loss, accuracy = losses.classification_loss(out["rotation_logits"], rotation_labels)
        upright = batch["label"].shape[0]
        probe, probe_metrics = base.online_probe_loss(
            self.config, out["probe_logits"][:upright], batch["label"])
        features = out["features"][:upright]
        metrics = {"rotation_loss": loss, "rotation_accuracy": accuracy, **probe_metrics,
                   **diagnostics.representation_metrics(features, features)}
        return loss + probe, (batch_stats, variables["extra"], metrics)
