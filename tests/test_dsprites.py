"""Tests of the procedural dSprites grid (vae_jax/data/dsprites.py)."""

import numpy as np
import pytest

from vae_jax.data import dsprites
from vae_jax.data.dsprites import ProceduralDSprites, render_sprites
from vae_jax.data import grid
from vae_jax.data.grid import FactorDataset

SIZES = (3, 6, 40, 32, 32)
POS = np.linspace(0.0, 1.0, 32)


@pytest.fixture(scope="module")
def ds():
  return ProceduralDSprites()


def _manual_index(f):
  """Row-major flat index [n] of factor rows f [n, 5], written out by hand."""
  return (((f[:, 0] * 6 + f[:, 1]) * 40 + f[:, 2]) * 32 + f[:, 3]) * 32 + f[:, 4]


def _mask(images):
  return images[..., 0] > 0.5


def _centroid(mask):
  """(row, col) centre of mass [n, 2] in continuous pixel coordinates (centre = r + 0.5)."""
  rows, cols = np.indices(mask.shape[1:])
  area = mask.sum((1, 2))
  return np.stack([(mask * rows).sum((1, 2)) / area, (mask * cols).sum((1, 2)) / area], -1) + 0.5


def _extent(mask):
  """Height and width in pixels of the bounding box of one binary image [64, 64]."""
  rows, cols = np.nonzero(mask)
  return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_grid_size_and_factors(ds):
  assert isinstance(ds, FactorDataset)
  assert len(ds) == 737_280 == np.prod(SIZES)
  assert ds.name == "dsprites_procedural"
  assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
  assert ds.factor_sizes == SIZES
  assert ds.image_shape == (64, 64, 1)
  assert [len(v) for v in ds.factor_values] == list(SIZES)
  np.testing.assert_array_equal(ds.factor_values[0], [0, 1, 2])
  np.testing.assert_allclose(ds.factor_values[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
  assert ds.factor_values[2][0] == 0.0 and ds.factor_values[2][-1] == 2 * np.pi
  np.testing.assert_allclose(np.diff(ds.factor_values[2]), 2 * np.pi / 39)
  for pos in ds.factor_values[3:]:
    np.testing.assert_allclose(pos, np.arange(32) / 31)


def test_dataset_facts(ds):
  assert ds.factor_value_labels == (("square", "ellipse", "heart"), None, None, None, None)
  assert ds.factor_value_labels[0] == dsprites.SHAPE_NAMES
  assert ds.mig_excluded_factors == ("shape",) and ds.nuisance_factors == ()
  assert ds.procedural is True
  assert grid.dataset_note(ds) == "procedurally generated grid, not the original dataset file"
  # The real dSprites (TFDS) shares the spec, hence the labels and the MIG exclusion.
  spec = dsprites.grid_spec()
  assert spec.factor_value_labels == ds.factor_value_labels and spec.mig_excluded_factors == ("shape",)


def test_default_mig_factors(ds):
  assert grid.default_mig_factors(ds) == (1, 2, 3, 4)  # Shape left out, as Chen et al.
  assert grid.default_mig_factors(ds, ("posX", "shape")) == (3, 0)  # Names: their indices, in that order.
  with pytest.raises(ValueError, match=r"eval.mig_factors names \['colour'\]; dsprites_procedural has"):
    grid.default_mig_factors(ds, ("colour", "shape"))


def test_index_factor_round_trip(ds):
  rng = np.random.default_rng(0)
  corners = np.array(np.meshgrid(*[[0, s - 1] for s in SIZES], indexing="ij")).reshape(5, -1).T
  indices = np.concatenate([rng.integers(0, len(ds), 1000), _manual_index(corners)])
  factors = ds.index_to_factors(indices)
  np.testing.assert_array_equal(factors, np.stack(np.unravel_index(indices, SIZES), -1))
  np.testing.assert_array_equal(_manual_index(factors), indices)
  np.testing.assert_array_equal(ds.factors_to_index(factors), indices)
  assert ds.index_to_factors(np.array([len(ds) - 1])).tolist() == [[2, 5, 39, 31, 31]]
  # Last factor fastest: index 1 is posY = 1, index 32 is posX = 1.
  assert ds.index_to_factors(np.array([1, 32])).tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 1, 0]]


