"""Ground-truth-factor datasets and their training streams.

data.name picks one of DATASETS:

  procedural (offline, NumPy only)  dsprites_procedural, shapes3d_procedural
  through TFDS (downloaded once)    dsprites, shapes3d, smallnorb, celeb_a
  from files placed in the TFDS     cars3d, faces3d, mpi3d_toy, mpi3d_realistic,
  manual directory                  mpi3d_real

Every one implements FactorDataset (grid.py). celeb_a has no factor grid
(FACTORLESS_DATASETS): it gives images and, through `attributes`, CelebA's 40
binary attributes. A missing or incomplete file raises DatasetFileError naming the
file, where to put it and the command that builds the dataset
(`python -m vae_jax.data.build NAME`).

Importing this package imports neither TensorFlow nor TFDS; get_dataset does, for
the real datasets only.
"""

from __future__ import annotations

import importlib

import ml_collections

from vae_jax.data.arrays import CACHE_MODES, DatasetFileError
from vae_jax.data.grid import FactorDataset, GridSpec, factors_to_index, index_to_factors

PROCEDURAL_DATASETS = ("dsprites_procedural", "shapes3d_procedural")
TFDS_DATASETS = ("dsprites", "shapes3d", "smallnorb", "celeb_a")
MANUAL_DATASETS = ("cars3d", "faces3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real")
# data.name -> "module:function"; function(name, data_dir, cache) returns the dataset.
# Adding a dataset: a module with such a function, and one line here.
LOADERS = {
    "dsprites_procedural": "vae_jax.data.dsprites:load",
    "shapes3d_procedural": "vae_jax.data.shapes3d:load",
    **{name: "vae_jax.data.tfds_datasets:load_by_name" for name in TFDS_DATASETS},
    **{name: "vae_jax.data.manual_datasets:load" for name in MANUAL_DATASETS},
}
DATASETS = tuple(LOADERS)
# Datasets without ground-truth factors: they train, but factor metrics cannot run on them.
FACTORLESS_DATASETS = ("celeb_a",)


def get_dataset(data_config: ml_collections.ConfigDict) -> FactorDataset:
  """The dataset named by `data_config.name`.

  Reads data_config.name and, for the real datasets, data_config.data_dir (the TFDS
  data directory; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets) and data_config.cache
  ("auto", "memory" or "mmap": how the decoded grid is held).

  Raises:
    ValueError: unknown name.
    DatasetFileError: a real dataset's file is missing or incomplete.
  """
  name = data_config.name
  if name not in LOADERS:
    raise ValueError(f"Unknown data.name {name!r}; use one of {DATASETS}.")
  module, function = LOADERS[name].split(":")
  load = getattr(importlib.import_module(module), function)
  return load(name, data_config.get("data_dir", "") or "", data_config.get("cache", "auto") or "auto")


__all__ = [
    "FactorDataset", "GridSpec", "factors_to_index", "index_to_factors", "get_dataset", "DATASETS", "LOADERS",
    "PROCEDURAL_DATASETS", "TFDS_DATASETS", "MANUAL_DATASETS", "FACTORLESS_DATASETS", "CACHE_MODES",
    "DatasetFileError",
]
