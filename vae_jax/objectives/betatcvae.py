"""β-TCVAE (Chen et al., 2018): −log p(x|z) + α·MI + β·TC + γ·dimension-wise KL.

The three KL terms are minibatch estimates over the batch with the dataset size N
(`losses.tc_terms`), by minibatch weighted sampling ("mws") or minibatch
stratified sampling ("mss"), chosen by `loss.estimator`.
"""

from __future__ import annotations

from vae_jax import losses
from vae_jax.objectives import vae


class BetaTCVAE(vae.VAE):
  """loss = −log p(x|z) + α·MI + β·TC + γ·dimension-wise KL; α, β, γ per member."""

  HPARAMS = {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}

  def describe(self):
    return {"estimator": self.estimator}

  def vae_loss(self, outputs, x, hparams, step):
    t = self.terms(outputs, x)
    per_example = -t["log_px_z"] + hparams["alpha"] * t["mi"] + hparams["beta"] * t["tc"] + hparams["gamma"] * t["dimwise_kl"]
    return losses.batch_means(per_example, t)


OBJECTIVE = BetaTCVAE
