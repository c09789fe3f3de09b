"""Procedural dSprites: binary 64x64 sprites rendered over the real dataset's factor grid.

The grid is the one of DeepMind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz without
its leading colour factor (which has a single value): shape 3 (0 square, 1 ellipse,
2 heart), scale 6, orientation 40, posX 32, posY 32, row-major with the last factor
fastest, 737,280 images. The pictures are not the original ones: they are drawn here,
NumPy only (this module must import where TensorFlow and JAX are absent), to match the
frames in shared/reference/dsprites.gif. Results on this grid are results on a
procedural stand-in.

Geometry (pixel (r, c) covers [c, c+1] x [r, r+1]; x to the right, y down the rows):
the sprite's centre sits at (16 + 32 posX, 16 + 32 posY); it is scaled about that
centre by `scale` and turned counter-clockwise on screen by `orientation` radians. The
scale-1 outlines below were fitted to the reference frames (all 40 orientations at
scale 1 plus the six scales at orientation 0, coverage >= 1/2):

  square   side 19.2. Unrotated at the reference position it is 20x20 = 400 px; turned,
           it covers ~368 px as in the real frames (a side-20 square would give ~400
           and miss ~30 px per frame).
  ellipse  semi-axes 12.8 (horizontal at orientation 0) x 7.2: 26x14 px, ~288 px.
  heart    two lobe disks joined by tangents to a point below, lobes up: 19.2 wide,
           top 9.4 above the centre, point 8.7 below (20x17 px, ~225 px); a V notch
           between the lobes. Mismatch with the real frames: ~5 px per frame.
"""

from __future__ import annotations

import numpy as np

from vae_jax.data.grid import GridDataset, GridSpec

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
SQUARE, ELLIPSE, HEART = 0, 1, 2

IMAGE_SIZE = 64

# Shape index as the value (the real npz stores 1, 2, 3); then the real factor values.
SHAPE_VALUES = np.arange(3, dtype=np.float64)
SCALE_VALUES = np.linspace(0.5, 1.0, 6)
ORIENTATION_VALUES = np.linspace(0.0, 2.0 * np.pi, 40)  # Radians; both ends included.
POSITION_VALUES = np.linspace(0.0, 1.0, 32)
for _values in (SHAPE_VALUES, SCALE_VALUES, ORIENTATION_VALUES, POSITION_VALUES):
  _values.flags.writeable = False
FACTOR_VALUES = (SHAPE_VALUES, SCALE_VALUES, ORIENTATION_VALUES, POSITION_VALUES, POSITION_VALUES)

# Sprite centre in pixels: _POS_OFFSET + _POS_RANGE * pos, on both axes.
_POS_OFFSET, _POS_RANGE = 16.0, 32.0

# Scale-1 outlines, pixels, sprite frame (u right, v down, origin at the sprite centre).
_SQUARE_HALF_SIDE = 9.6
_ELLIPSE_SEMI_AXES = (12.8, 7.2)
_HEART_LOBE_X, _HEART_LOBE_Y, _HEART_LOBE_R = 4.1, -3.9, 5.5  # Disks at (+-x, y).
_HEART_TIP_Y = 8.7  # The point, at (0, tip_y).
_HEART_NOTCH_Y, _HEART_NOTCH_SLOPE = -6.1, 0.9  # Cut away |u| < slope * (notch_y - v).


def _heart_tangent() -> tuple[np.ndarray, np.ndarray]:
  """Unit normals (each [2], u and v) of the right flank of the heart's lower part.

  The flank is the line from the tip tangent to the right lobe disk. Returns `n`, the
  flank's outward normal (pointing right and down), and `m`, the normal of the radius
  from the lobe centre to the tangent point, oriented towards the tip.
  """
  # n . (lobe - tip) = -R: the disk touches the line from the inside.
  dx, dy = _HEART_LOBE_X, _HEART_LOBE_Y - _HEART_TIP_Y
  length = np.hypot(dx, dy)
  beta = np.arctan2(dy, dx)
  alpha = beta + np.arccos(-_HEART_LOBE_R / length)
  n = np.array([np.cos(alpha), np.sin(alpha)])
  if n[0] < 0.0 or n[1] < 0.0:
    alpha = beta - np.arccos(-_HEART_LOBE_R / length)
    n = np.array([np.cos(alpha), np.sin(alpha)])
  m = np.array([-n[1], n[0]])  # m . (tip - lobe) > 0 for n in the lower-right quadrant.
  return n, m


_HEART_N, _HEART_M = _heart_tangent()
_HEART_N_OFFSET = _HEART_N[1] * _HEART_TIP_Y  # Flank: n . (u, v) <= n . tip.
_HEART_M_OFFSET = _HEART_M[0] * _HEART_LOBE_X + _HEART_M[1] * _HEART_LOBE_Y

