"""β-VAE (Higgins et al., 2017): −log p(x|z) + β·KL(q(z|x) ‖ p(z))."""

from __future__ import annotations

from vae_jax import losses
from vae_jax.objectives import vae


class BetaVAE(vae.VAE):
  """loss = −log p(x|z) + β·KL; β per ensemble member."""

  HPARAMS = {"beta": 6.0}
  TITLE = "β-VAE"
  SYMBOLS = {"beta": "β"}
  KEY_HPARAMS = ("beta",)

  def vae_loss(self, outputs, x, hparams, step):
    terms = self.terms(outputs, x)
    return losses.batch_means(-terms["log_px_z"] + hparams["beta"] * terms["kl"], terms)


OBJECTIVE = BetaVAE
