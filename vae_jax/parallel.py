"""Devices, mesh and shardings: data parallelism with jax.jit and NamedSharding.

Parameters and optimiser state are replicated (P()); each global batch
[S, B, H, W, C] is split over the mesh's 'data' axis along B. In a multi-host job
every process calls `initialize()` first and feeds only its own slice of the batch;
`global_batch` assembles the global array without gathering anything.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize(multi_host: bool) -> None:
  """Starts the multi-host runtime when asked (a no-op for one process)."""
  if multi_host:
    jax.distributed.initialize()
  logging.info(
      "JAX process %d/%d, %d local / %d global devices (%s).",
      jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
      jax.devices()[0].platform,
  )


def vmap_members(fn: Callable, in_axes: int | None | Sequence[int | None] = 0) -> Callable:
  """`jax.vmap(fn, in_axes)` over the ensemble axis, which calls `fn` unbatched for one member.

  Arguments with in_axis 0 carry a leading ensemble axis [S, ...] (None: shared by
  every member); outputs get one too. With S == 1 the arguments are squeezed and
  `fn` runs as a single model, because XLA:CPU turns every matrix product under
  vmap into a batched product, which runs far slower than the plain one: about 2×
  the time of the MLP train step at batch 256 (benchmarks/step_breakdown.py).
  """
  batched = jax.vmap(fn, in_axes=in_axes)

  def call(*args):
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    sizes = {leaf.shape[0] for arg, axis in zip(args, axes) if axis == 0 for leaf in jax.tree.leaves(arg)}
    if sizes != {1}:
      return batched(*args)
    squeezed = [jax.tree.map(lambda a: a[0], arg) if axis == 0 else arg for arg, axis in zip(args, axes)]
    return jax.tree.map(lambda a: a[None], fn(*squeezed))

  return call


def create_mesh(num_devices: int | None = None) -> Mesh:
  """A one-axis ('data') mesh over all devices, or over the first `num_devices`."""
  devices = jax.devices()
  if num_devices is not None:
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters and optimiser state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of a global batch [S, B, ...]: B split over the 'data' axis."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def global_batch(local_batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """The global batch array from this process's slice [S, B / processes, ...]."""
  sharding = batch_sharding(mesh)
  batch_size = local_batch.shape[1] * jax.process_count()
  if batch_size % mesh.shape[DATA_AXIS]:
    raise ValueError(
        f"The global batch size {batch_size} is not divisible by the {mesh.shape[DATA_AXIS]} devices; "
        "set --config.batch_size to a multiple of the device count."
    )
  return jax.make_array_from_process_local_data(sharding, local_batch)
