"""BYOL: predict the target network's embedding of the other view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020 (arXiv:2006.07733).

    online  p = q(g(f(v)))        target  z' = g_t(f_t(v'))   (EMA of f, g)
    L = l(p_1, sg(z'_2)) + l(p_2, sg(z'_1)),   l(p, z) = 2 - 2 cos(p, z)

averaged over the batch. The target's decay follows `config.method.ema`
(BYOL: cosine from 0.99 (0.996 for 1000 epochs) to 1). The asymmetric views
(blur p = 1.0 / 0.1, solarize p = 0.0 / 0.2) are `augment.byol_views`.

Config (`config.method`): the joint-embedding fields (`methods.joint`),
including predictor and ema.
"""

from ssl_jax import losses
from ssl_jax.methods import joint


def symmetric_regression(loss_fn, predictions, targets):
    """loss(p_1, z'_2) + loss(p_2, z'_1) for stacked views; targets already detached."""
    return loss_fn(predictions, joint.swap_halves(targets)) * 2.0


class BYOL(joint.JointEmbedding):

    uses_predictor = True
    uses_target = True

    def objective(self, params, variables, online, x, rng, step):
        target, target_stats = self.target(variables, x)
        loss = symmetric_regression(losses.byol_regression, online["predictions"],
                                    target["embeddings"])
        return loss, self.with_target_batch_stats(variables["extra"], target_stats), {}
