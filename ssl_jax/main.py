"""Entry point: `python -m ssl_jax.main --config configs/<file>.py[:arg] --workdir DIR`.

Runs the stages the config names (`config.stages`): `pretrain`, then any of
`knn`, `linear_probe`, `finetune` on the pretrained encoder. Config fields can be
overridden on the command line: `--config.optim.lr=0.1`; configs are locked, so
a misspelt field is an error, not a silently ignored flag.

Multi-process runs (docs/MULTIHOST.md) join with `--distributed` (Cloud TPU
pods, SLURM, Open MPI: JAX detects the rest) or with `--coordinator_address`,
`--num_processes` and `--process_id`; without any of them this is a single
process and nothing is initialised.

Exit status: 0 when every stage ran; 143 (SIGTERM) or 130 (SIGINT) when a signal
stopped training after the step in flight, with "preempted at step N; checkpoint
saved in DIR; rerun the same command to resume" logged (128 + the signal number:
the status a shell reports for a process killed by that signal); 1 on an error.
Rerunning resumes from that checkpoint (`ssl_jax.guards`).
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally with ':arg'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "Multi-process runs: HOST:PORT of process 0, which serves the JAX coordinator on that port "
    "(default: $JAX_COORDINATOR_ADDRESS). The same on every process.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: the number of processes.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process runs: this process, 0 .. num_processes - 1.",
    lower_bound=0)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() even without the three flags above, letting JAX "
    "detect them: Cloud TPU pods (every worker), SLURM, Open MPI.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Imported here so that `--help` and flag errors come before JAX starts.
    from ssl_jax import distributed, stages, train, validate

    # Before anything touches a JAX backend (validate counts devices).
    try:
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               auto_detect=_DISTRIBUTED.value)
    except ValueError as error:  # A bad flag value: usage, not a traceback.
        raise app.UsageError(str(error)) from None
    config = _CONFIG.value
    validate.validate(config)
    logging.info("config:\n%s", config)
    try:
        stages.run_stages(config, _WORKDIR.value)
    except train.Preempted as preempted:  # Already logged by `train.train`.
        return preempted.exit_code


if __name__ == "__main__":
    app.run(main)
