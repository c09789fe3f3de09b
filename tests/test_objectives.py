"""The objective interface: registry, hyperparameters, and a second network with its own optimiser.

`Probe` is a test-only objective shaped like FactorVAE: the VAE's loss depends on an
auxiliary network's output (held fixed when the VAE updates), and the auxiliary
network learns from the VAE's codes (held fixed when it updates), with its own
optimiser. It proves the train step, ensembles, checkpoints and exact resumption
work for two networks and two optimisers.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import checkpoints, configlib, objectives, rundir, train
from vae_jax import state as state_lib
from vae_jax.data import get_dataset
from vae_jax.objectives import vae


class Probe(vae.VAE):
  """VAE loss + lam·mean(probe(z))²; the probe (a linear map of z) regresses z[:, 0] by SGD."""

  HPARAMS = {"lam": 0.5}
  NETWORKS = ("vae", "probe")
  PROBE_LR = 0.1

  def init_networks(self, rng, latent_dim):
    return {"probe": nn.Dense(1).init(rng, jnp.zeros((1, latent_dim)))["params"]}

  def create_optimizers(self, optimizer_config):
    return {**super().create_optimizers(optimizer_config), "probe": optax.sgd(self.PROBE_LR)}

  def loss(self, group, params, batch, rng, hparams, step, apply_fn):
    outputs = apply_fn({"params": params["vae"]}, batch, rng)
    prediction = nn.Dense(1).apply({"params": params["probe"]}, outputs["z"])[:, 0]
    if group == "vae":
      loss, metrics = self.vae_loss(outputs, batch, hparams, step)
      penalty = jnp.mean(jnp.square(prediction))
      return loss + hparams["lam"] * penalty, metrics | {"probe_penalty": penalty}
    probe_loss = jnp.mean(jnp.square(prediction - jax.lax.stop_gradient(outputs["z"][:, 0])))
    return probe_loss, {"probe_loss": probe_loss}


@pytest.fixture(autouse=True, scope="module")
def registered_probe():
  """Probe is registered for this module's tests only, so configs built later in the same
  worker do not carry its hyperparameter."""
  objectives.register("probe_test", Probe)
  yield
  objectives.unregister("probe_test")


def probe_config():
  config = configlib.shrink_to_test_size(configlib.base_config())  # After registering: has loss.lam.
  config.loss.objective = "probe_test"
  config.data.pipeline = "numpy"
  config.batch_size = 16
  config.num_train_steps = 6
  config.checkpoint_every_steps = 3
  config.log_every_steps = 2
  config.eval.final = "none"
  config.eval.figures = False
  return config


def restore(workdir, config):
  *_, target = rundir.build(config, get_dataset(config.data), 1)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  return jax.tree.map(np.asarray, state)


def test_registry_lists_every_objective_module_and_rejects_unknown_names():
  assert {"ae", "vae", "betavae", "betatcvae"} <= set(objectives.available())
  assert objectives.get("betatcvae").HPARAMS == {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}
  with pytest.raises(ValueError, match="Unknown objective 'nope'.*betatcvae"):
    objectives.get("nope")
  with pytest.raises(ValueError, match="module of vae_jax.objectives"):
    objectives.register("vae", Probe)


def test_unregister_removes_an_objective_and_its_hyperparameters():
  objectives.register("probe_test_2", Probe)
  objectives.unregister("probe_test_2")
  assert "probe_test_2" not in objectives.available()
  objectives.unregister("probe_test")  # The module's fixture registered it; its test re-adds it below.
  try:
    assert "lam" not in configlib.base_config().loss and "probe_test" not in objectives.available()
    with pytest.raises(ValueError, match="not added by register"):
      objectives.unregister("probe_test")
  finally:
    objectives.register("probe_test", Probe)
  assert configlib.base_config().loss.lam == 0.5


def test_config_gets_every_objectives_hyperparameters_and_checks_per_member_values():
  config = probe_config()
  assert config.loss.lam == 0.5 and config.ensemble.hparams.lam == ()
  config.ensemble.num_members = 2
  config.ensemble.hparams.lam = (0.0, 2.0)
  assert configlib.member_hparams(config) == {"lam": (0.0, 2.0)}
  configlib.validate_config(config)
  config.ensemble.betas = (1.0, 2.0)  # Probe has no β.
  with pytest.raises(ValueError, match="no hyperparameter 'beta'"):
    configlib.validate_config(config)
  config.ensemble.betas = ()
  config.ensemble.hparams.lam = (1.0, -1.0)
  with pytest.raises(ValueError, match="must be >= 0"):
    configlib.validate_config(config)


def test_each_loss_moves_only_its_own_network():
  """With the probe's optimiser frozen, the VAE's loss (which depends on the probe) leaves the probe
  unchanged, and with the VAE's frozen, the probe's loss (which depends on the VAE) leaves the VAE."""
  config = probe_config()
  dataset = get_dataset(config.data)
  model, objective, optimizers, _ = rundir.build(config, dataset, len(dataset))
  batch = jnp.asarray(dataset.images(np.arange(16)))
  state = state_lib.create_train_state(model, objective, optimizers, dataset.image_shape, 0, {"lam": 5.0})
  grads, _, metrics = train.compute_gradients(state, batch, jax.random.PRNGKey(0),
                                              spec=train.StepSpec(objective, model.apply, optimizers))
  assert set(grads) == {"vae", "probe"} and {"probe_penalty", "probe_loss", "loss"} <= set(metrics)
  for frozen in ("vae", "probe"):
    opts = dict(optimizers, **{frozen: optax.sgd(0.0)})
    new, _ = train.train_step(state, batch, jax.random.PRNGKey(0), spec=train.StepSpec(objective, model.apply, opts))
    moving = "probe" if frozen == "vae" else "vae"
    for a, b in zip(jax.tree.leaves(new.params[frozen]), jax.tree.leaves(state.params[frozen])):
      np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params[moving]),
                                                        jax.tree.leaves(state.params[moving])))


def test_two_networks_resume_exactly(tmp_path):
  config = probe_config()
  train.train_and_evaluate(config, str(tmp_path / "straight"))
  config.num_train_steps = 3
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  config.num_train_steps = 6
  results = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert results["resumed_from_step"] == 3 and "probe_loss" in results["train"]
  straight, resumed = restore(tmp_path / "straight", config), restore(tmp_path / "resumed", config)
  assert int(resumed.step[0]) == 6
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_two_network_ensemble_equals_separate_runs(tmp_path):
  config = probe_config()
  config.num_train_steps = 4
  config.ensemble.num_members = 2
  config.ensemble.hparams.lam = (0.0, 3.0)
  results = train.train_and_evaluate(config, str(tmp_path / "ensemble"))
  assert [m["hparams"] for m in results["members"]] == [{"lam": 0.0}, {"lam": 3.0}]
  ensemble = restore(tmp_path / "ensemble", config)
  for member, lam in enumerate((0.0, 3.0)):
    single_config = probe_config()
    single_config.num_train_steps = 4
    single_config.seed = member
    single_config.loss.lam = lam
    train.train_and_evaluate(single_config, str(tmp_path / f"single{member}"))
    single = restore(tmp_path / f"single{member}", single_config)
    for a, b in zip(jax.tree.leaves(ensemble.params), jax.tree.leaves(single.params)):
      np.testing.assert_allclose(a[member], b[0], rtol=1e-4, atol=1e-5)
  assert not np.allclose(ensemble.params["probe"]["kernel"][0], ensemble.params["probe"]["kernel"][1])


def test_betatcvae_warmup_ramps_beta_linearly():
  """With loss.warmup_steps = W, step t's loss is the loss with β·min(1, t/W) and no warm-up."""
  config = configlib.base_config()
  outputs = {k: jax.random.normal(jax.random.PRNGKey(i), (8, 3)) for i, k in enumerate(("mean", "log_var", "z"))}
  outputs["decoded"] = jax.random.normal(jax.random.PRNGKey(5), (8, 4, 4, 1))
  x = (jax.random.uniform(jax.random.PRNGKey(6), (8, 4, 4, 1)) > 0.5).astype(jnp.float32)
  hparams = {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}
  plain = objectives.create(config.loss, 1000)
  config.loss.warmup_steps = 10
  warm = objectives.create(config.loss, 1000)
  for step, fraction in ((0, 0.0), (5, 0.5), (10, 1.0), (40, 1.0)):
    got, metrics = warm.vae_loss(outputs, x, hparams, jnp.asarray(step))
    want, _ = plain.vae_loss(outputs, x, dict(hparams, beta=6.0 * fraction), jnp.asarray(step))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(metrics["beta_now"]) == pytest.approx(6.0 * fraction)
