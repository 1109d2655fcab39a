"""Supervised classification of a backbone: fine-tuning and training from scratch.

The downstream stage of the two-stage protocol. With the backbone initialised
from a pretrained checkpoint this is fine-tuning; from random init it is the
from-scratch baseline on the same labels. Loss: softmax cross-entropy of a
linear classifier on backbone features of one augmented view.

Config (`config.method`): view (the training augmentation).
"""

import flax.linen as nn

from ssl_jax import losses
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.heads import LinearClassifier


class BackboneClassifier(nn.Module):
    backbone: nn.Module
    num_classes: int

    def setup(self):
        self.classifier = LinearClassifier(self.num_classes)

    def embed(self, x, train: bool):
        return self.backbone(x, train=train)

    def __call__(self, x, train: bool):
        return self.classifier(self.backbone(x, train=train))


class Supervised(base.Method):

    def build_net(self):
        return BackboneClassifier(backbone=build_backbone(self.config.model),
                                  num_classes=self.num_classes)

    def loss(self, params, variables, batch, rng, step):
        x = self.view(rng, batch, self.config.method.view)
        logits, batch_stats = self.apply(params, variables, x, train=True)
        loss, accuracy = losses.classification_loss(logits, batch["label"])
        return loss, (batch_stats, variables["extra"], {"train_accuracy": accuracy})

    def logits(self, variables, inputs):
        """Class scores of raw inputs (images or token ids) in eval mode (for test accuracy)."""
        out, _ = self.apply(variables["params"], variables, self.preprocess(inputs), train=False)
        return out
