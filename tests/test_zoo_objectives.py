"""FactorVAE, DIP-VAE-I/-II and AnnealedVAE: their loss formulas against direct computations,
FactorVAE's permutation and discriminator, which network each loss moves, and a FactorVAE
ensemble trained, compared with separate runs and resumed."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import checkpoints, configlib, losses, models, objectives, rundir, train
from vae_jax import state as state_lib
from vae_jax.data import get_dataset
from vae_jax.objectives import annealedvae, dipvae_i, factorvae

NEW = ("factorvae", "dipvae_i", "dipvae_ii", "annealedvae")


def fake_outputs(batch=8, latents=3, seed=0):
  """Random VAE outputs ("mean", "log_var", "z" [batch, latents], "decoded" logits) and a binary batch
  x [batch, 4, 4, 1], drawn with NumPy."""
  rng = np.random.default_rng(seed)
  outputs = {k: jnp.asarray(rng.normal(size=(batch, latents)), jnp.float32) for k in ("mean", "log_var", "z")}
  outputs["decoded"] = jnp.asarray(rng.normal(size=(batch, 4, 4, 1)), jnp.float32)
  return outputs, jnp.asarray(rng.uniform(size=(batch, 4, 4, 1)) > 0.5, jnp.float32)


def vae_loss(obj, outputs, x, hparams, step):
  """obj.vae_loss compiled as one program (op by op, the first call costs seconds of compiling)."""
  return jax.jit(obj.vae_loss)(outputs, x, hparams, jnp.asarray(step))


def objective(name, **loss_settings):
  config = configlib.base_config()
  config.loss.objective = name
  for key, value in loss_settings.items():
    config.loss[key] = value
  return objectives.create(config.loss, 1000)


def test_hparam_and_setting_names_mean_one_thing_and_the_config_builds():
  """A name two objectives declare has one default (the config has one key for it), and every new
  objective's keys are in the base config, which validates with each of them selected."""
  hparams, settings = objectives.all_hparams(), objectives.all_settings()
  package = [objectives.get(name) for name in objectives.available()]
  for cls in [c for c in package if c.__module__.startswith("vae_jax.objectives.")]:  # Not test-registered ones.
    name = cls.__module__
    assert {k: hparams[k] for k in cls.HPARAMS} == dict(cls.HPARAMS), name
    assert {k: settings[k] for k in cls.SETTINGS} == dict(cls.SETTINGS), name
  assert objectives.get("factorvae").HPARAMS == {"tc_weight": 35.0}
  assert objectives.get("annealedvae").HPARAMS == {"capacity_weight": 1000.0, "c_max": 25.0}
  assert objectives.get("dipvae_i").HPARAMS == objectives.get("dipvae_ii").HPARAMS == {"lambda_od": 10.0}
  config = configlib.base_config()
  for name in NEW:
    config.loss.objective = name
    configlib.validate_config(config)
    assert set(objectives.get(name).HPARAMS) | set(objectives.get(name).SETTINGS) <= set(config.loss)
  assert config.loss.discriminator_width == 1000 and config.loss.discriminator_layers == 6
  assert config.loss.discriminator_learning_rate == 1e-4 and config.loss.capacity_steps == 100_000


