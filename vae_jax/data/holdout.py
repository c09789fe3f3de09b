"""Training on part of a factor grid: some factor values held out (config key data.holdout).

A holdout spec names grid cells to leave out of training:

    spec    := clause ("," clause)*      an image is held out if it matches ANY clause
    clause  := term ("&" term)*          ... and matches a clause if it matches ALL its terms
    term    := factor "=" value ("|" value)*
    value   := index | start ":" stop | label

`index` is a factor-value index (0-based, as in the grid), `start:stop` a half-open
range of indices, and `label` a category name where the dataset has them (its
factor_value_labels; dSprites' shape: square, ellipse, heart; 3dshapes' shape: cube,
cylinder, sphere, capsule).
Examples on dSprites (factors shape, scale, orientation, posX, posY):

    "shape=2"              hearts                          (245,760 images held out)
    "shape=heart"          the same
    "shape=2,scale=0"      hearts, and every sprite at the smallest scale (union)
    "shape=2&posX=0:16"    hearts in the left half only    (intersection)
    "posX=0:8|24:32"       sprites near the left or right edge

`apply_holdout(dataset, spec)` returns a `HoldoutDataset`: its len() and images(i)
cover the kept images only (i in [0, len), as the training stream asks), while its
name, factor attributes (names, sizes, values, value labels, MIG-excluded and
nuisance factors), image_shape and procedural flag are the full grid's, and `full`
is the full dataset, which evaluation (always over the whole grid) uses.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from vae_jax.data.grid import FactorDataset, index_to_factors


def value_labels(dataset: FactorDataset, factor: int) -> tuple[str, ...] | None:
  """Names of factor `factor`'s values (dataset.factor_value_labels[factor], e.g. dSprites' shapes), or None.

  A dataset without the attribute has no labels.
  """
  labels = tuple(getattr(dataset, "factor_value_labels", ()))
  return labels[factor] if factor < len(labels) else None


@dataclasses.dataclass(frozen=True)
class Term:
  """One `factor=values` condition: factor index and the value indices it selects."""

  factor: int
  values: tuple[int, ...]


def parse_holdout(spec: str, dataset: FactorDataset) -> tuple[tuple[Term, ...], ...]:
  """The clauses (each a tuple of Terms, ANDed; clauses ORed) of a holdout spec.

  Raises ValueError naming the offending part and what the dataset allows.
  """
  names = tuple(dataset.factor_names)
  sizes = tuple(dataset.factor_sizes)
  if not names:
    raise ValueError(f"data.holdout={spec!r}: {dataset.name} has no factor grid to hold values out of.")
  clauses = []
  for clause_text in spec.split(","):
    terms = []
    for term_text in clause_text.split("&"):
      name, eq, values_text = term_text.partition("=")
      name = name.strip()
      if not eq or not name or not values_text.strip():
        raise ValueError(f"data.holdout={spec!r}: {term_text.strip()!r} is not of the form factor=value; "
                         f"e.g. '{names[0]}=0'. Factors of {dataset.name}: {names}.")
      if name not in names:
        raise ValueError(f"data.holdout={spec!r}: unknown factor {name!r}; {dataset.name} has {names}.")
      f = names.index(name)
      labels = value_labels(dataset, f)
      values = set()
      for v in values_text.split("|"):
        v = v.strip()
        try:
          if ":" in v:
            start, stop = (int(x) for x in v.split(":"))
            selected = range(start, stop)
            if not 0 <= start < stop <= sizes[f]:
              raise IndexError
          elif labels is not None and v in labels:
            selected = [labels.index(v)]
          else:
            selected = [int(v)]
            if not 0 <= selected[0] < sizes[f]:
              raise IndexError
        except (ValueError, IndexError):
          hint = f" or one of {labels}" if labels else ""
          raise ValueError(f"data.holdout={spec!r}: {name}={v!r} is not a value index in [0, {sizes[f]}), a "
                           f"range start:stop within it{hint}.") from None
        values.update(selected)
      terms.append(Term(f, tuple(sorted(values))))
    clauses.append(tuple(terms))
  return tuple(clauses)


def holdout_mask(spec: str, dataset: FactorDataset) -> np.ndarray:
  """Boolean [N] over the grid (flat, row-major order): True for held-out images."""
  sizes = tuple(dataset.factor_sizes)
  mask = np.zeros(sizes, dtype=bool)
  for clause in parse_holdout(spec, dataset):
    cell = np.ones(sizes, dtype=bool)
    for term in clause:
      selected = np.zeros(sizes[term.factor], dtype=bool)
      selected[list(term.values)] = True
      shape = [1] * len(sizes)
      shape[term.factor] = sizes[term.factor]
      cell &= selected.reshape(shape)  # Broadcasts over the other factors.
    mask |= cell
  return mask.reshape(-1)


class HoldoutDataset:
  """The kept part of a factor grid, for training; the full grid stays reachable.

  Attributes:
    full: the whole dataset (evaluation uses this).
    spec: the holdout spec.
    kept_indices: sorted full-grid indices [n_kept] of the training images.
    holdout_indices: sorted full-grid indices [n_held] of the held-out images.
    name, factor_names, factor_sizes, factor_values, image_shape: the full grid's.
    factor_value_labels, mig_excluded_factors, nuisance_factors, procedural: the full
      grid's (their defaults where it lacks them: no labels, no factor excluded, not
      procedural).
  """

  def __init__(self, dataset: FactorDataset, spec: str):
    mask = holdout_mask(spec, dataset)
    if not mask.any():
      raise ValueError(f"data.holdout={spec!r} holds out no image of {dataset.name}.")
    if mask.all():
      raise ValueError(f"data.holdout={spec!r} holds out every image of {dataset.name}; nothing is left to train on.")
    self.full = dataset
    self.spec = spec
    self.kept_indices = np.flatnonzero(~mask).astype(np.int64)
    self.holdout_indices = np.flatnonzero(mask).astype(np.int64)
    self.name = dataset.name
    self.factor_names = tuple(dataset.factor_names)
    self.factor_sizes = tuple(dataset.factor_sizes)
    self.factor_values = tuple(dataset.factor_values)
    self.image_shape = tuple(dataset.image_shape)
    self.factor_value_labels = tuple(getattr(dataset, "factor_value_labels", ())) or (None,) * len(self.factor_names)
    self.mig_excluded_factors = tuple(getattr(dataset, "mig_excluded_factors", ()))
    self.nuisance_factors = tuple(getattr(dataset, "nuisance_factors", ()))
    self.procedural = bool(getattr(dataset, "procedural", False))

  def __len__(self) -> int:
    return int(self.kept_indices.shape[0])

  def grid_indices(self, indices: np.ndarray) -> np.ndarray:
    """Full-grid indices [n] of training indices [n] in [0, len(self))."""
    indices = np.asarray(indices)
    if indices.ndim != 1:
      raise ValueError(f"indices must be [n], got shape {indices.shape}")
    if np.any(indices < 0) or np.any(indices >= len(self)):
      raise IndexError(f"training indices must lie in [0, {len(self)}) (the kept images of the holdout "
                       f"{self.spec!r}); full-grid indices go to dataset.full.images")
    return self.kept_indices[indices]

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Images [n, H, W, C] float32 of training indices [n] (the i-th kept image)."""
    return self.full.images(self.grid_indices(indices))

  def factors(self, indices: np.ndarray) -> np.ndarray:
    """Factor-index rows [n, F] of training indices [n]."""
    return index_to_factors(self.grid_indices(indices), self.factor_sizes)

  def __repr__(self) -> str:
    return (f"HoldoutDataset({self.name}, holdout={self.spec!r}: {len(self):,} kept, "
            f"{len(self.holdout_indices):,} held out)")


