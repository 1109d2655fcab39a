"""Losses against NumPy implementations of the papers' formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses


def nt_xent_reference(z1, z2, tau):
    """SimCLR eq. (1), written term by term: mean over the 2N anchors of l(i, j)."""
    u = np.concatenate([z1, z2]).astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    n2 = len(u)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sims = np.array([u[i] @ u[k] / tau for k in range(n2)])
        denominator = sum(np.exp(sims[k]) for k in range(n2) if k != i)
        total += -np.log(np.exp(sims[j]) / denominator)
    return total / n2


@pytest.mark.parametrize("n,d,tau", [(4, 3, 0.5), (16, 8, 0.1), (7, 32, 1.0)])
def test_nt_xent_matches_paper_formula(n, d, tau):
    rng = np.random.default_rng(n * d)
    z1 = rng.normal(size=(n, d)).astype(np.float32)
    z2 = rng.normal(size=(n, d)).astype(np.float32)
    got = float(losses.nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau))
    np.testing.assert_allclose(got, nt_xent_reference(z1, z2, tau), rtol=1e-5)


def test_nt_xent_is_scale_invariant_and_rewards_aligned_views():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(32, 16)).astype(np.float32)
    noise = rng.normal(size=z.shape).astype(np.float32)
    aligned = float(losses.nt_xent(z, z + 0.01 * noise, 0.2))
    random = float(losses.nt_xent(z, noise, 0.2))
    assert aligned < random
    np.testing.assert_allclose(float(losses.nt_xent(3 * z, z + 0.01 * noise, 0.2)), aligned,
                               rtol=1e-5)


def test_nt_xent_gradient_is_finite_with_identical_views():
    z = jax.random.normal(jax.random.key(0), (8, 4))
    grads = jax.grad(lambda a: losses.nt_xent(a, z, 0.1))(z)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_classification_loss_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=10)
    loss, accuracy = losses.classification_loss(jnp.asarray(logits), jnp.asarray(labels))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(float(loss), -log_probs[np.arange(10), labels].mean(), rtol=1e-5)
    assert float(accuracy) == np.mean(logits.argmax(1) == labels)
