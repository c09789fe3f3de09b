"""FactorVAE (Kim & Mnih, 2018): the ELBO plus γ·TC, the TC estimated by a discriminator.

Two networks, each updated by its own loss (NETWORKS = ("vae", "discriminator")):

  "vae":           −log p(x|z) + KL(q(z|x) ‖ p(z)) + γ·(logit₀(z) − logit₁(z)), batch means,
                   z ~ q(z|x); γ is the per-member hyperparameter `tc_weight`.
  "discriminator": cross-entropy of telling samples of q(z) (label 0) from samples of
                   Π_j q(z_j) (label 1): the batch's codes with each dimension permuted
                   independently across the batch (`permute_dims`), codes held fixed.

At the optimum D(z) = q(z) / (q(z) + Π_j q(z_j)), so logit₀ − logit₁ = log q(z)/Π_j q(z_j)
and its mean over q(z) is the total correlation. As disentanglement_lib (Locatello et
al., 2019), the permuted codes come from the same batch, the discriminator is an MLP
of 6 × 1,000 LeakyReLU(0.2) units with 2 logits, and it has its own Adam (lr 1e-4,
β1 0.5, β2 0.9); the paper's γ for dSprites is 35 (disentanglement_lib sweeps 10–100).
Unlike disentanglement_lib, the cross-entropy uses the exact log-softmax rather than
probabilities clipped to [1e−6, 1 − 1e−6], and the kernels are Glorot-uniform (TF's
default) with zero biases.

Config keys: `loss.tc_weight` (γ, per member: `ensemble.hparams.tc_weight`; a name of
its own, since β-TCVAE's `gamma` weighs another term with another default), and the
static `loss.discriminator_width`, `loss.discriminator_layers`,
`loss.discriminator_learning_rate`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vae_jax import losses
from vae_jax.objectives import vae

# The discriminator's Adam moments and ε (Kim & Mnih; disentanglement_lib's discriminator optimiser).
DISCRIMINATOR_B1 = 0.5
DISCRIMINATOR_B2 = 0.9
DISCRIMINATOR_EPS = 1e-8
LEAKY_RELU_SLOPE = 0.2
# fold_in(step key, PERMUTATION_STREAM) draws the step's permutations; the step key itself samples z.
PERMUTATION_STREAM = 1


def permute_dims(z: jax.Array, key: jax.Array) -> jax.Array:
  """z [B, K] with each column permuted independently across the batch: samples of Π_j q(z_j).

  Column j is permuted with the j-th of K keys split from `key`: every column keeps its
  values (its marginal), the dependence between columns is destroyed.
  """
  keys = jax.random.split(key, z.shape[1])
  return jax.vmap(lambda k, column: jax.random.permutation(k, column), in_axes=(0, 1), out_axes=1)(keys, z)


class Discriminator(nn.Module):
  """codes z [B, K] -> logits [B, 2] (0: a sample of q(z), 1: of Π_j q(z_j)).

  `depth` hidden layers of `width` units with LeakyReLU(0.2), then a linear layer of 2 logits.
  """

  width: int = 1000
  depth: int = 6

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    init = dict(kernel_init=nn.initializers.glorot_uniform(), bias_init=nn.initializers.zeros_init())
    h = z
    for _ in range(self.depth):
      h = nn.leaky_relu(nn.Dense(self.width, **init)(h), LEAKY_RELU_SLOPE)
    return nn.Dense(2, **init)(h)


def logit_difference(logits: jax.Array) -> jax.Array:
  """logit₀ − logit₁ [B] of discriminator logits [B, 2]: the per-sample estimate of log q(z)/Π_j q(z_j)."""
  return logits[:, 0] - logits[:, 1]


def discriminator_objective(logits_real: jax.Array, logits_permuted: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss [], metrics) of the discriminator from its logits [B, 2] on real and permuted codes.

  loss = −½·(mean log softmax(logits_real)₀ + mean log softmax(logits_permuted)₁): the
  cross-entropy with real codes labelled 0 and permuted ones 1. Metrics:
  discriminator_loss (the loss) and discriminator_accuracy (the fraction of both sets
  classified right, each set weighing ½).
  """
  loss = -0.5 * (jnp.mean(jax.nn.log_softmax(logits_real)[:, 0]) + jnp.mean(jax.nn.log_softmax(logits_permuted)[:, 1]))
  accuracy = 0.5 * (jnp.mean(logits_real[:, 0] > logits_real[:, 1]) + jnp.mean(logits_permuted[:, 1] > logits_permuted[:, 0]))
  return loss, dict(discriminator_loss=loss, discriminator_accuracy=accuracy)


