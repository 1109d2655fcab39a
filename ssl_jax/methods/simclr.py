"""SimCLR: contrastive learning of two augmented views with the NT-Xent loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning
of Visual Representations", ICML 2020 (arXiv:2002.05709).

    h = f(view), z = g(h)          backbone f, projector MLP g
    L = NT-Xent(z1, z2; tau)       negatives: the other 2N-2 views of the global batch

Both views go through the network in one forward pass, so (synchronised, global)
BatchNorm normalises them together as in the official code.

Config (`config.method`): temperature, and the joint-embedding fields
(`methods.joint`): projector, view, per_view, online_probe.
"""

from ssl_jax import losses
from ssl_jax.methods import joint


class SimCLR(joint.JointEmbedding):

    defaults = dict(temperature=0.5)

    def objective(self, params, variables, online, x, rng, step):
        z1, z2 = joint.halves(online["embeddings"])
        return losses.nt_xent(z1, z2, self.config.method.temperature), variables["extra"], {}
