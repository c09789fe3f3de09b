"""Chen et al.'s MIG (2018) with the sampling estimator over the evaluated grid.

The factors counted are `eval.mig_factors`, or the dataset's default (dSprites'
shape left out, as Chen et al.). Settings: eval.mig_samples points of q(z).
"""

from __future__ import annotations

import jax
import numpy as np

from vae_jax.evaluation.mig import mig
from vae_jax.metrics.base import MetricContext


def compute(ctx: MetricContext) -> dict:
  """{"value", "estimator", "factors", "num_samples", "mi" [F, K], "best_latent", "gap"}."""
  p = ctx.posterior
  if p.log_var is None:
    raise ValueError("Chen et al.'s MIG needs posterior variances; use mig_histogram for bare codes.")
  key = jax.random.split(ctx.key)[0]
  chen = mig(p.mean, p.log_var, p.grid_sizes, num_samples=ctx.settings.mig_samples,
                        factors=ctx.counted_factors, key=key)
  return {
      "value": float(chen["mig"]),
      "estimator": chen["estimator"],
      "factors": [ctx.dataset.factor_names[f] for f in chen["factors"]],
      "num_samples": int(chen["num_samples"]),
      "mi": np.asarray(chen["mi"]).tolist(),
      "best_latent": np.asarray(chen["best_latent"]).tolist(),
      "gap": np.asarray(chen["gap"]).tolist(),
  }


def scalars(result: dict) -> dict[str, float]:
  return {"mig": result["value"]}