def test_images_binary_float32_and_deterministic(ds):
  rng = np.random.default_rng(1)
  indices = rng.integers(0, len(ds), 600)  # More than one chunk, all three shapes.
  a = ds.images(indices)
  assert a.shape == (600, 64, 64, 1) and a.dtype == np.float32
  assert set(np.unique(a)) == {0.0, 1.0}
  assert np.all(a.sum((1, 2, 3)) > 0)
  np.testing.assert_array_equal(a, ProceduralDSprites().images(indices))
  # An image does not depend on the rest of its batch.
  np.testing.assert_array_equal(a[7:8], ds.images(indices[7:8]))
  np.testing.assert_array_equal(a[::-1], ds.images(indices[::-1]))
  assert ds.images(np.array([], np.int64)).shape == (0, 64, 64, 1)


def test_render_matches_images_and_factor_values(ds):
  rng = np.random.default_rng(2)
  factors = np.stack([rng.integers(0, s, 50) for s in SIZES], -1)
  a = ds.render(factors)
  np.testing.assert_array_equal(a, ds.images(_manual_index(factors)))
  values = [v[f] for v, f in zip(ds.factor_values, factors.T)]
  np.testing.assert_array_equal(a, render_sprites(factors[:, 0], *values[1:]))


def test_invalid_inputs_raise(ds):
  with pytest.raises(IndexError):
    ds.images(np.array([len(ds)]))
  with pytest.raises(IndexError):
    ds.images(np.array([-1]))
  with pytest.raises(ValueError):
    ds.render(np.array([[3, 0, 0, 0, 0]]))
  with pytest.raises(ValueError):
    render_sprites(0, 1.0, 0.0, 1.5, 0.5)


def test_each_factor_changes_the_image(ds):
  base = np.array([1, 3, 5, 10, 20])
  image = ds.render(base[None])[0]
  for factor in (0, 1, 2, 3, 4):
    other = base.copy()
    other[factor] += 1
    assert np.any(ds.render(other[None])[0] != image), dsprites.FACTOR_NAMES[factor]


@pytest.mark.parametrize("shape", [0, 1])
def test_centre_follows_position(ds, shape):
  # Square and ellipse are point-symmetric, so their centre of mass is the sprite centre.
  k = np.arange(32)
  along_x = _centroid(_mask(ds.render(np.stack([0 * k + shape, 0 * k + 5, 0 * k, k, 0 * k + 9], -1))))
  along_y = _centroid(_mask(ds.render(np.stack([0 * k + shape, 0 * k + 5, 0 * k, 0 * k + 9, k], -1))))
  np.testing.assert_allclose(along_x[:, 1], 16 + 32 * POS, atol=0.5)  # posX: columns.
  np.testing.assert_allclose(along_x[:, 0], 16 + 32 * POS[9], atol=0.5)
  np.testing.assert_allclose(along_y[:, 0], 16 + 32 * POS, atol=0.5)  # posY: rows, downwards.
  np.testing.assert_allclose(along_y[:, 1], 16 + 32 * POS[9], atol=0.5)


def test_sizes_at_scale_one(ds):
  k = np.arange(32)
  x, y = np.meshgrid(k, k, indexing="ij")
  x, y = x.ravel(), y.ravel()

  def areas_and_extents(shape):
    masks = _mask(ds.render(np.stack([0 * x + shape, 0 * x + 5, 0 * x, x, y], -1)))
    return masks.sum((1, 2)), np.array([_extent(m) for m in masks])

  # Square: 20x20 = 400 px in the real frames at position (0, 0); within a pixel elsewhere.
  areas, extents = areas_and_extents(0)
  assert areas[0] == 400 and tuple(extents[0]) == (20, 20)
  assert np.all((extents >= 19) & (extents <= 20)) and np.all(areas >= 361)
  # Ellipse: about 26 wide, 14 tall, area pi * 13 * 7.
  areas, extents = areas_and_extents(1)
  np.testing.assert_allclose(areas, np.pi * 13 * 7, rtol=0.05)
  assert np.all(np.abs(extents - [14, 26]) <= 1)
  # Heart: about 20 wide, 17.5 tall.
  areas, extents = areas_and_extents(2)
  assert np.all((areas > 200) & (areas < 250))
  assert np.all((extents[:, 1] >= 19) & (extents[:, 1] <= 21))
  assert np.all((extents[:, 0] >= 17) & (extents[:, 0] <= 19))