# The largest scale-1 distance of an outline point from the sprite centre (the square's
# half-diagonal, 13.6) must fit in the window: see _render_windows.
_WINDOW = 32
_MAX_RADIUS = max(
    _SQUARE_HALF_SIDE * np.sqrt(2.0),
    max(_ELLIPSE_SEMI_AXES),
    np.hypot(_HEART_LOBE_X, _HEART_LOBE_Y) + _HEART_LOBE_R,
    _HEART_TIP_Y,
)
assert _MAX_RADIUS < _WINDOW / 2 - 1.5
# Pixel centres of the window's columns (or rows) relative to its left (top) edge.
_WINDOW_CENTRES = np.arange(_WINDOW, dtype=np.float64) + 0.5

_CHUNK = 256  # Sprites per vectorised step: keeps the temporaries (~n*32*32*4 B each) in cache.


def grid_spec() -> GridSpec:
  """The dSprites factor grid (procedural and real): names, sizes [5], values (5 arrays) and facts.

  Shape's values are labelled SHAPE_NAMES; shape is categorical and left out of Chen
  et al.'s MIG by default, as they do.
  """
  return GridSpec(FACTOR_NAMES, FACTOR_SIZES, FACTOR_VALUES,
                  factor_value_labels=(SHAPE_NAMES, None, None, None, None), mig_excluded_factors=("shape",))


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether sprite-frame points (u, v) [...] lie in the scale-1 square: bool [...]."""
  return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF_SIDE


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether sprite-frame points (u, v) [...] lie in the scale-1 ellipse: bool [...]."""
  a, b = _ELLIPSE_SEMI_AXES
  return np.square(u * np.float32(1.0 / a)) + np.square(v * np.float32(1.0 / b)) <= 1.0


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether sprite-frame points (u, v) [...] lie in the scale-1 heart: bool [...].

  The heart is mirror-symmetric, so only the right half (|u|) is tested: the right lobe
  disk, united with the region below the lobe centres bounded by the flank and by the
  lobe radius to the flank's tangent point, minus the notch between the lobes.
  """
  f32 = np.float32
  au = np.abs(u)
  lobe = np.square(au - f32(_HEART_LOBE_X)) + np.square(v - f32(_HEART_LOBE_Y)) <= f32(_HEART_LOBE_R**2)
  body = v >= f32(_HEART_LOBE_Y)
  body &= au * f32(_HEART_N[0]) + v * f32(_HEART_N[1]) <= f32(_HEART_N_OFFSET)
  body &= au * f32(_HEART_M[0]) + v * f32(_HEART_M[1]) >= f32(_HEART_M_OFFSET)
  notch = au + v * f32(_HEART_NOTCH_SLOPE) < f32(_HEART_NOTCH_SLOPE * _HEART_NOTCH_Y)
  return (lobe | body) & ~notch


_INSIDE = {SQUARE: _inside_square, ELLIPSE: _inside_ellipse, HEART: _inside_heart}


def _render_windows(shape: int, scale, angle, dx, dy) -> np.ndarray:
  """Binary windows bool [n, 32, 32] of one shape.

  Args:
    shape: SQUARE, ELLIPSE or HEART.
    scale, angle: [n] float64 scales and orientations (radians, counter-clockwise).
    dx, dy: [n] float64 sprite centre relative to the window's top-left corner, in
      [16, 17) so that the sprite fits whatever its rotation.
  """
  # Pixel-centre sampling: a pixel is on where its centre is inside the outline. Where a
  # straight edge crosses a pixel this is exactly "the shape covers at least half the
  # pixel" (a line through the centre of a square halves it); the curves here have radii
  # of 2 px and more, so it differs from 4x4 supersampling only near the corners and the
  # heart's point and notch (no more than from the real frames), at 1/16 of the cost.
  x = (_WINDOW_CENTRES[None, :] - dx[:, None]).astype(np.float32)  # [n, 32] columns
  y = (_WINDOW_CENTRES[None, :] - dy[:, None]).astype(np.float32)  # [n, 32] rows
  # Inverse of the on-screen counter-clockwise turn and of the scaling. With y pointing
  # down the rows, a counter-clockwise turn by t maps (u, v) to (u cos t + v sin t,
  # -u sin t + v cos t); its inverse is below. Angles are float64 until here so that
  # theta and theta + pi/2 give float32 coefficients equal up to sign and order.
  cos = (np.cos(angle) / scale).astype(np.float32)[:, None]
  sin = (np.sin(angle) / scale).astype(np.float32)[:, None]
  u = (x * cos)[:, None, :] - (y * sin)[:, :, None]
  v = (x * sin)[:, None, :] + (y * cos)[:, :, None]
  return _INSIDE[shape](u, v)


def render_sprites(shape, scale, angle, x, y) -> np.ndarray:
  """Binary images [n, 64, 64, 1] float32 (0 or 1) of sprites given by factor values.

  Args:
    shape: [n] ints, 0 square, 1 ellipse, 2 heart.
    scale: [n] floats in (0, 1], the sprite's size relative to the largest one.
    angle: [n] floats, the orientation in radians, counter-clockwise on screen.
    x, y: [n] floats in [0, 1], the position (posX moves along columns, posY down the
      rows); the centre is at pixel 16 + 32 * pos.
  Scalars broadcast against [n] arrays; all scalars draw one sprite (n = 1).
  """
  shape, scale, angle, x, y = np.broadcast_arrays(
      np.atleast_1d(shape), *(np.atleast_1d(np.asarray(a, np.float64)) for a in (scale, angle, x, y)))
  if shape.ndim != 1:
    raise ValueError(f"render_sprites takes [n] arrays (or scalars), got shape {shape.shape}")
  if not np.all(np.isin(shape, (SQUARE, ELLIPSE, HEART))):
    raise ValueError(f"shape must be 0 (square), 1 (ellipse) or 2 (heart), got {np.unique(shape)}")
  if not (np.all(scale > 0.0) and np.all(scale <= 1.0)):
    raise ValueError("scale must lie in (0, 1]")
  if not (np.all((x >= 0.0) & (x <= 1.0)) and np.all((y >= 0.0) & (y <= 1.0))):
    raise ValueError("positions x, y must lie in [0, 1]")
  shape = shape.astype(np.int64)
  # Exactly periodic: orientation 2*pi (the last grid value) renders as 0.
  angle = np.mod(angle, 2.0 * np.pi)
  n = shape.shape[0]
  out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.float32)
  # The window's top-left pixel. The centre lies in [16, 48], so the window [origin,
  # origin + 32) stays inside the image, and its pixel centres reach at least 14.5 px
  # from the sprite centre on every side, beyond _MAX_RADIUS.
  cx = _POS_OFFSET + _POS_RANGE * x
  cy = _POS_OFFSET + _POS_RANGE * y
  ox = np.floor(cx).astype(np.int64) - _WINDOW // 2
  oy = np.floor(cy).astype(np.int64) - _WINDOW // 2
  for start in range(0, n, _CHUNK):
    chunk = slice(start, min(start + _CHUNK, n))
    for s in (SQUARE, ELLIPSE, HEART):
      idx = np.nonzero(shape[chunk] == s)[0] + start
      if idx.size == 0:
        continue
      windows = _render_windows(s, scale[idx], angle[idx], cx[idx] - ox[idx], cy[idx] - oy[idx])
      for i, w in zip(idx.tolist(), windows):
        out[i, oy[i]:oy[i] + _WINDOW, ox[i]:ox[i] + _WINDOW] = w
  return out[..., None]


class ProceduralDSprites(GridDataset):
  """Procedural dSprites: 737,280 binary 64x64 images over the real dataset's factor grid.

  Deterministic and stateless: every call draws the requested sprites from scratch.
  Implements vae_jax.data.grid.FactorDataset (procedural; shape labelled and left out
  of Chen's MIG by default, see grid_spec).
  """

  name = "dsprites_procedural"
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
  procedural = True

  def __init__(self):
    super().__init__(grid_spec())

  def render(self, factors: np.ndarray) -> np.ndarray:
    """Images [n, 64, 64, 1] float32 (0 or 1) of factor-index rows `factors` [n, 5]."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
      raise ValueError(f"factors must be [n, {len(FACTOR_SIZES)}], got shape {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
      raise ValueError(f"factors must be integer factor indices, got dtype {factors.dtype}")
    if np.any(factors < 0) or np.any(factors >= np.array(FACTOR_SIZES)):
      raise ValueError(f"factor indices out of range for sizes {FACTOR_SIZES}")
    values = [v[f] for v, f in zip(self.factor_values, factors.T)]
    return render_sprites(factors[:, 0], *values[1:])

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, 64, 64, 1] float32 (0 or 1) of flat grid indices `indices` [n]."""
    indices = np.asarray(indices)
    if indices.ndim != 1:
      raise ValueError(f"indices must be [n], got shape {indices.shape}")
    if np.any(indices < 0) or np.any(indices >= len(self)):
      raise IndexError(f"grid indices must lie in [0, {len(self)})")
    return self.render(self.index_to_factors(indices))


def load(name: str = "", data_dir: str = "", cache: str = "auto") -> ProceduralDSprites:
  """The procedural grid (data.name loader; it reads no files, so data_dir and cache are unused)."""
  del name, data_dir, cache
  return ProceduralDSprites()
