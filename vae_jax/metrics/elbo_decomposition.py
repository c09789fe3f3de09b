"""The KL's decomposition over the aggregate posterior of the evaluated grid (Chen et al.,
2018): index-code MI, total correlation and dimension-wise KL, from eval.elbo_samples points."""

from __future__ import annotations

import jax

from vae_jax.evaluation.elbo_decomposition import elbo_decomposition_terms
from vae_jax.metrics.base import MetricContext, to_json


def compute(ctx: MetricContext) -> dict:
  """{"index_code_mi", "total_correlation", "dimwise_kl", ...} in nats (see evaluation.elbo_decomposition_terms)."""
  p = ctx.posterior
  if p.log_var is None:
    raise ValueError("The ELBO decomposition needs posterior variances.")
  key = jax.random.split(ctx.key)[1]
  terms = elbo_decomposition_terms(p.mean, p.log_var, num_samples=ctx.settings.elbo_samples, key=key)
  return {k: to_json(v) for k, v in terms.items()}


def scalars(result: dict) -> dict[str, float]:
  return {k: result[k] for k in ("index_code_mi", "total_correlation", "dimwise_kl")}