def test_permute_dims_keeps_every_marginal_and_destroys_dependence():
  x = jax.random.normal(jax.random.PRNGKey(0), (10_000,))
  noise = jax.random.normal(jax.random.PRNGKey(1), (10_000,))
  z = jnp.stack([x, x + 0.1 * noise, -x, 2 * x], axis=1)
  assert np.min(np.abs(np.corrcoef(np.asarray(z).T))) > 0.99
  permute = jax.jit(factorvae.permute_dims)
  permuted = np.asarray(permute(z, jax.random.PRNGKey(2)))
  assert permuted.shape == z.shape
  for j in range(z.shape[1]):
    np.testing.assert_array_equal(np.sort(permuted[:, j]), np.sort(np.asarray(z[:, j])))
    assert not np.array_equal(permuted[:, j], np.asarray(z[:, j]))
  corr = np.corrcoef(permuted.T)
  off_diagonal = corr[~np.eye(z.shape[1], dtype=bool)]
  assert np.max(np.abs(off_diagonal)) < 0.05, corr  # 1/√N = 0.01.
  again = permute(z, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(again, permuted)  # A function of the key.


def test_discriminator_alone_estimates_the_total_correlation_of_a_gaussian():
  """On samples of a 3-D Gaussian with correlation matrix R, TC = −½·log det R (0.735 nats); a
  2 × 32 discriminator trained alone (400 Adam steps of 512 fresh samples, the learning rate
  decayed from 1e-2 to 0) estimates it (mean logit difference on real samples) within 15%
  (2–5% low over seeds 0–4)."""
  corr = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.6], [0.5, 0.6, 1.0]])
  true_tc = -0.5 * np.log(np.linalg.det(corr))
  chol = jnp.asarray(np.linalg.cholesky(corr), jnp.float32)
  fvae = objective("factorvae", discriminator_width=32, discriminator_layers=2)
  params = fvae.init_networks(jax.random.PRNGKey(0), 3)["discriminator"]
  steps = 400
  tx = optax.adam(optax.cosine_decay_schedule(1e-2, steps), b1=factorvae.DISCRIMINATOR_B1,
                  b2=factorvae.DISCRIMINATOR_B2)

  def step(carry, key):
    params, opt_state = carry
    sample_key, permute_key = jax.random.split(key)
    z = jax.random.normal(sample_key, (512, 3)) @ chol.T
    (_, metrics), grads = jax.value_and_grad(fvae.discriminator_loss, has_aux=True)(params, z, permute_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), metrics["discriminator_loss"]

  (params, _), history = jax.jit(lambda c, k: jax.lax.scan(step, c, k))(
      (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(1), steps))
  assert history[-50:].mean() < history[:10].mean()
  z = jax.random.normal(jax.random.PRNGKey(2), (20_000, 3)) @ chol.T
  estimate = float(jnp.mean(factorvae.logit_difference(fvae.discriminator.apply({"params": params}, z))))
  assert estimate == pytest.approx(true_tc, rel=0.15), (estimate, true_tc)


def test_factorvae_vae_loss_is_the_vae_loss_plus_gamma_times_the_logit_difference():
  outputs, x = fake_outputs()
  logits = jnp.asarray(np.random.default_rng(9).normal(size=(8, 2)), jnp.float32)
  fvae, plain = objective("factorvae"), objective("vae")
  got, metrics = vae_loss(fvae, outputs | {"discriminator_logits": logits}, x, {"tc_weight": 7.0}, 0)
  want, _ = vae_loss(plain, outputs, x, {}, 0)
  difference = np.mean(np.asarray(logits[:, 0]) - np.asarray(logits[:, 1]))
  np.testing.assert_allclose(got, float(want) + 7.0 * difference, rtol=1e-5)
  assert float(metrics["loss"]) == float(got)
  np.testing.assert_allclose(metrics["tc_estimate"], difference, rtol=1e-6)


def test_factorvae_discriminator_loss_is_the_cross_entropy_of_real_against_permuted():
  real, permuted = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 2)), jnp.float32)
  loss, metrics = factorvae.discriminator_objective(real, permuted)

  def log_p(logits, label):
    logits = np.asarray(logits, np.float64)
    return logits[:, label] - np.log(np.exp(logits).sum(axis=1))

  np.testing.assert_allclose(loss, -0.5 * (log_p(real, 0).mean() + log_p(permuted, 1).mean()), rtol=1e-6)
  right = np.concatenate([np.asarray(real[:, 0] > real[:, 1]), np.asarray(permuted[:, 1] > permuted[:, 0])])
  np.testing.assert_allclose(metrics["discriminator_accuracy"], right.mean(), rtol=1e-6)


def numpy_dip_covariance(mean, log_var, dip_type):
  mean, var = np.asarray(mean, np.float64), np.exp(np.asarray(log_var, np.float64))
  cov = np.cov(mean.T, bias=True)
  return cov + np.diag(var.mean(axis=0)) if dip_type == "ii" else cov


