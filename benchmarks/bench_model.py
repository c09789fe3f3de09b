"""The model and train step that the benchmarks time: by default β-TCVAE (MWS, Bernoulli,
10 latents, Adam) on procedural dSprites, as configs' base_config and train_and_evaluate
build them; any objective with `objective=`."""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import ml_collections

from vae_jax import configlib, host_memory, parallel, rundir, train
from vae_jax.data.dsprites import ProceduralDSprites


@dataclasses.dataclass
class BenchModel:
  config: ml_collections.ConfigDict
  dataset: ProceduralDSprites
  mesh: jax.sharding.Mesh

  def state(self, num_members: int = 1):
    """A fresh replicated ensemble state of `num_members` members."""
    self.config.ensemble.num_members = num_members
    *_, state = rundir.build(self.config, self.dataset, len(self.dataset))
    return jax.device_put(state, parallel.replicated(self.mesh))

  def spec(self) -> train.StepSpec:
    """The objective, apply function and optimisers the train step runs with."""
    model, objective, optimizers, _ = rundir.build(self.config, self.dataset, len(self.dataset))
    return train.StepSpec(objective, model.apply, optimizers)

  def step(self, state):
    """train.jit_ensemble_step for states like `state`: exactly the step training runs."""
    return train.jit_ensemble_step(self.spec(), self.mesh, state)


def add_malloc_flag(parser: argparse.ArgumentParser) -> None:
  """--malloc retain (training's settings, vae_jax/host_memory.py) or default (glibc's own)."""
  parser.add_argument("--malloc", default="retain", choices=["retain", "default"],
                      help="retain: host_memory.retain_freed_memory(), as training does; default: glibc's own")


def apply_malloc_flag(choice: str) -> None:
  """Makes training's malloc settings for --malloc retain, and says so if they could not be made."""
  if choice == "retain" and not host_memory.retain_freed_memory():
    print("note: malloc settings not applied (not glibc, or MALLOC_* / GLIBC_TUNABLES set)")


def bench_model(arch: str, batch: int, conv_impl: str = "fast", objective: str = "betatcvae") -> BenchModel:
  """The base config with `arch`, `batch`, `conv_impl` and `objective` (its default
  hyperparameters), its dataset and mesh."""
  config = configlib.base_config()
  config.model.architecture = arch
  config.model.conv_impl = conv_impl
  config.loss.objective = objective
  config.batch_size = batch
  return BenchModel(config, ProceduralDSprites(), parallel.create_mesh())


def seconds_per_step(step_fn, state, batch, steps: int, warmup: int = 3):
  """(mean wall seconds of one call, final state, last metrics) of `steps` calls
  state, metrics = step_fn(state, batch) after `warmup` untimed ones (compilation, caches)."""
  metrics = None
  for _ in range(warmup):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - t) / steps, state, metrics
