"""Ground-truth-factor grids: index <-> factor-index arithmetic and the dataset interface.

A dataset with known generative factors stores one image for every combination of
factor values, in row-major order over the factors (the last factor varies fastest),
exactly as dSprites' npz and 3dshapes' h5 do. Converting between a flat index and the
factor indices is therefore arithmetic, and a metric can ask for any slice.

Facts about a dataset that metrics, reports and figures need travel with the dataset
(see FactorDataset): the labels of categorical factor values, the factors Chen et
al.'s MIG leaves out by default, nuisance factors, and whether the grid is a
procedural stand-in. `default_mig_factors` and `dataset_note` read them.
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
    factor_value_labels: per factor, the human-readable names of its values (a
      tuple of factor_sizes[f] strings, e.g. dSprites' shape: square, ellipse,
      heart), or None where the values have no names.
    mig_excluded_factors: names of factors Chen et al.'s MIG leaves out by default
      (dSprites' shape, which no model encodes smoothly); the histogram MIG keeps them.
    nuisance_factors: names of grid factors that are not generative factors to be
      disentangled (SmallNORB's instance); metrics leave them out by default.
    procedural: True for grids rendered here (a stand-in for the original dataset file).
  """

  name: str
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  factor_values: tuple[np.ndarray, ...]
  image_shape: tuple[int, int, int]
  factor_value_labels: tuple[tuple[str, ...] | None, ...]
  mig_excluded_factors: tuple[str, ...]
  nuisance_factors: tuple[str, ...]
  procedural: bool

  def __len__(self) -> int:
    ...

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 in [0, 1] for flat grid indices [n]."""
    ...


@dataclasses.dataclass(frozen=True)
class GridSpec:
  """Factor names, sizes and values of a grid, with the index arithmetic.

  Attributes:
    factor_names, factor_sizes, factor_values: as in FactorDataset.
    factor_value_labels: per factor, names of its values or None (FactorDataset);
      () (the default) means no factor has any and becomes (None,) * F.
    mig_excluded_factors, nuisance_factors: factor names, as in FactorDataset.

  Raises:
    ValueError: labels that do not match the factors, or names that are not factors.
  """

  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  factor_values: tuple[np.ndarray, ...]
  factor_value_labels: tuple[tuple[str, ...] | None, ...] = dataclasses.field(default=(), kw_only=True)
  mig_excluded_factors: tuple[str, ...] = dataclasses.field(default=(), kw_only=True)
  nuisance_factors: tuple[str, ...] = dataclasses.field(default=(), kw_only=True)

  def __post_init__(self):
    names, sizes = tuple(self.factor_names), tuple(self.factor_sizes)
    labels = tuple(None if l is None else tuple(l) for l in self.factor_value_labels) or (None,) * len(names)
    if len(labels) != len(names):
      raise ValueError(f"factor_value_labels has {len(labels)} entries for the {len(names)} factors {names}")
    for name, size, l in zip(names, sizes, labels):
      if l is not None and len(l) != size:
        raise ValueError(f"factor {name!r} has {size} values but {len(l)} value labels {l}")
    for field in ("mig_excluded_factors", "nuisance_factors"):
      unknown = set(getattr(self, field)) - set(names)
      if unknown:
        raise ValueError(f"{field} {sorted(unknown)} are not factors of {names}")
    # Frozen: normalise through object.__setattr__.
    object.__setattr__(self, "factor_value_labels", labels)
    object.__setattr__(self, "mig_excluded_factors", tuple(self.mig_excluded_factors))
    object.__setattr__(self, "nuisance_factors", tuple(self.nuisance_factors))

  @property
  def num_images(self) -> int:
    return int(np.prod(self.factor_sizes))

  def index_to_factors(self, indices: np.ndarray) -> np.ndarray:
    return index_to_factors(indices, self.factor_sizes)

  def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
    return factors_to_index(factors, self.factor_sizes)


class GridDataset:
  """Base of datasets over a GridSpec: the factor attributes, len() and index arithmetic.

  The factor attributes (names, sizes, values, value labels, MIG-excluded and
  nuisance factors) are the spec's; `procedural` is False unless a subclass renders
  its images itself. Subclasses add `name`, `image_shape` and `images(indices)`.
  """

  procedural: bool = False

  def __init__(self, spec: GridSpec):
    self.spec = spec
    self.factor_names = spec.factor_names
    self.factor_sizes = spec.factor_sizes
    self.factor_values = spec.factor_values
    self.factor_value_labels = spec.factor_value_labels
    self.mig_excluded_factors = spec.mig_excluded_factors
    self.nuisance_factors = spec.nuisance_factors

  def __len__(self) -> int:
    return self.spec.num_images

  def index_to_factors(self, indices: np.ndarray) -> np.ndarray:
    """Factor-index rows [n, F] of flat grid indices [n]."""
    return self.spec.index_to_factors(indices)

  def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
    """Flat grid indices [n] of factor-index rows [n, F]."""
    return self.spec.factors_to_index(factors)


PROCEDURAL_NOTE = "procedurally generated grid, not the original dataset file"


def default_mig_factors(dataset: FactorDataset, names: Sequence[str] = ()) -> tuple[int, ...]:
  """Indices of the factors Chen et al.'s MIG counts: `names`' indices, or the dataset's default.

  Args:
    dataset: a FactorDataset (attributes it lacks count as their defaults: no factor
      excluded, none a nuisance).
    names: factor names (config eval.mig_factors), in the order wanted; () = the default.

  Returns:
    The indices of `names` in that order; for no names, every factor (in grid order)
    that is not in mig_excluded_factors or nuisance_factors and has more than one value.

  Raises:
    ValueError: a name is not a factor of the dataset.
  """
  factor_names = tuple(dataset.factor_names)
  if names:
    unknown = set(names) - set(factor_names)
    if unknown:
      raise ValueError(f"eval.mig_factors names {sorted(unknown)}; {dataset.name} has {dataset.factor_names}.")
    return tuple(factor_names.index(n) for n in names)
  excluded = tuple(getattr(dataset, "mig_excluded_factors", ())) + tuple(getattr(dataset, "nuisance_factors", ()))
  return tuple(i for i, (name, size) in enumerate(zip(factor_names, dataset.factor_sizes))
               if name not in excluded and size > 1)


def dataset_note(dataset: FactorDataset) -> str:
  """The note results carry about the dataset: PROCEDURAL_NOTE for a procedural grid, else ""."""
  return PROCEDURAL_NOTE if getattr(dataset, "procedural", False) else ""
