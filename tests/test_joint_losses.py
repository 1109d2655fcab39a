"""Joint-embedding losses (BYOL, SimSiam, Barlow Twins, VICReg, MoCo v2/v3) against
float64 NumPy implementations of the papers' / official code's formulas, plus
behavioural checks with closed-form answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses

SHAPES = [(4, 3), (16, 8), (7, 32)]

# The tests call the losses under `jax.jit`, as the train step does; on CPU one compile
# per shape is also several times faster than running the losses op by op.
byol_regression = jax.jit(losses.byol_regression)
negative_cosine = jax.jit(losses.negative_cosine)
barlow_twins = jax.jit(losses.barlow_twins)
vicreg = jax.jit(losses.vicreg)
moco_infonce = jax.jit(losses.moco_infonce)
moco_v3_contrastive = jax.jit(losses.moco_v3_contrastive)


def _pair(n, d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)).astype(np.float32)
    b = (0.5 * a + rng.normal(size=(n, d))).astype(np.float32)
    return a, b


def _hadamard(n):
    """Sylvester Hadamard matrix, n a power of 2: +-1 entries, orthogonal columns."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _decorrelated(n, d, scale, offset):
    """`[n, d]` design whose columns are centred, mutually orthogonal and have biased
    variance scale^2 (Hadamard columns 1..d, skipping the constant column 0), plus an
    offset that batch centring must remove."""
    return (offset + scale * _hadamard(n)[:, 1:d + 1]).astype(np.float32)


# ---------------------------------------------------------------------------------------
# float64 references, written term by term from the formulas.


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x)


def byol_reference(p, z):
    """Grill et al. eq. (2): mean_i || p_i/|p_i| - z_i/|z_i| ||^2."""
    return np.mean([np.sum((_unit(pi) - _unit(zi)) ** 2) for pi, zi in zip(p, z)])


def negative_cosine_reference(p, z):
    """SimSiam D(p, z) = -mean_i <p_i/|p_i|, z_i/|z_i|>."""
    return -np.mean([_unit(pi) @ _unit(zi) for pi, zi in zip(p, z)])


def barlow_reference(z1, z2, lam, eps=1e-5):
    """Official barlowtwins main.py: BatchNorm1d(affine=False), c = bn(z1)^T bn(z2) / N."""
    n, d = z1.shape

    def bn(z):
        z = np.asarray(z, np.float64)
        out = np.empty_like(z)
        for j in range(d):
            mean = sum(z[:, j]) / n
            var = sum((z[i, j] - mean) ** 2 for i in range(n)) / n
            out[:, j] = (z[:, j] - mean) / math.sqrt(var + eps)
        return out

    a, b = bn(z1), bn(z2)
    on = off = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            if i == j:
                on += (1.0 - c_ij) ** 2
            else:
                off += c_ij ** 2
    return on + lam * off, on, off


def vicreg_reference(z1, z2, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """Official vicreg main_vicreg.py (with the /2 on the variance term)."""
    z1 = np.asarray(z1, np.float64)
    z2 = np.asarray(z2, np.float64)
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)

    def terms(z):
        zc = z - z.mean(axis=0)
        std = np.sqrt(np.var(z, axis=0, ddof=1) + eps)
        v = np.mean(np.maximum(0.0, gamma - std))
        cov = zc.T @ zc / (n - 1)
        c = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    v1, c1 = terms(z1)
    v2, c2 = terms(z2)
    variance = v1 / 2 + v2 / 2
    covariance = c1 + c2
    return lam * invariance + mu * variance + nu * covariance, invariance, variance, covariance


