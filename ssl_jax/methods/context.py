"""Context prediction: learn features by telling where a patch sits next to another one.

Doersch, Gupta, Efros, "Unsupervised Visual Representation Learning by Context
Prediction", ICCV 2015 (arXiv:1505.05192).

Each image of the batch is augmented once (`config.method.view`, as RotNet's
view). On the view lies a 3x3 grid of square cells of side p = `patch_size`,
neighbouring cells `gap` pixels apart, so the cell stride is s = p + gap. The
grid starts at a uniformly random position where it fits with room for the
jitter, and each of the two patches drawn from it moves by its own uniform
integer jitter in [-jitter, jitter] along each axis. The centre patch and one
of its 8 neighbours, chosen uniformly, form a pair; the label y in 0..7 is the
neighbour's grid step (row, col) in raster order, skipping the centre:

    0 (-1,-1)  1 (-1, 0)  2 (-1,+1)
    3 ( 0,-1)    centre   4 ( 0,+1)
    5 (+1,-1)  6 (+1, 0)  7 (+1,+1)

Both patches go through the same backbone f (a siamese network with shared
weights, late fusion); a head g on the concatenated features gives 8 logits:

    L = -1/N sum_i log softmax(g([f(centre_i), f(neighbour_i)]))_{y_i}

The grid fits the view when 3p + 2 gap + 2 jitter <= view size. Along the axis
of their offset, two neighbouring patches are at least gap - 2 jitter pixels
apart, so with gap > 2 jitter they never touch: the paper's gap and jitter
against the trivial cues of continuing lines and textures across the border.

Chromatic aberration, the paper's other shortcut (lenses shift the colour
channels relative to each other by an amount that depends on the position in
the frame), is countered by `channel_dropout` (colour images only): in every
patch one colour channel, chosen uniformly, is kept and the other two are
replaced by Gaussian noise with a standard deviation of `CHANNEL_NOISE_SCALE`
times the kept channel's (1/100 in the paper, recalled, not re-read) and mean
zero, i.e. the dataset's mean colour (the patches are already normalised). The
paper's random down- and up-sampling of patches against pixelation cues is not
done here; the images are already tiny.

Evaluation: `features()` is the backbone on the whole centre-cropped image (the
backbones end in global average pooling, so any input size works), not on
patches. Its BatchNorm running statistics come from patches only, as in the
paper's transfer of the patch network to whole images. The online linear probe
(class labels) and the representation diagnostics see exactly those features:
the backbone in eval mode on the whole augmented view, with stop-gradient, one
extra forward pass per step that changes neither the backbone nor its BatchNorm
statistics.

Config (`config.method`): patch_size, gap, jitter, channel_dropout, view,
head (hidden_dim, num_layers: the paper's fc7 + fc8 is 2), online_probe.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import diagnostics, losses
from ssl_jax.data import augment
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.heads import MLPHead

# Grid step (row, col) from the centre cell to the neighbour of each label, raster order.
NEIGHBOUR_STEPS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0),
                            (1, 1)], np.int32)
NUM_POSITIONS = len(NEIGHBOUR_STEPS)
COLOUR_CHANNELS = 3
CHANNEL_NOISE_SCALE = 0.01  # Std of the noise in dropped channels / std of the kept channel.


def grid_extent(patch_size: int, gap: int, jitter: int) -> int:
    """Side of the square that the 3x3 grid with its jitter needs: 3p + 2 gap + 2 jitter."""
    return 3 * patch_size + 2 * gap + 2 * jitter


def patch_pair_corners(rng: jax.Array, batch_size: int, height: int, width: int,
                       patch_size: int, gap: int, jitter: int
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top-left corners (row, col) of the centre and neighbour patches, int32 `[B, 2]`
    each, and the neighbour's position label `[B]` (module docstring), for B images of
    height x width. The same key gives the same pairs as `sample_patch_pairs`."""
    extent = grid_extent(patch_size, gap, jitter)
    if extent > min(height, width):
        raise ValueError(f"the 3x3 patch grid needs {extent} = 3*{patch_size} + 2*{gap} + "
                         f"2*{jitter} pixels (3*patch_size + 2*gap + 2*jitter), the images "
                         f"are {height}x{width}")
    label_key, origin_key, jitter_key = jax.random.split(rng, 3)
    labels = jax.random.randint(label_key, (batch_size,), 0, NUM_POSITIONS)
    # Top-left of the un-jittered top-left cell: anywhere that leaves `jitter` to every side.
    room = np.array([height, width]) - extent + 1
    origin = jitter + jax.random.randint(origin_key, (batch_size, 2), 0, room)
    shifts = jax.random.randint(jitter_key, (2, batch_size, 2), -jitter, jitter + 1)
    stride = patch_size + gap
    centre = origin + stride + shifts[0]
    neighbour = origin + stride * (1 + jnp.asarray(NEIGHBOUR_STEPS)[labels]) + shifts[1]
    return centre, neighbour, labels


def cut_patches(images: jax.Array, corners: jax.Array, patch_size: int) -> jax.Array:
    """`[B, H, W, C]` images, `[B, 2]` top-left corners -> `[B, p, p, C]` patches."""
    def cut(image, corner):
        return jax.lax.dynamic_slice(image, (corner[0], corner[1], 0),
                                     (patch_size, patch_size, image.shape[-1]))
    return jax.vmap(cut)(images, corners)


