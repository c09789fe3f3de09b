"""The objective interface: what a training objective declares and computes.

An objective owns everything about a loss that is not the network architecture:
its hyperparameters (per ensemble member), the extra networks and optimisers it
needs, which parameters each of its losses updates, and its step-level metrics.
The train step (vae_jax.train) is generic over it:

    for group in objective.NETWORKS:            # "vae" first, then e.g. "discriminator"
      loss, metrics = objective.loss(group, params, batch, rng, hparams, step, apply_fn)
      grads[group] = ∂loss/∂params[group]        # the other groups are held fixed
      params[group] ← optimizers[group](grads[group])

Every method is pure, so steps jit, vmap over an ensemble and resume exactly.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vae_jax import losses

Metrics = dict[str, jax.Array]
Params = Mapping[str, Any]


def adam(optimizer_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the config's learning rate and moments (`optimizer.*`)."""
  o = optimizer_config
  return optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)


class Objective:
  """Base class: a VAE trained with one loss on its own parameters.

  Subclasses set HPARAMS and override `vae_loss` (one network), or NETWORKS,
  `init_networks`, `create_optimizers` and `loss` (several networks).

  Class attributes:
    HPARAMS: {name: default} of the hyperparameters that may differ per ensemble
      member; they reach the losses as `hparams[name]` (scalars, possibly traced).
    SETTINGS: {name: default} of static settings, the same for every member
      (config keys `loss.<name>`; read them in __init__ from loss_config).
    NETWORKS: parameter groups, each with its own optimiser; "vae" is the model's.
    DETERMINISTIC: the code is the encoder's mean (no posterior variance).
    TITLE: the name tables and figures show (default: the module's name).
    SYMBOLS: {hyperparameter: symbol} for tables and figures (default: its name).
    KEY_HPARAMS: hyperparameters a table always shows; the others only where they
      differ from their default.
  """

  HPARAMS: ClassVar[Mapping[str, float]] = {}
  SETTINGS: ClassVar[Mapping[str, float | int | str]] = {}
  NETWORKS: ClassVar[tuple[str, ...]] = ("vae",)
  DETERMINISTIC: ClassVar[bool] = False
  TITLE: ClassVar[str] = ""
  SYMBOLS: ClassVar[Mapping[str, str]] = {}
  KEY_HPARAMS: ClassVar[tuple[str, ...]] = ()

  def __init__(self, loss_config: ml_collections.ConfigDict, dataset_size: int):
    self.likelihood = loss_config.likelihood
    self.dataset_size = int(dataset_size)
    self.estimator = loss_config.estimator  # Of the MI/TC terms every objective reports.
    if self.likelihood not in losses.LIKELIHOODS:
      raise ValueError(f"loss.likelihood={self.likelihood!r}; use one of {losses.LIKELIHOODS}.")
    if self.estimator not in losses.ESTIMATORS:
      raise ValueError(f"loss.estimator={self.estimator!r}; use one of {losses.ESTIMATORS}.")

  @property
  def name(self) -> str:
    """The objective's name (its module's)."""
    return type(self).__module__.rsplit(".", 1)[-1]

  def describe(self) -> dict[str, Any]:
    """Static settings recorded in metrics.json (beyond the name)."""
    return {}

  def init_networks(self, rng: jax.Array, latent_dim: int) -> dict[str, Any]:
    """Parameters of the networks other than "vae" ({} for a plain VAE)."""
    del rng, latent_dim
    return {}

  def create_optimizers(self, optimizer_config: ml_collections.ConfigDict) -> dict[str, optax.GradientTransformation]:
    """One optimiser per entry of NETWORKS: Adam from `optimizer.*` for the VAE."""
    return {"vae": adam(optimizer_config)}

  def encode(self, apply_fn: Callable, vae_params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior parameters (mean, log_var) [B, K] of images x [B, H, W, C]."""
    mean, log_var = apply_fn({"params": vae_params}, x, method="encode")
    if self.DETERMINISTIC:  # The latent metrics need a log-variance; a point mass has none.
      log_var = jnp.zeros_like(mean)
    return mean, log_var

  def loss(self, group: str, params: Params, batch: jax.Array, rng: jax.Array, hparams: Mapping[str, jax.Array],
           step: jax.Array, apply_fn: Callable) -> tuple[jax.Array, Metrics]:
    """The loss whose gradient updates params[group], and its metrics (batch means).

    params: every group's parameters; batch [B, H, W, C]; rng: this step's key;
    hparams: this member's hyperparameters; step: the step being taken (0-based
    count of steps before it), for schedules; apply_fn: the VAE module's apply.
    """
    del group
    outputs = apply_fn({"params": params["vae"]}, batch, rng)
    return self.vae_loss(outputs, batch, hparams, step)

  def terms(self, outputs: Mapping[str, jax.Array], x: jax.Array) -> dict[str, jax.Array]:
    """The reported per-example terms [B] (`losses.batch_terms`) with this objective's settings."""
    return losses.batch_terms(outputs, x, likelihood=self.likelihood, dataset_size=self.dataset_size,
                              estimator=self.estimator)

  def vae_loss(self, outputs: Mapping[str, jax.Array], x: jax.Array, hparams: Mapping[str, jax.Array],
               step: jax.Array) -> tuple[jax.Array, Metrics]:
    """(loss, metrics) of the VAE's outputs ("mean", "log_var", "z" [B, K]; "decoded") on x."""
    raise NotImplementedError
