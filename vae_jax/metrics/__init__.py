"""The metric registry: one module per metric; `eval.metrics` names the modules that run.

A metric module defines
  compute(ctx: MetricContext) -> dict   its result for one ensemble member (JSON-able;
                                         "value" is the headline number if it has one)
  scalars(result) -> dict[str, float]    the numbers for the log line, TensorBoard and reports
and optionally SUBSET = "<eval setting>": the size of a random subset of the evaluated
points it works on (ctx.points[its name]), and SETTINGS = {name: default}: settings it
reads from the eval config (they become config keys `eval.<name>` through
`all_settings()`); ENSEMBLE = True for a metric over all members at once
(compute_ensemble(ctxs), e.g. UDR) and NEEDS_MODEL = True for one that needs the
model's decoder (ctx.likelihood_fn), which bare representations cannot give. Adding a metric is one new module here and
its name in `eval.metrics`; the evaluation run, metrics.json, the log line and
`vae_jax.report` pick it up by name.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from vae_jax.metrics.base import MetricContext, Posterior

__all__ = ["MetricContext", "Posterior", "all_settings", "available", "get"]


@functools.cache
def available() -> tuple[str, ...]:
  """Names of every metric module in this package, sorted."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"))


def get(name: str) -> ModuleType:
  """The metric module `name`; ValueError naming the choices if unknown."""
  if name not in available():
    raise ValueError(f"Unknown metric {name!r}; use one of {available()}.")
  return importlib.import_module(f"{__name__}.{name}")


def all_settings() -> dict:
  """{setting: default} over every metric module's SETTINGS (the config's `eval.*` keys they read)."""
  out: dict = {}
  for name in available():
    for key, default in getattr(get(name), "SETTINGS", {}).items():
      out.setdefault(key, default)
  return out
