"""Multi-task pretraining: the tasks share the backbone and nothing else, the gradient is
the weighted sum of the tasks' gradients, EMA targets follow the shared backbone,
1 == 8 devices, and both tasks learn on real MNIST."""

import jax
import numpy as np
import pytest

from ssl_jax import methods, metrics, sharding, train, validate
from ssl_jax.config import base_config, mnist_config, runlocal
from ssl_jax.data import sources
from ssl_jax.methods import multitask
from test_joint_methods import (assert_trees_close, built, digits, learning_run,  # noqa: F401
                                small_views)


def multitask_config(weights=(1.0, 0.5), second="rotation"):
    config = base_config(method="multitask")
    if second != "rotation":
        tasks = config.method.tasks.to_dict()
        tasks.pop("rotation")
        tasks[second] = base_config(method=second).method.to_dict()
        config.method.tasks = tasks
    runlocal(config)
    config.method.tasks.simclr.weight, config.method.tasks[second].weight = weights
    return config


def task_alone(config, task):
    """The config of task `task` run on its own (its `config.method` section)."""
    return multitask.task_config(config, task)


def test_tasks_share_the_backbone_and_start_from_its_single_task_initialisation(digits):
    config = multitask_config()
    run, state = built(config, digits, 1)
    assert set(state.params) == {"backbone", "simclr", "rotation"}
    assert "backbone" not in state.params["simclr"] and "projector" in state.params["simclr"]
    assert "head" in state.params["rotation"]
    for task in ("simclr", "rotation"):
        _, alone = built(task_alone(config, task), digits, 1)
        assert_trees_close(state.params["backbone"], alone.params["backbone"])
        own = {k: v for k, v in alone.params.items() if k != "backbone"}
        assert jax.tree.structure(own) == jax.tree.structure(state.params[task])


def test_gradient_is_the_weighted_sum_of_the_task_gradients(digits):  # noqa: F811
    """Weights 0.5 (SimCLR) and 0 (rotation): each head gets its own task's gradient times
    its weight, the backbone the weighted sum; a task of weight 0 trains nothing."""
    weights = (0.5, 0.0)
    config = multitask_config(weights)
    run, state = built(config, digits, 1)
    batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
    rng = jax.random.key(3)

    @jax.jit  # One compilation for the total and every task alone.
    def gradients(params):
        total = jax.grad(lambda p: run.method.loss(p, state.variables(), batch, rng, 0)[0])
        alone = {}
        for index, task in enumerate(run.method.tasks):  # the rng of task i is fold_in(rng, i)
            method = run.method.methods[task]
            task_params, variables = run.method.task_variables(params, state.variables(), task)
            alone[task] = jax.grad(lambda p: method.loss(
                p, variables, batch, jax.random.fold_in(rng, index), 0)[0])(task_params)
        return total(params), alone

    grads, alone = gradients(state.params)
    expected_backbone = None
    weight_of = dict(zip(("simclr", "rotation"), weights))
    for task in run.method.tasks:
        weight = weight_of[task]
        task_grads = alone[task]
        own = jax.tree.map(lambda g: weight * g,
                           {k: v for k, v in task_grads.items() if k != "backbone"})
        if weight:
            assert_trees_close(grads[task], own)
        else:  # a task of weight 0 trains nothing, not even its own head
            for leaf in jax.tree.leaves(grads[task]):
                assert not np.any(np.asarray(leaf))
        contribution = jax.tree.map(lambda g: weight * g, task_grads["backbone"])
        expected_backbone = contribution if expected_backbone is None else jax.tree.map(
            np.add, expected_backbone, contribution)
    assert_trees_close(grads["backbone"], expected_backbone)


def test_ema_target_of_a_task_follows_the_shared_backbone(digits):
    config = multitask_config(second="byol")
    run, state = built(config, digits, 1)
    moved = jax.tree.map(lambda p: p + 1.0, state.params)
    variables = run.method.after_step(dict(state.variables(), params=moved), 0)
    decay = float(run.method.methods["byol"].ema_decay(0))
    old = state.extra["byol"]["target"]["params"]["backbone"]
    new = variables["extra"]["byol"]["target"]["params"]["backbone"]
    expected = jax.tree.map(lambda t, p: decay * t + (1 - decay) * p, old, moved["backbone"])
    assert_trees_close(new, expected)


def test_one_device_equals_eight_devices(digits):
    config = multitask_config(second="byol")
    results = []
    for num_devices in (1, 8):
        run, state = built(config, digits, num_devices)
        batch = sharding.to_global(run.pipeline.batch(0), run.mesh)
        step = train.make_step(run)
        new_state, step_metrics = jax.device_get(step(state, batch))
        results.append((step_metrics["loss"], new_state.params, new_state.extra))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    assert_trees_close(results[0][1], results[1][1])
    assert_trees_close(results[0][2], results[1][2])


@pytest.mark.parametrize("change, message", [
    (lambda t: t.simclr.update(dict(name="multitask")), "tasks.simclr.name='multitask'"),
    (lambda t: t.rotation.update(dict(name="sobel")), "tasks.rotation.name='sobel'"),
    (lambda t: t.rotation.update(dict(weight=-1.0)), "tasks.rotation.weight=-1.0"),
    (lambda t: t.simclr.projector.update(dict(num_layers=0)),
     "config.method.tasks.simclr.projector.num_layers=0: expected an integer >= 1"),
])
def test_bad_task_configs_are_refused_naming_the_field(change, message):
    config = multitask_config()
    change(config.method.tasks)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        validate.validate(config)


def test_both_tasks_learn_on_mnist(shared_data, tmp_path):
    """80 steps on real MNIST seen as 14x14 views, SimCLR + rotation on a tiny convnet: the
    rotation classifier is above chance (0.25) and the NT-Xent loss falls (measured with
    seeds 0, 1, 2: rotation accuracy 0.42, 0.44, 0.39 at step 20 -> 0.48, 0.58, 0.47 at
    step 80; simclr loss 5.02, 4.93, 4.97 -> 4.67, 4.63, 4.57)."""
    config = mnist_config("multitask", data_dir=str(shared_data / "mnist"))
    runlocal(config, train_limit=2000)
    small_views(config)
    config.input.batch_size = 128
    learning_run(config, 80, log_every=20)
    train.train(config, tmp_path, sources.load(config.input))
    logged = metrics.read_metrics(tmp_path)
    first, last = logged[0], logged[-1]
    print({k: (first[k], last[k]) for k in ("simclr_loss", "rotation_accuracy")})
    assert last["rotation_accuracy"] > 0.35, last
    assert last["simclr_loss"] < first["simclr_loss"] - 0.1, (first, last)
    assert "simclr_probe_accuracy" in last and "rotation_rankme_features" in last
    assert methods.METHODS["multitask"] is multitask.MultiTask
