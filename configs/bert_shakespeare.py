r"""BERT masked-language modelling on tiny-shakespeare, character level, sized for a CPU.

configs/gpt_shakespeare.py (with the same `arg`: the same 4-block, 4-head,
width-128 transformer on 64-byte windows of the first 90% of the text, AdamW
lr 1e-3 with betas (0.9, 0.99), 2,000 steps) with bidirectional attention and
BERT's masking (Devlin et al. 2019): 15% of the characters selected, of those
80% -> MASK, 10% -> a random byte, 10% unchanged; the loss is the cross-entropy
of the original character at the selected positions. Weight decay 0.01 as BERT.

Stages: pretrain, then `lm_eval`, the masked-LM loss (nats per selected
character) over every window of the last 10% of the text, with one fixed
masking so the number is reproducible.

    python -m ssl_jax.main --config configs/bert_shakespeare.py --workdir /tmp/bert_shakespeare

`:runlocal` is a seconds-long smoke run (tiny model, 32-character windows, 6 steps).
"""

import pathlib

from ssl_jax.config import load_config_file, method_config


def get_config(arg: str | None = None):
    """configs/gpt_shakespeare.py (with the same `arg`) with BERT's masked LM."""
    config = load_config_file(str(pathlib.Path(__file__).with_name("gpt_shakespeare.py")), arg)
    config.method = method_config("bert", config.input.image_size)
    config.model.causal = False
    config.optim.weight_decay = 0.01
    return config
