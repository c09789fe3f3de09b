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

import ml_collections

from vae_jax.data.arrays import CACHE_MODES, DatasetFileError
from vae_jax.data.grid import FactorDataset, GridSpec, factors_to_index, index_to_factors

PROCEDURAL_DATASETS = ("dsprites_procedural", "shapes3d_procedural")
TFDS_DATASETS = ("dsprites", "shapes3d", "smallnorb", "celeb_a")
MANUAL_DATASETS = ("cars3d", "faces3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real")
DATASETS = PROCEDURAL_DATASETS + TFDS_DATASETS + MANUAL_DATASETS
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
  data_dir = data_config.get("data_dir", "") or ""
  cache = data_config.get("cache", "auto") or "auto"
  if name == "dsprites_procedural":
    from vae_jax.data.dsprites import ProceduralDSprites
    return ProceduralDSprites()
  if name == "shapes3d_procedural":
    from vae_jax.data.shapes3d import ProceduralShapes3D
    return ProceduralShapes3D()
  if name == "celeb_a":
    from vae_jax.data import tfds_datasets
    return tfds_datasets.load_celeba(data_dir, cache)
  if name in TFDS_DATASETS:
    from vae_jax.data import tfds_datasets
    return tfds_datasets.load_grid(tfds_datasets.SOURCES[name], data_dir, cache)
  if name in MANUAL_DATASETS:
    from vae_jax.data import manual_datasets
    return manual_datasets.load(name, data_dir, cache)
  raise ValueError(f"Unknown data.name {name!r}; use one of {DATASETS}.")


__all__ = [
    "FactorDataset", "GridSpec", "factors_to_index", "index_to_factors", "get_dataset", "DATASETS",
    "PROCEDURAL_DATASETS", "TFDS_DATASETS", "MANUAL_DATASETS", "FACTORLESS_DATASETS", "CACHE_MODES",
    "DatasetFileError",
]
