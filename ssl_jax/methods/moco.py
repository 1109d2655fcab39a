"""MoCo v2 and v3: contrast queries with the keys of a momentum (EMA) encoder.

MoCo v2: He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual
Representation Learning", CVPR 2020 (arXiv:1911.05722), with the MLP head, blur
and cosine schedule of Chen, Fan, Girshick, He (arXiv:2003.04297):

    q = g(f(v)), k = g_t(f_t(v'))  (EMA, no gradient), queue of K past keys
    L = -log exp(q.k/tau) / (exp(q.k/tau) + sum_{n in queue} exp(q.n/tau))

(`losses.moco_infonce`), then the batch's keys replace the oldest K entries'
first B (`enqueue`). `symmetric=True` adds the loss with the views swapped (the
MoCo CIFAR-10 demo's symmetric variant) and enqueues both views' keys.
BatchNorm would let a query find its key through the batch statistics they
share, so both encoders use split BN (`bn_splits` groups normalised
separately, the demo's SplitBatchNorm: 8 groups) and the keys are shuffled
across groups before the key encoder and unshuffled after (Shuffle BN).

MoCo v3: Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021 (arXiv:2104.02057): no queue; a predictor on the
query; keys from the whole global batch; synchronised BN:

    L = ctr(q_1, k_2) + ctr(q_2, k_1),  ctr = 2 tau CE(q k^T / tau, identity)

(`losses.moco_v3_contrastive`). For ViTs the paper freezes the random patch
projection: `config.optim.frozen=("patch_embed",)`.

Config (`config.method`): temperature, ema; v2: queue_size, symmetric,
bn_splits; v3: predictor; and the joint-embedding fields (`methods.joint`).
"""

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods import joint


def enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.Array):
    """Write `keys` `[M, D]` over queue rows pointer .. pointer + M - 1 (the oldest, as the
    pointer walks the ring); returns (queue, (pointer + M) mod K). K must be a multiple of M."""
    queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (pointer, 0))
    return queue, (pointer + keys.shape[0]) % queue.shape[0]


def split_batch_norm_apply(net, variables: dict, x: jax.Array, splits: int, **kwargs):
    """`net.apply` in train mode with BatchNorm statistics computed per group of
    len(x) / splits consecutive examples (MoCo's SplitBatchNorm); the new running
    statistics are the mean over groups."""
    if splits == 1:
        out, updates = net.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
        return out, updates.get("batch_stats", {})
    groups = x.reshape(splits, x.shape[0] // splits, *x.shape[1:])
    out, updates = jax.vmap(lambda g: net.apply(variables, g, train=True,
                                                mutable=["batch_stats"], **kwargs))(groups)
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)
    return out, jax.tree.map(lambda a: a.mean(0), updates.get("batch_stats", {}))


class MoCoV2(joint.JointEmbedding):

    uses_target = True
    defaults = dict(temperature=0.2, queue_size=4096, symmetric=True, bn_splits=8,
                    ema=dict(base=0.99, final=0.99, schedule="constant"))

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        m, batch = config.method, config.input.batch_size
        keys = batch * (2 if m.symmetric else 1)
        if m.queue_size <= 0 or m.queue_size % keys:
            raise ValueError(f"config.method.queue_size={m.queue_size}: must be a positive "
                             f"multiple of the keys enqueued per step ({keys} = batch_size "
                             f"{batch}{' x 2 views' if m.symmetric else ''})")
        if m.bn_splits <= 0 or (2 * batch) % m.bn_splits:
            raise ValueError(f"config.method.bn_splits={m.bn_splits}: must divide the "
                             f"{2 * batch} views of a batch (2 x config.input.batch_size)")

    def init(self, rng, batch):
        variables = super().init(rng, batch)
        m = self.config.method
        queue = jax.random.normal(jax.random.fold_in(rng, 1),
                                  (m.queue_size, m.projector.out_dim), jnp.float32)
        variables["extra"]["queue"] = losses.l2_normalize(queue)
        variables["extra"]["queue_pointer"] = jnp.zeros((), jnp.int32)
        return variables

    def online(self, params, variables, x):
        inputs = {"params": params, "batch_stats": variables["batch_stats"]}
        return split_batch_norm_apply(self.net, inputs, x, self.config.method.bn_splits)

    def shuffled_target(self, variables, x, rng):
        """Keys of `x` from the momentum encoder, computed in shuffled split-BN groups."""
        target = variables["extra"]["target"]
        permutation = jax.random.permutation(rng, x.shape[0])
        (_, z), stats = split_batch_norm_apply(
            self.net, {"params": target["params"], "batch_stats": target["batch_stats"]},
            x[permutation], self.config.method.bn_splits, method="project")
        keys = jnp.zeros_like(z).at[permutation].set(z)
        return jax.lax.stop_gradient(losses.l2_normalize(keys)), stats

    def objective(self, params, variables, online, x, rng, step):
        m = self.config.method
        extra = variables["extra"]
        keys, target_stats = self.shuffled_target(variables, x, rng)
        q1, q2 = joint.halves(online["embeddings"])
        k1, k2 = joint.halves(keys)
        loss = losses.moco_infonce(q1, k2, extra["queue"], m.temperature)
        if m.symmetric:
            loss = loss + losses.moco_infonce(q2, k1, extra["queue"], m.temperature)
        queue, pointer = enqueue(extra["queue"], extra["queue_pointer"],
                                 keys if m.symmetric else k2)
        extra = dict(self.with_target_batch_stats(extra, target_stats), queue=queue,
                     queue_pointer=pointer)
        return loss, extra, {}


class MoCoV3(joint.JointEmbedding):

    uses_predictor = True
    uses_target = True
    defaults = dict(temperature=0.2, projector=dict(last_bn=True), predictor=dict(last_bn=True))

    def objective(self, params, variables, online, x, rng, step):
        target, target_stats = self.target(variables, x)
        q1, q2 = joint.halves(online["predictions"])
        k1, k2 = joint.halves(target["embeddings"])
        t = self.config.method.temperature
        loss = losses.moco_v3_contrastive(q1, k2, t) + losses.moco_v3_contrastive(q2, k1, t)
        return loss, self.with_target_batch_stats(variables["extra"], target_stats), {}
