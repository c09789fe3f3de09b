"""Ground-truth-factor grids: index <-> factor-index arithmetic and the dataset interface.

A dataset with known generative factors stores one image for every combination of
factor values, in row-major order over the factors (the last factor varies fastest),
exactly as dSprites' npz and 3dshapes' h5 do. Converting between a flat index and the
factor indices is therefore arithmetic, and a metric can ask for any slice.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


def factors_to_index(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
  """Flat row-major indices [n] of factor-index rows `factors` [n, F]."""
  factors = np.asarray(factors, dtype=np.int64)
  return np.ravel_multi_index(tuple(factors.T), tuple(factor_sizes)).astype(np.int64)


def index_to_factors(indices: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
  """Factor-index rows [n, F] of flat row-major indices `indices` [n]."""
  indices = np.asarray(indices, dtype=np.int64)
  return np.stack(np.unravel_index(indices, tuple(factor_sizes)), axis=-1).astype(np.int64)


@runtime_checkable
class FactorDataset(Protocol):
  """A grid of images over known generative factors.

  Attributes:
    name: short identifier, e.g. "dsprites_procedural".
    factor_names: one name per factor, in grid order.
    factor_sizes: number of values of each factor; len(dataset) is their product.
    factor_values: per factor, the [size] array of the factor's actual values.
    image_shape: (height, width, channels) of one image.
  """

  name: str
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  factor_values: tuple[np.ndarray, ...]
  image_shape: tuple[int, int, int]

  def __len__(self) -> int:
    ...

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 in [0, 1] for flat grid indices [n]."""
    ...


@dataclasses.dataclass(frozen=True)
class GridSpec:
  """Factor names, sizes and values of a grid, with the index arithmetic."""

  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  factor_values: tuple[np.ndarray, ...]

  @property
  def num_images(self) -> int:
    return int(np.prod(self.factor_sizes))

  def index_to_factors(self, indices: np.ndarray) -> np.ndarray:
    return index_to_factors(indices, self.factor_sizes)

  def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
    return factors_to_index(factors, self.factor_sizes)


class GridDataset:
  """Base of datasets over a GridSpec: the factor attributes, len() and index arithmetic.

  Subclasses add `name`, `image_shape` and `images(indices)`.
  """

  def __init__(self, spec: GridSpec):
    self.spec = spec
    self.factor_names = spec.factor_names
    self.factor_sizes = spec.factor_sizes
    self.factor_values = spec.factor_values

  def __len__(self) -> int:
    return self.spec.num_images

  def index_to_factors(self, indices: np.ndarray) -> np.ndarray:
    """Factor-index rows [n, F] of flat grid indices [n]."""
    return self.spec.index_to_factors(indices)

  def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
    """Flat grid indices [n] of factor-index rows [n, F]."""
    return self.spec.factors_to_index(factors)
