"""Linear probe: multinomial logistic regression on frozen features.

The linear evaluation protocol of self-supervised learning (e.g. SimCLR, Chen
et al. 2020, arXiv:2002.05709, appendix B.5; the L-BFGS logistic regression of
CLIP, Radford et al. 2021, arXiv:2103.00020, appendix A.3): freeze the encoder,
fit a linear softmax classifier on its features, select the L2 penalty on a
validation split carved from the train set, refit on the whole train set and
report test accuracy.

Objective, on features standardised with the fit set's mean and std,
x_hat = (x - mu) / sigma:

    L(W, b) = 1/N sum_i CE(softmax(W^T x_hat_i + b), y_i) + wd * ||W||_F^2 / 2

The bias is not penalised. With sklearn's `LogisticRegression` objective
||W||^2 / 2 + C sum_i CE_i, the two minimisers coincide for C = 1 / (wd * N).

Optimiser: full-batch Adam with a cosine-decayed learning rate, a fixed number
of steps in one `jax.lax.scan`. `optax.lbfgs` reaches the optimum in fewer
steps, but its zoom line search is a `while_loop` that, vmapped over weight
decays and run on CPU, was 10-30x slower per step than Adam; on standardised
features 500 Adam steps reach sklearn's optimum to ~1e-4 in the objective.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax

from ssl_jax.evals.splits import stratified_split

# A feature whose train std is below this is constant: it is centred, not scaled.
_STD_EPS = 1e-6


class LinearClassifier(NamedTuple):
    """A fitted probe: standardisation statistics and the linear layer.

    logits(x) = ((x - mean) / std) @ kernel + bias
    """

    mean: jax.Array  # [D]
    std: jax.Array  # [D]
    kernel: jax.Array  # [D, C]
    bias: jax.Array  # [C]


def _logits(params: LinearClassifier, x: jax.Array) -> jax.Array:
    """((x - mean) / std) @ kernel + bias, `[N, C]`."""
    return ((x - params.mean) / params.std) @ params.kernel + params.bias


def _objective(
    weights: tuple[jax.Array, jax.Array], x_hat: jax.Array, y: jax.Array, weight_decay: jax.Array
) -> jax.Array:
    """Mean cross-entropy + weight_decay * ||kernel||^2 / 2 (bias unpenalised)."""
    kernel, bias = weights
    ce = optax.softmax_cross_entropy_with_integer_labels(x_hat @ kernel + bias, y).mean()
    return ce + 0.5 * weight_decay * jnp.sum(jnp.square(kernel))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_sweep(
    x: jax.Array,
    y: jax.Array,
    weight_decays: jax.Array,
    key: jax.Array,
    learning_rate: float,
    *,
    num_classes: int,
    steps: int,
) -> LinearClassifier:
    """Fit one probe per weight decay, vmapped: every leaf gets a leading `[W]` axis.

    Standardisation statistics come from `x` and are shared by all fits. The
    kernel starts at N(0, 0.01^2) drawn from `key`, the bias at 0.
    """
    mean = jnp.mean(x, axis=0)
    std = jnp.std(x, axis=0)
    std = jnp.where(std > _STD_EPS, std, 1.0)
    x_hat = (x - mean) / std
    init = (
        0.01 * jax.random.normal(key, (x.shape[1], num_classes), jnp.float32),
        jnp.zeros((num_classes,), jnp.float32),
    )
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    grad_fn = jax.grad(_objective)

    def fit_one(weight_decay: jax.Array) -> LinearClassifier:
        def step(carry, _):
            weights, opt_state = carry
            grads = grad_fn(weights, x_hat, y, weight_decay)
            updates, opt_state = opt.update(grads, opt_state, weights)
            return (optax.apply_updates(weights, updates), opt_state), None

        (weights, _), _ = jax.lax.scan(step, (init, opt.init(init)), length=steps)
        return LinearClassifier(mean, std, *weights)

    return jax.vmap(fit_one)(weight_decays)


@jax.jit
def _sweep_num_correct(params: LinearClassifier, x: jax.Array, y: jax.Array) -> jax.Array:
    """`[W]` counts of correct predictions on `(x, y)` of a batch of probes from `_fit_sweep`."""
    logits = jax.vmap(_logits, in_axes=(0, None))(params, x)
    return jnp.sum(jnp.argmax(logits, axis=-1) == y, axis=-1)


def _as_inputs(
    x: npt.ArrayLike, y: npt.ArrayLike, num_classes: int
) -> tuple[jax.Array, jax.Array]:
    """Features as float32, labels as int32, checking labels lie in [0, num_classes)."""
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def fit_linear_classifier(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    num_classes: int,
    weight_decay: float,
    steps: int = 500,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> LinearClassifier:
    """Fit a multinomial logistic regression on `(x, y)`; see the module docstring.

    Args:
      x: `[N, D]` features.
      y: `[N]` integer labels in `[0, num_classes)`.
      num_classes: number of classes C.
      weight_decay: wd of the penalty wd * ||W||^2 / 2.
      steps: full-batch Adam steps.
      learning_rate: peak Adam learning rate, cosine-decayed to 0.
      seed: seed of the kernel initialisation.

    Returns:
      The fitted `LinearClassifier`, standardisation included.
    """
    x, y = _as_inputs(x, y, num_classes)
    sweep = _fit_sweep(
        x, y, jnp.asarray([weight_decay], jnp.float32), jax.random.key(seed), learning_rate,
        num_classes=num_classes, steps=steps,
    )
    return jax.tree.map(lambda leaf: leaf[0], sweep)


@jax.jit
def predict(params: LinearClassifier, x: jax.Array) -> jax.Array:
    """`[N]` int32 labels argmax_c logits(x)_c."""
    return jnp.argmax(_logits(params, jnp.asarray(x, jnp.float32)), axis=-1).astype(jnp.int32)


def linear_probe(
    train_x: npt.ArrayLike,
    train_y: npt.ArrayLike,
    test_x: npt.ArrayLike,
    test_y: npt.ArrayLike,
    *,
    num_classes: int,
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
    val_fraction: float = 0.2,
    seed: int = 0,
    steps: int = 500,
    learning_rate: float = 0.1,
) -> dict:
    """Linear-probe test accuracy with the weight decay selected on a validation split.

    1. Split the train set with `stratified_split(train_y, val_fraction, seed)`.
    2. Fit every weight decay on the train part in one vmapped, jitted call.
    3. Keep the best validation accuracy; ties go to the larger weight decay.
    4. Refit on the full train set with it and measure test accuracy.

    The test set is used in step 4 only.

    Returns:
      `{"accuracy": test accuracy, "best_weight_decay": wd,
        "val_accuracy": {wd: validation accuracy}}`, accuracies in [0, 1].
    """
    train_x, train_y = _as_inputs(train_x, train_y, num_classes)
    test_x, test_y = _as_inputs(test_x, test_y, num_classes)
    fit_idx, val_idx = stratified_split(np.asarray(train_y), val_fraction, seed)
    sweep = _fit_sweep(
        train_x[fit_idx], train_y[fit_idx], jnp.asarray(weight_decays, jnp.float32),
        jax.random.key(seed), learning_rate, num_classes=num_classes, steps=steps,
    )
    val_correct = np.asarray(_sweep_num_correct(sweep, train_x[val_idx], train_y[val_idx]))
    val_accuracy = {
        float(wd): int(correct) / val_idx.size for wd, correct in zip(weight_decays, val_correct)
    }
    _, best_wd = max((acc, wd) for wd, acc in val_accuracy.items())
    params = fit_linear_classifier(
        train_x, train_y, num_classes=num_classes, weight_decay=best_wd,
        steps=steps, learning_rate=learning_rate, seed=seed,
    )
    accuracy = int(jnp.sum(predict(params, test_x) == test_y)) / test_y.shape[0]
    return {"accuracy": accuracy, "best_weight_decay": best_wd, "val_accuracy": val_accuracy}
