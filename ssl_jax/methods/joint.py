"""What the joint-embedding methods share: two views, one Siamese network, a target.

SimCLR, MoCo, BYOL, SimSiam, DirectPred, Barlow Twins and VICReg all embed two
augmented views of each image with the same backbone f and projector g, and
differ in the objective on the embeddings and in what sits on top:

    online   x -> h = f(x) -> z = g(h) [-> p = q(z), a predictor]
    target   x -> f_t(x) -> g_t(.)      an EMA of (f, g), never differentiated
             (BYOL, MoCo, DirectPred), updated after each optimizer step

A subclass sets `uses_predictor` / `uses_target` and writes `objective`, which
sees the online outputs of both views (the views are stacked: the first half of
every array is view 1, the second half view 2) and may run the target. The base
adds the online linear probe (on stop_gradient(h)) and the representation
diagnostics (`ssl_jax.diagnostics`) to every method's metrics.

Views: `config.method.view` is the augmentation of both views; `method.per_view`
makes them asymmetric, each field a pair (view 1, view 2) that replaces the
view's value, e.g. BYOL's `blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2)`.

Target state lives in `variables["extra"]["target"]` (`params` and
`batch_stats` of the backbone and projector), initialised as a copy of the
online network (MoCo's practice; BYOL reports no difference from an independent
init). The target runs in train mode and keeps its own BatchNorm statistics,
as in BYOL. Its decay follows `config.method.ema` (`ssl_jax.ema`).

Config (`config.method`): projector (hidden_dim, out_dim, num_layers, last_bn),
predictor (hidden_dim, num_layers, last_bn; its output has the projector's
width), view, per_view, ema, online_probe, and the method's own fields.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import diagnostics, ema
from ssl_jax.data import augment
from ssl_jax.methods import base
from ssl_jax.models import build_backbone
from ssl_jax.models.heads import MLPHead

TARGET_MODULES = ("backbone", "projector")


class SiameseNet(base.ProbedNet):
    """Backbone -> projector [-> predictor], plus an online linear probe on detached features."""

    projector: nn.Module
    predictor: nn.Module | None

    def project(self, x, train: bool):
        """(h, z): backbone features and projector embeddings (what the target computes)."""
        h = self.backbone(x, train=train)
        return h, self.projector(h, train=train)

    def __call__(self, x, train: bool):
        h, z = self.project(x, train)
        p = z if self.predictor is None else self.predictor(z, train=train)
        return dict(features=h, embeddings=z, predictions=p,
                    probe_logits=self.probe_logits(h))


def mlp_head(head: ml_collections.ConfigDict, out_dim: int) -> MLPHead:
    return MLPHead(hidden_dim=head.hidden_dim, out_dim=out_dim, num_layers=head.num_layers,
                   last_bn=head.last_bn)


def halves(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(view 1, view 2) of an array whose rows stack the two views."""
    return tuple(jnp.split(x, 2))


def swap_halves(x: jax.Array) -> jax.Array:
    """[a; b] -> [b; a]: pairs every view with the other view of its image."""
    a, b = halves(x)
    return jnp.concatenate([b, a])


