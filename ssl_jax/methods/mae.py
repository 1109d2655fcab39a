"""MAE: learn a ViT by reconstructing the pixels of randomly masked patches.

He, Chen, Xie, Li, Dollár, Girshick, "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022 (arXiv:2111.06377).

A view x of each image (`config.method.view`: random-resized crop of 20-100% of
the area and a horizontal flip, the paper's only augmentations) is cut into the
N patches of its p x p grid, raster order. Per example, a uniformly random
subset of K = int(N (1 - mask_ratio)) patches stays visible (`random_masking`:
the first K of the argsort of uniform noise, as the paper); the other M = N - K
are masked. K is a Python int, so every step has the same shapes and compiles once.

    encoder    t = ViT(x, keep=visible)           the backbone on the K visible patches
    decoder    y = D(t, visible, masked)          `MaskedTokenPredictor`: the visible
                                                  patch tokens, plus a shared mask token at
                                                  each masked position, fixed 2-D sin-cos
                                                  positions -> p*p*C pixels per masked patch
    target     T = patchify(x)                    the normalised view, `[B, N, p*p*C]`
    norm_pix   T <- (T - mean(T)) / sqrt(var(T) + 1e-6)   per patch, var with ddof=1
    loss       L = sum_{b,n} m_bn mean_j (Y_bnj - T_bnj)^2 / sum_{b,n} m_bn

where m is 1 at the masked patches (the loss ignores the visible ones) and Y
holds the decoder's predictions at the masked positions. `norm_pix_loss`
standardises each target patch by its own statistics (the paper's better
variant, Table 1c); the variance is the unbiased one (ddof=1) as PyTorch's
`.var()` in the official code. The decoder sees the encoder's patch tokens only
(the official decoder also carries the CLS token, which has no position and is
never a target), so a CLS token would get no gradient from the loss and its
output would be an untrained summary: the backbone must pool the patch tokens
(`config.model.pool='gap'`, as MAE's fine-tuning does).

The visible and masked indices are in the random order of the argsort, not
sorted: the encoder and the decoder are permutation-equivariant once the
position embeddings are added, so the order changes nothing.

Monitoring: the online linear probe (class labels) and the representation
diagnostics use the pooled encoding of the VISIBLE patches, under stop-gradient
(free: that pass is needed anyway), so they understate what `features()` gives
the evaluations: the encoder on ALL patches, unmasked, pooled.

Config (`config.method`): name, online_probe, view, mask_ratio, norm_pix_loss,
decoder (width, depth, num_heads). The backbone must be a ViT (`config.model`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import diagnostics
from ssl_jax.data import augment
from ssl_jax.methods import base
from ssl_jax.models import DTYPES, build_backbone
from ssl_jax.models.token_predictor import MaskedTokenPredictor

VIT_BACKBONES = ("vit", "vit_ti", "vit_s", "vit_b")
NORM_PIX_EPS = 1e-6


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """K = int(N (1 - mask_ratio)), the patches left visible (the official `len_keep`)."""
    return int(num_patches * (1 - mask_ratio))


def random_masking(rng: jax.Array, batch: int, num_patches: int, mask_ratio: float
                   ) -> tuple[jax.Array, jax.Array]:
    """Per-example uniform random masks: (visible `[B, K]`, masked `[B, N - K]`) int32 patch
    indices, together a permutation of 0..N-1 in each row (in random, unsorted order)."""
    order = jnp.argsort(jax.random.uniform(rng, (batch, num_patches)), axis=1).astype(jnp.int32)
    keep = num_visible(num_patches, mask_ratio)
    return order[:, :keep], order[:, keep:]


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """`[B, H, W, C]` -> `[B, N, p*p*C]`: patches in raster order (the ViT's token order),
    each flattened as (row in patch, column in patch, channel)."""
    b, h, w, c = images.shape
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def normalize_patches(patches: jax.Array, eps: float = NORM_PIX_EPS) -> jax.Array:
    """MAE's norm_pix target: each patch (last axis) minus its mean, over sqrt(its unbiased
    variance + eps)."""
    mean = jnp.mean(patches, axis=-1, keepdims=True)
    var = jnp.var(patches, axis=-1, ddof=1, keepdims=True)
    return (patches - mean) / jnp.sqrt(var + eps)


def masked_patch_loss(predictions: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over pixels of the squared error of each patch, averaged over the patches where
    `mask` `[B, N]` is 1: predictions and targets `[B, N, P]`; visible entries do not count."""
    per_patch = jnp.mean(jnp.square(predictions - targets), axis=-1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)


