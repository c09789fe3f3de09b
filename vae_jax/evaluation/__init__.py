"""Disentanglement metrics over the full dataset: MIG (sampling and histogram), ELBO decomposition."""

from vae_jax.evaluation.elbo_decomposition import active_units
from vae_jax.evaluation.elbo_decomposition import elbo_decomposition_terms
from vae_jax.evaluation.mig import mig
from vae_jax.evaluation.mig import mig_brute_force
from vae_jax.evaluation.mig import mig_histogram

__all__ = ["mig", "mig_histogram", "mig_brute_force", "elbo_decomposition_terms", "active_units"]
