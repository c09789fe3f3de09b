"""Training streams: the order is a function of (seed, step); tf.data and NumPy agree."""

import numpy as np
import pytest

from vae_jax.data import pipeline


class CountingGrid:
  """A 2 × 5 grid whose image i is filled with the value i (so batches reveal their indices)."""

  name = "counting"
  factor_names = ("a", "b")
  factor_sizes = (2, 5)
  factor_values = (np.arange(2), np.arange(5))
  image_shape = (2, 2, 1)

  def __len__(self):
    return 10

  def images(self, indices):
    return np.broadcast_to(np.asarray(indices, np.float32)[:, None, None, None], (len(indices), 2, 2, 1)).copy()


def test_batch_indices_cover_each_epoch_exactly_once():
  n, b = 10, 4
  seen = np.concatenate([pipeline.batch_indices(7, step, b, n) for step in range(5)])  # 20 = two epochs
  assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
  assert not np.array_equal(seen[:10], seen[10:])  # A fresh permutation per epoch.


def test_batch_indices_depend_only_on_seed_and_step():
  a = pipeline.batch_indices(3, 11, 8, 1000)
  pipeline._epoch_permutation.cache_clear()
  np.testing.assert_array_equal(a, pipeline.batch_indices(3, 11, 8, 1000))
  assert not np.array_equal(a, pipeline.batch_indices(4, 11, 8, 1000))
  assert not np.array_equal(a, pipeline.batch_indices(3, 12, 8, 1000))


def test_process_slices_partition_the_batch():
  slices = [pipeline.process_slice(12, p, 3) for p in range(3)]
  covered = np.concatenate([np.arange(12)[s] for s in slices])
  np.testing.assert_array_equal(covered, np.arange(12))
  with pytest.raises(ValueError, match="divisible"):
    pipeline.process_slice(10, 0, 3)


@pytest.mark.parametrize("kind", ["numpy", "tf"])
def test_stream_yields_member_batches_in_step_order(kind):
  grid = CountingGrid()
  batches = list(pipeline.train_stream(grid, seeds=[0, 1], batch_size=4, start_step=2, num_steps=6, pipeline=kind))
  assert len(batches) == 4
  for step, batch in zip(range(2, 6), batches):
    assert batch.shape == (2, 4, 2, 2, 1)
    for member, seed in enumerate([0, 1]):
      np.testing.assert_array_equal(batch[member, :, 0, 0, 0], pipeline.batch_indices(seed, step, 4, 10))


def test_tf_and_numpy_streams_agree_and_resume_mid_way():
  grid = CountingGrid()
  full = list(pipeline.train_stream(grid, [5], 4, 0, 8, pipeline="numpy"))
  late = list(pipeline.train_stream(grid, [5], 4, 3, 8, pipeline="tf"))
  for a, b in zip(full[3:], late):
    np.testing.assert_array_equal(a, b)


def test_stream_process_slice_is_part_of_the_global_batch():
  grid = CountingGrid()
  whole = next(pipeline.train_stream(grid, [0], 4, 0, 1, pipeline="numpy"))
  halves = [next(pipeline.train_stream(grid, [0], 4, 0, 1, pipeline="numpy", process_index=p, process_count=2))
            for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves, axis=1), whole)


def test_numpy_stream_surfaces_errors():
  def broken(step):
    raise RuntimeError(f"cannot render step {step}")
  with pytest.raises(RuntimeError, match="cannot render step 0"):
    list(pipeline.numpy_stream(broken, 0, 3, prefetch=2))