def moco_infonce_reference(q, k, queue, tau):
    """MoCo eq. (1): -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_queue exp(q.k-/tau))."""
    queue = np.asarray(queue, np.float64)
    total = 0.0
    for qi, ki in zip(q, k):
        qi, ki = _unit(qi), _unit(ki)
        positive = math.exp(qi @ ki / tau)
        negatives = sum(math.exp(qi @ kn / tau) for kn in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def moco_v3_reference(q, k, tau):
    """moco-v3 builder.py contrastive_loss: CE(q k^T / tau, arange(N)) * 2 tau."""
    qn = [_unit(x) for x in q]
    kn = [_unit(x) for x in k]
    n = len(qn)
    total = 0.0
    for i in range(n):
        logits = [qn[i] @ kn[j] / tau for j in range(n)]
        total += -(logits[i] - math.log(sum(math.exp(s) for s in logits)))
    return 2 * tau * total / n


# ---------------------------------------------------------------------------------------
# Against the references.


@pytest.mark.parametrize("n,d", SHAPES)
def test_byol_regression_matches_paper_formula(n, d):
    p, z = _pair(n, d, seed=n * d)
    np.testing.assert_allclose(float(byol_regression(p, z)), byol_reference(p, z),
                               rtol=1e-5)


@pytest.mark.parametrize("n,d", SHAPES)
def test_negative_cosine_matches_paper_formula(n, d):
    p, z = _pair(n, d, seed=n * d + 1)
    np.testing.assert_allclose(float(negative_cosine(p, z)),
                               negative_cosine_reference(p, z), rtol=1e-5)


@pytest.mark.parametrize("n,d,lam", [(4, 3, 0.0051), (16, 8, 0.0051), (7, 12, 0.5)])
def test_barlow_twins_matches_official_code(n, d, lam):
    z1, z2 = _pair(n, d, seed=n * d + 2)
    loss, parts = barlow_twins(z1, z2, lam)
    want, on, off = barlow_reference(z1, z2, lam)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(parts["on_diagonal"]), on, rtol=1e-5)
    np.testing.assert_allclose(float(parts["off_diagonal"]), off, rtol=1e-5)


@pytest.mark.parametrize("n,d", SHAPES)
def test_vicreg_matches_official_code(n, d):
    z1, z2 = _pair(n, d, seed=n * d + 3)
    # Scale so that some dimensions have std above gamma and some below.
    z1 = z1 * np.linspace(0.3, 2.0, d, dtype=np.float32)
    loss, parts = vicreg(z1, z2)
    want, invariance, variance, covariance = vicreg_reference(z1, z2)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(parts["invariance"]), invariance, rtol=1e-5)
    np.testing.assert_allclose(float(parts["variance"]), variance, rtol=1e-5)
    np.testing.assert_allclose(float(parts["covariance"]), covariance, rtol=1e-5)


def test_vicreg_weights_gamma_and_eps_are_used():
    z1, z2 = _pair(9, 5, seed=4)
    kwargs = dict(invariance_weight=2.0, variance_weight=3.0, covariance_weight=0.5,
                  gamma=1.5, eps=1e-2)
    loss, _ = vicreg(z1, z2, **kwargs)
    want = vicreg_reference(z1, z2, lam=2.0, mu=3.0, nu=0.5, gamma=1.5, eps=1e-2)[0]
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


