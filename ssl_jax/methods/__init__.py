"""Registry of SSL methods: `config.method.name` -> `Method` subclass."""

import ml_collections

from ssl_jax.methods.autoencoder import Autoencoder
from ssl_jax.methods.base import Method
from ssl_jax.methods.bert import BERT
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.context import ContextPrediction
from ssl_jax.methods.directpred import DirectPred
from ssl_jax.methods.fixmatch import FixMatch
from ssl_jax.methods.gpt import GPT
from ssl_jax.methods.ijepa import IJEPA
from ssl_jax.methods.mae import MAE
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.multitask import MultiTask
from ssl_jax.methods.redundancy import BarlowTwins, VICReg
from ssl_jax.methods.rotation import Rotation
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.supervised import Supervised

METHODS = {"simclr": SimCLR, "mocov2": MoCoV2, "mocov3": MoCoV3, "byol": BYOL,
           "simsiam": SimSiam, "directpred": DirectPred, "barlow_twins": BarlowTwins,
           "vicreg": VICReg, "rotation": Rotation, "context_prediction": ContextPrediction,
           "autoencoder": Autoencoder, "denoising_autoencoder": Autoencoder,
           "multitask": MultiTask, "mae": MAE, "ijepa": IJEPA, "bert": BERT, "gpt": GPT,
           "supervised": Supervised, "fixmatch": FixMatch}


def build(config: ml_collections.ConfigDict, num_classes: int, total_steps: int = 1) -> Method:
    """The method named by `config.method.name`, bound to the whole config."""
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"config.method.name={name!r}: unknown method; "
                         f"expected one of {sorted(METHODS)}")
    return METHODS[name](config, num_classes, total_steps)
