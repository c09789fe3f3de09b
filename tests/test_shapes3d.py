"""Tests of the procedural 3dshapes grid (vae_jax/data/shapes3d.py)."""

import numpy as np
import pytest

from vae_jax.data import grid
from vae_jax.data import shapes3d
from vae_jax.data.shapes3d import FLOOR, OBJECT, SKY, WALL

SIZES = (10, 10, 10, 8, 4, 15)


@pytest.fixture(scope="module")
def ds():
  # Shared so that the geometry cache is filled once for the whole module.
  return shapes3d.ProceduralShapes3D()


def _random_factors(rng, n):
  return np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)


def _expected_factors(index):
  """Factor indices of a flat index by repeated division, last factor fastest."""
  out = []
  for size in reversed(SIZES):
    index, rem = divmod(int(index), size)
    out.append(rem)
  return list(reversed(out))


def test_grid_size_names_and_values(ds):
  assert shapes3d.FACTOR_NAMES == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
  assert shapes3d.FACTOR_SIZES == SIZES
  assert ds.factor_names == shapes3d.FACTOR_NAMES
  assert ds.factor_sizes == SIZES
  assert len(ds) == 480_000
  assert ds.name == "shapes3d_procedural"
  assert ds.image_shape == (64, 64, 3)
  assert isinstance(ds, grid.FactorDataset)
  assert [len(v) for v in ds.factor_values] == list(SIZES)
  for k in range(3):
    np.testing.assert_allclose(ds.factor_values[k], np.arange(10) / 10)
  np.testing.assert_allclose(ds.factor_values[3], [0.75 + i * 0.5 / 7 for i in range(8)])
  np.testing.assert_array_equal(ds.factor_values[4], [0, 1, 2, 3])
  np.testing.assert_allclose(ds.factor_values[5], [-30 + i * 60 / 14 for i in range(15)])


def test_dataset_facts(ds):
  assert ds.factor_value_labels == (None, None, None, None, ("cube", "cylinder", "sphere", "capsule"), None)
  assert ds.factor_value_labels[4] == shapes3d.SHAPE_NAMES
  assert ds.mig_excluded_factors == () and ds.nuisance_factors == () and ds.procedural is True
  assert grid.default_mig_factors(ds) == (0, 1, 2, 3, 4, 5)
  assert grid.dataset_note(ds) == "procedurally generated grid, not the original dataset file"