class JointEmbedding(base.Method):
    """Base of the two-view methods (module docstring)."""

    uses_predictor = False
    uses_target = False
    defaults: dict = {}  # The method's own `config.method` fields and changed defaults.

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        """Every `config.method` field of this method with its default."""
        config = ml_collections.ConfigDict(dict(
            name=name, online_probe=True,
            projector=dict(hidden_dim=512, out_dim=128, num_layers=2, last_bn=False),
            view=augment.simclr_view(image_size, jitter_strength=0.5, blur_prob=0.0),
            per_view=ml_collections.ConfigDict()))
        if cls.uses_predictor:
            config.predictor = dict(hidden_dim=512, num_layers=2, last_bn=False)
        if cls.uses_target:
            config.ema = dict(base=0.99, final=1.0, schedule="cosine")
        config.update(cls.defaults)
        return config

    def build_net(self):
        m = self.config.method
        predictor = mlp_head(m.predictor, m.projector.out_dim) if self.uses_predictor else None
        return SiameseNet(backbone=build_backbone(self.config.model),
                          projector=mlp_head(m.projector, m.projector.out_dim),
                          predictor=predictor, num_classes=self.num_classes)

    @classmethod
    def check_config(cls, config):
        m = config.method
        for field, values in m.per_view.items():
            if field not in m.view:
                raise ValueError(f"config.method.per_view.{field}: not a field of "
                                 f"config.method.view (expected one of {sorted(m.view)})")
            if len(values) != 2:
                raise ValueError(f"config.method.per_view.{field}={values!r}: expected a pair "
                                 "(view 1, view 2)")
        if cls.uses_target:
            ema.check(m.ema)

    # -- state --

    def init(self, rng, batch):
        variables = super().init(rng, batch)
        if self.uses_target:
            variables["extra"]["target"] = self.target_subset(variables)
        return variables

    @staticmethod
    def target_subset(variables) -> dict:
        """The backbone and projector parts of `params` and `batch_stats`."""
        return {kind: {k: v for k, v in variables[kind].items() if k in TARGET_MODULES}
                for kind in ("params", "batch_stats")}

    def ema_decay(self, step: jax.Array) -> jax.Array:
        return ema.decay(self.config.method.ema, step, self.total_steps)

    def after_step(self, variables, step):
        """Target <- EMA of the online backbone + projector (decay at `step`)."""
        if not self.uses_target:
            return variables
        target = variables["extra"]["target"]
        online = self.target_subset(variables)["params"]
        new_target = dict(target, params=ema.update(target["params"], online,
                                                    self.ema_decay(step)))
        return dict(variables, extra=dict(variables["extra"], target=new_target))

    # -- forward passes --

    def view_config(self, index: int) -> ml_collections.ConfigDict:
        """The augmentation of view `index`: `method.view` with `method.per_view` applied."""
        view = self.config.method.view
        per_view = self.config.method.per_view
        if not per_view:
            return view
        view = ml_collections.ConfigDict(view.to_dict())
        view.update({field: values[index] for field, values in per_view.items()})
        return view

    def two_views(self, rng: jax.Array, batch: dict) -> jax.Array:
        """Both augmented views of the batch, stacked: `[2B, S, S, C]`."""
        rngs = jax.random.split(rng, 2)
        return jnp.concatenate([self.view(rngs[i], batch, self.view_config(i), i)
                                for i in range(2)])

    def online(self, params, variables, x: jax.Array) -> tuple[dict, dict]:
        """Online outputs (`SiameseNet.__call__`) of `x` in train mode, new BatchNorm statistics."""
        return self.apply(params, variables, x, train=True)

    def target(self, variables, x: jax.Array) -> tuple[dict, dict]:
        """Target (h, z) of `x` in train mode, detached, and its new BatchNorm statistics."""
        target = variables["extra"]["target"]
        (h, z), updates = self.net.apply(
            {"params": target["params"], "batch_stats": target["batch_stats"]}, x, train=True,
            method="project", mutable=["batch_stats"])
        return (jax.lax.stop_gradient(dict(features=h, embeddings=z)),
                updates.get("batch_stats", {}))

    @staticmethod
    def with_target_batch_stats(extra: dict, batch_stats: dict) -> dict:
        return dict(extra, target=dict(extra["target"], batch_stats=batch_stats))

    # -- the loss --

    def objective(self, params, variables, online: dict, x: jax.Array, rng: jax.Array,
                  step: jax.Array) -> tuple[jax.Array, dict, dict]:
        """The method's loss on the online outputs of both views: (loss, extra, metrics)."""
        raise NotImplementedError

    def loss(self, params, variables, batch, rng, step):
        view_rng, objective_rng = jax.random.split(rng)
        x = self.two_views(view_rng, batch)
        online, batch_stats = self.online(params, variables, x)
        loss, extra, metrics = self.objective(params, variables, online, x, objective_rng, step)
        probe, probe_metrics = base.online_probe_loss(self.config, online["probe_logits"],
                                                 batch["label"])
        metrics = {f"{self.config.method.name}_loss": loss, **metrics, **probe_metrics,
                   **diagnostics.representation_metrics(online["features"],
                                                        online["embeddings"])}
        if self.uses_target:
            metrics["ema_decay"] = self.ema_decay(step)
        return loss + probe, (batch_stats, extra, metrics)
