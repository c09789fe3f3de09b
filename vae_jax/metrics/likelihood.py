"""The ELBO, reconstruction and importance-weighted log p(x) on eval.likelihood_images images
(eval.importance_samples posterior samples each). Needs the model, not only its codes."""

from __future__ import annotations

import jax
import numpy as np

from vae_jax.metrics.base import MetricContext

SUBSET = "likelihood_images"
NEEDS_MODEL = True  # Scores a model's decoder, not codes: evaluate_representation refuses it.
CHUNK_SAMPLES = 4096  # Images per call × importance samples: keeps memory bounded.


def compute(ctx: MetricContext) -> dict:
  """{"num_images", "importance_samples", "elbo", "reconstruction", "log_px_iw"} (nats, means over images)."""
  if ctx.likelihood_fn is None:
    raise ValueError("The likelihood metric needs a model (decoder); leave it out for bare representations.")
  rows = np.sort(ctx.points["likelihood"])
  images = ctx.dataset.images(ctx.posterior.indices[rows])
  samples = ctx.settings.importance_samples
  chunk = max(1, CHUNK_SAMPLES // samples)
  parts = [jax.device_get(ctx.likelihood_fn(images[i:i + chunk], jax.random.fold_in(ctx.key, i)))
           for i in range(0, len(images), chunk)]
  values = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
  return {"num_images": int(len(rows)), "importance_samples": samples,
          **{k: float(np.mean(v)) for k, v in values.items()}}


def scalars(result: dict) -> dict[str, float]:
  return {k: result[k] for k in ("elbo", "reconstruction", "log_px_iw")}
