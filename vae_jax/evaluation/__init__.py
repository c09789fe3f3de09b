"""Disentanglement metric math over the full dataset: MIG (sampling and histogram), ELBO
decomposition, 1-D mixture densities; and `evaluate_representation`, which scores any
encoder with the metric registry (vae_jax.metrics)."""

from vae_jax.evaluation.elbo_decomposition import active_units
from vae_jax.evaluation.elbo_decomposition import elbo_decomposition_terms
from vae_jax.evaluation.mig import mig
from vae_jax.evaluation.mig import mig_brute_force
from vae_jax.evaluation.mig import mig_histogram

__all__ = ["mig", "mig_histogram", "mig_brute_force", "elbo_decomposition_terms", "active_units",
           "evaluate_representation"]


def __getattr__(name):
  # The evaluation run (vae_jax.evaluate) builds on this package; it is loaded on first use.
  if name == "evaluate_representation":
    from vae_jax.evaluate import evaluate_representation
    return evaluate_representation
  raise AttributeError(f"module 'vae_jax.evaluation' has no attribute {name!r}")
