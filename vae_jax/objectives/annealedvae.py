"""AnnealedVAE (Burgess et al., 2018): the KL held at a capacity C(t) that rises over training.

loss = −log p(x|z) + γ·|KL(q(z|x) ‖ p(z)) − C(t)|, reconstruction and KL batch means
(the absolute value is of the batch's mean KL, as disentanglement_lib's), with
C(t) = C_max·min(1, t / T): linear from 0 at step 0 to C_max at step T, then constant.

Config keys (as disentanglement_lib's `gamma`, `c_max`, `iteration_threshold`):
`loss.capacity_weight` (γ, default 1,000) and `loss.c_max` (C_max in nats, default 25,
Burgess et al.'s for dSprites; disentanglement_lib sweeps 5–100) are per member
(`ensemble.hparams.*`); `loss.capacity_steps` (T, default 100,000) is static. γ has a
name of its own because β-TCVAE's `gamma` weighs another term with another default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import losses
from vae_jax.objectives import vae


def capacity(step, c_max, steps: int) -> jax.Array:
  """C(t) [] = c_max·min(1, step / steps) (c_max from the start if steps is 0).

  step: steps taken before this one (scalar, int or float, possibly traced);
  c_max: the final capacity in nats (scalar); steps: the number of steps of the ramp.
  """
  c_max = jnp.asarray(c_max, jnp.float32)
  if steps <= 0:
    return c_max
  return c_max * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / steps)


class AnnealedVAE(vae.VAE):
  """loss = −log p(x|z) + γ·|KL − C(t)|; γ (`capacity_weight`) and C_max (`c_max`) per member."""

  HPARAMS = {"capacity_weight": 1000.0, "c_max": 25.0}
  TITLE = "AnnealedVAE"
  SYMBOLS = {"capacity_weight": "γ", "c_max": "C_max"}
  KEY_HPARAMS = ("c_max",)
  SETTINGS = {"capacity_steps": 100_000}

  def __init__(self, loss_config, dataset_size):
    super().__init__(loss_config, dataset_size)
    self.capacity_steps = int(loss_config.get("capacity_steps", self.SETTINGS["capacity_steps"]))
    if self.capacity_steps < 0:
      raise ValueError(f"loss.capacity_steps={self.capacity_steps}; must be >= 0 (0: C = C_max from the start).")

  def describe(self):
    return {"capacity_steps": self.capacity_steps}

  def vae_loss(self, outputs, x, hparams, step):
    """(loss, metrics): mean −log p(x|z) + γ·|mean KL − C(step)|; metrics add capacity (C(step)).

    step: the number of steps taken before this one (the train state's step).
    """
    t = self.terms(outputs, x)
    reconstruction, metrics = losses.batch_means(-t["log_px_z"], t)
    target = capacity(step, hparams["c_max"], self.capacity_steps)
    loss = reconstruction + hparams["capacity_weight"] * jnp.abs(metrics["kl"] - target)
    return loss, metrics | {"loss": loss, "capacity": target}


OBJECTIVE = AnnealedVAE
