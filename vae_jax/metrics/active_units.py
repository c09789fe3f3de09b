"""Active units: latents whose posterior mean varies over the evaluated grid (variance > 0.01)."""

from __future__ import annotations

from vae_jax.evaluation.elbo_decomposition import active_units
from vae_jax.metrics.base import MetricContext, to_json


def compute(ctx: MetricContext) -> dict:
  """{"num_active", "variances" [K], ...} (see evaluation.active_units)."""
  return {k: to_json(v) for k, v in active_units(ctx.posterior.mean).items()}


def scalars(result: dict) -> dict[str, float]:
  return {"active_units": result["num_active"]}
