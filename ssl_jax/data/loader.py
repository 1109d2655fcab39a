"""Deterministic, resumable host-side batching of in-memory arrays.

The training stream is the concatenation of per-epoch permutations of the
examples, epoch e shuffled by `np.random.default_rng([seed, e])`. Global batch
`s` is positions `[s * B, (s + 1) * B)` of that stream, so the batch of any
step is a pure function of (seed, step): a resumed run sees exactly the data an
uninterrupted run would, with no iterator state to checkpoint. A batch may be
larger than the dataset (few-label fine-tuning): it then spans epochs.

Each process slices its own contiguous share of the global batch; the device
mesh assembles the global array from the shares (`sharding.to_global`). Over an
epoch the processes therefore see disjoint sets of examples whose union is the
whole dataset.

The trainer reads every training stream through the same small interface
(`Pipeline`), which `StepBatcher` implements for arrays in host memory and
`data.tfds_pipeline.TFDSPipeline` for tf.data.
"""

import itertools
import math
from collections.abc import Iterator
from typing import Protocol

import jax
import numpy as np

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]


class Pipeline(Protocol):
    """A training stream: this process's share of global batch s, for s = start, start + 1, ..."""

    global_batch_size: int
    num_examples: int

    @property
    def steps_per_epoch(self) -> float: ...

    def steps_for_epochs(self, epochs: float) -> int: ...

    def spec(self) -> Spec:
        """Shape and dtype of each array of this process's batch."""

    def batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps start_step, start_step + 1, ... (forever; epochs repeat)."""


class StepBatcher:
    """Batches of `arrays` (a dict of equally long NumPy arrays) by global step."""

    def __init__(self, arrays: dict[str, np.ndarray], global_batch_size: int, seed: int, *,
                 process_index: int | None = None, process_count: int | None = None):
        sizes = {name: len(a) for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays of different lengths: {sizes}")
        self.arrays = arrays
        self.num_examples = next(iter(sizes.values()))
        if self.num_examples == 0:
            raise ValueError("cannot batch an empty dataset")
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % self.process_count:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                             f"number of processes ({self.process_count})")
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

    def local_indices(self, step: int) -> np.ndarray:
        """Example indices of this process's contiguous share of global batch `step`."""
        local = self.global_batch_size // self.process_count
        return self.global_indices(step)[self.process_index * local:
                                         (self.process_index + 1) * local]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's share of global batch `step`."""
        mine = self.local_indices(step)
        return {name: a[mine] for name, a in self.arrays.items()}

    def spec(self) -> Spec:
        local = self.global_batch_size // self.process_count
        return {name: ((local, *a.shape[1:]), a.dtype) for name, a in self.arrays.items()}

    def batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        return (self.batch(step) for step in itertools.count(start_step))


class LabeledUnlabeledBatcher:
    """Semi-supervised batches: B labelled examples and mu B unlabelled ones per step, each
    set drawn by its own `StepBatcher` (FixMatch's sampling; Sohn et al. 2020). An epoch
    is a pass over the unlabelled set; the few labelled examples repeat more often."""

    def __init__(self, labeled: dict[str, np.ndarray], unlabeled: dict[str, np.ndarray],
                 labeled_batch_size: int, unlabeled_batch_size: int, seed: int):
        if set(labeled) & set(unlabeled):
            raise ValueError(f"labelled and unlabelled arrays share the keys "
                             f"{sorted(set(labeled) & set(unlabeled))}")
        self.labeled = StepBatcher(labeled, labeled_batch_size, seed)
        self.unlabeled = StepBatcher(unlabeled, unlabeled_batch_size, seed + 1)
        self.global_batch_size = labeled_batch_size + unlabeled_batch_size
        self.num_examples = self.unlabeled.num_examples

    @property
    def steps_per_epoch(self) -> float:
        return self.unlabeled.steps_per_epoch

    def steps_for_epochs(self, epochs: float) -> int:
        return self.unlabeled.steps_for_epochs(epochs)

    def spec(self) -> Spec:
        return {**self.labeled.spec(), **self.unlabeled.spec()}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's share of both global batches of `step`."""
        return {**self.labeled.batch(step), **self.unlabeled.batch(step)}

    def batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        return (self.batch(step) for step in itertools.count(start_step))


def zeros_like_spec(spec: Spec) -> dict[str, np.ndarray]:
    """A batch of zeros with the shapes and dtypes of `spec` (for shape-only uses: init)."""
    return {name: np.zeros(shape, dtype) for name, (shape, dtype) in spec.items()}


def streamed(config) -> bool:
    """Whether `config.input` is read as a stream (tf.data) rather than held as arrays."""
    return config.input.dataset == "tfds"


def train_pipeline(config, dataset, unlabeled_inputs: np.ndarray | None = None) -> Pipeline:
    """The training stream of `config.input`: tf.data for TFDS, else `StepBatcher` over
    the in-memory arrays of `dataset` (an `ArrayDataset`; None only when streamed).

    With `unlabeled_inputs` (self-training) each batch also holds
    `config.method.unlabeled_ratio` times as many of them, under `unlabeled_<input key>`
    (`LabeledUnlabeledBatcher`)."""
    if streamed(config):
        from ssl_jax.data import tfds_pipeline  # Imports TensorFlow: only on this path.

        return tfds_pipeline.TFDSPipeline(config)
    if dataset is None:
        raise ValueError(f"config.input.dataset={config.input.dataset!r} trains from "
                         "in-memory arrays, but no dataset was given")
    labeled = {dataset.input_key: dataset.train_inputs, "label": dataset.train_labels}
    if unlabeled_inputs is None:
        return StepBatcher(labeled, config.input.batch_size, seed=config.seed)
    if "unlabeled_ratio" not in config.method:
        raise ValueError(f"config.method.name={config.method.name!r} does not train on "
                         "unlabelled inputs (no config.method.unlabeled_ratio)")
    batch_size = config.input.batch_size
    return LabeledUnlabeledBatcher(
        labeled, {f"unlabeled_{dataset.input_key}": unlabeled_inputs}, batch_size,
        config.method.unlabeled_ratio * batch_size, seed=config.seed)