@pytest.mark.parametrize("name", ["dipvae_i", "dipvae_ii"])
def test_dip_regulariser_against_numpy(name):
  dip_type, factor = {"dipvae_i": ("i", 10.0), "dipvae_ii": ("ii", 1.0)}[name]
  outputs, x = fake_outputs(batch=32, latents=4, seed=3)
  cov = numpy_dip_covariance(outputs["mean"], outputs["log_var"], dip_type)
  off_diagonal = np.sum(cov**2) - np.sum(np.diag(cov) ** 2)
  diagonal = np.sum((np.diag(cov) - 1.0) ** 2)
  covariance = jax.jit(dipvae_i.dip_covariance, static_argnums=2)
  np.testing.assert_allclose(covariance(outputs["mean"], outputs["log_var"], dip_type), cov, rtol=1e-5, atol=1e-6)
  regularizer = jax.jit(dipvae_i.dip_regularizer, static_argnums=4)
  np.testing.assert_allclose(regularizer(outputs["mean"], outputs["log_var"], 2.0, 3.0, dip_type),
                             2.0 * off_diagonal + 3.0 * diagonal, rtol=1e-5)
  got, metrics = vae_loss(objective(name), outputs, x, {"lambda_od": 2.0}, 0)
  want, _ = vae_loss(objective("vae"), outputs, x, {}, 0)
  np.testing.assert_allclose(got, float(want) + 2.0 * off_diagonal + factor * 2.0 * diagonal, rtol=1e-5)
  np.testing.assert_allclose([metrics["dip_off_diagonal"], metrics["dip_diagonal"]], [off_diagonal, diagonal],
                             rtol=1e-5)


def test_annealedvae_capacity_and_loss():
  for step, want in ((0, 0.0), (50, 12.5), (100, 25.0), (400, 25.0)):
    assert float(annealedvae.capacity(jnp.asarray(step), 25.0, 100)) == pytest.approx(want)
  assert float(annealedvae.capacity(7, 25.0, 0)) == 25.0
  outputs, x = fake_outputs(seed=4)
  annealed = objective("annealedvae", capacity_steps=100)
  terms = jax.jit(functools.partial(losses.batch_terms, likelihood="bernoulli", dataset_size=1000))(outputs, x)
  kl, reconstruction = float(jnp.mean(terms["kl"])), float(jnp.mean(terms["reconstruction"]))
  for step, target in ((0, 0.0), (50, 3.0), (100, 6.0), (1000, 6.0)):
    got, metrics = vae_loss(annealed, outputs, x, {"capacity_weight": 1000.0, "c_max": 6.0}, step)
    np.testing.assert_allclose(got, reconstruction + 1000.0 * abs(kl - target), rtol=1e-5)
    assert float(metrics["capacity"]) == pytest.approx(target) and float(metrics["kl"]) == pytest.approx(kl)


def factorvae_config(num_members=1):
  """A tiny FactorVAE run: 4-latent MLP of width 64, a 2 × 32 discriminator, 6 steps of batch 16."""
  config = configlib.shrink_to_test_size(configlib.base_config())
  config.loss.objective = "factorvae"
  config.loss.discriminator_width = 32
  config.loss.discriminator_layers = 2
  config.data.pipeline = "numpy"
  config.batch_size = 16
  config.num_train_steps = 6
  config.checkpoint_every_steps = 6  # A run's last step is always saved: a 3-step run leaves step 3 to resume from.
  config.log_every_steps = 2
  config.eval.final = "none"
  config.eval.figures = False
  config.ensemble.num_members = num_members
  return config


