"""MIG by disentanglement_lib's histogram protocol: eval.histogram_points posterior means,
eval.histogram_bins equal-width bins per code, all factors counted."""

from __future__ import annotations

import numpy as np

from vae_jax.evaluation.mig import mig_histogram
from vae_jax.metrics.base import MetricContext

SUBSET = "histogram_points"


def compute(ctx: MetricContext) -> dict:
  """{"value", "estimator", "factors", "num_points", "num_bins", "mi" [F, K]}."""
  rows = ctx.points["mig_histogram"]
  bins = ctx.settings.histogram_bins
  hist = mig_histogram(ctx.posterior.mean[rows], ctx.posterior.factors[rows], num_bins=bins)
  return {
      "value": float(hist["mig"]),
      "estimator": hist["estimator"],
      "factors": list(ctx.dataset.factor_names),
      "num_points": int(len(rows)),
      "num_bins": bins,
      "mi": np.asarray(hist["mi"]).tolist(),
  }


def scalars(result: dict) -> dict[str, float]:
  return {"mig_histogram": result["value"]}
