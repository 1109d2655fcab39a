"""Redundancy reduction: Barlow Twins and VICReg, losses on the embedding statistics.

Barlow Twins: Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", ICML 2021 (arXiv:2103.03230). The
cross-correlation of the two views' batch-normalised embeddings over the global
batch is pushed to the identity:

    L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2     (`losses.barlow_twins`)

times `config.method.loss_scale` (1 in the paper; solo-learn's CIFAR recipe: 0.1).

VICReg: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906):

    L = lambda s(Z, Z') + mu [v(Z) + v(Z')] / 2 + nu [c(Z) + c(Z')]   (`losses.vicreg`)

with lambda = mu = 25, nu = 1. Neither needs a predictor, a target or negatives;
both see the global batch because the train step is jitted over the whole mesh.

Config (`config.method`): Barlow Twins `off_diagonal_weight`, `loss_scale`;
VICReg `invariance_weight`, `variance_weight`, `covariance_weight`; and the
joint-embedding fields (`methods.joint`).
"""

from ssl_jax import losses
from ssl_jax.methods import joint


class BarlowTwins(joint.JointEmbedding):

    defaults = dict(off_diagonal_weight=0.0051, loss_scale=1.0)

    def objective(self, params, variables, online, x, rng, step):
        m = self.config.method
        z1, z2 = joint.halves(online["embeddings"])
        loss, parts = losses.barlow_twins(z1, z2, m.off_diagonal_weight)
        return m.loss_scale * loss, variables["extra"], parts


class VICReg(joint.JointEmbedding):

    defaults = dict(invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0)

    def objective(self, params, variables, online, x, rng, step):
        m = self.config.method
        z1, z2 = joint.halves(online["embeddings"])
        loss, parts = losses.vicreg(z1, z2, invariance_weight=m.invariance_weight,
                                    variance_weight=m.variance_weight,
                                    covariance_weight=m.covariance_weight)
        return loss, variables["extra"], parts
