"""Devices, mesh and shardings: data parallelism with jax.jit and NamedSharding.

Parameters and optimiser state are replicated (P()); each global batch
[S, B, H, W, C] is split over the mesh's 'data' axis along B. In a multi-host job
every process calls `initialize()` first and feeds only its own slice of the batch;
`global_batch` assembles the global array without gathering anything.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize(multi_host: bool) -> None:
  """Starts the multi-host runtime when asked (a no-op for one process, which logs nothing)."""
  if not multi_host:
    return
  jax.distributed.initialize()
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
