r"""GPT next-token prediction on tiny-shakespeare, character level, sized for a CPU.

nanoGPT's CPU setting of `config/train_shakespeare_char.py` (Karpathy): a causal
transformer of 4 blocks, 4 heads, width 128 (0.83M parameters; 0.89M with the LM
head), context 64 characters, AdamW lr 1e-3, betas (0.9, 0.99), weight decay
0.1, gradient clipping 1.0, 100 warm-up steps (here 0.2 epochs = 98 steps) then
cosine to 1e-4, 2,000 steps, no dropout; nanoGPT reports val loss ~1.88 for it.
Differences: batch 32 windows (nanoGPT: 12) taken from the non-overlapping
64-character windows of the first 90% of the text (nanoGPT: windows at random
offsets), each window giving 63 predictions; bytes as tokens (260 ids, the same
as characters on this ASCII file); an untied output head
(`methods.language_model`).

Stages: pretrain, then `lm_eval`, the loss (nats/character) over every window
of the last 10% of the text.

    python -m ssl_jax.main --config configs/gpt_shakespeare.py --workdir /tmp/gpt_shakespeare
    python -m ssl_jax.sample --config configs/gpt_shakespeare.py --workdir /tmp/gpt_shakespeare \
        --prompt "ROMEO:" --num_tokens 300 --temperature 0.8 --top_k 20

`:runlocal` is a seconds-long smoke run (tiny model, 32-character windows, 6 steps).
"""

from ssl_jax.config import base_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = base_config(dataset="text", batch_size=32, data_dir="../shared/data/text",
                         method="gpt")
    config.input.update(dict(tokenizer="byte", seq_len=64))
    config.model = default_model_config("text_transformer")
    config.model.update(dict(vocab_size=260, width=128, depth=4, num_heads=4, pool="gap",
                             posemb="learn", causal=True))
    config.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", b1=0.9, b2=0.99,
                             weight_decay=0.1, grad_clip_norm=1.0))
    config.schedule.update(dict(steps=2000, warmup_epochs=0.2, final_lr_fraction=0.1))
    config.eval.baselines = ()
    config.eval.batch_size = 256
    config.checkpoint.every_steps = 1000
    config.log.every_steps = 100
    config.stages = ("pretrain", "lm_eval")
    if arg == "runlocal":
        runlocal(config)
        config.input.seq_len = 32
    return config
