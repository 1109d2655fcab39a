"""Entry point: `python -m ssl_jax.main --config configs/<file>.py[:arg] --workdir DIR`.

Runs the stages the config names (`config.stages`): `pretrain`, then any of
`knn`, `linear_probe`, `finetune` on the pretrained encoder. Config fields can be
overridden on the command line: `--config.optim.lr=0.1`; configs are locked, so
a misspelt field is an error, not a silently ignored flag.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally with ':arg'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Imported here so that `--help` and flag errors come before JAX starts.
    from ssl_jax import stages, validate

    config = _CONFIG.value
    validate.validate(config)
    logging.info("config:\n%s", config)
    stages.run_stages(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