def sample_patch_pairs(rng: jax.Array, images: jax.Array, patch_size: int, gap: int,
                       jitter: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(centre, neighbour, label): one pair of `[B, p, p, C]` patches per image of
    `[B, H, W, C]` and the neighbour's position label `[B]` in 0..7."""
    batch_size, height, width, _ = images.shape
    centre, neighbour, labels = patch_pair_corners(rng, batch_size, height, width,
                                                   patch_size, gap, jitter)
    return (cut_patches(images, centre, patch_size), cut_patches(images, neighbour, patch_size),
            labels)


def drop_channels(rng: jax.Array, patches: jax.Array) -> jax.Array:
    """Keep one colour channel per patch of `[N, p, p, 3]`, chosen uniformly; replace the
    other two by Gaussian noise with CHANNEL_NOISE_SCALE times the kept channel's std."""
    keep_key, noise_key = jax.random.split(rng)
    num_patches, channels = patches.shape[0], patches.shape[-1]
    kept = jax.random.randint(keep_key, (num_patches,), 0, channels)
    keep = jax.nn.one_hot(kept, channels, dtype=patches.dtype)[:, None, None, :]
    kept_std = jnp.std(jnp.sum(patches * keep, axis=-1), axis=(1, 2))[:, None, None, None]
    noise = CHANNEL_NOISE_SCALE * kept_std * jax.random.normal(noise_key, patches.shape,
                                                                patches.dtype)
    return keep * patches + (1 - keep) * noise


class ContextNet(base.ProbedNet):
    """Siamese backbone -> position classifier on the concatenated pair features, plus an
    online linear probe on detached whole-image features (eval-mode backbone)."""

    head: nn.Module

    def __call__(self, centre, neighbour, whole, train: bool):
        # First, so that it reads the running statistics that `features()` has now.
        whole_features = jax.lax.stop_gradient(self.backbone(whole, train=False))
        patch_features = self.backbone(jnp.concatenate([centre, neighbour]), train=train)
        pair = jnp.concatenate(jnp.split(patch_features, 2), axis=-1)
        return dict(whole_features=whole_features, patch_features=patch_features,
                    position_logits=self.head(pair, train=train).astype(jnp.float32),
                    probe_logits=self.probe(whole_features))


class ContextPrediction(base.Method):

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        """The largest patches with jitter 1 and gap 3, so that patches never touch
        (gap > 2 jitter): 6 px on 28x28 MNIST, 8 px on 32x32 CIFAR; views under 11 px
        get gap 1 and no jitter."""
        view = augment.crop_flip_view(image_size, crop_scale=(0.5, 1.0))
        gap, jitter = (3, 1) if image_size >= grid_extent(1, 3, 1) else (1, 0)
        patch_size = (image_size - grid_extent(0, gap, jitter)) // 3
        return ml_collections.ConfigDict(dict(
            name=name, online_probe=True, view=view, patch_size=patch_size, gap=gap,
            jitter=jitter, channel_dropout=False, head=dict(hidden_dim=512, num_layers=2)))

    @classmethod
    def check_config(cls, config):
        m = config.method
        for field, minimum in (("patch_size", 1), ("gap", 0), ("jitter", 0)):
            if not isinstance(m[field], int) or m[field] < minimum:
                raise ValueError(f"config.method.{field}={m[field]!r}: must be an integer "
                                 f">= {minimum}")
        extent = grid_extent(m.patch_size, m.gap, m.jitter)
        if extent > m.view.out_size:
            raise ValueError(
                f"config.method: 3*patch_size + 2*gap + 2*jitter = 3*{m.patch_size} + "
                f"2*{m.gap} + 2*{m.jitter} = {extent} > config.method.view.out_size = "
                f"{m.view.out_size}: the 3x3 patch grid does not fit the view")
        channels = len(config.input.mean)
        if m.channel_dropout and channels != COLOUR_CHANNELS:
            raise ValueError(f"config.method.channel_dropout=True: needs colour images with "
                             f"{COLOUR_CHANNELS} channels, config.input.mean has {channels}")

    def build_net(self):
        head = self.config.method.head
        return ContextNet(
            backbone=build_backbone(self.config.model),
            head=MLPHead(hidden_dim=head.hidden_dim, out_dim=NUM_POSITIONS,
                         num_layers=head.num_layers),
            num_classes=self.num_classes)

    def pairs(self, rng: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array,
                                                          jax.Array]:
        """(centre, neighbour, whole view, label) of a raw batch: the network's inputs."""
        m = self.config.method
        view_key, patch_key, drop_key = jax.random.split(rng, 3)
        whole = self.view(view_key, batch, m.view)
        centre, neighbour, labels = sample_patch_pairs(patch_key, whole, m.patch_size, m.gap,
                                                       m.jitter)
        if m.channel_dropout:
            centre, neighbour = jnp.split(
                drop_channels(drop_key, jnp.concatenate([centre, neighbour])), 2)
        return centre, neighbour, whole, labels

    def init(self, rng, batch):
        whole = self.preprocess(self.inputs(batch))
        patch = whole[:, :self.config.method.patch_size, :self.config.method.patch_size]
        variables = self.net.init(rng, patch, patch, whole, train=False)
        return dict(params=variables["params"], batch_stats=variables.get("batch_stats", {}),
                    extra={})

    def loss(self, params, variables, batch, rng, step):
        centre, neighbour, whole, labels = self.pairs(rng, batch)
        out, batch_stats = self.apply(params, variables, centre, train=True,
                                      neighbour=neighbour, whole=whole)
        loss, accuracy = losses.classification_loss(out["position_logits"], labels)
        probe, probe_metrics = base.online_probe_loss(self.config, out["probe_logits"],
                                                      batch["label"])
        centre_features = out["patch_features"][:labels.shape[0]]
        metrics = {"context_loss": loss, "context_accuracy": accuracy, **probe_metrics,
                   **diagnostics.representation_metrics(out["whole_features"],
                                                        centre_features)}
        return loss + probe, (batch_stats, variables["extra"], metrics)
