"""Data-parallel training over every device (all processes), with jax.sharding.

One 1-D device mesh with axis 'data' over ``jax.devices()`` (every device of every process).  An
update step keeps its meaning exactly; only where the arrays live changes:

    params, opt_state, step, key, p_pred   replicated:  NamedSharding(mesh, P())
    frames [T, B, H, W, 3], boxes [T, B, 4]  split on B:  NamedSharding(mesh, P(None, 'data'))
    valid_hw [B, 2]                          split on B:  NamedSharding(mesh, P('data'))

and the update is ``jax.jit(update, in_shardings=..., out_shardings=..., donate_argnums=0)``: XLA's
SPMD partitioner runs each device's share of the batch and inserts the all-reduce of the batch-mean
loss's gradient.  The program is the same as on one device (same random numbers, same global
batch), so the loss and the new parameters equal the single-device ones up to the order of the
floating-point reductions (tests/parallel_test.py measures it on 8 CPU devices).

A batch of B samples is split over d = gcd(B, n_devices) devices and replicated over the other
n_devices / d (a 2-D mesh ('data', 'replica') per batch size): a late curriculum stage with
B = 2 on 8 devices still runs, on 2-way data parallelism.

Multi-host (one process per host, each seeing its local devices): call
`maybe_initialize_distributed` before anything touches a device; `jax.devices()` then lists every
device of every process, and the mesh spans them all.  Every process computes the same global
batch (the samplers are deterministic in (seed, position)) and `shard_batch` hands each device its
rows, so no data is exchanged between hosts.  Checkpoints hold host numpy copies of the replicated
state: every process calls the orbax save (it synchronises them), process 0 writes the arrays, and
a checkpoint restores on any device count (the state is re-placed after the restore).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

PyTree = Any

DATA_AXIS = "data"
REPLICA_AXIS = "replica"
RE3_BATCH_AXES = (1, 1, 0)   # frames [T, B, ...], boxes [T, B, 4], valid_hw [B, 2]


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None,
                                 local_device_ids: Optional[Sequence[int]] = None) -> bool:
  """Joins a multi-process JAX run when a coordinator is given; otherwise does nothing.

  Must run before any JAX computation or device query.  Every process gets the same
  ``coordinator_address`` ('host:port' of process 0) and ``num_processes``, and its own
  ``process_id`` in [0, num_processes).

  Returns:
    True when jax.distributed.initialize was called.
  Raises:
    ValueError when the arguments are incomplete or out of range.
  """
  if not coordinator_address:
    if num_processes not in (None, 0, 1):
      raise ValueError(f"num_processes={num_processes} needs a coordinator address (host:port)")
    return False
  if num_processes is None or process_id is None:
    raise ValueError("a coordinator address needs num_processes and process_id")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"process_id={process_id} must be in [0, {num_processes})")
  kw = {}
  if local_device_ids is not None:
    kw["local_device_ids"] = list(local_device_ids)
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=int(num_processes),
                             process_id=int(process_id), **kw)
  return True


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """The 1-D ('data',) mesh over `devices` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices, dtype=object), (DATA_AXIS,))


@dataclasses.dataclass(frozen=True, eq=False)
class DataParallel:
  """Placement of a training run on a device mesh (see the module docstring).

  Attributes:
    mesh: the 1-D ('data',) mesh; default `make_mesh()`.
    batch_axes: per element of a batch tuple, the axis holding the batch (Re3: (1, 1, 0)).
  """
  mesh: Mesh = dataclasses.field(default_factory=make_mesh)
  batch_axes: Tuple[int, ...] = RE3_BATCH_AXES

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def data_ways(self, batch: int) -> int:
    """d = gcd(batch, n_devices): the number of devices a batch of this size is split over."""
    return math.gcd(int(batch), self.num_devices)

  @functools.lru_cache(maxsize=None)
  def _mesh2(self, ways: int) -> Mesh:
    devs = self.mesh.devices.reshape(-1)
    return Mesh(devs.reshape(ways, devs.size // ways), (DATA_AXIS, REPLICA_AXIS))

  def batch_shardings(self, batch: int) -> Tuple[NamedSharding, ...]:
    """The shardings of a batch tuple with `batch` samples (its batch axes split d ways)."""
    mesh = self._mesh2(self.data_ways(batch))
    return tuple(NamedSharding(mesh, P(*([None] * ax + [DATA_AXIS]))) for ax in self.batch_axes)

  def replicate(self, tree: PyTree) -> PyTree:
    """Places every leaf of `tree` on every device (global arrays; works across processes).

    Leaves may be numpy or (fully addressable or fully replicated) jax arrays; each process
    must pass the same values.
    """
    sh = self.replicated

    def put(x):
      if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sh, x.ndim):
        return x
      if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
      a = np.asarray(x)
      return jax.make_array_from_callback(a.shape, sh, lambda idx: a[idx])

    return jax.tree_util.tree_map(put, tree)

  def shard_batch(self, batch: Sequence[np.ndarray]) -> Tuple[jax.Array, ...]:
    """The global batch (the same numpy arrays on every process) as arrays split on the batch axis.

    Each device receives only its rows (a host-to-device copy of 1/d of the batch per device).
    Raises ValueError when the elements disagree on the batch size.
    """
    if len(batch) != len(self.batch_axes):
      raise ValueError(f"batch has {len(batch)} elements, batch_axes {self.batch_axes}")
    sizes = {np.shape(x)[ax] for x, ax in zip(batch, self.batch_axes)}
    if len(sizes) != 1:
      raise ValueError(f"batch elements disagree on the batch size: {sorted(sizes)}")
    shardings = self.batch_shardings(sizes.pop())
    out = []
    for x, sh in zip(batch, shardings):
      a = np.asarray(x)
      out.append(jax.make_array_from_callback(a.shape, sh, lambda idx, a=a: a[idx]))
    return tuple(out)

  def jit_update(self, update: Callable) -> Callable:
    """Jits ``update(state, batch, key, p_pred) -> (state, metrics)`` for the mesh.

    The returned function takes the same arguments: a state on the mesh (`replicate`), a batch
    from `shard_batch`, a key and p_pred (placed on the mesh here, cached by value, so a steady
    run copies nothing between host and device inside the step).  The state is donated; its
    output, like the metrics, is replicated.  One compilation per batch shape (as plain jit).
    """
    rep = self.replicated
    jitted = {}   # batch size -> jitted update (a batch size fixes the batch shardings)
    placed = {}   # 'key' -> (key object, replicated key); ('p', value) -> replicated p_pred

    def run(state, batch, key, p_pred):
      b = np.shape(batch[0])[self.batch_axes[0]]
      if b not in jitted:
        jitted[b] = jax.jit(update, in_shardings=(rep, self.batch_shardings(b), rep, rep),
                            out_shardings=(rep, rep), donate_argnums=(0,))
      if not all(isinstance(x, jax.Array) and x.sharding == sh
                 for x, sh in zip(batch, self.batch_shardings(b))):
        batch = self.shard_batch(batch)
      if placed.get("key", (None,))[0] is not key:   # the loop passes one key object per run
        placed["key"] = (key, self.replicate(key))
      pk = ("p", float(p_pred))
      if pk not in placed:
        placed[pk] = self.replicate(np.float32(p_pred))
      return jitted[b](state, tuple(batch), placed["key"][1], placed[pk])

    run.jitted = jitted
    return run


def is_main_process() -> bool:
  """True on process 0 (the one that writes logs and summaries)."""
  return jax.process_index() == 0