@pytest.mark.parametrize("n,d,k,tau", [(4, 3, 5, 0.2), (16, 8, 32, 0.07), (7, 32, 1, 1.0)])
def test_moco_infonce_matches_paper_formula(n, d, k, tau):
    q, key = _pair(n, d, seed=n * d + 5)
    rng = np.random.default_rng(k)
    queue = rng.normal(size=(k, d))
    queue = (queue / np.linalg.norm(queue, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_allclose(float(moco_infonce(q, key, queue, tau)),
                               moco_infonce_reference(q, key, queue, tau), rtol=1e-5)


def test_moco_infonce_uses_the_queue_as_given():
    """The queue holds keys normalised when they were enqueued; it is not re-normalised
    (the official code does `torch.einsum('nc,ck->nk', [q, queue])` on the buffer)."""
    q, key = _pair(5, 4, seed=13)
    queue = 0.5 * np.random.default_rng(14).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(float(moco_infonce(q, key, queue, 0.2)),
                               moco_infonce_reference(q, key, queue, 0.2), rtol=1e-5)


@pytest.mark.parametrize("n,d,tau", [(4, 3, 0.2), (16, 8, 1.0), (7, 32, 0.1)])
def test_moco_v3_contrastive_matches_official_code(n, d, tau):
    q, k = _pair(n, d, seed=n * d + 6)
    np.testing.assert_allclose(float(moco_v3_contrastive(q, k, tau)),
                               moco_v3_reference(q, k, tau), rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Behaviour with closed-form answers.


def test_byol_regression_is_zero_for_positive_multiples_and_four_for_opposites():
    _, z = _pair(8, 6, seed=7)
    scales = np.linspace(0.1, 10.0, 8, dtype=np.float32)[:, None]
    assert abs(float(byol_regression(scales * z, z))) < 1e-6
    np.testing.assert_allclose(float(byol_regression(-z, z)), 4.0, rtol=1e-6)
    # Orthogonal rows: 2 - 2 cos = 2.
    eye = np.eye(4, dtype=np.float32)
    np.testing.assert_allclose(float(byol_regression(eye, np.roll(eye, 1, 0))), 2.0,
                               rtol=1e-6)


def test_negative_cosine_is_minus_one_for_identical_and_one_for_opposite():
    _, z = _pair(8, 6, seed=8)
    np.testing.assert_allclose(float(negative_cosine(z, z)), -1.0, rtol=1e-6)
    np.testing.assert_allclose(float(negative_cosine(3 * z, z)), -1.0, rtol=1e-6)
    np.testing.assert_allclose(float(negative_cosine(-z, z)), 1.0, rtol=1e-6)


def test_barlow_twins_is_zero_for_identical_decorrelated_views_and_grows_with_redundancy():
    n, d = 16, 8
    z = _decorrelated(n, d, scale=3.0, offset=5.0)
    loss, parts = barlow_twins(z, z, 0.0051)
    # c = I / (1 + eps): on = d * (eps / (1 + eps))^2 ~ 1e-9, off = 0.
    assert float(loss) < 1e-6, (float(loss), parts)
    assert float(parts["off_diagonal"]) < 1e-10

    redundant = z.copy()
    redundant[:, 1] = redundant[:, 0]  # feature 1 duplicates feature 0
    loss_r, parts_r = barlow_twins(redundant, redundant, 0.0051)
    # c_01 = c_10 = 1 (up to eps): off = 2.
    np.testing.assert_allclose(float(parts_r["off_diagonal"]), 2.0, rtol=1e-4)
    assert float(loss_r) > float(loss) + 0.01

    # Independent noise as the second view pulls the diagonal away from 1.
    rng = np.random.default_rng(9)
    noise = rng.normal(size=z.shape).astype(np.float32)
    assert float(barlow_twins(z, noise, 0.0051)[1]["on_diagonal"]) > 1.0


def test_vicreg_variance_is_zero_above_gamma_and_positive_for_collapse():
    n, d = 16, 8
    spread = _decorrelated(n, d, scale=2.0, offset=-1.0)  # ddof=1 std = 2 sqrt(16/15) > 1
    loss, parts = vicreg(spread, spread)
    assert float(parts["variance"]) == 0.0
    assert float(parts["invariance"]) == 0.0
    assert float(parts["covariance"]) < 1e-10
    assert float(loss) < 1e-8

    collapsed = np.full((n, d), 0.7, np.float32)
    loss_c, parts_c = vicreg(collapsed, collapsed)
    # std = sqrt(0 + eps) = 0.01 in every dimension of both branches: v = 1 - 0.01.
    np.testing.assert_allclose(float(parts_c["variance"]), 1.0 - math.sqrt(1e-4), rtol=1e-6)
    np.testing.assert_allclose(float(loss_c), 25.0 * (1.0 - math.sqrt(1e-4)), rtol=1e-6)

    # One branch collapsed, the other spread: the /2 of the official code halves it.
    _, parts_half = vicreg(spread, collapsed)
    np.testing.assert_allclose(float(parts_half["variance"]), (1.0 - math.sqrt(1e-4)) / 2,
                               rtol=1e-6)


def test_vicreg_covariance_penalises_correlated_dimensions():
    n, d = 16, 4
    z = _decorrelated(n, d, scale=1.0, offset=0.0)
    correlated = z.copy()
    correlated[:, 1] = correlated[:, 0]
    # cov_01 = cov_10 = n / (n - 1) per branch, two branches, / d.
    want = 2 * 2 * (n / (n - 1)) ** 2 / d
    np.testing.assert_allclose(float(vicreg(correlated, correlated)[1]["covariance"]),
                               want, rtol=1e-5)


@pytest.mark.parametrize("n", [0, 1])
def test_vicreg_rejects_batches_smaller_than_two(n):
    z = np.ones((n, 4), np.float32)
    with pytest.raises(ValueError, match=f"batch size {n}"):
        losses.vicreg(z, z)
    with pytest.raises(ValueError, match=f"batch size {n}"):
        vicreg(z, z)  # under jit too: the check is on the static shape


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_moco_infonce_is_log_one_plus_k_when_all_logits_are_equal(tau):
    n, k = 3, 5
    d = 1 + n + k
    basis = np.eye(d, dtype=np.float32)
    q = np.tile(basis[0], (n, 1))        # every query along e_0
    keys = 2.5 * basis[1:1 + n]          # positives orthogonal to q (and unnormalised)
    queue = basis[1 + n:]                # negatives orthogonal to q
    np.testing.assert_allclose(float(moco_infonce(q, keys, queue, tau)),
                               math.log(1 + k), rtol=1e-6)
    # A perfectly aligned positive against orthogonal negatives: log(1 + K e^{-1/tau}).
    np.testing.assert_allclose(float(moco_infonce(q, 4 * q, queue, tau)),
                               math.log1p(k * math.exp(-1 / tau)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_moco_v3_contrastive_has_the_two_tau_scaling(tau):
    n = 6
    # Orthonormal q = k: logits are 1/tau on the diagonal, 0 elsewhere.
    eye = np.eye(n, dtype=np.float32)
    ce = math.log(1 + (n - 1) * math.exp(-1 / tau))
    np.testing.assert_allclose(float(moco_v3_contrastive(eye, 3 * eye, tau)),
                               2 * tau * ce, rtol=1e-5)
    # On random inputs: the loss divided by 2 tau is the plain cross-entropy.
    q, k = _pair(n, 5, seed=10)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = qn.astype(np.float64) @ kn.T / tau
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    plain_ce = -np.mean(np.diag(log_probs))
    np.testing.assert_allclose(float(moco_v3_contrastive(q, k, tau)) / (2 * tau),
                               plain_ce, rtol=1e-5)


def _call_all(a, b, queue):
    return {
        "byol_regression": byol_regression(a, b),
        "negative_cosine": negative_cosine(a, b),
        "barlow_twins": barlow_twins(a, b, 0.0051),
        "vicreg": vicreg(a, b),
        "moco_infonce": moco_infonce(a, b, queue, 0.2),
        "moco_v3_contrastive": moco_v3_contrastive(a, b, 0.2),
    }


def test_every_loss_is_finite_float32_for_bfloat16_inputs():
    a, b = _pair(8, 16, seed=11)
    queue = np.random.default_rng(12).normal(size=(10, 16))
    queue /= np.linalg.norm(queue, axis=1, keepdims=True)
    bf16 = lambda x: jnp.asarray(x, jnp.bfloat16)
    call_all = jax.jit(_call_all)
    got = call_all(bf16(a), bf16(b), bf16(queue))
    want = call_all(a, b, queue.astype(np.float32))
    for name, out in got.items():
        for leaf, ref in zip(jax.tree.leaves(out), jax.tree.leaves(want[name])):
            assert leaf.shape == () and leaf.dtype == jnp.float32, (name, leaf.dtype)
            assert np.isfinite(float(leaf)), name
            # Only the inputs are rounded to bf16 (~3 significant digits).
            np.testing.assert_allclose(float(leaf), float(ref), rtol=0.05, atol=0.05,
                                       err_msg=name)


def test_gradients_are_finite_at_the_optimum():
    """Identical / decorrelated views sit at each loss's optimum; no NaN there."""
    z = _decorrelated(8, 4, scale=1.0, offset=0.0)
    queue = np.eye(4, dtype=np.float32)
    fns = {
        "byol_regression": lambda a: byol_regression(a, z),
        "negative_cosine": lambda a: negative_cosine(a, z),
        "barlow_twins": lambda a: barlow_twins(a, z, 0.0051)[0],
        "vicreg": lambda a: vicreg(a, z)[0],
        "moco_infonce": lambda a: moco_infonce(a, z, queue, 0.2),
        "moco_v3_contrastive": lambda a: moco_v3_contrastive(a, z, 0.2),
    }
    all_grads = jax.jit(lambda a: {name: jax.grad(fn)(a) for name, fn in fns.items()})(z)
    for name, grads in all_grads.items():
        assert np.all(np.isfinite(np.asarray(grads))), name
