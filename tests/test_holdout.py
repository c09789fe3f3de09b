"""Holdout specs: parsing, union/intersection semantics, the training view and the full grid."""

import numpy as np
import pytest

from vae_jax.data import grid as grid_lib
from vae_jax.data import holdout, pipeline
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.data.grid import FactorDataset, GridDataset, GridSpec, index_to_factors


class CountingGrid:
  """A 3 × 4 grid whose image i is filled with the value i (so images reveal their grid index)."""

  name = "counting"
  factor_names = ("a", "b")
  factor_sizes = (3, 4)
  factor_values = (np.arange(3.0), np.linspace(0, 1, 4))
  image_shape = (2, 2, 1)

  def __len__(self):
    return 12

  def images(self, indices):
    return np.broadcast_to(np.asarray(indices, np.float32)[:, None, None, None], (len(indices), 2, 2, 1)).copy()


def held(spec, dataset=None):
  dataset = dataset or CountingGrid()
  return set(np.flatnonzero(holdout.holdout_mask(spec, dataset)).tolist())


def test_commas_are_a_union_and_ampersands_an_intersection():
  # Grid index = 4a + b.
  assert held("a=1") == {4, 5, 6, 7}
  assert held("b=0") == {0, 4, 8}
  assert held("a=1,b=0") == {4, 5, 6, 7} | {0, 8}
  assert held("a=1&b=0") == {4}
  assert held("a=1&b=0,a=2&b=3") == {4, 11}
  assert held("b=1:3") == {1, 2, 5, 6, 9, 10}
  assert held("b=0|3") == {0, 3, 4, 7, 8, 11}
  assert held(" a = 2 ") == {8, 9, 10, 11}


def test_bad_specs_name_the_problem():
  with pytest.raises(ValueError, match="unknown factor 'c'"):
    holdout.parse_holdout("c=1", CountingGrid())
  with pytest.raises(ValueError, match=r"a='3' is not a value index in \[0, 3\)"):
    holdout.parse_holdout("a=3", CountingGrid())
  with pytest.raises(ValueError, match="factor=value"):
    holdout.parse_holdout("a", CountingGrid())
  with pytest.raises(ValueError, match="range"):
    holdout.parse_holdout("b=2:9", CountingGrid())
  with pytest.raises(ValueError, match="every image"):
    holdout.apply_holdout(CountingGrid(), "a=0:3")


def test_training_view_maps_through_kept_indices_and_keeps_the_full_grid():
  grid = CountingGrid()
  ds = holdout.apply_holdout(grid, "a=1")
  assert len(ds) == 8 and ds.full is grid
  np.testing.assert_array_equal(ds.kept_indices, [0, 1, 2, 3, 8, 9, 10, 11])
  np.testing.assert_array_equal(ds.holdout_indices, [4, 5, 6, 7])
  assert (ds.name, ds.factor_names, ds.factor_sizes, ds.image_shape) == (
      grid.name, grid.factor_names, grid.factor_sizes, grid.image_shape)
  np.testing.assert_array_equal(ds.images(np.array([0, 4, 7]))[:, 0, 0, 0], [0, 8, 11])
  np.testing.assert_array_equal(ds.factors(np.array([4])), [[2, 0]])
  with pytest.raises(IndexError, match=r"\[0, 8\)"):
    ds.images(np.array([8]))
  # The training stream (indices in [0, len)) never shows a held-out image.
  seen = np.concatenate([pipeline.ensemble_batch(ds, [0, 1], step, 4).reshape(-1) for step in range(10)])
  assert set(seen.tolist()) == {0, 1, 2, 3, 8, 9, 10, 11}
  assert holdout.apply_holdout(grid, "") is grid
  assert holdout.full_grid(ds) is grid and holdout.full_grid(grid) is grid


def test_dsprites_hearts():
  dsprites = ProceduralDSprites()
  ds = holdout.apply_holdout(dsprites, "shape=2")
  assert len(ds) == 2 * 245_760 and len(ds.holdout_indices) == 245_760
  assert np.all(index_to_factors(ds.holdout_indices, ds.factor_sizes)[:, 0] == 2)
  assert np.array_equal(holdout.holdout_mask("shape=heart", dsprites), holdout.holdout_mask("shape=2", dsprites))
  i = np.array([0, 300_000, len(ds) - 1])
  np.testing.assert_array_equal(ds.images(i), dsprites.images(ds.kept_indices[i]))
  np.testing.assert_array_equal(holdout.split_indices(ds, "holdout"), ds.holdout_indices)
  np.testing.assert_array_equal(holdout.split_indices(ds, "train"), ds.kept_indices)
  assert len(holdout.split_indices(ds, "all")) == len(dsprites)
  with pytest.raises(ValueError, match="needs a holdout"):
    holdout.split_indices(dsprites, "holdout")
  with pytest.raises(ValueError, match="'square', 'ellipse', 'heart'"):
    holdout.parse_holdout("shape=star", dsprites)
  # Intersection: hearts in the left half only.
  both = holdout.apply_holdout(dsprites, "shape=heart&posX=0:16")
  f = index_to_factors(both.holdout_indices, both.factor_sizes)
  assert len(f) == 245_760 // 2 and np.all((f[:, 0] == 2) & (f[:, 3] < 16))


