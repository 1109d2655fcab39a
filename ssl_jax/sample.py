"""Sample text from a pretrained GPT: `python -m ssl_jax.sample --config ... --workdir DIR`.

Restores the latest pretraining checkpoint of the run in `--workdir` (or
`config.eval.pretrained_checkpoints`), encodes `--prompt` with the config's
tokenizer (`data.text.tokenizer_for`), samples `--num_tokens` tokens
(`methods.gpt.generate`: temperature, top-k, a sliding window of
`config.input.seq_len` tokens) and prints the prompt and its continuation.

    python -m ssl_jax.sample --config configs/gpt_shakespeare.py --workdir /tmp/gpt_shakespeare \
        --prompt "ROMEO:" --num_tokens 300 --temperature 0.8 --top_k 20 --seed 0
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags


def define_flags():
    """The command line's flags; defined only when run as a program, so that importing this
    module next to `ssl_jax.main` (which has --config and --workdir too) is harmless."""
    config_flags.DEFINE_config_file(
        "config", None, "Path to the config file of the GPT run, optionally with ':arg'.",
        lock_config=True)
    flags.DEFINE_string("workdir", None, "The run's directory (holds pretrain/).")
    flags.DEFINE_string("prompt", "\n", "Text the sample continues.")
    flags.DEFINE_integer("num_tokens", 300, "Tokens to sample.", lower_bound=1)
    flags.DEFINE_float("temperature", 0.8,
                       "Softmax temperature; 0 = always the most likely token.", lower_bound=0)
    flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens only (0 = all).",
                         lower_bound=0)
    flags.DEFINE_integer("seed", 0, "Random seed of the sampling.")
    flags.mark_flags_as_required(["config", "workdir"])


def sample_text(config, workdir: str, prompt: str, num_tokens: int, temperature: float,
                top_k: int, seed: int) -> str:
    """The prompt followed by `num_tokens` sampled tokens, decoded."""
    # Imported here so that --help and flag errors come before JAX starts.
    import jax
    import numpy as np

    from ssl_jax import stages, validate
    from ssl_jax.data import sources, text
    from ssl_jax.methods import gpt

    if config.method.name != "gpt":
        raise ValueError(f"config.method.name={config.method.name!r}: sampling needs a 'gpt' "
                         "(next-token) model")
    validate.validate(config)
    tokenizer = text.tokenizer_for(config.input)
    prompt_ids = tokenizer.encode(prompt)
    run, variables = stages.load_pretrained(config, pathlib.Path(workdir),
                                            sources.load(config.input))
    generated = gpt.generate(run.method, variables, prompt_ids, num_tokens,
                             jax.random.key(seed), temperature, top_k)
    return tokenizer.decode(np.concatenate([prompt_ids, generated]))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        print(sample_text(f.config, f.workdir, f.prompt, f.num_tokens, f.temperature, f.top_k,
                          f.seed))
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"ssl_jax.sample: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
