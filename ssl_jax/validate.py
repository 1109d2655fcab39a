"""Up-front checks of a config, before any data is read or anything compiles.

Each failure names the config field and the accepted values, so a typo costs
seconds, not a compile. (Unknown keys are refused earlier still: configs are
locked, so `--config.method.tempreture=0.1` fails in flag parsing.)
"""

import jax
import ml_collections

from ssl_jax import config_rules, guards, methods, models, optim, stages
from ssl_jax.data import sources, text


def _one_of(field: str, value, choices):
    if value not in choices:
        raise ValueError(f"{field}={value!r}: expected one of {sorted(choices)}")


def validate(config: ml_collections.ConfigDict):
    """Raise ValueError / FileNotFoundError naming the first bad field."""
    if config.method.name == "yarowsky":  # Decision lists: a config of its own kind.
        from ssl_jax.yarowsky import stage as yarowsky_stage

        if tuple(config.stages) != ("yarowsky",):
            raise ValueError(f"config.stages={config.stages}: method 'yarowsky' runs only "
                             "the stage ('yarowsky',)")
        yarowsky_stage.check_config(config)
        return
    if "yarowsky" in config.stages:
        raise ValueError(f"config.stages={config.stages}: 'yarowsky' needs "
                         "config.method.name='yarowsky'")
    config_rules.check_leaves(config)  # Types and ranges of every field first.
    for stage in config.stages:
        _one_of("config.stages", stage, stages.STAGES)
    _one_of("config.model.name", config.model.name, models.BACKBONES)
    models.check_config(config.model, image_sizes(config))  # The backbone, then the method.
    _one_of("config.method.name", config.method.name, methods.METHODS)
    methods.METHODS[config.method.name].check_config(config)
    if "self_train" in config.stages:
        methods.METHODS["fixmatch"].check_config(stages.self_train_config(config))
    _one_of("config.input.dataset", config.input.dataset, sources.DATASETS)
    _one_of("config.optim.name", config.optim.name, optim.OPTIMIZERS)
    _one_of("config.optim.lr_scaling", config.optim.lr_scaling, optim.LR_SCALINGS)
    _one_of("config.guard.on_nonfinite", config.guard.on_nonfinite, guards.NONFINITE_ACTIONS)
    for baseline in config.eval.baselines:
        _one_of("config.eval.baselines", baseline, stages.BASELINES)
    text.check_config(config.input)  # Tokenizer and windows of the text sources.
    sources.check_data_dir(config.input)  # For the sources that read files from it.
    if config.mesh.num_devices == -1:
        devices, source = jax.device_count(), "every device"
    else:
        devices, source = config.mesh.num_devices, "config.mesh.num_devices"
        if devices > jax.device_count():
            raise ValueError(f"config.mesh.num_devices={devices}: only {jax.device_count()} "
                             "devices are available (-1 uses them all)")
    for field, batch in (("config.input.batch_size", config.input.batch_size),
                         ("config.eval.batch_size", config.eval.batch_size),
                         ("config.finetune.batch_size", config.finetune.batch_size),
                         ("config.self_train.batch_size", config.self_train.batch_size)):
        if batch <= 0 or batch % devices:
            raise ValueError(f"{field}={batch} is not a positive multiple of the number of "
                             f"devices ({devices}, {source})")
    if config.schedule.steps <= 0 and config.schedule.epochs <= 0:
        raise ValueError("config.schedule: set steps > 0 or epochs > 0")
    if not 0.0 < config.eval.probe_val_fraction < 1.0:
        raise ValueError(f"config.eval.probe_val_fraction={config.eval.probe_val_fraction}: "
                         "must be in (0, 1)")


def image_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """The image sides a backbone sees, by the field that sets them: the input's and
    each view's `out_size` in `config.method` (tasks included); none for text."""
    if config.input.dataset in text.TEXT_DATASETS:
        return {}
    sizes = {"config.input.image_size": config.input.image_size}
    for path, value in config_rules.leaves(config.method, "config.method."):
        if path.endswith(".out_size"):
            sizes[path] = value
    return sizes
