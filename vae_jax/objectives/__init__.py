"""Training objectives, one module per family; `loss.objective` names the module.

An objective module defines `OBJECTIVE`, a subclass of `base.Objective`. Adding an
objective is one new module here (plus a config that selects it): `get(name)` finds
it by name, and its hyperparameters become config keys (`loss.<name>`, per member
`ensemble.hparams.<name>`) through `all_hparams()`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from vae_jax.objectives.base import Objective

__all__ = ["Objective", "all_hparams", "available", "create", "get"]


@functools.cache
def available() -> tuple[str, ...]:
  """Names of every objective module in this package, sorted."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"))


def get(name: str) -> type[Objective]:
  """The Objective class of `loss.objective = name`; ValueError naming the choices if unknown."""
  if name not in available():
    raise ValueError(f"Unknown objective {name!r}; use one of {available()}.")
  return importlib.import_module(f"{__name__}.{name}").OBJECTIVE


def create(loss_config, dataset_size: int) -> Objective:
  """The objective `loss_config.objective` with its static settings from `loss_config`."""
  return get(loss_config.objective)(loss_config, dataset_size)


@functools.cache
def all_hparams() -> dict[str, float]:
  """{hyperparameter: default} over every objective (the config's `loss.*` weights)."""
  out: dict[str, float] = {}
  for name in available():
    for key, default in get(name).HPARAMS.items():
      out.setdefault(key, default)
  return out
