"""Auto-encoder and denoising auto-encoder: learn a code from which the image can be rebuilt.

Vincent, Larochelle, Bengio, Manzagol, "Extracting and Composing Robust Features
with Denoising Autoencoders", ICML 2008; Vincent et al., "Stacked Denoising
Autoencoders: Learning Useful Representations in a Deep Network with a Local
Denoising Criterion", JMLR 11, 2010. (The plain auto-encoder: Hinton &
Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks",
Science 2006.)

A view x of each image (`config.method.view`, a mild crop) is corrupted,
x~ ~ q(x~ | x), encoded to a code h = f(x~) (the backbone features) and decoded,
x^ = g(h); the loss compares the reconstruction with the CLEAN view:

    L = 1/(B H W C) sum_{b, i, j, c} (x^_bijc - n(x)_bijc)^2

where n(x) = (x - mean) / std is the normalised clean view (the network's own
input units, `config.input.mean/std`), i.e. the mean squared error over every
pixel of every image of the global batch (logged as `reconstruction_loss`; the
optimised loss adds the online probe's cross-entropy on the detached codes).
The corruption acts on the view in [0, 1] pixel units, before normalisation,
with a key from the step's rng:

    none              x~ = x                                ("autoencoder")
    gaussian          x~ = x + amount * N(0, I)             (not clipped to [0, 1])
    masking           each input dim is set to 0 with probability `amount`
    salt_and_pepper   each input dim is, with probability `amount`, set to 0 or 1
                      with equal chance

An input dim is one value of the `[H, W, C]` array (a channel of a pixel), as
in the paper's vectors. "denoising_autoencoder" defaults to masking noise with
`amount` 0.25 (the papers use 10-50%); "autoencoder" to no corruption. The
evaluation features (`features`) are the code of the uncorrupted image.

The decoder (`ssl_jax.models.decoders`) mirrors the backbone, so the backbone
must be one with a mirror: convnet or mlp. Its widths are `config.model.widths`.

Config (`config.method`): name, online_probe, view, corruption: kind (none |
gaussian | masking | salt_and_pepper) and amount (gaussian: the std in [0, 1]
pixel units, in (0, 1]; masking, salt_and_pepper: the fraction of input dims,
in (0, 1); ignored for none).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import diagnostics
from ssl_jax.data import augment
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.decoders import DECODERS, build_decoder

CORRUPTIONS = ("none", "gaussian", "masking", "salt_and_pepper")
DEFAULT_CORRUPTION = {"autoencoder": dict(kind="none", amount=0.0),
                      "denoising_autoencoder": dict(kind="masking", amount=0.25)}


def corrupt(rng: jax.Array, images: jax.Array, kind: str, amount: float) -> jax.Array:
    """q(x~ | x) of the module docstring, for float images in [0, 1] of any shape; every
    input dim draws independently. `kind` and `amount` are Python values (read at trace
    time)."""
    if kind == "none":
        return images
    if kind == "gaussian":
        return images + amount * jax.random.normal(rng, images.shape, images.dtype)
    if kind == "masking":
        return jnp.where(jax.random.bernoulli(rng, amount, images.shape), 0.0, images)
    if kind == "salt_and_pepper":
        hit_rng, value_rng = jax.random.split(rng)
        hit = jax.random.bernoulli(hit_rng, amount, images.shape)
        salt = jax.random.bernoulli(value_rng, 0.5, images.shape).astype(images.dtype)
        return jnp.where(hit, salt, images)
    raise ValueError(f"config.method.corruption.kind={kind!r}: expected one of {CORRUPTIONS}")


class AutoencoderNet(base.ProbedNet):
    """Backbone (encoder) -> decoder, plus an online linear probe on detached codes."""

    decoder: nn.Module

    def __call__(self, x, train: bool):
        h = self.backbone(x, train=train)
        return dict(features=h,
                    reconstruction=self.decoder(h, x.shape[1:], train=train).astype(jnp.float32),
                    probe_logits=self.probe_logits(h))


class Autoencoder(base.Method):
    """The method of both names, "autoencoder" and "denoising_autoencoder" (module docstring)."""

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        view = augment.crop_flip_view(image_size, crop_scale=(0.5, 1.0))
        return ml_collections.ConfigDict(dict(
            name=name, online_probe=True, view=view,
            corruption=dict(DEFAULT_CORRUPTION[name])))

    @classmethod
    def check_config(cls, config):
        corruption = config.method.corruption
        if corruption.kind not in CORRUPTIONS:
            raise ValueError(f"config.method.corruption.kind={corruption.kind!r}: expected one "
                             f"of {list(CORRUPTIONS)}")
        if corruption.kind == "gaussian" and not 0.0 < corruption.amount <= 1.0:
            raise ValueError(f"config.method.corruption.amount={corruption.amount}: the std of "
                             "the Gaussian noise in [0, 1] pixel units must be in (0, 1]")
        if corruption.kind in ("masking", "salt_and_pepper") and not 0.0 < corruption.amount < 1:
            raise ValueError(f"config.method.corruption.amount={corruption.amount}: the fraction "
                             f"of input dims that {corruption.kind} corrupts must be in (0, 1)")
        if config.model.name not in DECODERS:
            raise ValueError(f"config.model.name={config.model.name!r}: the auto-encoder's "
                             f"decoder mirrors only {sorted(DECODERS)}")
        if config.method.view.out_size != config.input.image_size:
            raise ValueError(f"config.method.view.out_size={config.method.view.out_size}: the "
                             "decoder reconstructs images of config.input.image_size="
                             f"{config.input.image_size}; set both to the same size")

    def build_net(self):
        return AutoencoderNet(backbone=build_backbone(self.config.model),
                              decoder=build_decoder(self.config.model),
                              num_classes=self.num_classes)

    def clean_and_corrupted(self, rng: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        """(clean, corrupted) network inputs, both normalised, from independent keys split
        from `rng`: the view, and its corruption made in [0, 1] pixel units."""
        view_rng, noise_rng = jax.random.split(rng)
        pixels = self.view_pixels(view_rng, batch, self.config.method.view)
        corruption = self.config.method.corruption
        noisy = corrupt(noise_rng, pixels, corruption.kind, corruption.amount)
        return self.normalize(pixels), self.normalize(noisy)

    def loss(self, params, variables, batch, rng, step):
        clean, noisy = self.clean_and_corrupted(rng, batch)
        out, batch_stats = self.apply(params, variables, noisy, train=True)
        reconstruction_loss = jnp.mean(jnp.square(out["reconstruction"] - clean))
        probe, probe_metrics = base.online_probe_loss(self.config, out["probe_logits"],
                                                      batch["label"])
        metrics = {"reconstruction_loss": reconstruction_loss, **probe_metrics,
                   **diagnostics.representation_metrics(out["features"], out["features"])}
        return reconstruction_loss + probe, (batch_stats, variables["extra"], metrics)
