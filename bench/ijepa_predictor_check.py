r"""Does a trained I-JEPA predictor use its context? Three losses on the same target blocks.

    python bench/ijepa_predictor_check.py --dataset cifar10 --workdir runs/vit_cifar10 \
        --methods ijepa --seeds 0 --overrides "<the overrides of the methods_table run>"

Takes the flags of `bench/methods_table.py` and reads the pretraining checkpoint of its run
`WORKDIR/<method>/seed_<seed>` (first method and seed). On whole training images
(uncropped), with masks drawn as in training, it scores with the training loss
(`ijepa.prediction_loss`, the config's smooth L1 or L2) against the targets
LN(f_bar(x)) of the target encoder:

  predictor         the trained predictor given image i's context tokens;
  other context     the same predictor and masks, given image i+1's context tokens
                    (the batch rolled by one) while it predicts image i's targets;
  position only     every target token predicted by the mean target token at its grid
                    position, averaged over `--images` other training images.

A predictor that beats "position only" has learnt something about the image; "other
context" near "predictor" means the context hardly matters. Also printed: the rms
change of the predictions when the context changes, against the rms spread of the
targets around their position means.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import methods_table  # Its flags (this script takes them) and its config builder.
from ssl_jax import stages
from ssl_jax.data import sources
from ssl_jax.methods import ijepa

_IMAGES = flags.DEFINE_integer("images", 1024, "Images for the position means, and as many "
                               "other ones for the scores.")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Images per forward pass.")
FLAGS = flags.FLAGS


def target_tokens(method, variables, x):
    """LN'ed target-encoder tokens of the whole images `[B, N, D]`, float32."""
    _, tokens = method.net.apply({"params": variables["extra"]["target"]["params"]}, x,
                                 train=False, method="tokens")
    return ijepa.layer_norm_without_affine(tokens)


def chunk_scores(method, variables, x, position_mean, rng):
    """Sums over one chunk: the three losses (times the chunk size), the squared change of
    the predictions with another image's context and the squared target spread (with their
    element counts)."""
    masks = method.sample_masks(rng, x.shape[0])
    tokens = target_tokens(method, variables, x)
    targets = ijepa.gather_blocks(tokens, masks["target_idx"])
    features = jnp.zeros((x.shape[0], method.net.backbone.width), jnp.float32)

    def predict(images):
        out, _ = method.apply(variables["params"], variables, images, train=False, masks=masks,
                              target_features=features)
        return out["predictions"].astype(jnp.float32)

    own, other = predict(x), predict(jnp.roll(x, 1, axis=0))
    by_position = ijepa.gather_blocks(
        jnp.broadcast_to(position_mean, tokens.shape), masks["target_idx"])
    kind, valid = method.config.method.loss, masks["target_valid"]
    losses = [ijepa.prediction_loss(p, targets, valid, kind) for p in (own, other, by_position)]
    weight = valid[..., None].astype(jnp.float32)
    count = jnp.sum(weight) * targets.shape[-1]
    return (jnp.stack(losses) * x.shape[0], jnp.sum(weight * (own - other) ** 2),
            jnp.sum(weight * (targets - by_position) ** 2), count)


def main(argv):
    del argv
    method_name, seed = FLAGS.methods[0], int(FLAGS.seeds[0])
    overrides = methods_table.parse_overrides(FLAGS.overrides)
    config = methods_table.method_config(method_name, seed, overrides, baselines=False)
    workdir = pathlib.Path(FLAGS.workdir) / method_name / f"seed_{seed}"
    dataset = sources.load(config.input)
    run, variables = stages.load_pretrained(config, workdir, dataset)
    method, n, chunk = run.method, _IMAGES.value, _CHUNK.value
    if len(dataset.train_inputs) < 2 * n:
        raise ValueError(f"--images={n}: the training split has only "
                         f"{len(dataset.train_inputs)} images, fewer than 2 x {n}")
    images = jnp.asarray(dataset.train_inputs[:2 * n])
    preprocess = jax.jit(method.preprocess)
    tokens = jax.jit(lambda x: target_tokens(method, variables, x))
    position_mean = sum(jnp.sum(tokens(preprocess(images[i:i + chunk])), axis=0)
                        for i in range(0, n, chunk)) / n
    score = jax.jit(lambda x, rng: chunk_scores(method, variables, x, position_mean, rng))
    totals = None
    for index, start in enumerate(range(n, 2 * n, chunk)):
        part = score(preprocess(images[start:start + chunk]),
                     jax.random.fold_in(jax.random.key(seed), index))
        totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
    losses, change, spread, count = jax.device_get(totals)
    losses = losses / n
    print(f"{workdir}: {config.method.loss} loss on {n} training images, target blocks "
          "drawn as in training")
    print("| predictor | other image's context | position only |\n|---|---|---|")
    print("| " + " | ".join(f"{v:.4f}" for v in losses) + " |")
    print(f"rms change of the predictions with another image's context: "
          f"{np.sqrt(change / count):.3f}; rms spread of the targets around their position "
          f"means: {np.sqrt(spread / count):.3f}")


if __name__ == "__main__":
    app.run(main)
