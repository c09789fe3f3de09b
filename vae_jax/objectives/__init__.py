"""Training objectives, one module per family; `loss.objective` names the module.

An objective module defines `OBJECTIVE`, a subclass of `base.Objective`. Adding an
objective is one new module here (plus a config that selects it): `get(name)` finds
it by name, and its hyperparameters become config keys (`loss.<name>`, per member
`ensemble.hparams.<name>`) through `all_hparams()`. Code outside the package (a
user's experiment, a test) can add one with `register(name, cls)` before building
its config, and remove it with `unregister(name)`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from vae_jax.objectives.base import Objective

__all__ = ["Objective", "all_hparams", "all_settings", "available", "create", "get", "register", "unregister"]

_REGISTERED: dict[str, type[Objective]] = {}


@functools.cache
def _modules() -> tuple[str, ...]:
  return tuple(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def available() -> tuple[str, ...]:
  """Names of every objective: the modules of this package and the registered ones, sorted."""
  return tuple(sorted(set(_modules()) | set(_REGISTERED)))


def register(name: str, cls: type[Objective]) -> None:
  """Makes `cls` available as `loss.objective = name` (for objectives defined outside this package)."""
  if name in _modules():
    raise ValueError(f"Objective {name!r} is a module of vae_jax.objectives; pick another name.")
  _REGISTERED[name] = cls


def unregister(name: str) -> None:
  """Removes an objective added by `register` (configs built afterwards lose its hyperparameters)."""
  if name not in _REGISTERED:
    raise ValueError(f"Objective {name!r} was not added by register(); registered: {sorted(_REGISTERED)}.")
  del _REGISTERED[name]


def get(name: str) -> type[Objective]:
  """The Objective class of `loss.objective = name`; ValueError naming the choices if unknown."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in _modules():
    raise ValueError(f"Unknown objective {name!r}; use one of {available()}.")
  return importlib.import_module(f"{__name__}.{name}").OBJECTIVE


def create(loss_config, dataset_size: int) -> Objective:
  """The objective `loss_config.objective` with its static settings from `loss_config`."""
  return get(loss_config.objective)(loss_config, dataset_size)


def all_hparams() -> dict[str, float]:
  """{hyperparameter: default} over every objective (the config's per-member `loss.*` weights)."""
  out: dict[str, float] = {}
  for name in available():
    for key, default in get(name).HPARAMS.items():
      out.setdefault(key, default)
  return out


def all_settings() -> dict[str, float | int | str]:
  """{setting: default} over every objective (the config's static `loss.*` settings)."""
  out: dict[str, float | int | str] = {}
  for name in available():
    for key, default in get(name).SETTINGS.items():
      out.setdefault(key, default)
  return out
