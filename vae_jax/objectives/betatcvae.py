"""β-TCVAE (Chen et al., 2018): −log p(x|z) + α·MI + β·TC + γ·dimension-wise KL.

The three KL terms are minibatch estimates over the batch with the dataset size N
(`losses.tc_terms`), by minibatch weighted sampling ("mws") or minibatch
stratified sampling ("mss"), chosen by `loss.estimator`. With `loss.warmup_steps`
> 0, β rises linearly from 0 to its value over that many steps (the β annealing of
the authors' code, rtqichen/beta-tcvae).
"""

from __future__ import annotations

import jax.numpy as jnp

from vae_jax import losses
from vae_jax.objectives import vae


class BetaTCVAE(vae.VAE):
  """loss = −log p(x|z) + α·MI + β·TC + γ·dimension-wise KL; α, β, γ per member."""

  HPARAMS = {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}
  TITLE = "β-TCVAE"
  SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ"}
  KEY_HPARAMS = ("beta",)
  SETTINGS = {"warmup_steps": 0}

  def __init__(self, loss_config, dataset_size):
    super().__init__(loss_config, dataset_size)
    self.warmup_steps = int(loss_config.get("warmup_steps", 0))

  def describe(self):
    return {"estimator": self.estimator, "warmup_steps": self.warmup_steps}

  def vae_loss(self, outputs, x, hparams, step):
    t = self.terms(outputs, x)
    beta = hparams["beta"]
    if self.warmup_steps:
      beta = beta * jnp.minimum(1.0, step.astype(jnp.float32) / self.warmup_steps)
    per_example = -t["log_px_z"] + hparams["alpha"] * t["mi"] + beta * t["tc"] + hparams["gamma"] * t["dimwise_kl"]
    metrics_beta = {"beta_now": beta} if self.warmup_steps else {}
    loss, metrics = losses.batch_means(per_example, t)
    return loss, metrics | metrics_beta


OBJECTIVE = BetaTCVAE
