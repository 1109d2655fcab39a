"""Registry of SSL methods: `config.method.name` -> `Method` subclass."""

import ml_collections

from ssl_jax.methods.base import Method
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.supervised import Supervised

METHODS = {"simclr": SimCLR, "supervised": Supervised}


def build(config: ml_collections.ConfigDict, num_classes: int) -> Method:
    """The method named by `config.method.name`, bound to the whole config."""
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"config.method.name={name!r}: unknown method; "
                         f"expected one of {sorted(METHODS)}")
    return METHODS[name](config, num_classes)