def test_heart_lobes_up_point_down(ds):
  mask = _mask(ds.render(np.array([[2, 5, 0, 0, 0]])))[0]
  rows = np.nonzero(mask.any(1))[0]
  top, bottom = mask[rows[0]], mask[rows[-1]]
  runs = np.count_nonzero(np.diff(top.astype(int)) == 1)
  assert runs == 2  # Two lobes with a notch between them.
  assert bottom.sum() <= 3  # The point.
  widths = mask.sum(1)[rows]
  assert np.argmax(widths) < len(rows) / 2  # Widest across the lobes.
  assert _centroid(mask[None])[0, 0] < 16 - 1  # Mass above the sprite centre.


def test_rotation_symmetries():
  rng = np.random.default_rng(3)
  n = 24
  theta = rng.uniform(0, 2 * np.pi, n)
  scale = rng.choice(np.linspace(0.5, 1, 6), n)
  x, y = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
  square = render_sprites(0, scale, theta, x, y)
  np.testing.assert_array_equal(square, render_sprites(0, scale, theta + np.pi / 2, x, y))
  assert np.all(np.any(square != render_sprites(0, scale, theta + np.pi / 4, x, y), axis=(1, 2, 3)))
  ellipse = render_sprites(1, scale, theta, x, y)
  np.testing.assert_array_equal(ellipse, render_sprites(1, scale, theta + np.pi, x, y))
  assert np.all(np.any(ellipse != render_sprites(1, scale, theta + np.pi / 2, x, y), axis=(1, 2, 3)))
  heart = render_sprites(2, scale, theta, x, y)
  assert np.all(np.any(heart != render_sprites(2, scale, theta + np.pi, x, y), axis=(1, 2, 3)))
  np.testing.assert_array_equal(heart, render_sprites(2, scale, theta + 2 * np.pi, x, y))


def test_orientation_zero_equals_two_pi_on_grid(ds):
  rng = np.random.default_rng(4)
  factors = np.stack([rng.integers(0, s, 60) for s in SIZES], -1)
  factors[:, 0] = np.arange(60) % 3
  first, last = factors.copy(), factors.copy()
  first[:, 2], last[:, 2] = 0, 39
  np.testing.assert_array_equal(ds.render(first), ds.render(last))
  middle = factors.copy()
  middle[:, 2] = 19  # Close to a half turn, but not one: the heart must differ.
  hearts = factors[:, 0] == 2
  assert np.all(np.any(ds.render(first[hearts]) != ds.render(middle[hearts]), axis=(1, 2, 3)))


def test_positive_orientation_turns_counter_clockwise():
  angle = 0.3
  mask = _mask(render_sprites(1, 1.0, angle, 0.5, 0.5))[0]
  rows, cols = np.nonzero(mask)
  d = np.stack([cols - cols.mean(), rows - rows.mean()])
  eigvals, eigvecs = np.linalg.eigh(d @ d.T)
  dx, drow = eigvecs[:, np.argmax(eigvals)] * np.sign(eigvecs[0, np.argmax(eigvals)])
  assert drow < 0  # Right end of the long axis is higher up (smaller row index).
  assert abs(np.arctan2(-drow, dx) - angle) < 0.05
  # The heart's lobes (its mass above the centre at 0) turn to the left at a quarter turn.
  heart = _mask(render_sprites(2, 1.0, np.array([0.0, np.pi / 2]), 0.5, 0.5))
  (r0, c0), (r1, c1) = _centroid(heart) - 32.0
  assert r0 < -1 and abs(c0) < 0.2
  assert c1 < -1 and abs(r1) < 0.2
