"""Datasets served from a decoded uint8 array, and the atomic cache files that hold them.

The real datasets (through TFDS or the manual builders) are decoded once into one
array in factor-grid order and cached as a .npy file in the data directory; a run
then gathers batches from it. This module is the NumPy-only half of that: the
`ArrayGrid` (a FactorDataset over such an array), `ArrayImages` (images without
factors, plus per-image attributes: CelebA), `DatasetFileError` (the one error a
missing or incomplete file gives) and the atomic writing and loading of the caches.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Sequence

import numpy as np

from vae_jax.data.grid import GridDataset, GridSpec, factors_to_index

CACHE_MODES = ("auto", "memory", "mmap")

# "auto" loads a cache into RAM when it takes at most this fraction of the memory
# available; otherwise it is memory-mapped (the page cache then serves what fits).
_AUTO_MEMORY_FRACTION = 0.5


class DatasetFileError(RuntimeError):
  """A dataset file is missing or incomplete; the message says which and what to do."""


def _check_indices(indices: np.ndarray, n: int) -> np.ndarray:
  indices = np.asarray(indices)
  if indices.ndim != 1:
    raise ValueError(f"indices must be [n], got shape {indices.shape}")
  if not np.issubdtype(indices.dtype, np.integer) and indices.size:
    raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
  indices = indices.astype(np.int64, copy=False)
  if indices.size and (indices.min() < 0 or indices.max() >= n):
    raise IndexError(f"indices must lie in [0, {n})")
  return indices


def _gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
  """array[indices] for a memmap or in-memory array [N, ...] and int64 indices [n]."""
  if isinstance(array, np.memmap) and indices.size > 1:
    # Reading a memory map in increasing order turns random page faults into
    # forward reads; the result is put back in the requested order.
    order = np.argsort(indices, kind="stable")
    out = np.empty((indices.size,) + array.shape[1:], array.dtype)
    out[order] = array[indices[order]]
    return out
  return array[indices]


def _to_float(raw: np.ndarray, image_shape: Sequence[int], packed: bool) -> np.ndarray:
  """Float32 images [n, *image_shape] in [0, 1] of uint8 rows [n, ...] (or packed bits)."""
  n = raw.shape[0]
  if packed:
    bits = np.unpackbits(raw, axis=1, count=int(np.prod(image_shape)))
    return bits.reshape(n, *image_shape).astype(np.float32)
  # One pass (convert and scale) over a fresh output: the conversion is most of a batch's cost.
  return np.multiply(raw.reshape(n, *image_shape), np.float32(1.0 / 255.0), dtype=np.float32)


class ArrayGrid(GridDataset):
  """A FactorDataset over a uint8 array in factor-grid order (row-major, last factor fastest).

  Implements vae_jax.data.grid.FactorDataset.

  Attributes:
    name: the data.name that selects it, e.g. "shapes3d".
    spec: the factor grid (names, sizes, values).
    factor_names, factor_sizes, factor_values: the spec's, for the protocol.
    factor_value_labels, mig_excluded_factors: the spec's (see FactorDataset).
    image_shape: (H, W, C) of one image.
    nuisance_factors: names of factors that are part of the grid (so that every
      index has one image) but are not generative factors to be disentangled
      (SmallNORB's instance); metrics leave them out by default. The spec's, then
      those passed to the constructor.
    procedural: False (the pixels come from a dataset file).
    source: a line on where the pixels come from (for metrics.json and logs).
  """

  def __init__(
      self,
      name: str,
      spec: GridSpec,
      array: np.ndarray,
      image_shape: Sequence[int],
      *,
      packed: bool = False,
      nuisance_factors: Sequence[str] = (),
      source: str = "",
  ):
    """Wraps `array`: uint8 [N, H, W, C] (or [N, H·W·C/8] bits if `packed`), N = spec.num_images."""
    if array.shape[0] != spec.num_images:
      raise ValueError(f"{name}: array has {array.shape[0]} images, the grid {spec.factor_sizes} needs {spec.num_images}")
    if array.dtype != np.uint8:
      raise ValueError(f"{name}: array must be uint8, got {array.dtype}")
    expected = (int(np.ceil(np.prod(image_shape) / 8)),) if packed else tuple(image_shape)
    if tuple(array.shape[1:]) != expected:
      raise ValueError(f"{name}: array rows have shape {array.shape[1:]}, expected {expected}")
    unknown = set(nuisance_factors) - set(spec.factor_names)
    if unknown:
      raise ValueError(f"{name}: nuisance factors {sorted(unknown)} are not factors of {spec.factor_names}")
    super().__init__(spec)
    self.name = name
    self.image_shape = tuple(int(s) for s in image_shape)
    self.nuisance_factors = spec.nuisance_factors + tuple(n for n in nuisance_factors if n not in spec.nuisance_factors)
    self.source = source
    self.packed = packed
    self._array = array

  @property
  def in_memory(self) -> bool:
    """Whether the images are held in RAM (True) or memory-mapped from the cache file."""
    return not isinstance(self._array, np.memmap)

  def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
    """Flat grid indices [n] of factor-index rows [n, F], checked to lie on the grid."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
      raise ValueError(f"factors must be [n, {len(self.factor_sizes)}], got shape {factors.shape}")
    if np.any(factors < 0) or np.any(factors >= np.asarray(self.factor_sizes)):
      raise ValueError(f"factor indices out of range for sizes {self.factor_sizes}")
    return factors_to_index(factors, self.factor_sizes)

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 in [0, 1] of flat grid indices `indices` [n]."""
    indices = _check_indices(indices, len(self))
    return _to_float(_gather(self._array, indices), self.image_shape, self.packed)

  def images_of_factors(self, factors: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 in [0, 1] of factor-index rows `factors` [n, F]."""
    return self.images(self.factors_to_index(factors))

  def image_range(self, start: int, stop: int) -> np.ndarray:
    """Images [stop − start, H, W, C] float32 in [0, 1] of grid indices [start, stop)."""
    if not 0 <= start <= stop <= len(self):
      raise IndexError(f"range [{start}, {stop}) is not inside [0, {len(self)})")
    return _to_float(np.asarray(self._array[start:stop]), self.image_shape, self.packed)

  def uint8_images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] uint8 (0/1 for packed binary images) of grid indices [n]."""
    indices = _check_indices(indices, len(self))
    raw = _gather(self._array, indices)
    if self.packed:
      return np.unpackbits(raw, axis=1, count=int(np.prod(self.image_shape))).reshape(-1, *self.image_shape)
    return raw


class ArrayImages:
  """Images without ground-truth factors (CelebA), with binary attributes per image.

  Follows the FactorDataset interface with an empty factor grid (factor_names,
  factor_sizes and factor_values are all ()), so it trains like any other dataset;
  metrics that need factors must refuse it (`has_factors` is False).

  Attributes:
    name, image_shape, source: as for ArrayGrid.
    attribute_names: names of the columns of `attributes`.
    factor_value_labels, mig_excluded_factors, nuisance_factors: () (no factors).
    procedural: False.
  """

  factor_names: tuple[str, ...] = ()
  factor_sizes: tuple[int, ...] = ()
  factor_values: tuple[np.ndarray, ...] = ()
  factor_value_labels: tuple[tuple[str, ...] | None, ...] = ()
  mig_excluded_factors: tuple[str, ...] = ()
  nuisance_factors: tuple[str, ...] = ()
  procedural = False
  has_factors = False

  def __init__(self, name: str, array: np.ndarray, attributes: np.ndarray, attribute_names: Sequence[str],
               *, source: str = ""):
    """Wraps uint8 images `array` [N, H, W, C] and bool `attributes` [N, A]."""
    if array.dtype != np.uint8 or array.ndim != 4:
      raise ValueError(f"{name}: images must be uint8 [N, H, W, C], got {array.dtype} {array.shape}")
    if attributes.shape != (array.shape[0], len(attribute_names)):
      raise ValueError(f"{name}: attributes {attributes.shape} do not match {array.shape[0]} images x "
                       f"{len(attribute_names)} names")
    self.name = name
    self.image_shape = tuple(int(s) for s in array.shape[1:])
    self.attribute_names = tuple(attribute_names)
    self.source = source
    self._array = array
    self._attributes = np.asarray(attributes, dtype=bool)

  def __len__(self) -> int:
    return self._array.shape[0]

  @property
  def in_memory(self) -> bool:
    """Whether the images are held in RAM (True) or memory-mapped from the cache file."""
    return not isinstance(self._array, np.memmap)

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 in [0, 1] of indices [n]."""
    indices = _check_indices(indices, len(self))
    return _to_float(_gather(self._array, indices), self.image_shape, packed=False)

  def image_range(self, start: int, stop: int) -> np.ndarray:
    """Images [stop − start, H, W, C] float32 in [0, 1] of indices [start, stop)."""
    if not 0 <= start <= stop <= len(self):
      raise IndexError(f"range [{start}, {stop}) is not inside [0, {len(self)})")
    return _to_float(np.asarray(self._array[start:stop]), self.image_shape, packed=False)

  def attributes(self, indices: np.ndarray) -> np.ndarray:
    """Attributes bool [n, A] (columns `attribute_names`) of indices [n]."""
    return self._attributes[_check_indices(indices, len(self))]


