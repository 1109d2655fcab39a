"""Multi-task pretraining: several pretext tasks train one shared backbone.

Doersch & Zisserman, "Multi-task Self-Supervised Visual Learning", ICCV 2017
(arXiv:1708.07860): the losses of several self-supervised tasks, each with its own
head, are summed on one trunk, and the combination beats each task alone.

    L(theta, phi_1..phi_T) = sum_t w_t L_t(theta, phi_t)

theta: the backbone, shared; phi_t: task t's own heads (projector, rotation
classifier, ...) and state (EMA target, queue). Every task is an ordinary method of
the registry, run on the batch with its own views and rng (`fold_in(rng, t)`), so
any combination of methods works without new code, e.g. SimCLR + rotation.

Parameter layout: `params = {"backbone": theta, "<task>": phi_t}` (the same for
`batch_stats`; `extra = {"<task>": state_t}`). Each task sees
`{"backbone": theta, **phi_t}`, the tree its own network would have. All tasks are
initialised from the same key, so Flax gives their backbones identical initial
values (parameters are drawn per module path), and an EMA target copies the shared
backbone. Each task runs the backbone in train mode on its own views; the running
BatchNorm statistics of the backbone become the mean of the tasks' updates.

Config (`config.method`): tasks, a dict task name -> that method's own
`config.method` section plus `weight`; online_probe of each task as its method
has it (the configs keep one task's probe). Metrics of task t are prefixed with
`t` (`simclr_probe_accuracy`) unless they already start with it (`simclr_loss`).
"""

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.methods import base

BACKBONE = "backbone"


def task_config(config: ml_collections.ConfigDict, task: str) -> ml_collections.ConfigDict:
    """The whole config with `config.method` replaced by task `task`'s section, less weight."""
    section = config.method.tasks[task].to_dict()
    section.pop("weight")
    derived = ml_collections.ConfigDict(config.to_dict())
    derived.method = ml_collections.ConfigDict(section)
    return derived


def split_tree(tree: dict, task: str) -> dict:
    """Task `task`'s view `{"backbone": ..., **own}` of a multi-task tree."""
    shared = {BACKBONE: tree[BACKBONE]} if BACKBONE in tree else {}
    return {**shared, **tree.get(task, {})}


def prefixed(metrics: dict, task: str) -> dict:
    return {(k if k.startswith(task) else f"{task}_{k}"): v for k, v in metrics.items()}


class MultiTask(base.Method):

    @classmethod
    def default_config(cls, name: str, image_size: int) -> ml_collections.ConfigDict:
        """SimCLR + rotation prediction, equal weights; the probe on SimCLR's side."""
        from ssl_jax import config as config_lib

        tasks = {}
        for task in ("simclr", "rotation"):
            tasks[task] = config_lib.method_config(task, image_size)
            tasks[task].weight = 1.0
        tasks["rotation"].online_probe = False
        return ml_collections.ConfigDict(dict(name=name, tasks=tasks))

    @classmethod
    def check_config(cls, config):
        from ssl_jax import methods

        tasks = config.method.tasks
        if not tasks:
            raise ValueError("config.method.tasks is empty: name at least one pretext task")
        if config.input.host_crop:
            raise ValueError("config.input.host_crop: not supported with multitask "
                             "(each task draws its own views on the device)")
        for task, section in tasks.items():
            field = f"config.method.tasks.{task}"
            if section.get("name") not in methods.METHODS or section.name in ("multitask",
                                                                              "supervised"):
                raise ValueError(f"{field}.name={section.get('name')!r}: expected a "
                                 "self-supervised method of the registry")
            if "weight" not in section or section.weight < 0:
                raise ValueError(f"{field}.weight={section.get('weight')!r}: must be >= 0")
            methods.METHODS[section.name].check_config(task_config(config, task))

    def build_net(self):
        from ssl_jax import methods

        self.tasks = list(self.config.method.tasks)
        self.weights = {t: self.config.method.tasks[t].weight for t in self.tasks}
        self.methods = {
            t: methods.METHODS[self.config.method.tasks[t].name](
                task_config(self.config, t), self.num_classes, self.total_steps)
            for t in self.tasks}
        return self.methods[self.tasks[0]].net  # For `features`: the backbone of task 0.

    def task_variables(self, params, variables, task: str) -> tuple[dict, dict]:
        return (split_tree(params, task),
                dict(params=split_tree(variables["params"], task),
                     batch_stats=split_tree(variables["batch_stats"], task),
                     extra=variables["extra"][task]))

    @staticmethod
    def merge(per_task: dict[str, dict], mean_backbone: bool = False) -> dict:
        """Inverse of `split_tree`: each task's own part, and the shared backbone taken
        from the first task, or averaged over the tasks (`mean_backbone`, for BatchNorm
        statistics that every task updated)."""
        trees = list(per_task.values())
        out = {t: {k: v for k, v in tree.items() if k != BACKBONE}
               for t, tree in per_task.items()}
        if BACKBONE in trees[0]:
            backbones = [tree[BACKBONE] for tree in trees]
            out[BACKBONE] = (jax.tree.map(lambda *xs: sum(xs) / len(xs), *backbones)
                             if mean_backbone else backbones[0])
        return out

    def init(self, rng, batch):
        per_task = {t: m.init(rng, batch) for t, m in self.methods.items()}
        return dict(params=self.merge({t: v["params"] for t, v in per_task.items()}),
                    batch_stats=self.merge({t: v["batch_stats"] for t, v in per_task.items()}),
                    extra={t: v["extra"] for t, v in per_task.items()})

    def loss(self, params, variables, batch, rng, step):
        total, batch_stats, extra, metrics = jnp.float32(0.0), {}, {}, {}
        for index, (task, method) in enumerate(self.methods.items()):
            task_params, task_vars = self.task_variables(params, variables, task)
            loss, (batch_stats[task], extra[task], task_metrics) = method.loss(
                task_params, task_vars, batch, jax.random.fold_in(rng, index), step)
            total = total + self.weights[task] * loss
            metrics.update(prefixed(task_metrics, task))
        return total, (self.merge(batch_stats, mean_backbone=True), extra, metrics)

    def after_step(self, variables, step):
        extra = {}
        for task, method in self.methods.items():
            _, task_vars = self.task_variables(variables["params"], variables, task)
            extra[task] = method.after_step(task_vars, step)["extra"]
        return dict(variables, extra=extra)

    def features(self, variables, images):
        task = self.tasks[0]
        _, task_vars = self.task_variables(variables["params"], variables, task)
        return self.methods[task].features(task_vars, images)
