"""Host batching (deterministic, resumable, every example once per epoch) and optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax import optim, sharding
from ssl_jax.data.loader import StepBatcher, zeros_like_spec


def test_each_epoch_visits_every_example_once():
    batcher = StepBatcher({"x": np.arange(40)}, global_batch_size=8, seed=3)
    for epoch in range(3):
        seen = np.concatenate([batcher.batch(s)["x"] for s in range(5 * epoch, 5 * epoch + 5)])
        np.testing.assert_array_equal(np.sort(seen), np.arange(40))
    assert not np.array_equal(batcher.batch(0)["x"], batcher.batch(5)["x"])


def test_processes_split_each_epoch_disjointly():
    """3 processes, 4 epochs of 48 examples at global batch 12: each process gets a
    contiguous third of each global batch; per epoch their union is every example
    once, and no example reaches two processes in the same epoch."""
    data = {"x": np.arange(48)}
    shares = [StepBatcher(data, 12, seed=5, process_index=p, process_count=3)
              for p in range(3)]
    whole = StepBatcher(data, 12, seed=5, process_index=0, process_count=1)
    for epoch in range(4):
        steps = range(4 * epoch, 4 * epoch + 4)
        seen = [np.concatenate([share.batch(s)["x"] for s in steps]) for share in shares]
        assert all(len(x) == 16 for x in seen)
        assert not set(seen[0]) & set(seen[1]) and not set(seen[1]) & set(seen[2])
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(48))
        for s in steps:
            np.testing.assert_array_equal(
                np.concatenate([share.batch(s)["x"] for share in shares]), whole.batch(s)["x"])
    assert shares[1].spec() == {"x": ((4,), np.arange(48).dtype)}
    with pytest.raises(ValueError, match="not divisible by the number of processes"):
        StepBatcher(data, 10, seed=0, process_index=0, process_count=3)


def test_batches_iterator_resumes_at_any_step():
    batcher = StepBatcher({"x": np.arange(30)}, 8, seed=4)
    stream = batcher.batches(0)
    first = [next(stream)["x"] for _ in range(9)]
    resumed = batcher.batches(5)
    for expected in first[5:]:
        np.testing.assert_array_equal(next(resumed)["x"], expected)
    zeros = zeros_like_spec(batcher.spec())
    assert zeros["x"].shape == (8,) and not zeros["x"].any()


def test_device_prefetcher_keeps_order_and_reraises():
    mesh = sharding.make_mesh(-1)
    batches = ({"x": np.full((8, 2), i, np.float32)} for i in range(5))
    got = [int(b["x"][0, 0]) for b in sharding.DevicePrefetcher(batches, mesh, size=2)]
    assert got == [0, 1, 2, 3, 4]

    def failing():
        yield {"x": np.zeros((8,), np.float32)}
        raise OSError("disk gone")

    prefetcher = sharding.DevicePrefetcher(failing(), mesh, size=2)
    first = next(prefetcher)
    assert first["x"].sharding.spec == sharding.batch_sharded(mesh).spec
    with pytest.raises(OSError, match="disk gone"):
        next(prefetcher)
    prefetcher.close()
    with pytest.raises(ValueError, match="config.input.prefetch"):
        sharding.DevicePrefetcher(iter(()), mesh, size=0)


def test_batches_are_a_function_of_seed_and_step():
    a = StepBatcher({"x": np.arange(50)}, 16, seed=1)
    b = StepBatcher({"x": np.arange(50)}, 16, seed=1)
    for step in (7, 0, 3, 7):  # any order, as after a resume
        np.testing.assert_array_equal(a.batch(step)["x"], b.batch(step)["x"])
    c = StepBatcher({"x": np.arange(50)}, 16, seed=2)
    assert not np.array_equal(a.batch(0)["x"], c.batch(0)["x"])


def test_batch_larger_than_dataset_spans_epochs():
    batcher = StepBatcher({"x": np.arange(5), "y": np.arange(5) * 10}, 12, seed=0)
    batch = batcher.batch(0)
    assert batch["x"].shape == (12,)
    np.testing.assert_array_equal(batch["y"], batch["x"] * 10)
    np.testing.assert_array_equal(np.sort(batch["x"][:5]), np.arange(5))
    assert batcher.steps_for_epochs(10) == 5


def test_unequal_arrays_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        StepBatcher({"x": np.arange(5), "y": np.arange(6)}, 2, seed=0)


def test_weight_decay_skips_biases_and_norms():
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
              "bn": {"scale": jnp.ones(2)}}
    config = optim.default_optim_config()
    for name in optim.OPTIMIZERS:
        config.name = name
        config.weight_decay = 0.5
        tx = optim.build_optimizer(config, optax.constant_schedule(0.1))
        zero_grads = jax.tree.map(jnp.zeros_like, params)
        updates, _ = tx.update(zero_grads, tx.init(params), params)
        assert np.all(np.asarray(updates["dense"]["kernel"]) < 0), name
        assert np.all(np.asarray(updates["dense"]["bias"]) == 0), name
        assert np.all(np.asarray(updates["bn"]["scale"]) == 0), name


def test_warmup_cosine_values():
    schedule = optim.warmup_cosine(peak=1.0, total_steps=110, warmup_steps=10)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60),
                                schedule(110)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


def test_learning_rate_scaling():
    config = optim.default_optim_config()
    config.lr = 0.3
    config.lr_scaling = "linear"
    assert optim.scaled_learning_rate(config, 512) == pytest.approx(0.6)
    config.lr_scaling = "sqrt"
    assert optim.scaled_learning_rate(config, 4096) == pytest.approx(0.3 * 64)
    config.lr_scaling = "bogus"
    with pytest.raises(ValueError, match="lr_scaling"):
        optim.scaled_learning_rate(config, 256)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_frozen_parameters_never_move(name):
    """`optim.frozen` (MoCo v3's fixed ViT patch projection): no update, no weight decay."""
    config = optim.default_optim_config()
    config.update(dict(name=name, weight_decay=0.1, frozen=("patch_embed", )))
    tx = optim.build_optimizer(config, optax.constant_schedule(0.1))
    params = {"backbone": {"patch_embed": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
                           "block": {"kernel": jnp.ones((3, 2))}}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    for leaf in jax.tree.leaves(updates["backbone"]["patch_embed"]):
        assert not np.any(np.asarray(leaf))
    assert np.abs(np.asarray(updates["backbone"]["block"]["kernel"])).min() > 0
    assert optim.parameter_groups(params, frozen=("patch_embed", ))["backbone"]["block"][
        "kernel"] == "train"


def test_constant_lr_group_keeps_the_peak_rate():
    """`optim.constant_lr` (SimSiam's fixed predictor rate): plain SGD updates are
    -lr * grad, so the group's update stays -peak * grad while the rest follows the schedule."""
    config = optim.default_optim_config()
    config.update(dict(name="sgd", momentum=0.0, weight_decay=0.0, constant_lr=("predictor", )))
    schedule = optax.linear_schedule(0.5, 0.0, transition_steps=10)
    tx = optim.build_optimizer(config, schedule, peak_lr=0.5)
    params = {"predictor": {"kernel": jnp.ones((2, 2))}, "backbone": {"kernel": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    for step in range(6):
        updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["predictor"]["kernel"], -0.5)
    np.testing.assert_allclose(updates["backbone"]["kernel"], -0.5 * (1 - 5 / 10), rtol=1e-6)
    with pytest.raises(ValueError, match="constant_lr needs the peak"):
        optim.build_optimizer(config, schedule)
