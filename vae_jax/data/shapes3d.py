"""Procedural 3dshapes: a room, an object on its floor, rendered over the real factor grid.

The grid is the one of DeepMind's 3dshapes.h5 (floor_hue 10, wall_hue 10, object_hue 10,
scale 8, shape 4, orientation 15; row-major, last factor fastest: 480,000 RGB 64x64
images). The pictures are not the original renders: they are ray-cast here, NumPy only
(this module must import where TensorFlow and JAX are absent), to look like the frames in
shared/reference/3dshapes.gif. Results on this grid are results on a procedural stand-in.

Scene (camera frame: x right, y up, z towards the viewer; floor at y = 0): a pinhole
camera at height 1.125 looks horizontally along -z; the object stands on the floor at
depth 2.625 and the camera orbits it (the orientation factor turns the room and the
object together about the object's vertical axis), so the back wall and the corners of
its side walls move across the picture while the object stays in the middle. Above the
walls is a constant light-blue sky. The lights are fixed to the camera: a head light and
an upper-left light shade the object, a spot light falls off across the floor, and a
near-vertical light from the upper left casts the object's shadow onto the floor.

Every pixel is a sum over four regions (floor, wall, object, sky) of coverage times
shading times the region's colour. Coverage and shading depend only on (scale, shape,
orientation), 480 combinations that are rendered once (supersampled, then box-filtered)
and cached; the hues only pick the colours. So each hue changes only its own region's
pixels (the shadow darkens the floor colour and does not depend on the object's hue),
and `images` costs a gather plus a [4] x [4, 3] product per pixel. `render_with_masks`
and `region_coverage` expose the regions (labels FLOOR 0, WALL 1, OBJECT 2, SKY 3).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vae_jax.data.grid import GridDataset, GridSpec, factors_to_index, index_to_factors

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")

# Region labels of `render_with_masks`; also the order of the cached weight channels.
FLOOR, WALL, OBJECT, SKY = 0, 1, 2, 3
REGION_NAMES = ("floor", "wall", "object", "sky")
NUM_REGIONS = 4

IMAGE_SIZE = 64
SKY_RGB = np.array([153.0, 226.0, 249.0], np.float32) / 255.0

# Camera and room, in units where a scale-1 cube has side 1. Fitted to the reference
# frames: the wall's top and bottom edges over all 15 orientations, the object's size.
_FOCAL = 1.5  # Normalised: half the image width spans tan(33.7 degrees).
_CAMERA_HEIGHT = 1.125
_OBJECT_DEPTH = 2.625
_BACK_WALL = 3.73  # Distance of the back wall behind the object.
_SIDE_WALL = 4.46  # Distance of each side wall to the left/right of the object.
_WALL_HEIGHT = 3.08

# Object sizes per unit scale: cube side; cylinder radius, height; sphere radius;
# capsule radius, height.
_CUBE_SIDE = 1.0
_CYLINDER_RADIUS, _CYLINDER_HEIGHT = 0.55, 1.0
_SPHERE_RADIUS = 0.62
_CAPSULE_RADIUS, _CAPSULE_HEIGHT = 0.52, 2.0


def _unit(v: Sequence[float]) -> np.ndarray:
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


# Lights, camera frame, pointing towards the light.
_KEY_LIGHT = _unit([-1.0, 0.9, 0.3])
_SHADOW_LIGHT = _unit([-0.28, 1.0, -0.1])
_OBJECT_AMBIENT, _OBJECT_HEAD, _OBJECT_KEY = 0.45, 0.45, 0.3
_SHADOW_FACTOR = 0.35
_WALL_AMBIENT, _WALL_HEAD = 0.4, 0.6
# Floor brightness min(1, a - b * distance to a point left of the object), floor coords.
_SPOT_CENTRE = (-0.5, 3.0)  # (x, depth) in the camera frame.
_SPOT_A, _SPOT_B, _SPOT_MIN = 1.18, 0.147, 0.3

_T_EPS = 1e-6


def grid_spec() -> GridSpec:
  """The 3dshapes factor grid (procedural and real): names, sizes [6], values (as in the real labels).

  Shape's values are labelled SHAPE_NAMES; every factor counts in Chen et al.'s MIG.
  """
  values = (
      np.linspace(0.0, 1.0, 10, endpoint=False),  # floor_hue
      np.linspace(0.0, 1.0, 10, endpoint=False),  # wall_hue
      np.linspace(0.0, 1.0, 10, endpoint=False),  # object_hue
      np.linspace(0.75, 1.25, 8),  # scale
      np.arange(4, dtype=np.float64),  # shape
      np.linspace(-30.0, 30.0, 15),  # orientation, degrees
  )
  labels = tuple(SHAPE_NAMES if name == "shape" else None for name in FACTOR_NAMES)
  return GridSpec(FACTOR_NAMES, FACTOR_SIZES, values, factor_value_labels=labels)


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
  """Fully saturated, full-value colours [..., 3] in [0, 1] of HSV hues [...] in [0, 1)."""
  h6 = 6.0 * np.asarray(hue, np.float64)[..., None]
  rgb = np.abs(h6 - np.array([3.0, 2.0, 4.0])) * np.array([1.0, -1.0, -1.0]) + np.array([-1.0, 2.0, 2.0])
  return np.clip(rgb, 0.0, 1.0)


def _rot_y(angle: float) -> np.ndarray:
  """Rotation [3, 3] by `angle` radians about the y axis (z towards x)."""
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _sphere_hit(o, d, centre, radius):
  """Nearest hit t [N] (inf if none) and normals [N, 3] of rays o + t d (|d| = 1) on a sphere."""
  oc = o - centre
  b = np.einsum("ij,ij->i", oc, d)
  c = np.einsum("ij,ij->i", oc, oc) - radius * radius
  disc = b * b - c
  root = np.sqrt(np.maximum(disc, 0.0))
  t = -b - root
  t = np.where(t > _T_EPS, t, -b + root)  # Origin inside: the far root.
  t = np.where((disc >= 0.0) & (t > _T_EPS), t, np.inf)
  p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
  return t, (p - centre) / radius


def _cylinder_hit(o, d, radius, y0, y1, top_cap=True):
  """Nearest hit t [N] and normals [N, 3] on a vertical cylinder about the y axis, y in [y0, y1]."""
  a = d[:, 0] ** 2 + d[:, 2] ** 2
  b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
  c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius * radius
  disc = b * b - a * c
  safe_a = np.where(a > 1e-12, a, 1.0)
  t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / safe_a
  y_side = o[:, 1] + t_side * d[:, 1]
  ok = (disc >= 0.0) & (a > 1e-12) & (t_side > _T_EPS) & (y_side >= y0) & (y_side <= y1)
  t_side = np.where(ok, t_side, np.inf)
  p = o + np.where(ok, t_side, 0.0)[:, None] * d
  n_side = np.stack([p[:, 0], np.zeros_like(p[:, 0]), p[:, 2]], -1) / radius
  if not top_cap:
    return t_side, n_side
  safe_dy = np.where(np.abs(d[:, 1]) > 1e-12, d[:, 1], 1e-12)
  t_top = (y1 - o[:, 1]) / safe_dy
  q = o + t_top[:, None] * d
  ok = (t_top > _T_EPS) & (q[:, 0] ** 2 + q[:, 2] ** 2 <= radius * radius) & (o[:, 1] > y1)
  t_top = np.where(ok, t_top, np.inf)
  use_top = t_top < t_side
  n_top = np.broadcast_to(np.array([0.0, 1.0, 0.0]), n_side.shape)
  return np.minimum(t_side, t_top), np.where(use_top[:, None], n_top, n_side)


def _box_hit(o, d, lo, hi):
  """Nearest hit t [N] and normals [N, 3] of rays on the axis-aligned box [lo, hi]."""
  inv = 1.0 / np.where(np.abs(d) > 1e-12, d, 1e-12)
  t0 = (lo - o) * inv
  t1 = (hi - o) * inv
  t_near = np.minimum(t0, t1)
  t_far = np.maximum(t0, t1)
  axis = np.argmax(t_near, axis=1)
  t_enter = np.max(t_near, axis=1)
  t_exit = np.min(t_far, axis=1)
  ok = (t_enter <= t_exit) & (t_enter > _T_EPS)
  t = np.where(ok, t_enter, np.inf)
  sign = -np.sign(d[np.arange(len(d)), axis])
  n = np.zeros_like(d)
  n[np.arange(len(d)), axis] = sign
  return t, n


def _object_hit(o, d, scale, shape):
  """Nearest hit t [N] and object-frame normals [N, 3] of object-frame rays on the object."""
  if shape == 0:
    h = 0.5 * _CUBE_SIDE * scale
    return _box_hit(o, d, np.array([-h, 0.0, -h]), np.array([h, 2.0 * h, h]))
  if shape == 1:
    return _cylinder_hit(o, d, _CYLINDER_RADIUS * scale, 0.0, _CYLINDER_HEIGHT * scale)
  if shape == 2:
    r = _SPHERE_RADIUS * scale
    return _sphere_hit(o, d, np.array([0.0, r, 0.0]), r)
  if shape == 3:
    r = _CAPSULE_RADIUS * scale
    top = _CAPSULE_HEIGHT * scale - r
    hits = [
        _cylinder_hit(o, d, r, r, top, top_cap=False),
        _sphere_hit(o, d, np.array([0.0, r, 0.0]), r),
        _sphere_hit(o, d, np.array([0.0, top, 0.0]), r),
    ]
    ts = np.stack([t for t, _ in hits])
    ns = np.stack([n for _, n in hits])
    best = np.argmin(ts, axis=0)
    idx = np.arange(len(d))
    return ts[best, idx], ns[best, idx]
  raise ValueError(f"shape index {shape} not in 0..3")


def render_geometry(
    scale: float,
    shape: int,
    orientation_deg: float,
    size: int = IMAGE_SIZE,
    supersample: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
  """Per-region shading weights and coverage of one (scale, shape, orientation).

  Casts supersample^2 rays per pixel and box-filters them.

  Returns:
    weights: [size, size, 4] float32, per region (floor, wall, object, sky) the mean over
      the pixel's rays of shading * [ray hits that region]; the pixel's colour is
      sum_r weights[..., r] * colour_r.
    coverage: [size, size, 4] float32, the fraction of the pixel's rays hitting each region
      (sums to 1).
  """
  n = size * supersample
  centres = (np.arange(n) + 0.5) / n * 2.0 - 1.0  # Normalised device coordinates.
  xs, ys = np.meshgrid(centres, -centres)
  d_cam = np.stack([xs / _FOCAL, ys / _FOCAL, -np.ones_like(xs)], -1).reshape(-1, 3)
  depth_per_unit = 1.0 / np.linalg.norm(d_cam, axis=1)  # Camera depth per unit ray length.
  d_cam = d_cam * depth_per_unit[:, None]
  num_rays = d_cam.shape[0]

  # The camera orbits the object; a positive orientation takes it to the right, so it sees
  # the object's right side and the left corner of the room (as in the real frames).
  to_obj = _rot_y(np.deg2rad(orientation_deg))
  to_cam = to_obj.T
  o_obj = to_obj @ np.array([0.0, _CAMERA_HEIGHT, _OBJECT_DEPTH])
  d_obj = d_cam @ to_obj.T
  o_rays = np.broadcast_to(o_obj, d_obj.shape)

  # Floor (y = 0).
  t_floor = np.where(d_obj[:, 1] < -1e-12, -o_obj[1] / np.minimum(d_obj[:, 1], -1e-12), np.inf)

  # Walls: back (z = -B) and the two sides (x = +-S), infinitely tall; sky above _WALL_HEIGHT.
  def plane_t(axis, value, sign):
    comp = d_obj[:, axis]
    ok = sign * comp > 1e-12
    return np.where(ok, (value - o_obj[axis]) / np.where(ok, comp, 1.0), np.inf)

  t_walls = np.stack([plane_t(2, -_BACK_WALL, -1.0), plane_t(0, _SIDE_WALL, 1.0), plane_t(0, -_SIDE_WALL, -1.0)])
  wall_id = np.argmin(t_walls, axis=0)
  t_wall = t_walls[wall_id, np.arange(num_rays)]
  wall_normals_obj = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
  wall_facing = np.maximum((wall_normals_obj @ to_cam.T)[:, 2], 0.0)  # cos to the camera axis.
  wall_shade = _WALL_AMBIENT + _WALL_HEAD * wall_facing[wall_id]
  y_wall = o_obj[1] + t_wall * d_obj[:, 1]

  t_object, n_object = _object_hit(o_rays, d_obj, scale, shape)

  label = np.where(t_wall < t_floor, np.where(y_wall <= _WALL_HEIGHT, WALL, SKY), FLOOR)
  label = np.where(t_object < np.minimum(t_floor, t_wall), OBJECT, label)

  shade = np.ones(num_rays)
  shade = np.where(label == WALL, wall_shade, shade)

  # Object: head light plus a key light from the upper left.
  n_cam = n_object @ to_cam.T
  head = np.maximum(-np.einsum("ij,ij->i", n_cam, d_cam), 0.0)
  key = np.maximum(n_cam @ _KEY_LIGHT, 0.0)
  object_shade = np.minimum(_OBJECT_AMBIENT + _OBJECT_HEAD * head + _OBJECT_KEY * key, 1.0)
  shade = np.where(label == OBJECT, object_shade, shade)

  # Floor: spot light fall-off (fixed to the camera) and the object's shadow.
  t_f = np.where(np.isfinite(t_floor), t_floor, 0.0)
  floor_x = t_f * d_cam[:, 0]
  floor_depth = t_f * depth_per_unit
  dist = np.hypot(floor_x - _SPOT_CENTRE[0], floor_depth - _SPOT_CENTRE[1])
  floor_shade = np.clip(_SPOT_A - _SPOT_B * dist, _SPOT_MIN, 1.0)
  is_floor = label == FLOOR
  floor_points = o_obj + t_f[is_floor, None] * d_obj[is_floor]
  light_obj = np.broadcast_to(to_obj @ _SHADOW_LIGHT, floor_points.shape)
  t_shadow, _ = _object_hit(floor_points, light_obj, scale, shape)
  in_shadow = np.zeros(num_rays, bool)
  in_shadow[is_floor] = np.isfinite(t_shadow)
  floor_shade = np.where(in_shadow, _SHADOW_FACTOR * floor_shade, floor_shade)
  shade = np.where(is_floor, floor_shade, shade)

  onehot = (label[:, None] == np.arange(NUM_REGIONS)).astype(np.float64)

  def box_filter(x):
    x = x.reshape(size, supersample, size, supersample, NUM_REGIONS)
    return x.mean(axis=(1, 3)).astype(np.float32)

  return box_filter(onehot * shade[:, None]), box_filter(onehot)


class ProceduralShapes3D(GridDataset):
  """Procedural 3dshapes: 480,000 RGB 64x64 images over the real dataset's factor grid.

  Deterministic; geometry (per scale, shape, orientation) is rendered on first use and
  cached, hues are applied per call. Implements vae_jax.data.grid.FactorDataset.
  """

  name = "shapes3d_procedural"
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
  procedural = True

  def __init__(self, supersample: int = 3):
    super().__init__(grid_spec())
    self._supersample = supersample
    self._num_geometries = int(np.prod(FACTOR_SIZES[3:]))
    pixels = IMAGE_SIZE * IMAGE_SIZE
    self._weights = np.zeros((self._num_geometries, pixels, NUM_REGIONS), np.float32)
    self._coverage = np.zeros((self._num_geometries, pixels, NUM_REGIONS), np.float32)
    self._ready = np.zeros(self._num_geometries, bool)
    self._hue_rgb = hue_to_rgb(self.factor_values[0]).astype(np.float32)  # [10, 3]

  def _geometry_ids(self, factors: np.ndarray) -> np.ndarray:
    """Cache rows [n] of factor-index rows [n, 6], rendering the missing ones."""
    factors = self._check(factors)
    ids = factors_to_index(factors[:, 3:], FACTOR_SIZES[3:])
    for g in np.unique(ids[~self._ready[ids]]):
      scale_i, shape_i, orient_i = np.unravel_index(g, FACTOR_SIZES[3:])
      weights, coverage = render_geometry(
          self.factor_values[3][scale_i], int(shape_i), self.factor_values[5][orient_i],
          supersample=self._supersample)
      self._weights[g] = weights.reshape(-1, NUM_REGIONS)
      self._coverage[g] = coverage.reshape(-1, NUM_REGIONS)
      self._ready[g] = True
    return ids

  def _check(self, factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors, np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
      raise ValueError(f"factors must be [n, {len(FACTOR_SIZES)}], got shape {factors.shape}")
    if np.any(factors < 0) or np.any(factors >= np.array(FACTOR_SIZES)):
      raise ValueError(f"factor indices out of range for sizes {FACTOR_SIZES}")
    return factors

  def precompute(self) -> None:
    """Renders the geometry of all 480 (scale, shape, orientation) combinations."""
    all_geometries = np.stack(np.unravel_index(np.arange(self._num_geometries), FACTOR_SIZES[3:]), -1)
    self._geometry_ids(np.concatenate([np.zeros((self._num_geometries, 3), np.int64), all_geometries], 1))

  def render(self, factors: np.ndarray) -> np.ndarray:
    """Images [n, 64, 64, 3] float32 in [0, 1] of factor-index rows `factors` [n, 6]."""
    factors = self._check(factors)
    ids = self._geometry_ids(factors)
    colours = np.empty((len(factors), NUM_REGIONS, 3), np.float32)
    colours[:, FLOOR] = self._hue_rgb[factors[:, 0]]
    colours[:, WALL] = self._hue_rgb[factors[:, 1]]
    colours[:, OBJECT] = self._hue_rgb[factors[:, 2]]
    colours[:, SKY] = SKY_RGB
    # [n, pixels, 4] @ [n, 4, 3]. A region with zero weight at a pixel adds an exact zero
    # there, so that pixel is bit-identical whatever the region's hue.
    img = np.matmul(self._weights[ids], colours)
    np.clip(img, 0.0, 1.0, out=img)
    return img.reshape((len(factors),) + self.image_shape)

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, 64, 64, 3] float32 in [0, 1] of flat grid indices `indices` [n]."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    if np.any(indices < 0) or np.any(indices >= len(self)):
      raise ValueError(f"indices out of range [0, {len(self)})")
    return self.render(index_to_factors(indices, self.factor_sizes))

  def region_coverage(self, factors: np.ndarray) -> np.ndarray:
    """Fractions [n, 64, 64, 4] of each pixel covered by floor, wall, object, sky."""
    ids = self._geometry_ids(factors)
    return self._coverage[ids].reshape(len(ids), IMAGE_SIZE, IMAGE_SIZE, NUM_REGIONS).copy()

  def render_with_masks(self, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 64, 64, 3] and region labels [n, 64, 64] int8 (FLOOR, WALL, OBJECT, SKY).

    A pixel's label is the region covering most of it; pixels on a boundary mix colours.
    """
    images = self.render(factors)
    labels = np.argmax(self.region_coverage(factors), axis=-1).astype(np.int8)
    return images, labels


def load(name: str = "", data_dir: str = "", cache: str = "auto") -> ProceduralShapes3D:
  """The procedural grid (data.name loader; it reads no files, so data_dir and cache are unused)."""
  del name, data_dir, cache
  return ProceduralShapes3D()
