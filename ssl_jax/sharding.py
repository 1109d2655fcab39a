"""Device mesh, shardings, and host batches -> global arrays.

The train step is one `jax.jit` over a `Mesh` with a single `'data'` axis (the
successor of `pmap`): batches are sharded on their leading axis, parameters and
optimizer state are replicated. A loss written on the global batch is then
global across devices, and BatchNorm statistics are synchronised, with no
hand-written collectives.
"""

import queue
import threading
from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int = -1) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (-1: all of them)."""
    devices = jax.devices()
    if num_devices == -1:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"config.mesh.num_devices={num_devices}: this host has "
                         f"{len(devices)} device(s); use -1 for all of them")
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `'data'`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str = "config.input.batch_size"):
    """Raise a clear error unless the global batch splits evenly over devices and processes."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(f"{field}={global_batch_size} is not divisible by the number of "
                         f"devices ({devices}); pick a multiple of {devices}")
    if global_batch_size % jax.process_count():
        raise ValueError(f"{field}={global_batch_size} is not divisible by the number of "
                         f"processes ({jax.process_count()})")


def to_global(batch, mesh: Mesh):
    """Host-local NumPy batch (this process's share) -> global arrays sharded on `'data'`."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate(tree, mesh: Mesh):
    """Place a pytree (params, optimizer state) replicated on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


_END = object()


class DevicePrefetcher:
    """Iterate global device arrays made from host batches, `size` batches ahead.

    A daemon thread pulls host batches (this process's share) from `batches`,
    places them on the mesh with `to_global` and queues them, so reading,
    decoding and host-to-device copies overlap the running step. An exception
    in the thread is raised again by `__next__`; `close()` stops the thread.
    """

    def __init__(self, batches: Iterable[dict], mesh: Mesh, size: int = 2):
        if size < 1:
            raise ValueError(f"config.input.prefetch={size}: must be >= 1")
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(batches), mesh),
                                         daemon=True, name="device-prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, batches: Iterator[dict], mesh: Mesh):
        try:
            for batch in batches:
                if not self._put(to_global(batch, mesh)):
                    return
            self._put(_END)
        except BaseException as error:  # Handed to the consumer, raised there.
            self._put(error)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