def apply_holdout(dataset: FactorDataset, spec: str):
  """`dataset` minus the images `spec` holds out (a HoldoutDataset); `dataset` itself if spec is ""."""
  spec = (spec or "").strip()
  if not spec:
    return dataset
  if isinstance(dataset, HoldoutDataset):
    raise ValueError(f"{dataset!r} already has a holdout; apply the spec to dataset.full.")
  return HoldoutDataset(dataset, spec)


def full_grid(dataset) -> FactorDataset:
  """The whole grid behind `dataset` (its `full` if it is a HoldoutDataset)."""
  return getattr(dataset, "full", dataset)


def split_indices(dataset, split: str) -> np.ndarray:
  """Full-grid indices [n] of a named split: "all", "train" (kept) or "holdout".

  Without a holdout, "train" is the whole grid and "holdout" is an error.
  """
  grid = full_grid(dataset)
  if split == "all":
    return np.arange(len(grid), dtype=np.int64)
  if split == "train":
    return getattr(dataset, "kept_indices", np.arange(len(grid), dtype=np.int64))
  if split == "holdout":
    if not hasattr(dataset, "holdout_indices"):
      raise ValueError("split 'holdout' needs a holdout: set data.holdout (e.g. --config.data.holdout=shape=2).")
    return dataset.holdout_indices
  raise ValueError(f"Unknown split {split!r}; use 'all', 'train' or 'holdout'.")


__all__ = ["HoldoutDataset", "apply_holdout", "full_grid", "holdout_mask", "parse_holdout", "split_indices",
           "value_labels", "Term"]
