r"""I-JEPA on MNIST.

The MNIST setting of `ssl_jax.config.mnist_config` (batch 256, 3 epochs = 704 steps,
stages pretrain, kNN, linear probe, fine-tune) with a ViT sized for a 2-core CPU: width
64, 4 blocks, 4 heads, 4x4 patches (a 7x7 grid), mean pooling (no CLS token); the
predictor is half as wide (32) and 2 blocks deep. I-JEPA's step is costly for its size:
the target encoder sees every patch and the predictor runs once per target block (4 x 256
sequences of 49 context + 12 target slots); a 128-wide encoder doubles the step time.
Masks, loss and EMA are the paper's (`ssl_jax.methods.ijepa`): 4 target blocks of 15-20%
of the grid, a context block of 85-100% without them, smooth L1 on LayerNorm'ed target
tokens, EMA 0.996 -> 1 (linear).
Views are crops of 30-100% of the area only. AdamW with the official betas (0.9, 0.999)
and weight decay 0.04 (the start of the official 0.04 -> 0.4 schedule; the library's
decay is constant), lr 1e-3 (the official peak) with warm-up and cosine decay.

    python -m ssl_jax.main --config configs/ijepa_mnist.py --workdir /tmp/ijepa_mnist

`:runlocal` is a seconds-long smoke run (tiny ViT and predictor, 1,000 training images).
"""

from ssl_jax.config import mnist_config, runlocal
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = mnist_config("ijepa")
    config.model = default_model_config("vit")
    config.model.update(dict(width=64, depth=4, num_heads=4, patch_size=4, pool="gap"))
    config.method.predictor.update(dict(hidden_dim=32, depth=2))
    config.optim.update(dict(name="adamw", lr=1e-3, lr_scaling="none", weight_decay=0.04,
                             b1=0.9, b2=0.999))
    if arg == "runlocal":
        runlocal(config, train_limit=1000)
    return config