class FactorVAE(vae.VAE):
  """loss_vae = −log p(x|z) + KL + γ·TC(discriminator); γ (`tc_weight`) per member."""

  HPARAMS = {"tc_weight": 35.0}
  TITLE = "FactorVAE"
  SYMBOLS = {"tc_weight": "γ"}
  KEY_HPARAMS = ("tc_weight",)
  SETTINGS = {"discriminator_width": 1000, "discriminator_layers": 6, "discriminator_learning_rate": 1e-4}
  NETWORKS = ("vae", "discriminator")

  def __init__(self, loss_config, dataset_size):
    super().__init__(loss_config, dataset_size)
    self.discriminator_width = int(loss_config.get("discriminator_width", self.SETTINGS["discriminator_width"]))
    self.discriminator_layers = int(loss_config.get("discriminator_layers", self.SETTINGS["discriminator_layers"]))
    self.discriminator_learning_rate = float(loss_config.get("discriminator_learning_rate",
                                                             self.SETTINGS["discriminator_learning_rate"]))
    if self.discriminator_width < 1 or self.discriminator_layers < 0:
      raise ValueError(f"loss.discriminator_width={self.discriminator_width} must be >= 1 and "
                       f"loss.discriminator_layers={self.discriminator_layers} >= 0.")
    if not self.discriminator_learning_rate > 0:
      raise ValueError(f"loss.discriminator_learning_rate={self.discriminator_learning_rate}; must be > 0.")
    self.discriminator = Discriminator(self.discriminator_width, self.discriminator_layers)

  def describe(self):
    return {"discriminator_width": self.discriminator_width, "discriminator_layers": self.discriminator_layers,
            "discriminator_learning_rate": self.discriminator_learning_rate}

  def init_networks(self, rng, latent_dim):
    """{"discriminator": its parameters} for codes of `latent_dim` dimensions."""
    return {"discriminator": self.discriminator.init(rng, jnp.zeros((1, latent_dim)))["params"]}

  def create_optimizers(self, optimizer_config):
    """The VAE's Adam from `optimizer.*`; the discriminator's Adam(lr, β1 = 0.5, β2 = 0.9)."""
    return {**super().create_optimizers(optimizer_config),
            "discriminator": optax.adam(self.discriminator_learning_rate, b1=DISCRIMINATOR_B1, b2=DISCRIMINATOR_B2,
                                        eps=DISCRIMINATOR_EPS)}

  def discriminator_loss(self, discriminator_params, z: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """(loss [], metrics) of the discriminator on codes z [B, K] (held fixed) and their permutation by `key`."""
    z = jax.lax.stop_gradient(z)
    logits = self.discriminator.apply({"params": discriminator_params}, jnp.concatenate([z, permute_dims(z, key)]))
    return discriminator_objective(logits[: z.shape[0]], logits[z.shape[0]:])

  def loss(self, group, params, batch, rng, hparams, step, apply_fn):
    """The VAE's loss for group "vae", the discriminator's for "discriminator" (see the module docstring).

    Both groups sample the same z (the step's key `rng`); the permutations use
    fold_in(rng, PERMUTATION_STREAM).
    """
    outputs = apply_fn({"params": params["vae"]}, batch, rng)
    if group == "vae":
      logits = self.discriminator.apply({"params": params["discriminator"]}, outputs["z"])
      return self.vae_loss(outputs | {"discriminator_logits": logits}, batch, hparams, step)
    if group == "discriminator":
      return self.discriminator_loss(params["discriminator"], outputs["z"], jax.random.fold_in(rng, PERMUTATION_STREAM))
    raise ValueError(f"FactorVAE has no network {group!r}; its networks are {self.NETWORKS}.")

  def vae_loss(self, outputs, x, hparams, step):
    """(loss, metrics): batch mean of −log p(x|z) + KL + γ·(logit₀ − logit₁).

    outputs: the VAE's ("mean", "log_var", "z" [B, K], "decoded") and
    "discriminator_logits" [B, 2], the discriminator's logits on outputs["z"].
    Metrics add tc_estimate (the batch mean of logit₀ − logit₁) to the reported terms.
    """
    t = self.terms(outputs, x)
    tc = logit_difference(outputs["discriminator_logits"])
    loss, metrics = losses.batch_means(-t["log_px_z"] + t["kl"] + hparams["tc_weight"] * tc, t)
    return loss, metrics | {"tc_estimate": jnp.mean(tc)}


OBJECTIVE = FactorVAE
