"""The model and train step that the benchmarks time: β-TCVAE (MWS, Bernoulli, 10 latents,
Adam) on procedural dSprites, as configs' base_config and train_and_evaluate build them."""

from __future__ import annotations

import argparse
import dataclasses

import jax
import ml_collections

from vae_jax import configlib, host_memory, models, parallel, train
from vae_jax.data.dsprites import ProceduralDSprites


@dataclasses.dataclass
class BenchModel:
  config: ml_collections.ConfigDict
  dataset: ProceduralDSprites
  model: models.VAE
  mesh: jax.sharding.Mesh

  def state(self, num_members: int = 1):
    """A fresh replicated ensemble state of `num_members` members."""
    self.config.ensemble.num_members = num_members
    state = train.create_ensemble_state(self.config, self.model, self.dataset.image_shape)
    return jax.device_put(state, parallel.replicated(self.mesh))

  def step(self, state):
    """train.jit_ensemble_step for states like `state`: exactly the step training runs."""
    return train.jit_ensemble_step(self.config, len(self.dataset), self.mesh, state)


def add_malloc_flag(parser: argparse.ArgumentParser) -> None:
  """--malloc retain (training's settings, vae_jax/host_memory.py) or default (glibc's own)."""
  parser.add_argument("--malloc", default="retain", choices=["retain", "default"],
                      help="retain: host_memory.retain_freed_memory(), as training does; default: glibc's own")


def apply_malloc_flag(choice: str) -> None:
  """Makes training's malloc settings for --malloc retain, and says so if they could not be made."""
  if choice == "retain" and not host_memory.retain_freed_memory():
    print("note: malloc settings not applied (not glibc, or MALLOC_* / GLIBC_TUNABLES set)")


def bench_model(arch: str, batch: int, conv_impl: str = "fast") -> BenchModel:
  """The base config with `arch`, `batch` and `conv_impl`, its dataset, model and mesh."""
  config = configlib.base_config()
  config.model.architecture = arch
  config.model.conv_impl = conv_impl
  config.batch_size = batch
  dataset = ProceduralDSprites()
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  return BenchModel(config, dataset, model, parallel.create_mesh())
