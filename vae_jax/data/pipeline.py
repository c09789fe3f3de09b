"""Training streams over a FactorDataset: the order is a function of (seed, step).

Batch `step` of the stream seeded `seed` holds the images at positions
[step·B, (step+1)·B) of an endless sequence of epochs, each a permutation of the
dataset drawn from (seed, epoch). Nothing else carries state, so a run restarted at
step t sees exactly the batches an uninterrupted run would have seen.

Each ensemble member reads its own stream (its own seed); the stream yields global
batches [S, B, H, W, C], and in a multi-host job each process renders only its slice
of the batch axis.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Iterator, Sequence

import numpy as np

from vae_jax.data.grid import FactorDataset


@functools.lru_cache(maxsize=16)
def _epoch_permutation(seed: int, epoch: int, num_images: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_images)


def batch_indices(seed: int, step: int, batch_size: int, num_images: int) -> np.ndarray:
  """Dataset indices [batch_size] of batch `step` in the stream seeded `seed`."""
  positions = step * batch_size + np.arange(batch_size, dtype=np.int64)
  epochs, offsets = np.divmod(positions, num_images)
  out = np.empty(batch_size, dtype=np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _epoch_permutation(int(seed), int(epoch), num_images)[offsets[sel]]
  return out


def process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
  """The slice of a global batch of `batch_size` that process `process_index` renders."""
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by the number of processes {process_count}.")
  per_process = batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def ensemble_batch(
    dataset: FactorDataset,
    seeds: Sequence[int],
    step: int,
    batch_size: int,
    local: slice = slice(None),
) -> np.ndarray:
  """This process's part [S, b, H, W, C] float32 of the global batch at `step`.

  Member s reads the stream seeded seeds[s]; `local` picks this process's slice of
  the global batch axis.
  """
  n = len(dataset)
  return np.stack([dataset.images(batch_indices(seed, step, batch_size, n)[local]) for seed in seeds])


def numpy_stream(make_batch, start_step: int, num_steps: int, prefetch: int) -> Iterator[np.ndarray]:
  """Yields make_batch(step) for steps [start_step, num_steps), rendered on a background
  thread `prefetch` ahead; needs no TensorFlow."""
  buffer: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
  stop = threading.Event()

  def produce():
    try:
      for step in range(start_step, num_steps):
        if stop.is_set():
          return
        buffer.put(make_batch(step))
    except BaseException as e:  # Surfaced in the consumer.
      buffer.put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    for _ in range(start_step, num_steps):
      item = buffer.get()
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


def _tf_stream(make_batch, start_step: int, num_steps: int, shape, prefetch: int, workers: int) -> Iterator[np.ndarray]:
  """The same batches through tf.data: parallel rendering, deterministic order, prefetch."""
  import tensorflow as tf  # Imported lazily: everything else here runs without TensorFlow.

  tf.config.set_visible_devices([], "GPU")

  def render(step):
    return tf.numpy_function(lambda s: make_batch(int(s)), [step], tf.float32, stateful=False)

  ds = tf.data.Dataset.range(start_step, num_steps)
  ds = ds.map(render, num_parallel_calls=workers, deterministic=True)
  ds = ds.map(lambda x: tf.ensure_shape(x, shape))
  ds = ds.prefetch(prefetch)
  return ds.as_numpy_iterator()


def train_stream(
    dataset: FactorDataset,
    seeds: Sequence[int],
    batch_size: int,
    start_step: int,
    num_steps: int,
    *,
    pipeline: str = "tf",
    prefetch: int = 4,
    workers: int = 2,
    process_index: int = 0,
    process_count: int = 1,
    local: slice | None = None,
) -> Iterator[np.ndarray]:
  """Batches [S, b, H, W, C] for steps start_step, ..., num_steps − 1 of the streams `seeds`.

  Args:
    dataset: the images.
    seeds: one stream seed per ensemble member this process feeds.
    batch_size: the global batch size B; this process renders b = B / process_count,
      the positions `local` of each batch when given (parallel.local_block).
    start_step: the first step (the restored checkpoint's step on resumption).
    num_steps: one past the last step.
    pipeline: "tf" (tf.data with parallel rendering and prefetch) or "numpy" (a
      background thread; needs no TensorFlow).
  """
  if local is None:
    local = process_slice(batch_size, process_index, process_count)
  seeds = tuple(seeds)

  def make_batch(step: int) -> np.ndarray:
    return ensemble_batch(dataset, seeds, step, batch_size, local)

  if pipeline == "numpy":
    return numpy_stream(make_batch, start_step, num_steps, prefetch)
  if pipeline == "tf":
    b = local.stop - local.start
    shape = (len(seeds), b, *dataset.image_shape)
    return _tf_stream(make_batch, start_step, num_steps, shape, prefetch, workers)
  raise ValueError(f"Unknown data.pipeline {pipeline!r}; use 'tf' or 'numpy'.")
