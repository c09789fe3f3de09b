"""DIP-VAE-I (Kumar et al., 2018): the ELBO plus a penalty pushing a covariance to the identity.

loss = −log p(x|z) + KL(q(z|x) ‖ p(z)) + λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)²,

C the covariance over the batch of the posterior means μ(x) (DIP-VAE-I, eq. 6), or of
q(z) itself, C = E[diag σ²(x)] + Cov[μ(x)] (DIP-VAE-II, eq. 7: vae_jax/objectives/dipvae_ii.py).
The covariances are the biased batch ones (dividing by B), as disentanglement_lib's.

λ_od is the per-member hyperparameter `lambda_od` (config `loss.lambda_od`,
`ensemble.hparams.lambda_od`; both variants share it, default 10, the middle of
disentanglement_lib's sweep 1–50). λ_d is not a key of its own: it is
LAMBDA_D_FACTOR·λ_od, with disentanglement_lib's factors, 10 for DIP-VAE-I and 1 for
DIP-VAE-II, so sweeping λ_od sweeps both as that study does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import losses
from vae_jax.objectives import vae

DIP_TYPES = ("i", "ii")


def dip_covariance(mean: jax.Array, log_var: jax.Array, dip_type: str) -> jax.Array:
  """The covariance matrix [K, K] that DIP-VAE penalises, from posterior parameters [B, K].

  "i":  Cov_batch[μ(x)] = E[μμᵀ] − E[μ]E[μ]ᵀ (means over the batch);
  "ii": E_batch[diag σ²(x)] + Cov_batch[μ(x)], the covariance of the batch's mixture q(z).
  """
  if dip_type not in DIP_TYPES:
    raise ValueError(f"Unknown DIP-VAE type {dip_type!r}; use one of {DIP_TYPES}.")
  centred = mean - jnp.mean(mean, axis=0)
  cov = centred.T @ centred / mean.shape[0]
  if dip_type == "ii":
    cov = cov + jnp.diag(jnp.mean(jnp.exp(log_var), axis=0))
  return cov


def dip_penalties(mean: jax.Array, log_var: jax.Array, dip_type: str) -> tuple[jax.Array, jax.Array]:
  """(off-diagonal Σ_{i≠j} C_ij², diagonal Σ_i (C_ii − 1)²), scalars, of `dip_covariance` C [K, K]."""
  cov = dip_covariance(mean, log_var, dip_type)
  diagonal = jnp.diagonal(cov)
  off_diagonal = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(diagonal))
  return off_diagonal, jnp.sum(jnp.square(diagonal - 1.0))


def dip_regularizer(mean: jax.Array, log_var: jax.Array, lambda_od, lambda_d, dip_type: str) -> jax.Array:
  """λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)² [] for posterior parameters [B, K] (C: `dip_covariance`)."""
  off_diagonal, diagonal = dip_penalties(mean, log_var, dip_type)
  return lambda_od * off_diagonal + lambda_d * diagonal


class DIPVAEI(vae.VAE):
  """loss = −log p(x|z) + KL + λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)², C = Cov[μ(x)]; λ_d = 10·λ_od."""

  HPARAMS = {"lambda_od": 10.0}
  TITLE = "DIP-VAE-I"
  SYMBOLS = {"lambda_od": "λ_od"}
  KEY_HPARAMS = ("lambda_od",)
  DIP_TYPE = "i"
  LAMBDA_D_FACTOR = 10.0

  def describe(self):
    return {"dip_type": self.DIP_TYPE, "lambda_d_factor": self.LAMBDA_D_FACTOR}

  def vae_loss(self, outputs, x, hparams, step):
    """(loss, metrics): the negative ELBO's batch mean plus the DIP regulariser of the batch.

    Metrics add the unweighted penalties dip_off_diagonal (Σ_{i≠j} C_ij²) and
    dip_diagonal (Σ_i (C_ii − 1)²).
    """
    t = self.terms(outputs, x)
    elbo_loss, metrics = losses.batch_means(-t["log_px_z"] + t["kl"], t)
    off_diagonal, diagonal = dip_penalties(outputs["mean"], outputs["log_var"], self.DIP_TYPE)
    lambda_od = hparams["lambda_od"]
    loss = elbo_loss + lambda_od * off_diagonal + self.LAMBDA_D_FACTOR * lambda_od * diagonal
    return loss, metrics | {"loss": loss, "dip_off_diagonal": off_diagonal, "dip_diagonal": diagonal}


OBJECTIVE = DIPVAEI