def restore(workdir, target):
  """The latest checkpoint of workdir, restored into `target` (a state of the run's structure), as NumPy."""
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  return jax.tree.map(np.asarray, state)


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_each_factorvae_loss_moves_only_its_own_network():
  """The VAE's loss depends on the discriminator (its gradient there is not 0) and the
  discriminator's on the VAE (through the codes, held fixed: gradient 0); with the other
  network's optimiser frozen, one train step leaves that network unchanged and moves the
  other by its own optimiser's step on the gradient of its own loss."""
  config = factorvae_config()
  dataset = get_dataset(config.data)
  model = models.create_model(config.model, dataset.image_shape)
  fvae = objectives.create(config.loss, len(dataset))
  optimizers = fvae.create_optimizers(config.optimizer)
  batch = jnp.asarray(dataset.images(np.arange(16)))
  rng = jax.random.PRNGKey(0)

  @jax.jit  # One program for everything below (op by op, it costs several times as long).
  def run():
    state = state_lib.create_train_state(model, fvae, optimizers, dataset.image_shape, 0, {"tc_weight": 35.0})

    def group_loss(group, params):
      return fvae.loss(group, params, batch, rng, state.hparams, state.step, model.apply)[0]

    out = {"state": state,
           "vae_loss_by_discriminator": jax.grad(lambda d: group_loss("vae", {**state.params, "discriminator": d}))(
               state.params["discriminator"]),
           "discriminator_loss_by_vae": jax.grad(lambda v: group_loss("discriminator", {**state.params, "vae": v}))(
               state.params["vae"]),
           "discriminator_losses": (group_loss("discriminator", state.params), group_loss(
               "discriminator", {**state.params, "vae": jax.tree.map(lambda p: 1.5 * p, state.params["vae"])}))}
    for frozen, moving in (("vae", "discriminator"), ("discriminator", "vae")):
      spec = train.StepSpec(fvae, model.apply, dict(optimizers, **{frozen: optax.sgd(0.0)}))
      out[frozen] = train.train_step(state, batch, rng, spec=spec)
      own = jax.grad(lambda p, g=moving: group_loss(g, {**state.params, g: p}))(state.params[moving])
      updates, _ = optimizers[moving].update(own, state.opt_state[moving], state.params[moving])
      out[f"{moving}_by_own_gradient"] = optax.apply_updates(state.params[moving], updates)
    return out

  out = jax.tree.map(np.asarray, run())
  state = out["state"]
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(out["vae_loss_by_discriminator"]))
  assert all(np.abs(g).max() == 0 for g in jax.tree.leaves(out["discriminator_loss_by_vae"]))
  assert out["discriminator_losses"][0] != out["discriminator_losses"][1]
  for frozen, moving in (("vae", "discriminator"), ("discriminator", "vae")):
    new, metrics = out[frozen]
    assert {"tc_estimate", "discriminator_loss", "discriminator_accuracy", "loss", "kl"} <= set(metrics)
    assert leaves_equal(new.params[frozen], state.params[frozen])
    assert not leaves_equal(new.params[moving], state.params[moving])
    for a, b in zip(jax.tree.leaves(new.params[moving]), jax.tree.leaves(out[f"{moving}_by_own_gradient"])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_factorvae_ensemble_equals_separate_runs_and_resumes_exactly(tmp_path):
  """A 2-member ensemble with per-member γ equals two single runs (float32 rounding); run for
  3 steps and resumed to 6 it equals the straight 6-step run exactly, every leaf of the state
  (the discriminator's Adam state included)."""
  config = factorvae_config(num_members=2)
  config.ensemble.hparams.tc_weight = (5.0, 50.0)
  results = train.train_and_evaluate(config, str(tmp_path / "straight"))
  assert [m["hparams"] for m in results["members"]] == [{"tc_weight": 5.0}, {"tc_weight": 50.0}]
  assert {"discriminator_loss", "discriminator_accuracy", "tc_estimate"} <= {k.split("/")[0] for k in results["train"]}
  dataset = get_dataset(config.data)
  ensemble_target = rundir.build(config, dataset, len(dataset))[-1]
  straight = restore(tmp_path / "straight", ensemble_target)
  assert int(straight.step[0]) == 6
  assert not np.allclose(straight.params["discriminator"]["Dense_0"]["kernel"][0],
                         straight.params["discriminator"]["Dense_0"]["kernel"][1])

  single_target = None
  for member, tc_weight in enumerate((5.0, 50.0)):
    single_config = factorvae_config()
    single_config.seed = member
    single_config.loss.tc_weight = tc_weight
    train.train_and_evaluate(single_config, str(tmp_path / f"single{member}"))
    if single_target is None:  # The seed and γ are values in the state, not its structure.
      single_target = rundir.build(single_config, dataset, len(dataset))[-1]
    single = restore(tmp_path / f"single{member}", single_target)
    np.testing.assert_array_equal(single.hparams["tc_weight"], [tc_weight])
    for a, b in zip(jax.tree.leaves((straight.params, straight.opt_state)),
                    jax.tree.leaves((single.params, single.opt_state))):
      np.testing.assert_allclose(a[member], b[0], rtol=1e-4, atol=1e-5)

  config.num_train_steps = 3
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  config.num_train_steps = 6
  assert train.train_and_evaluate(config, str(tmp_path / "resumed"))["resumed_from_step"] == 3
  resumed = restore(tmp_path / "resumed", ensemble_target)
  assert int(resumed.step[0]) == 6
  assert len(jax.tree.leaves(resumed.opt_state["discriminator"])) > 2  # Adam's count and moments.
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
