"""I-JEPA: predict, in representation space, image blocks from a context block.

Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun, Ballas, "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture", CVPR 2023
(arXiv:2301.08243).

One augmented view x per image (a random resized crop of 30-100% of the area, no flips
and no colour changes) is cut into an H x W grid of patches, and `multiblock` draws M
target blocks B_1..B_M and a context block C (without the target patches):

    context encoder  s_x   = f(x restricted to C)                 the ViT on C's tokens only
    target encoder   s_y   = LN(f_bar(x))                         the EMA ViT on all N tokens;
                     LN = LayerNorm over the feature dimension without scale or offset
                     (eps 1e-5, torch's F.layer_norm), applied to every token of the full
                     image before the tokens of the blocks are gathered; stop-gradient
    predictor        s^_j  = g(s_x, pos(C), pos(B_j))             `MaskedTokenPredictor`, one
                     pass per block (the M blocks folded into the batch), output width = D

    L = 1/(B M) sum_i sum_j  1/(|B_ij| D) sum_{t in B_ij} sum_{d<D} rho(s^_ijtd - s_y,itd)

with the padding entries of the index lists left out of the sums (|B_ij| counts valid
tokens; every block of a step has the same size, so L is also the mean over all valid
elements, which is the official code's mean over its equal-length blocks), and

    smooth_l1  rho(u) = u^2 / 2 if |u| < 1 else |u| - 1/2     the official code
                                                            (`F.smooth_l1_loss`, beta 1)
    l2         rho(u) = u^2                                   the paper's loss (sec. 3) sums
                                                            ||s^ - s_y||^2 over a block's
                                                            tokens; here divided by |B_j| D.

Target: f_bar <- tau f_bar + (1 - tau) f after every step, tau linear 0.996 -> 1 over the
run (`config.method.ema`; the official schedule spans 1.25 runs, `ipe_scale`, so it ends
at 0.9992). Its state is the joint-embedding methods' (`joint.JointEmbedding`:
`extra["target"]` holds the backbone's params, copied at init), never differentiated.

Evaluation: `features()` are the TARGET encoder's mean-pooled tokens of the whole image,
as in the official evaluation; the online probe (stop-gradient) trains on the
same features of the augmented view. The fine-tune stage starts from the same target
encoder (`backbone_variables`). Diagnostics: RankMe of those target features ('features') and of
the context encoder's mean-pooled context tokens ('embeddings').

Config (`config.method`): view, masks (`multiblock`), predictor (hidden_dim, depth; the
heads are the encoder's, as in the official predictor), loss, ema, online_probe.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import diagnostics, ema
from ssl_jax.data import augment
from ssl_jax.methods import base, joint, multiblock
from ssl_jax.models import build_backbone
from ssl_jax.models.token_predictor import MaskedTokenPredictor
from ssl_jax.models.vit import ViT

LOSSES = ("smooth_l1", "l2")
TARGET_NORM_EPS = 1e-5  # torch's F.layer_norm default, as the official target.


def patch_grid(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(rows, cols) of the patch grid of a `config.input.image_size` view."""
    side = config.input.image_size // build_backbone(config.model).patch_size
    return side, side


def layer_norm_without_affine(x: jax.Array, eps: float = TARGET_NORM_EPS) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over the last axis (biased variance), float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=-1, keepdims=True) + eps)


def gather_blocks(tokens: jax.Array, block_idx: jax.Array) -> jax.Array:
    """tokens `[B, N, D]`, indices `[B, M, L]` -> the blocks' tokens `[B, M, L, D]`."""
    return jnp.take_along_axis(tokens[:, None], block_idx[..., None], axis=2)


def prediction_loss(predictions: jax.Array, targets: jax.Array, valid: jax.Array,
                    kind: str) -> jax.Array:
    """The loss L of the module docstring: `[B, M, L, D]` predictions and targets, `[B, M, L]`
    validity of the tokens; per block the mean over its valid tokens and the feature
    dimension, then the mean over blocks and images."""
    error = predictions.astype(jnp.float32) - targets.astype(jnp.float32)
    if kind == "smooth_l1":
        per_token = jnp.mean(optax.huber_loss(error, delta=1.0), axis=-1)  # = smooth L1, beta 1
    elif kind == "l2":
        per_token = jnp.mean(jnp.square(error), axis=-1)
    else:
        raise ValueError(f"config.method.loss={kind!r}: expected one of {LOSSES}")
    weights = valid.astype(jnp.float32)
    per_block = jnp.sum(per_token * weights, axis=-1) / jnp.maximum(jnp.sum(weights, -1), 1.0)
    return jnp.mean(per_block)


class IJEPANet(base.ProbedNet):
    """Context encoder (the backbone on the context tokens) -> predictor of each target
    block, plus an online linear probe on given (target) features."""

    predictor: nn.Module

    def tokens(self, x, train: bool):
        """(mean-pooled features, every token) of the full image: the target encoder."""
        return self.backbone(x, train=train, return_tokens=True)

    def __call__(self, x, masks: dict, target_features, train: bool):
        context_features, context = self.backbone(
            x, train=train, return_tokens=True, keep=masks["context_idx"],
            keep_valid=masks["context_valid"])
        batch, blocks, length = masks["target_idx"].shape

        def fold(a):  # [B, ...] -> [B M, ...], the copies of example i in rows iM..iM+M-1.
            return jnp.repeat(a, blocks, axis=0)

        predictions = self.predictor(
            fold(context), fold(masks["context_idx"]),
            masks["target_idx"].reshape(batch * blocks, length), fold(masks["context_valid"]),
            masks["target_valid"].reshape(batch * blocks, length))
        return dict(context_features=context_features,
                    predictions=predictions.reshape(batch, blocks, length, -1),
                    probe_logits=self.probe_logits(target_features))


