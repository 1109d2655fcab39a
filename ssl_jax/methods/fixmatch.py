"""Confidence-thresholded self-training: FixMatch (Sohn et al. 2020, arXiv:2001.07685).

A classifier (backbone + linear layer) learns from B labelled images and mu B
unlabelled ones per step. Each unlabelled image gets a weak view (a mild crop and
flip) and a strong view (SimCLR's crop and colour distortions); the prediction on
the weak view, when its confidence reaches the threshold tau, is the hard target
of the strong view:

    L = CE(labelled weak views, labels) + lambda_u * l_u
    l_u = 1 / (mu B) sum_b 1[max q_b >= tau] CE(argmax q_b, p(y | strong_b)),
    q_b = softmax(stop_gradient(logits of weak_b))     (`losses.confident_pseudo_label_loss`)

The labelled, weak and strong views go through the network as one batch, so
BatchNorm normalises them with shared statistics, as in the paper. tau = 0 gives
Lee's (2013) Pseudo-Label with the strong view as its input noise. The true
labels of the unlabelled images never reach the step: its batch holds only their
pixels (`unlabeled_image`), drawn by `data.loader.LabeledUnlabeledBatcher`.

This is the `self_train` stage's method (`stages.self_train` derives its config
from `config.self_train`): `config.method` holds weak_view, strong_view,
threshold (tau), unlabeled_weight (lambda_u) and unlabeled_ratio (mu). The
paper's test-time EMA of the weights is not used: the final weights are evaluated.
"""

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import losses
from ssl_jax.data import text
from ssl_jax.methods.supervised import Supervised


class FixMatch(Supervised):

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict):
        if config.input.dataset in text.TEXT_DATASETS:
            raise ValueError(f"config.input.dataset={config.input.dataset!r}: self-training "
                             "needs images (its weak and strong views are image augmentations)")

    def loss(self, params, variables, batch, rng, step):
        if "unlabeled_image" not in batch:
            raise ValueError("method 'fixmatch' trains on labelled and unlabelled images: run "
                             "it as the 'self_train' stage, which draws both")
        method = self.config.method
        labeled_rng, weak_rng, strong_rng = jax.random.split(rng, 3)
        unlabeled = {"image": batch["unlabeled_image"]}
        views = (self.view(labeled_rng, batch, method.weak_view),
                 self.view(weak_rng, unlabeled, method.weak_view),
                 self.view(strong_rng, unlabeled, method.strong_view))
        logits, batch_stats = self.apply(params, variables, jnp.concatenate(views), train=True)
        labeled_logits, weak_logits, strong_logits = jnp.split(
            logits, [len(views[0]), len(views[0]) + len(views[1])])
        supervised, accuracy = losses.classification_loss(labeled_logits, batch["label"])
        unsupervised, kept = losses.confident_pseudo_label_loss(weak_logits, strong_logits,
                                                                method.threshold)
        loss = supervised + method.unlabeled_weight * unsupervised
        metrics = {"train_accuracy": accuracy, "supervised_loss": supervised,
                   "pseudo_label_loss": unsupervised, "pseudo_label_rate": kept}
        return loss, (batch_stats, variables["extra"], metrics)
