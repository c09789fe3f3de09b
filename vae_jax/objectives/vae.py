"""The VAE: the negative ELBO, −log p(x|z) + KL(q(z|x) ‖ p(z)) with the analytic KL."""

from __future__ import annotations

from vae_jax import losses
from vae_jax.objectives import base


class VAE(base.Objective):
  """loss = −log p(x|z) + KL, z ~ q(z|x) by reparameterisation."""
  TITLE = "VAE"

  def vae_loss(self, outputs, x, hparams, step):
    terms = self.terms(outputs, x)
    return losses.batch_means(-terms["log_px_z"] + terms["kl"], terms)


OBJECTIVE = VAE
