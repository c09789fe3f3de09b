"""Encoding a whole factor grid: posterior parameters in factor-grid order.

Images are rendered on a background thread while the device encodes the previous
batch; each batch is split over the mesh's 'data' axis, and every ensemble member
encodes the same images (the parameters carry a leading ensemble axis) on the devices
that hold it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import auto as tqdm

from vae_jax import parallel
from vae_jax.data import pipeline as data_pipeline
from vae_jax.data.grid import FactorDataset


def model_encoder(model) -> Callable:
  """(params, x [B, H, W, C]) -> (mean, log_var) [B, K] of a VAE module's encoder."""
  return lambda params, x: model.apply({"params": params}, x, method="encode")


def make_encode_fn(encoder: Callable, mesh) -> Callable:
  """jit((params [S, ...], x [B, H, W, C]) -> (mean, log_var) [S, B, K]) over the mesh.

  encoder(params, x) -> (mean, log_var) [B, K] encodes with one member's parameters
  (e.g. `Objective.encode` bound to the model, or `model_encoder(model)`). Each member
  encodes on the devices of the mesh's 'members' axis that hold it
  (`parallel.state_sharding`), the images split over 'data'.
  """

  def encode(params, x):
    return parallel.vmap_members(lambda p: encoder(p, x))(params)

  member_spec = parallel.state_sharding(mesh).spec
  return jax.jit(
      parallel.shard_members(encode, mesh, in_specs=(member_spec, P())),
      in_shardings=(parallel.state_sharding(mesh), NamedSharding(mesh, P(parallel.DATA_AXIS))),
      out_shardings=parallel.batch_sharding(mesh),
  )


def encode_dataset(
    encoder: Callable,
    params,
    dataset: FactorDataset,
    mesh,
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 2048,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """Posterior (mean, log_var), each [S, n, K] float32, of dataset[indices] in that order.

  Args:
    encoder: (params, x) -> (mean, log_var) of one member (see `make_encode_fn`);
      params: the parameters with a leading ensemble axis S.
    dataset: the grid; indices: flat indices [n] (default: the whole grid, in order).
    mesh: the device mesh (parallel.create_mesh); batch_size is rounded up to a
      multiple of its 'data' axis. Parameters spanning several processes are gathered
      and every process encodes with its own devices.
    progress: show a progress bar.
  """
  if indices is None:
    indices = np.arange(len(dataset))
  indices = np.asarray(indices)
  params, mesh = parallel.process_local(params, mesh)
  if parallel.member_devices(mesh) > 1:
    params = jax.device_put(params, parallel.state_sharding(mesh))
  devices = parallel.data_devices(mesh)
  batch_size = int(math.ceil(batch_size / devices) * devices)
  num_batches = int(math.ceil(len(indices) / batch_size))
  encode = make_encode_fn(encoder, mesh)

  def render(i: int) -> np.ndarray:
    chunk = indices[i * batch_size : (i + 1) * batch_size]
    images = dataset.images(chunk)
    if len(chunk) < batch_size:  # Pad the last batch so every batch has one shape.
      images = np.concatenate([images, np.zeros((batch_size - len(chunk), *images.shape[1:]), images.dtype)])
    return images

  means, log_vars = [], []
  pending = None
  batches = data_pipeline.numpy_stream(render, 0, num_batches, prefetch=2)
  for images in tqdm.tqdm(batches, total=num_batches, desc=f"Encoding {len(indices):,} images", disable=not progress,
                          mininterval=2.0):
    out = encode(params, images)
    if pending is not None:  # Fetch the previous batch while this one runs.
      means.append(np.asarray(pending[0]))
      log_vars.append(np.asarray(pending[1]))
    pending = out
  if pending is not None:
    means.append(np.asarray(pending[0]))
    log_vars.append(np.asarray(pending[1]))
  n = len(indices)
  return np.concatenate(means, axis=1)[:, :n], np.concatenate(log_vars, axis=1)[:, :n]


def subgrid_indices(factor_sizes: Sequence[int], strides: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
  """Flat indices of the sub-grid taking every strides[f]-th value of factor f, in grid order.

  Returns (indices [n], the sub-grid's factor sizes). The sub-grid is itself a grid in
  row-major order, so every metric that takes factor_sizes applies to it unchanged.
  """
  if len(strides) != len(factor_sizes):
    raise ValueError(f"Need one stride per factor ({len(factor_sizes)}), got {tuple(strides)}.")
  axes = [np.arange(0, size, stride) for size, stride in zip(factor_sizes, strides)]
  mesh_grid = np.meshgrid(*axes, indexing="ij")
  flat = np.ravel_multi_index(tuple(g.reshape(-1) for g in mesh_grid), tuple(factor_sizes))
  return flat.astype(np.int64), tuple(len(a) for a in axes)
