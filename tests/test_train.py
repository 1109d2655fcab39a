"""The generic train loop: sharding invariance, exact resume, end-to-end stages."""

import json
import pathlib

import jax
import numpy as np
import pytest

from ssl_jax import metrics, sharding, stages, train
from ssl_jax.config import load_config_file
from ssl_jax.data import sources

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = "runlocal"):
    return load_config_file(str(REPO / "configs" / f"{name}.py"), arg)


@pytest.fixture(scope="module")
def digits():
    config = load_config("quickstart")
    return sources.load(config.input)


def run_on(num_devices: int, dataset, config):
    config = config.copy_and_resolve_references()
    config.mesh.num_devices = num_devices
    run = train.build(config, dataset)
    return run, train.init_state(run)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_one_device_equals_eight_devices(digits):
    """Same global batch: same loss and gradients on 1 and on 8 devices (float32)."""
    config = load_config("quickstart")
    config.input.batch_size = 64
    results = []
    for num_devices in (1, 8):
        run, state = run_on(num_devices, digits, config)
        assert run.mesh.devices.size == num_devices
        batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
        rng = jax.random.fold_in(run.train_rng, 0)
        fn = jax.jit(lambda s, b, r: train.loss_and_grads(run.method, s, b, r))
        loss, (batch_stats, _, step_metrics), grads = jax.device_get(fn(state, batch, rng))
        new_state, _ = train.make_step(run)(state, batch)
        results.append((loss, grads, batch_stats, jax.device_get(new_state.params)))
    (loss1, grads1, stats1, params1), (loss8, grads8, stats8, params8) = results
    np.testing.assert_allclose(loss1, loss8, rtol=1e-6)
    # Float32 sums in another order: differences of ~1e-4 of a leaf's largest entry.
    for one, eight in ((grads1, grads8), (stats1, stats8), (params1, params8)):
        jax.tree.map(close, one, eight)
    # The check above must be able to fail: another batch gives other gradients.
    leaf = jax.tree.leaves(grads1)[0]
    assert np.abs(leaf).max() > 0


def test_resumed_run_equals_uninterrupted_run(digits, tmp_path):
    config = load_config("quickstart")
    config.checkpoint.every_steps = 2
    uninterrupted = train.train(config, tmp_path / "a", digits)
    interrupted = train.train(config, tmp_path / "b", digits, stop_at_step=3)
    assert int(interrupted.state.step) == 3
    resumed = train.train(config, tmp_path / "b", digits)
    assert int(resumed.state.step) == config.schedule.steps
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(uninterrupted.state.params),
                 jax.device_get(resumed.state.params))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(uninterrupted.state.opt_state),
                 jax.device_get(resumed.state.opt_state))
    # The interrupted run's first steps were logged once, the rest after the resume.
    steps = [r["step"] for r in metrics.read_metrics(tmp_path / "b")]
    assert steps == sorted(set(steps)) and steps[-1] == config.schedule.steps


def test_pretrain_checkpoint_then_downstream_stages(digits, tmp_path):
    """pretrain -> Orbax checkpoint -> kNN, linear probe, fine-tune, self-train, each in a
    fresh call."""
    config = load_config("quickstart")
    config.stages = ("pretrain",)
    stages.run_stages(config, tmp_path)
    assert (tmp_path / "pretrain" / "checkpoints").is_dir()
    assert (tmp_path / "pretrain" / "metrics.jsonl").is_file()
    assert any((tmp_path / "pretrain" / "tensorboard").iterdir())
    config.stages = ("knn", "linear_probe", "finetune", "self_train")
    results = stages.run_stages(config, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert set(results) == {"ssl", "random_init", "raw_pixels", "from_scratch"}
    for column in ("kNN k=20 (10/class)", "linear (all labels)"):
        for name in ("ssl", "random_init", "raw_pixels"):
            assert 0.0 <= results[name][column] <= 1.0
    # Raw pixels of digits are far above chance with every protocol: a sanity floor.
    assert results["raw_pixels"]["linear (all labels)"] > 0.85
    for name in ("ssl", "from_scratch"):
        assert {"finetune (10/class)", "self-train (10/class)"} <= set(results[name])
    assert (tmp_path / "self_train_scratch" / "checkpoints").is_dir()


def test_cifar10_resnet18_config_pretrains_on_the_real_files(shared_data, tmp_path):
    """The CIFAR-10 config (ResNet-18, CIFAR stem, LARS) reads the image-folder tars and trains."""
    config = load_config("simclr_cifar10")
    config.input.data_dir = str(shared_data / "cifar10")
    config.stages = ("pretrain",)
    stages.run_stages(config, tmp_path)
    records = metrics.read_metrics(tmp_path / "pretrain")
    assert records[-1]["step"] == config.schedule.steps
    assert all(np.isfinite(r["loss"]) for r in records)
    # NT-Xent of 2B views starts near log(2B - 1) and must not have diverged.
    assert records[-1]["simclr_loss"] < 1.5 * np.log(2 * config.input.batch_size - 1)


def test_rankme_is_computed_only_at_the_steps_the_loop_logs(digits):
    """RankMe (two SVDs) runs under `lax.cond` on "this step is logged": NaN at the other
    steps, and at a logged step the value RankMe gives on the same inputs outside the step."""
    config = load_config("quickstart")
    config.log.every_steps = 2
    run, state = run_on(1, digits, config)
    step = train.make_step(run, last_step=3)
    ranks = []
    for i in range(3):
        batch = sharding.to_global(run.pipeline.batch(i), run.mesh)
        before = jax.device_get(state)  # The step donates its input buffers.
        state, step_metrics = step(state, batch)
        ranks.append(float(step_metrics["rankme_embeddings"]))
    print("rankme_embeddings at steps 1, 2, 3 (logged: 2 and 3):", ranks)
    assert np.isnan(ranks[0]) and np.isfinite(ranks[1:]).all()
    assert step._cache_size() == 1  # Logged or not, one compiled step.
    # Step 3 again, outside the step: the same value (the condition changes nothing else).
    rng = jax.random.fold_in(run.train_rng, 2)
    _, (_, _, direct), _ = jax.jit(lambda s, b, r: train.loss_and_grads(run.method, s, b, r))(
        before, batch, rng)
    np.testing.assert_allclose(float(direct["rankme_embeddings"]), ranks[2], rtol=1e-5)