class IJEPA(base.Method):

    # The joint-embedding methods' EMA target, used as is: `extra["target"]` is the
    # backbone part of params/batch_stats, moved toward the context encoder after a step.
    uses_target = True
    target_subset = staticmethod(joint.JointEmbedding.target_subset)
    ema_decay = joint.JointEmbedding.ema_decay
    after_step = joint.JointEmbedding.after_step

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        view = augment.crop_flip_view(image_size, crop_scale=(0.3, 1.0), flip_prob=0.0)
        return ml_collections.ConfigDict(dict(
            name=name, online_probe=True, view=view,
            masks=dict(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                       context_scale=(0.85, 1.0), min_context=10),
            predictor=dict(hidden_dim=96, depth=4),
            loss="smooth_l1",
            ema=dict(base=0.996, final=1.0, schedule="linear")))

    @classmethod
    def check_config(cls, config):
        backbone = build_backbone(config.model)
        if not isinstance(backbone, ViT):
            raise ValueError(f"config.model.name={config.model.name!r}: I-JEPA needs a ViT "
                             "backbone (vit, vit_ti, vit_s, vit_b)")
        if backbone.pool != "gap":
            raise ValueError(f"config.model.pool={config.model.pool!r}: I-JEPA has no CLS "
                             "token; use 'gap'")
        size = config.input.image_size  # Divisible by the patch size: models.check_config.
        m = config.method
        if m.view.out_size != size:
            raise ValueError(f"config.method.view.out_size={m.view.out_size}: must equal "
                             f"config.input.image_size={size} (one patch grid)")
        multiblock.check(m.masks, patch_grid(config))
        if m.loss not in LOSSES:
            raise ValueError(f"config.method.loss={m.loss!r}: expected one of {LOSSES}")
        width = m.predictor.hidden_dim
        if width <= 0 or width % 4 or width % backbone.num_heads:
            raise ValueError(f"config.method.predictor.hidden_dim={width}: must be a positive "
                             f"multiple of 4 and of the encoder's {backbone.num_heads} heads")
        if m.predictor.depth < 1:
            raise ValueError(f"config.method.predictor.depth={m.predictor.depth}: must be >= 1")
        ema.check(m.ema)

    def build_net(self):
        backbone = build_backbone(self.config.model)
        predictor = self.config.method.predictor
        return IJEPANet(
            backbone=backbone,
            predictor=MaskedTokenPredictor(
                grid=patch_grid(self.config),
                width=predictor.hidden_dim, depth=predictor.depth,
                num_heads=backbone.num_heads, out_dim=backbone.width, dtype=backbone.dtype),
            num_classes=self.num_classes)

    def sample_masks(self, rng: jax.Array, batch_size: int) -> dict:
        return multiblock.sample_multiblock(rng, batch_size, patch_grid(self.config),
                                            self.config.method.masks)

    def init(self, rng, batch):
        x = self.preprocess(self.inputs(batch))
        mask_rng, init_rng = jax.random.split(rng)
        features = jnp.zeros((x.shape[0], self.net.backbone.width), jnp.float32)
        params = self.net.init(init_rng, x, self.sample_masks(mask_rng, x.shape[0]), features,
                               train=False)["params"]
        variables = dict(params=params, batch_stats={}, extra={})
        variables["extra"]["target"] = self.target_subset(variables)
        return variables

    def target(self, variables, x: jax.Array, target_idx: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
        """The target encoder on the full images: (mean-pooled features `[B, D]`, the
        LayerNorm'ed tokens of the target blocks `[B, M, L_t, D]`), detached."""
        features, tokens = self.net.apply({"params": variables["extra"]["target"]["params"]},
                                          x, train=True, method="tokens")
        targets = gather_blocks(layer_norm_without_affine(tokens), target_idx)
        return jax.lax.stop_gradient((features.astype(jnp.float32), targets))

    def objective(self, params, variables, x: jax.Array, masks: dict, labels: jax.Array
                  ) -> tuple[jax.Array, dict]:
        """(I-JEPA loss + online-probe loss, metrics) of the view `x` under `masks`."""
        target_features, targets = self.target(variables, x, masks["target_idx"])
        out, _ = self.apply(params, variables, x, train=True, masks=masks,
                            target_features=target_features)
        loss = prediction_loss(out["predictions"], targets, masks["target_valid"],
                               self.config.method.loss)
        probe, probe_metrics = base.online_probe_loss(self.config, out["probe_logits"], labels)
        metrics = {"ijepa_loss": loss, **probe_metrics,
                   "context_patches": jnp.mean(jnp.sum(masks["context_valid"], axis=-1)),
                   "target_block_patches": jnp.mean(jnp.sum(masks["target_valid"], axis=-1)),
                   **diagnostics.representation_metrics(target_features,
                                                        out["context_features"])}
        return loss + probe, metrics

    def loss(self, params, variables, batch, rng, step):
        view_rng, mask_rng = jax.random.split(rng)
        x = self.view(view_rng, batch, self.config.method.view)
        masks = self.sample_masks(mask_rng, x.shape[0])
        loss, metrics = self.objective(params, variables, x, masks, batch["label"])
        metrics["ema_decay"] = self.ema_decay(step)
        return loss, (variables["batch_stats"], variables["extra"], metrics)

    def backbone_variables(self, variables):
        """Fine-tuning starts from the target encoder, the one the evaluations use."""
        return {"params": variables["extra"]["target"]["params"]["backbone"], "batch_stats": {}}

    def features(self, variables, images):
        """The target encoder's mean-pooled tokens of the whole image (module docstring)."""
        out = self.net.apply({"params": variables["extra"]["target"]["params"]},
                             self.preprocess(images), train=False, method="embed")
        return out.astype(jnp.float32)
