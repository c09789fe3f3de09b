"""Devices, the ('members', 'data') mesh and shardings of the train state and the batches.

The mesh has two axes: 'members' splits the ensemble axis S of the train state, of
the per-member hyperparameters (part of the state) and of the batch [S, B, ...];
'data' splits each member's batch B. A state sharded over 'members' holds each
member on one group of 'data' devices only (no copies elsewhere); with one member
device (the default on CPU and for one member) the state is replicated and only the
batch is split, as plain data parallelism.

In a multi-process job every process calls `initialize()` first and feeds only its
own block of the global batch (`local_block`); `global_batch` assembles the global
array without gathering anything, and `fetch` brings a (possibly non-addressable)
array to every host.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MEMBER_AXIS = "members"
DATA_AXIS = "data"


def initialize(multi_host: bool) -> None:
  """Starts the multi-process runtime when asked (a no-op for one process, which logs nothing).

  The coordinator, process count and process id come from the cluster (TPU pods,
  SLURM, ...: jax.distributed's detection) or from JAX_COORDINATOR_ADDRESS
  ("host:port" of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID, e.g. several
  processes on one machine.
  """
  if not multi_host:
    return
  if not jax.distributed.is_initialized():
    env = {k: int(os.environ[k]) for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if os.environ.get(k)}
    jax.distributed.initialize(num_processes=env.get("JAX_NUM_PROCESSES"), process_id=env.get("JAX_PROCESS_ID"))
  logging.info(
      "JAX process %d/%d, %d local / %d global devices (%s).",
      jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
      jax.devices()[0].platform,
  )


# Most members that vmap_members unrolls on CPU: each one adds a copy of the model to
# the compiled program, so compile time grows with the count.
MAX_UNROLLED_MEMBERS = 8


def vmap_members(fn: Callable, in_axes: int | None | Sequence[int | None] = 0,
                 unroll: bool | None = None) -> Callable:
  """`jax.vmap(fn, in_axes)` over the ensemble axis, or the same computed member by member.

  Arguments with in_axis 0 carry a leading ensemble axis [S, ...] (None: shared by
  every member); outputs get one too. With S == 1 the arguments are squeezed and
  `fn` runs as a single model. With `unroll` (default: on the CPU backend, for
  S <= MAX_UNROLLED_MEMBERS) `fn` is called once per member and the outputs are
  stacked. Both because XLA:CPU runs the batched operations vmap makes far slower
  than the plain ones: a batched matrix product doubles the MLP train step at batch
  256, and vmapped convolutions (grouped by member) make 3 conv64 members' step
  about 3× slower than 3 single-member steps (benchmarks/step_breakdown.py).
  """
  batched = jax.vmap(fn, in_axes=in_axes)

  def call(*args):
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    sizes = {leaf.shape[0] for arg, axis in zip(args, axes) if axis == 0 for leaf in jax.tree.leaves(arg)}
    if len(sizes) != 1:
      raise ValueError(f"Arguments mapped over the ensemble axis disagree on its size: {sorted(sizes)}.")
    (num_members,) = sizes
    by_member = (num_members <= MAX_UNROLLED_MEMBERS and jax.default_backend() == "cpu") if unroll is None else unroll
    if num_members > 1 and not by_member:
      return batched(*args)
    outputs = [fn(*[jax.tree.map(lambda a: a[m], arg) if axis == 0 else arg for arg, axis in zip(args, axes)])
               for m in range(num_members)]
    return jax.tree.map(lambda *member_outputs: jnp.stack(member_outputs), *outputs)

  return call


def default_member_devices(num_members: int, num_devices: int, backend: str) -> int:
  """How many devices the 'members' axis gets when the config leaves it to us (0).

  On accelerators gcd(num_members, num_devices): members never need to talk to each
  other, so each device group trains whole members, no state is copied and no
  gradient is all-reduced. On CPU 1 (the state replicated, the batch split): a CPU
  process normally has one device, and several forced CPU devices share its cores and
  memory; set parallel.member_devices there to shard (16 MLP members on 8 forced
  devices: 10× the steps/s of the replicated layout, docs/scaling.md).
  """
  if backend == "cpu" or num_devices == 1:
    return 1
  return math.gcd(num_members, num_devices)


def create_mesh(num_devices: int | None = None, member_devices: int = 1, *, num_members: int | None = None,
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('members', 'data') mesh of member_devices × (devices / member_devices).

  Over `devices` (default: all), or the first `num_devices`. Devices go in jax.devices() order
  (process by process), 'members' outermost, so a member's 'data' group stays within
  one host when it can. member_devices=0 picks `default_member_devices`. With
  `num_members`, raises ValueError unless member_devices divides it.
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices is not None:
    devices = devices[:num_devices]
  n = len(devices)
  if member_devices == 0:
    member_devices = default_member_devices(num_members or 1, n, devices[0].platform)
  if member_devices < 1 or n % member_devices:
    raise ValueError(f"parallel.member_devices={member_devices} does not divide the {n} device(s); use a divisor "
                     f"of {n} (or 0 to choose automatically).")
  if num_members is not None and num_members % member_devices:
    raise ValueError(f"parallel.member_devices={member_devices} does not divide ensemble.num_members={num_members}; "
                     "use a divisor of both (or 0 to choose automatically).")
  return Mesh(np.asarray(devices).reshape(member_devices, n // member_devices), (MEMBER_AXIS, DATA_AXIS))


def mesh_for(config) -> Mesh:
  """The mesh of a run: config.parallel.member_devices × the rest, for config.ensemble.num_members."""
  return create_mesh(member_devices=config.parallel.member_devices, num_members=config.ensemble.num_members)


def member_devices(mesh: Mesh) -> int:
  """The size of the mesh's 'members' axis (1 for a mesh without one)."""
  return dict(mesh.shape).get(MEMBER_AXIS, 1)


def data_devices(mesh: Mesh) -> int:
  """The size of the mesh's 'data' axis."""
  return dict(mesh.shape)[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device."""
  return NamedSharding(mesh, P())


def state_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of the train state (every leaf [S, ...]): S split over 'members', copies over 'data'."""
  return NamedSharding(mesh, P(MEMBER_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of a global batch [S, B, ...]: S over 'members', B over 'data'."""
  return NamedSharding(mesh, P(MEMBER_AXIS, DATA_AXIS))


def shard_members(fn: Callable, mesh: Mesh, in_specs: Any = P(MEMBER_AXIS)) -> Callable:
  """`fn` run on each 'members' shard's own members ([S / member_devices, ...] per shard).

  A shard_map over 'members' only: inside, 'data' stays automatic (the compiler splits
  the batch and all-reduces the gradients), and `fn` sees its shard's members as an
  ordinary (smaller) ensemble, so `vmap_members` unrolls them on CPU as for one
  device. Every output of `fn` carries the leading ensemble axis, and every argument
  unless `in_specs` says otherwise (P() for one shared by all members). Members
  never communicate. With one member device, `fn` itself.
  """
  if member_devices(mesh) == 1:
    return fn
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(MEMBER_AXIS), axis_names={MEMBER_AXIS},
                       check_vma=False)


def local_block(mesh: Mesh, num_members: int, batch_size: int) -> tuple[slice, slice]:
  """(members, batch positions) of the global batch [S, B] that this process's devices hold.

  Each process renders and feeds exactly this block (`global_batch`). Raises
  ValueError when S or B does not split evenly over the mesh.
  """
  if batch_size % data_devices(mesh):
    raise ValueError(f"batch_size={batch_size} is not divisible by the {data_devices(mesh)} devices of the mesh's "
                     "'data' axis; set --config.batch_size to a multiple of it.")
  if num_members % member_devices(mesh):
    raise ValueError(f"ensemble.num_members={num_members} is not divisible by the {member_devices(mesh)} devices "
                     "of the mesh's 'members' axis; set parallel.member_devices to a divisor of it.")
  index_map = batch_sharding(mesh).addressable_devices_indices_map((num_members, batch_size))
  blocks = []
  for dim, size in enumerate((num_members, batch_size)):
    ranges = {idx[dim].indices(size)[:2] for idx in index_map.values()}
    start, stop = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if sum(b - a for a, b in ranges) != stop - start:
      raise ValueError(f"This process's devices hold a non-contiguous part of axis {dim} of the batch: {sorted(ranges)}.")
    blocks.append(slice(start, stop))
  return blocks[0], blocks[1]


def global_batch(local_batch: np.ndarray, mesh: Mesh, num_members: int | None = None,
                 batch_size: int | None = None) -> jax.Array:
  """The global batch [S, B, ...] from this process's block of it (`local_block`).

  S defaults to the local block's, B to the local block's times the process count
  (each process feeding a slice of B, as with one member device).
  """
  num_members = local_batch.shape[0] if num_members is None else num_members
  batch_size = local_batch.shape[1] * jax.process_count() if batch_size is None else batch_size
  if batch_size % data_devices(mesh):
    raise ValueError(f"The global batch size {batch_size} is not divisible by the {data_devices(mesh)} devices of "
                     "the mesh's 'data' axis; set --config.batch_size to a multiple of it.")
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch,
                                                (num_members, batch_size, *local_batch.shape[2:]))


def fetch(tree: Any) -> Any:
  """`tree` as NumPy arrays on this host, gathered from other processes where needed.

  Every process must call it for arrays that span processes (a collective).
  """
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(one, tree)


def process_local(tree: Any, mesh: Mesh) -> tuple[Any, Mesh]:
  """(tree, mesh) that this process can compute with alone.

  Arrays that span processes are gathered (`fetch`, a collective) and the mesh becomes
  this process's own devices, split as `mesh` is where they allow it; otherwise both
  are returned unchanged. For work every process repeats, such as the evaluation.
  """
  if not any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree.leaves(tree)):
    return tree, mesh
  local = jax.local_devices()
  num_members = jax.tree.leaves(tree)[0].shape[0]
  split = math.gcd(member_devices(mesh), len(local), num_members)
  return fetch(tree), create_mesh(member_devices=split, devices=local)