class MAENet(base.ProbedNet):
    """ViT encoder on the visible patches -> decoder at the masked ones; an online linear
    probe on the detached pooled encoding."""

    decoder: nn.Module

    def __call__(self, x, visible: jax.Array, masked: jax.Array, train: bool):
        pooled, tokens = self.backbone(x, train=train, return_tokens=True, keep=visible)
        return dict(features=pooled, predictions=self.decoder(tokens, visible, masked),
                    probe_logits=self.probe_logits(pooled))


class MAE(base.Method):

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        """The paper's pretraining setting: mask 75%, norm_pix, decoder 512 wide, 8 deep,
        16 heads; crops of 20-100% + flips, nothing else."""
        view = augment.crop_flip_view(image_size, crop_scale=(0.2, 1.0))
        return ml_collections.ConfigDict(dict(
            name=name, online_probe=True, view=view, mask_ratio=0.75, norm_pix_loss=True,
            decoder=dict(width=512, depth=8, num_heads=16)))

    @classmethod
    def check_config(cls, config):
        m, model = config.method, config.model
        if model.name not in VIT_BACKBONES:
            raise ValueError(f"config.model.name={model.name!r}: MAE masks the patches of a "
                             f"ViT; expected one of {list(VIT_BACKBONES)}")
        if model.pool != "gap":
            raise ValueError(f"config.model.pool={model.pool!r}: MAE's decoder reads the patch "
                             "tokens only, so a CLS token would never be trained; use 'gap'")
        p = model.patch_size  # Divides the image sizes: models.check_config.
        if m.view.out_size != config.input.image_size:
            raise ValueError(f"config.method.view.out_size={m.view.out_size}: must equal "
                             f"config.input.image_size={config.input.image_size} (the ViT's "
                             "patch grid is the same in training and evaluation)")
        num_patches = (m.view.out_size // p) ** 2
        keep = num_visible(num_patches, m.mask_ratio)
        if not 1 <= keep < num_patches:
            raise ValueError(f"config.method.mask_ratio={m.mask_ratio}: leaves {keep} of the "
                             f"{num_patches} patches visible; need at least 1 visible and 1 "
                             "masked")
        pixels = p * p * len(config.input.mean)
        if m.norm_pix_loss and pixels < 2:
            raise ValueError(f"config.method.norm_pix_loss=True: a patch of {pixels} value has "
                             "no unbiased variance; use config.model.patch_size >= 2")
        decoder = m.decoder
        if decoder.width % 4 or decoder.width % decoder.num_heads:
            raise ValueError(f"config.method.decoder.width={decoder.width}: must be divisible "
                             f"by 4 (sin-cos positions) and by config.method.decoder.num_heads="
                             f"{decoder.num_heads}")

    @property
    def patch_size(self) -> int:
        return self.config.model.patch_size

    @property
    def grid(self) -> int:
        return self.config.method.view.out_size // self.patch_size

    def build_net(self):
        decoder = self.config.method.decoder
        channels = len(self.config.input.mean)
        return MAENet(
            backbone=build_backbone(self.config.model),
            decoder=MaskedTokenPredictor(
                grid=(self.grid, self.grid), width=decoder.width, depth=decoder.depth,
                num_heads=decoder.num_heads, out_dim=self.patch_size ** 2 * channels,
                dtype=DTYPES[self.config.model.dtype]),
            num_classes=self.num_classes)

    def masks(self, rng: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """(visible, masked) patch indices of a batch of views (`random_masking`)."""
        return random_masking(rng, batch_size, self.grid ** 2, self.config.method.mask_ratio)

    def init(self, rng, batch):
        x = self.preprocess(self.inputs(batch))
        visible, masked = self.masks(rng, x.shape[0])
        variables = self.net.init(rng, x, visible, masked, train=False)
        return dict(params=variables["params"], batch_stats=variables.get("batch_stats", {}),
                    extra={})

    def loss(self, params, variables, batch, rng, step):
        view_rng, mask_rng = jax.random.split(rng)
        x = self.view(view_rng, batch, self.config.method.view)
        visible, masked = self.masks(mask_rng, x.shape[0])
        out, batch_stats = self.apply(params, variables, x, train=True, visible=visible,
                                      masked=masked)
        targets = patchify(x, self.patch_size)
        if self.config.method.norm_pix_loss:
            targets = normalize_patches(targets)
        rows = jnp.arange(x.shape[0])[:, None]
        predictions = jnp.zeros_like(targets).at[rows, masked].set(out["predictions"])
        mask = jnp.zeros(targets.shape[:2], jnp.float32).at[rows, masked].set(1.0)
        mae_loss = masked_patch_loss(predictions, targets, mask)
        probe, probe_metrics = base.online_probe_loss(self.config, out["probe_logits"],
                                                      batch["label"])
        metrics = {"mae_loss": mae_loss, **probe_metrics,
                   **diagnostics.representation_metrics(out["features"], out["features"])}
        return mae_loss + probe, (batch_stats, variables["extra"], metrics)