def test_index_factor_round_trip(ds):
  rng = np.random.default_rng(0)
  indices = np.concatenate([[0, 1, 15, 60, 480, 4800, 48_000, 479_999], rng.integers(0, 480_000, 500)])
  factors = ds.index_to_factors(indices)
  np.testing.assert_array_equal(factors, [_expected_factors(i) for i in indices])
  np.testing.assert_array_equal(ds.factors_to_index(factors), indices)
  np.testing.assert_array_equal(factors[6], [1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(factors[7], np.array(SIZES) - 1)


def test_images_match_render_and_are_deterministic(ds):
  rng = np.random.default_rng(1)
  indices = rng.integers(0, len(ds), 12)
  images = ds.images(indices)
  np.testing.assert_array_equal(images, ds.render(ds.index_to_factors(indices)))
  np.testing.assert_array_equal(images, shapes3d.ProceduralShapes3D().images(indices))
  # Same image whatever else is in the batch.
  np.testing.assert_array_equal(ds.images(indices[3:4]), images[3:4])


def test_dtype_shape_range(ds):
  images = ds.images(np.array([0, 123_456, 479_999]))
  assert images.shape == (3, 64, 64, 3)
  assert images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0
  assert images.std() > 0.1
  with pytest.raises(ValueError):
    ds.images(np.array([480_000]))
  with pytest.raises(ValueError):
    ds.render(np.array([[0, 0, 0, 8, 0, 0]]))


def test_layout_sky_walls_floor_object(ds):
  _, labels = ds.render_with_masks(np.array([[0, 6, 3, 3, 2, 7]]))
  labels = labels[0]
  assert np.all(labels[0] == SKY)
  assert np.all(labels[-1] == FLOOR)
  assert np.all(labels[25, :20] == WALL)
  rows, cols = np.nonzero(labels == OBJECT)
  assert abs(cols.mean() - 31.5) < 1.0  # Centred.
  assert 30 < rows.mean() < 50  # Standing on the floor, below the wall tops.


@pytest.mark.parametrize("factor, region", [(0, FLOOR), (1, WALL), (2, OBJECT)])
def test_hue_changes_only_its_region(ds, factor, region):
  rng = np.random.default_rng(10 + factor)
  base = _random_factors(rng, 6)
  changed = base.copy()
  changed[:, factor] = (base[:, factor] + rng.integers(1, 10, 6)) % 10
  a = ds.render(base)
  b = ds.render(changed)
  coverage = ds.region_coverage(base)
  np.testing.assert_array_equal(coverage, ds.region_coverage(changed))
  differs = np.any(a != b, axis=-1)
  touched = coverage[..., region] > 0
  assert touched.sum(axis=(1, 2)).min() > 100
  # Every pixel the region touches changes; every other pixel is bit-identical.
  np.testing.assert_array_equal(differs, touched)


def test_object_hue_leaves_shadow_unchanged(ds):
  # Large capsule: its shadow lies on the floor to the front right.
  base = np.array([[0, 6, 3, 7, 3, 7]])
  other = np.array([[0, 6, 8, 7, 3, 7]])
  a, labels = ds.render_with_masks(base)
  b = ds.render(other)
  floor_only = ds.region_coverage(base)[0, ..., FLOOR] == 1.0
  brightness = a[0].max(axis=-1)
  assert brightness[floor_only].min() < 0.4  # The shadow is there,
  assert np.median(brightness[floor_only]) > 0.8
  np.testing.assert_array_equal(a[0][floor_only], b[0][floor_only])  # and keeps its colour.


@pytest.mark.parametrize("factor", [3, 4])
def test_scale_and_shape_change_only_object_and_shadow(ds, factor):
  rng = np.random.default_rng(20 + factor)
  for _ in range(3):
    base = _random_factors(rng, 1)
    changed = base.copy()
    changed[0, factor] = (base[0, factor] + rng.integers(1, SIZES[factor])) % SIZES[factor]
    a, b = ds.render(base)[0], ds.render(changed)[0]
    cov_a, cov_b = ds.region_coverage(base)[0], ds.region_coverage(changed)[0]
    differs = np.any(a != b, axis=-1)
    assert differs.sum() > 10
    no_object = (cov_a[..., OBJECT] == 0) & (cov_b[..., OBJECT] == 0)
    wall_or_sky = no_object & (cov_a[..., FLOOR] == 0) & (cov_b[..., FLOOR] == 0)
    assert not np.any(differs & wall_or_sky)
    # Floor changes only near the objects (the shadow falls to the front right).
    rows, cols = np.nonzero((cov_a[..., OBJECT] > 0) | (cov_b[..., OBJECT] > 0))
    near = np.zeros((64, 64), bool)
    near[rows.min() - 4:rows.max() + 11, max(cols.min() - 4, 0):cols.max() + 15] = True
    assert not np.any(differs & ~near)
    assert np.sum(no_object & ~near & (cov_a[..., FLOOR] > 0)) > 300  # Far floor exists and is unchanged.


@pytest.mark.parametrize("shape", [0, 1, 2, 3])
def test_object_area_grows_with_scale(ds, shape):
  for orientation in (2, 9):
    factors = np.array([[1, 2, 3, s, shape, orientation] for s in range(8)])
    area = ds.region_coverage(factors)[..., OBJECT].sum(axis=(1, 2))
    assert np.all(np.diff(area) > 5), area
    assert area[-1] > 2.0 * area[0]


def test_shapes_have_different_masks(ds):
  for scale, orientation in ((0, 0), (7, 11)):
    factors = np.array([[0, 0, 0, scale, shape, orientation] for shape in range(4)])
    _, labels = ds.render_with_masks(factors)
    masks = labels == OBJECT
    for i in range(4):
      for j in range(i + 1, 4):
        iou = np.sum(masks[i] & masks[j]) / np.sum(masks[i] | masks[j])
        assert iou < 0.85, (i, j, iou)


def test_orientation_moves_walls_and_turns_cube(ds):
  factors = np.array([[0, 6, 3, 4, 0, o] for o in range(15)])
  images, labels = ds.render_with_masks(factors)
  for o in range(14):
    assert np.any(images[o] != images[o + 1])
  wall_top = np.argmax(labels == WALL, axis=1)  # [15, 64] first wall row per column.
  # Facing the back wall head-on, its top edge is level; turned, a corner shows.
  assert np.ptp(wall_top[7]) <= 1
  assert np.ptp(wall_top[0]) >= 3 and np.ptp(wall_top[14]) >= 3
  np.testing.assert_array_equal(wall_top[0], wall_top[14][::-1])  # Mirror images.
  cube = labels == OBJECT
  assert np.sum(cube[0] != cube[7]) > 20
  # Round shapes look the same from every side; only the room moves.
  round_factors = np.array([[0, 6, 3, 4, 2, o] for o in (0, 7, 14)])
  round_masks = ds.render_with_masks(round_factors)[1] == OBJECT
  assert np.sum(round_masks[0] != round_masks[1]) <= 4
