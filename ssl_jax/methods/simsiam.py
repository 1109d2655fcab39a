"""SimSiam: a Siamese network with a predictor and a stop-gradient, nothing else.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
(arXiv:2011.10566).

    z = g(f(v)), p = q(z)
    L = 1/2 D(p_1, sg(z_2)) + 1/2 D(p_2, sg(z_1)),   D(p, z) = -cos(p, z)

averaged over the batch. No target network, no negatives: the stop-gradient on
z is what prevents collapse (the paper's sec. 4.1). The projector ends in a
BatchNorm without affine (`projector.last_bn`), the predictor is a bottleneck
(2048 -> 512 -> 2048 on ImageNet).

Config (`config.method`): the joint-embedding fields (`methods.joint`),
including predictor.
"""

import jax

from ssl_jax import losses
from ssl_jax.methods import joint


class SimSiam(joint.JointEmbedding):

    uses_predictor = True
    defaults = dict(projector=dict(last_bn=True))

    def objective(self, params, variables, online, x, rng, step):
        targets = jax.lax.stop_gradient(joint.swap_halves(online["embeddings"]))
        return losses.negative_cosine(online["predictions"], targets), variables["extra"], {}