def test_holdout_forwards_the_dataset_facts():
  dsprites = ProceduralDSprites()
  ds = holdout.apply_holdout(dsprites, "shape=2")
  assert isinstance(ds, FactorDataset)
  assert ds.factor_value_labels == dsprites.factor_value_labels == (("square", "ellipse", "heart"),) + (None,) * 4
  assert ds.mig_excluded_factors == ("shape",) and ds.nuisance_factors == () and ds.procedural is True
  assert grid_lib.default_mig_factors(ds) == grid_lib.default_mig_factors(dsprites) == (1, 2, 3, 4)
  assert grid_lib.dataset_note(ds) == grid_lib.dataset_note(dsprites) != ""
  assert holdout.value_labels(ds, 0) == ("square", "ellipse", "heart") and holdout.value_labels(ds, 1) is None


def test_datasets_without_the_facts_get_the_defaults():
  # A duck-typed dataset lacking the attributes: no labels, nothing excluded, not procedural.
  grid = CountingGrid()
  ds = holdout.apply_holdout(grid, "a=1")
  assert ds.factor_value_labels == (None, None) and ds.mig_excluded_factors == ds.nuisance_factors == ()
  assert ds.procedural is False and grid_lib.dataset_note(ds) == grid_lib.dataset_note(grid) == ""
  assert holdout.value_labels(grid, 0) is None and holdout.value_labels(ds, 1) is None
  assert grid_lib.default_mig_factors(grid) == (0, 1)


class LabelledGrid(GridDataset):
  """A 3 × 4 × 1 GridDataset whose first factor has labels; b is a nuisance factor, a left out of the MIG."""

  name = "labelled"
  image_shape = (1, 1, 1)

  def __init__(self):
    super().__init__(GridSpec(("a", "b", "c"), (3, 4, 1), (np.arange(3.0), np.arange(4.0), np.zeros(1)),
                              factor_value_labels=(("x", "y", "z"), None, None), mig_excluded_factors=("a",),
                              nuisance_factors=("b",)))

  def images(self, indices):
    return np.zeros((len(indices), 1, 1, 1), np.float32)


def test_grid_dataset_facts_come_from_the_spec():
  ds = LabelledGrid()
  assert isinstance(ds, FactorDataset) and ds.procedural is False
  assert ds.factor_value_labels == (("x", "y", "z"), None, None)
  assert ds.mig_excluded_factors == ("a",) and ds.nuisance_factors == ("b",)
  assert grid_lib.default_mig_factors(ds) == ()  # a excluded, b a nuisance, c a single value.
  assert grid_lib.default_mig_factors(ds, ("c", "a")) == (2, 0)
  assert held("a=z|x", ds) == set(range(8, 12)) | set(range(0, 4))
  held_ds = holdout.apply_holdout(ds, "a=y")
  assert (held_ds.factor_value_labels, held_ds.mig_excluded_factors, held_ds.nuisance_factors) == (
      ds.factor_value_labels, ds.mig_excluded_factors, ds.nuisance_factors)
  # Without labels or exclusions the spec's defaults are per-factor None and ().
  plain = GridSpec(("a", "b"), (2, 3), (np.arange(2.0), np.arange(3.0)))
  assert plain.factor_value_labels == (None, None) and plain.mig_excluded_factors == plain.nuisance_factors == ()


def test_grid_spec_checks_its_facts():
  values = (np.arange(2.0), np.arange(3.0))
  with pytest.raises(ValueError, match="2 values but 3 value labels"):
    GridSpec(("a", "b"), (2, 3), values, factor_value_labels=(("x", "y", "z"), None))
  with pytest.raises(ValueError, match="1 entries for the 2 factors"):
    GridSpec(("a", "b"), (2, 3), values, factor_value_labels=(("x", "y"),))
  with pytest.raises(ValueError, match=r"mig_excluded_factors \['c'\] are not factors"):
    GridSpec(("a", "b"), (2, 3), values, mig_excluded_factors=("c",))
  with pytest.raises(ValueError, match=r"nuisance_factors \['c'\] are not factors"):
    GridSpec(("a", "b"), (2, 3), values, nuisance_factors=("c",))