# Caches.


@contextlib.contextmanager
def atomic_npy(path: str, shape: Sequence[int], dtype) -> Iterator[np.memmap]:
  """A writable .npy memmap that appears at `path` only if the `with` body completes.

  The array is written to a temporary file next to `path` and renamed over it at the
  end (atomic on POSIX file systems); on any exception the temporary file is removed,
  so neither a crash nor an error leaves a half-written cache behind.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".incomplete", dir=directory)
  os.close(fd)
  try:
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
    yield array
    array.flush()
    del array
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_npy_atomically(path: str, array: np.ndarray) -> None:
  """np.save(path, array), appearing at `path` only once complete."""
  with atomic_npy(path, array.shape, array.dtype) as out:
    out[...] = array


def available_memory_bytes() -> int:
  """MemAvailable from /proc/meminfo (physical pages free otherwise), in bytes."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return 0


def load_npy(path: str, cache: str = "auto") -> np.ndarray:
  """The array saved at `path`, in RAM or memory-mapped as `cache` says.

  Args:
    path: a .npy file.
    cache: "memory" (read it into RAM), "mmap" (map it; the OS page cache keeps what
      fits) or "auto" (RAM if it takes at most half the available memory).
  """
  if cache not in CACHE_MODES:
    raise ValueError(f"Unknown data.cache {cache!r}; use one of {CACHE_MODES}.")
  mapped = np.load(path, mmap_mode="r")
  if cache == "mmap":
    return mapped
  if cache == "auto" and mapped.nbytes > _AUTO_MEMORY_FRACTION * available_memory_bytes():
    return mapped
  return np.array(mapped)
