"""The plain autoencoder: squared error of the decoded mean code; no sampling, no KL.

The code is the encoder's mean; its log-variance head is unused and reported as
zeros, so the latent metrics stay defined. The reported KL and MI/TC terms treat the
code as a unit-variance posterior, for comparison with the other objectives only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import losses
from vae_jax.objectives import base


class Autoencoder(base.Objective):
  """loss = Σ_pixels (decoded mean − x)²; decoded mean = σ(logits) for Bernoulli."""
  TITLE = "AE"

  DETERMINISTIC = True

  def loss(self, group, params, batch, rng, hparams, step, apply_fn):
    """Squared error of decoding the code (the encoder's mean) of batch [B, H, W, C]."""
    del group, rng
    mean, log_var = self.encode(apply_fn, params["vae"], batch)
    decoded = apply_fn({"params": params["vae"]}, mean, method="decode")
    return self.vae_loss(dict(mean=mean, log_var=log_var, z=mean, decoded=decoded), batch, hparams, step)

  def vae_loss(self, outputs, x, hparams, step):
    terms = self.terms(outputs, x)
    decoded = outputs["decoded"]
    if self.likelihood == "bernoulli":
      decoded = jax.nn.sigmoid(decoded)
    terms["mse"] = jnp.sum(jnp.square(decoded - x).reshape(x.shape[0], -1), axis=-1)
    return losses.batch_means(terms["mse"], terms)


OBJECTIVE = Autoencoder
