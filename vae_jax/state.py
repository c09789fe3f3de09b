"""The train state: named parameter trees and optimiser states, one per network.

Below both training and evaluation: training updates it, evaluation and the figures
restore it from a workdir (vae_jax.rundir). Every leaf carries a leading ensemble
axis of num_members when built by `create_ensemble_state`.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

from vae_jax import models
from vae_jax.objectives import Objective


@flax.struct.dataclass
class TrainState:
  """What a step reads and writes, and a checkpoint holds.

  step: steps taken (int32). params / opt_state: {network: tree}, "vae" the model's
  and one entry per extra network of the objective (e.g. "discriminator").
  rng: the member's base key; step t samples with fold_in(rng, t).
  hparams: the objective's per-member hyperparameters {name: float32 scalar}.
  nonfinite_step: −1, or the first step whose loss was NaN or Inf.
  """

  step: jax.Array
  params: Mapping[str, Any]
  opt_state: Mapping[str, Any]
  rng: jax.Array
  hparams: Mapping[str, jax.Array]
  nonfinite_step: jax.Array

  def apply_updates(self, grads: Mapping[str, Any], optimizers: Mapping[str, optax.GradientTransformation]):
    """One optimiser update of every network with its own gradients; step + 1."""
    params, opt_state = {}, {}
    for name, tx in optimizers.items():
      updates, opt_state[name] = tx.update(grads[name], self.opt_state[name], self.params[name])
      params[name] = optax.apply_updates(self.params[name], updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state)


def create_train_state(
    model: models.VAE,
    objective: Objective,
    optimizers: Mapping[str, optax.GradientTransformation],
    image_shape: tuple[int, int, int],
    seed: jax.Array,
    hparams: Mapping[str, jax.Array],
) -> TrainState:
  """One member's initial state: parameters of every network from `seed`, step 0."""
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  params = {"vae": model.init(init_rng, dummy, init_rng)["params"]}
  latent_dim = jax.eval_shape(lambda p: model.apply({"params": p}, dummy, method="encode"), params["vae"])[0].shape[-1]
  params.update(objective.init_networks(jax.random.fold_in(init_rng, 1), latent_dim))
  missing = set(objective.NETWORKS) ^ set(params) | set(objective.NETWORKS) ^ set(optimizers)
  if missing:
    raise ValueError(f"Objective {objective.name} declares networks {objective.NETWORKS} but creates parameters "
                     f"{sorted(params)} and optimisers {sorted(optimizers)}.")
  return TrainState(
      step=jnp.asarray(0, jnp.int32),
      params=params,
      opt_state={name: optimizers[name].init(params[name]) for name in objective.NETWORKS},
      rng=state_rng,
      hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
      nonfinite_step=jnp.asarray(-1, jnp.int32),
  )


def create_ensemble_state(
    model: models.VAE,
    objective: Objective,
    optimizers: Mapping[str, optax.GradientTransformation],
    image_shape: tuple[int, int, int],
    seed: int,
    num_members: int,
    member_hparams: Mapping[str, Any],
) -> TrainState:
  """The ensemble's initial state: member m from seed + m with member_hparams[name][m].

  member_hparams: {name: [num_members] values}. Every leaf of the result has a
  leading axis of num_members.
  """
  bad = {k: len(v) for k, v in member_hparams.items() if len(v) != num_members}
  if bad:
    raise ValueError(f"member_hparams must give one value per member ({num_members}), got lengths {bad}.")
  seeds = jnp.arange(num_members) + seed
  hparams = {k: jnp.asarray(v, jnp.float32) for k, v in member_hparams.items()}
  init = functools.partial(create_train_state, model, objective, optimizers, image_shape)
  return jax.jit(jax.vmap(init))(seeds, hparams)


def num_members(state_or_params: Any) -> int:
  """The ensemble size: the leading axis of any leaf."""
  return jax.tree.leaves(state_or_params)[0].shape[0]
