"""What a metric sees: one member's posterior over an evaluated grid, and its context."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from vae_jax.data.grid import FactorDataset


@dataclasses.dataclass(frozen=True)
class Posterior:
  """One model's codes of an evaluated factor grid (the whole dataset or a sub-grid).

  mean, log_var: [N, K] in row-major order over grid_sizes (log_var None for codes
  without a posterior variance). indices: [N] flat indices into the dataset's grid;
  factors: [N, F] their factor indices in the dataset's grid.
  """

  mean: np.ndarray
  log_var: np.ndarray | None
  grid_sizes: tuple[int, ...]
  indices: np.ndarray
  factors: np.ndarray


@dataclasses.dataclass(frozen=True)
class MetricContext:
  """Everything a metric may use for one member.

  posterior: the member's codes; dataset: the evaluated dataset (names, sizes,
  value labels, which factors Chen's MIG counts); settings: the `eval` config;
  key: the member's evaluation key (metrics derive their own keys from it);
  points: {metric name: sorted-or-not row indices [n] of a random subset of the
  posterior}, for metrics with a SUBSET; counted_factors: the factor indices Chen's
  MIG counts; likelihood_fn: (images [B, H, W, C], key) -> {"elbo", "reconstruction",
  "log_px_iw"} [B] for the member's model, or None for a bare representation.
  """

  posterior: Posterior
  dataset: FactorDataset
  settings: ml_collections.ConfigDict
  key: jax.Array
  points: Mapping[str, np.ndarray]
  counted_factors: tuple[int, ...]
  likelihood_fn: Callable[[np.ndarray, jax.Array], Mapping[str, Any]] | None = None


def to_json(value):
  """A NumPy/JAX scalar or array as plain JSON (float or nested lists)."""
  value = np.asarray(value) if not isinstance(value, (str, int, float)) else value
  if isinstance(value, np.ndarray):
    return value.item() if value.ndim == 0 else value.tolist()
  return value


def fit_in_threads(fit: Callable[[Any], Any], items: Sequence[Any], n_jobs: int | None = None) -> list:
  """[fit(item) for item in items], run on joblib threads (n_jobs: default min(len(items), CPU cores)).

  For independent scikit-learn fits (one per factor or per code and factor): scikit-learn's
  tree builders, liblinear and its losses run without the GIL, so the fits overlap. Each fit
  is a function of its item alone (its own seed), so the result equals the serial loop's.
  """
  import joblib

  items = list(items)
  jobs = n_jobs or max(1, min(len(items), os.cpu_count() or 1))
  if jobs == 1:
    return [fit(item) for item in items]
  return joblib.Parallel(n_jobs=jobs, prefer="threads")(joblib.delayed(fit)(item) for item in items)
