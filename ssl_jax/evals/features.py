"""Frozen features of a whole image array, computed on the device mesh in batches."""

import jax
import numpy as np

from ssl_jax import sharding


def extract(fn, variables, images: np.ndarray, mesh: jax.sharding.Mesh,
            batch_size: int) -> np.ndarray:
    """`fn(variables, images_batch)` over `images` in batches sharded on `'data'`.

    The last batch is padded to `batch_size` (so the function compiles once) and
    the padding is dropped from the result.
    """
    sharding.check_batch_size(batch_size, mesh, field="config.eval.batch_size")
    variables = sharding.replicate(variables, mesh)
    apply = jax.jit(fn, out_shardings=sharding.replicated(mesh))
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.concatenate(
            [chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out = apply(variables, jax.device_put(padded, sharding.batch_sharded(mesh)))
        outputs.append(np.asarray(jax.device_get(out))[:len(chunk)])
    return np.concatenate(outputs)
