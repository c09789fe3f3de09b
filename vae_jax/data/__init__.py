"""Ground-truth-factor datasets and their training streams."""

from __future__ import annotations

import ml_collections

from vae_jax.data.grid import FactorDataset, GridSpec, factors_to_index, index_to_factors

DATASETS = ("dsprites_procedural", "shapes3d_procedural")


def get_dataset(data_config: ml_collections.ConfigDict) -> FactorDataset:
  """The dataset named by `data_config.name`."""
  name = data_config.name
  if name == "dsprites_procedural":
    from vae_jax.data.dsprites import ProceduralDSprites
    return ProceduralDSprites()
  if name == "shapes3d_procedural":
    from vae_jax.data.shapes3d import ProceduralShapes3D
    return ProceduralShapes3D()
  raise ValueError(f"Unknown data.name {name!r}; use one of {DATASETS}.")


__all__ = ["FactorDataset", "GridSpec", "factors_to_index", "index_to_factors", "get_dataset", "DATASETS"]
