"""Deterministic, resumable host-side batching of in-memory arrays.

The training stream is the concatenation of per-epoch permutations of the
examples, epoch e shuffled by `np.random.default_rng([seed, e])`. Global batch
`s` is positions `[s * B, (s + 1) * B)` of that stream, so the batch of any
step is a pure function of (seed, step): a resumed run sees exactly the data an
uninterrupted run would, with no iterator state to checkpoint. A batch may be
larger than the dataset (few-label fine-tuning): it then spans epochs.

Each process slices its own contiguous share of the global batch; the device
mesh assembles the global array from the shares (`sharding.to_global`).
"""

import math

import jax
import numpy as np


class StepBatcher:
    """Batches of `arrays` (a dict of equally long NumPy arrays) by global step."""

    def __init__(self, arrays: dict[str, np.ndarray], global_batch_size: int, seed: int):
        sizes = {name: len(a) for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays of different lengths: {sizes}")
        self.arrays = arrays
        self.num_examples = next(iter(sizes.values()))
        if self.num_examples == 0:
            raise ValueError("cannot batch an empty dataset")
        self.global_batch_size = global_batch_size
        self.seed = seed
        self._cached_epoch = (None, None)

    @property
    def steps_per_epoch(self) -> float:
        return self.num_examples / self.global_batch_size

    def steps_for_epochs(self, epochs: float) -> int:
        return max(1, math.ceil(epochs * self.steps_per_epoch))

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._cached_epoch[0] != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            self._cached_epoch = (epoch, perm)
        return self._cached_epoch[1]

    def global_indices(self, step: int) -> np.ndarray:
        """Example indices of global batch `step`."""
        start = step * self.global_batch_size
        positions = np.arange(start, start + self.global_batch_size)
        epochs, offsets = np.divmod(positions, self.num_examples)
        return np.concatenate([self._permutation(e)[offsets[epochs == e]]
                               for e in np.unique(epochs)])

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's share of global batch `step`."""
        indices = self.global_indices(step)
        local = len(indices) // jax.process_count()
        mine = indices[jax.process_index() * local:(jax.process_index() + 1) * local]
        return {name: a[mine] for name, a in self.arrays.items()}
