r"""BERT masked-LM pretraining on movie reviews, then sentiment from few labels.

Pang & Lee's polarity dataset v2.0 (`data.text`, "movie_reviews"): 1,800
training and 200 test reviews, classes neg/pos. Each review is [CLS] + its first
255 word tokens (the 7,996 most frequent words of the training reviews, the rest
UNK), padded to 256. Pretraining reads the 1,800 training reviews with BERT's
masking (Devlin et al. 2019: 15% of the words selected, 80/10/10
MASK/random/unchanged); the labels reach only the online linear probe, whose
gradient stops at the features. A CPU-sized bidirectional transformer: 2
blocks, 4 heads, width 128 (1.45M parameters, 1.02M of them the word
embeddings; the LM head has 1.05M more, and its 8,000-way output is most of a
step's cost, so it scores only the first 64 selected positions of each review:
about 37 ± 6 are selected, so practically none is left out),
learned positions, mean over non-padding tokens as the feature (pool "gap");
batch 32, 10 epochs (563 steps), AdamW lr 1e-3, weight decay 0.01, gradient
clipping 1.0, one epoch of warm-up then cosine.

Evaluation of the pooled features: kNN and linear probe with 50 labels per
class and with all 1,800, against the same encoder at random init and the bag
of words (normalised token counts); fine-tuning the whole encoder on 50
reviews per class (100 labels) against the same network trained from scratch
on them.

    python -m ssl_jax.main --config configs/bert_movie_reviews.py --workdir /tmp/bert_movie_reviews

`:runlocal` is a seconds-long smoke run (tiny model, 1,000 words, 32 tokens, 200 reviews).
"""

from ssl_jax.config import base_config, runlocal
from ssl_jax.models import default_model_config

VOCAB_SIZE = 8000


def get_config(arg: str | None = None):
    config = base_config(dataset="movie_reviews", batch_size=32, data_dir="../shared/data/text",
                         method="bert")
    config.method.update(dict(online_probe=True, max_predictions=64))
    config.input.update(dict(tokenizer="word", vocab_size=VOCAB_SIZE, seq_len=256))
    config.model = default_model_config("text_transformer")
    config.model.update(dict(vocab_size=VOCAB_SIZE, width=128, depth=2, num_heads=4, pool="gap",
                             posemb="learn", causal=False))
    config.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", b1=0.9, b2=0.999,
                             weight_decay=0.01, grad_clip_norm=1.0))
    config.schedule.update(dict(steps=0, epochs=10.0, warmup_epochs=1.0, final_lr_fraction=0.0))
    config.eval.update(dict(batch_size=200, labels_per_class=(50, 0), knn_k=(10, 20),
                            baselines=("random_init", "bag_of_tokens")))
    config.finetune.update(dict(labels_per_class=50, batch_size=32, from_scratch_baseline=True))
    config.finetune.optim.update(dict(lr=3e-4, weight_decay=0.01, grad_clip_norm=1.0))
    config.finetune.schedule.update(dict(steps=300, warmup_epochs=0.0))
    config.checkpoint.every_steps = 500
    config.log.every_steps = 50
    config.stages = ("pretrain", "knn", "linear_probe", "finetune")
    if arg == "runlocal":
        runlocal(config, train_limit=200)
        config.input.update(dict(vocab_size=1000, seq_len=32))
        config.model.vocab_size = 1000
    return config
