"""DirectPred: BYOL whose linear predictor is set from the embedding correlation.

Tian, Chen, Ganguli, "Understanding Self-supervised Learning Dynamics without
Contrastive Pairs", ICML 2021 (arXiv:2102.06810); algorithm as in the authors'
code (facebookresearch/luckmatters, ssl/real-dataset, `predictor_reg=corr`,
`balance_type=boost_scale`).

Each step, with f the detached online projector outputs of both views:

    F <- rho F + (1 - rho) mean_i f_i f_i^T          (uncentred correlation, rho = 0.3)
    F = U diag(s) U^T                                 (eigh of the symmetrised F)
    p_j = sqrt(max(s_j, 0) / max_k s_k) + eps         (eps = 0.01), then p_j >= 1e-4
    W_p = U diag(p) U^T

and the prediction of z is W_p z, with no bias and no gradient into W_p (it is
never trained, only set). The loss is BYOL's, against an EMA target (constant
decay 0.996 in the authors' runs). F and W_p live in `extra["directpred"]`.
`config.method.directpred.every_steps` > 1 recomputes W_p only every that many
steps (F is updated every step).

Config (`config.method`): directpred (rho, eps, every_steps), ema, and the
joint-embedding fields (`methods.joint`).
"""

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods import joint
from ssl_jax.methods.byol import symmetric_regression

MIN_EIGEN_WEIGHT = 1e-4


def update_correlation(correlation: jax.Array, embeddings: jax.Array, rho: float) -> jax.Array:
    """rho F + (1 - rho) mean_i f_i f_i^T of detached `[N, d]` embeddings, float32."""
    f = jax.lax.stop_gradient(embeddings).astype(jnp.float32)
    return rho * correlation + (1.0 - rho) * (f.T @ f) / f.shape[0]


def predictor_from_correlation(correlation: jax.Array, eps: float) -> jax.Array:
    """W_p = U diag(p) U^T with p_j = sqrt(s_j^+ / max s) + eps, at least 1e-4."""
    s, u = jnp.linalg.eigh((correlation + correlation.T) / 2.0)
    s = jnp.maximum(s, 0.0) / jnp.maximum(jnp.max(s), jnp.finfo(jnp.float32).tiny)
    p = jnp.maximum(jnp.sqrt(s) + eps, MIN_EIGEN_WEIGHT)
    return (u * p) @ u.T


class DirectPred(joint.JointEmbedding):

    defaults = dict(directpred=dict(rho=0.3, eps=0.01, every_steps=1),
                    ema=dict(base=0.996, final=0.996, schedule="constant"))

    uses_target = True

    def init(self, rng, batch):
        variables = super().init(rng, batch)
        d = self.config.method.projector.out_dim
        variables["extra"]["directpred"] = dict(
            correlation=jnp.zeros((d, d), jnp.float32), predictor=jnp.eye(d, dtype=jnp.float32))
        return variables

    def objective(self, params, variables, online, x, rng, step):
        cfg = self.config.method.directpred
        state = variables["extra"]["directpred"]
        correlation = update_correlation(state["correlation"], online["embeddings"], cfg.rho)
        predictor = jnp.where(step % cfg.every_steps == 0,
                              predictor_from_correlation(correlation, cfg.eps),
                              state["predictor"])
        z = online["embeddings"].astype(jnp.float32)
        predictions = z @ jax.lax.stop_gradient(predictor).T
        target, target_stats = self.target(variables, x)
        loss = symmetric_regression(losses.byol_regression, predictions, target["embeddings"])
        extra = self.with_target_batch_stats(variables["extra"], target_stats)
        extra["directpred"] = dict(correlation=correlation, predictor=predictor)
        return loss, extra, {}
