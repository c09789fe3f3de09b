"""Networks: shapes, parameter counts of the published architectures, AE determinism."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vae_jax import objectives, configlib, models


def model_config(arch, latent_dim=10, conv_impl="fast", mlp_width=1200, init="pytorch", scale_output="log_var"):
  return ml_collections.ConfigDict(dict(architecture=arch, latent_dim=latent_dim, conv_impl=conv_impl,
                                        mlp_width=mlp_width, init=init, scale_output=scale_output))


def count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def dense(i, o):
  return i * o + o


def conv(k, i, o):
  return k * k * i * o + o


def test_conv64_matches_the_published_network():
  model = models.create_model(model_config("conv64"), (64, 64, 1))
  x = jnp.zeros((2, 64, 64, 1))
  params = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  encoder = conv(4, 1, 32) + conv(4, 32, 32) + conv(4, 32, 64) + conv(4, 64, 64) + dense(1024, 256) + dense(256, 20)
  decoder = (dense(10, 256) + dense(256, 1024) + conv(4, 64, 64) + conv(4, 64, 32) + conv(4, 32, 32)
             + conv(4, 32, 1))
  assert count(params) == encoder + decoder
  out = model.apply({"params": params}, x, jax.random.PRNGKey(2))
  assert out["mean"].shape == out["log_var"].shape == out["z"].shape == (2, 10)
  assert out["decoded"].shape == (2, 64, 64, 1)


def test_mlp_matches_the_published_network():
  model = models.create_model(model_config("mlp"), (64, 64, 3))
  x = jnp.zeros((2, 64, 64, 3))
  params = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  encoder = dense(64 * 64 * 3, 1200) + dense(1200, 1200) + dense(1200, 20)
  decoder = dense(10, 1200) + 2 * dense(1200, 1200) + dense(1200, 64 * 64 * 3)
  assert count(params) == encoder + decoder
  assert model.apply({"params": params}, x, jax.random.PRNGKey(2))["decoded"].shape == (2, 64, 64, 3)


def test_sampling_follows_the_posterior_and_the_ae_objective_is_deterministic():
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 64, 64, 1))
  vae = models.create_model(model_config("mlp", mlp_width=32), (64, 64, 1))
  params = vae.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  a = vae.apply({"params": params}, x, jax.random.PRNGKey(1))
  b = vae.apply({"params": params}, x, jax.random.PRNGKey(2))
  assert not np.allclose(a["z"], b["z"])
  np.testing.assert_allclose(a["z"], a["mean"] + jnp.exp(0.5 * a["log_var"]) * jax.random.normal(
      jax.random.PRNGKey(1), a["mean"].shape), rtol=1e-5, atol=1e-6)

  # The autoencoder is an objective: it codes with the mean (zero log-variance) and decodes that.
  ae = objectives.get("ae")(ml_collections.ConfigDict(dict(likelihood="bernoulli", estimator="mws")), 100)
  mean, log_var = ae.encode(vae.apply, params, x)
  np.testing.assert_array_equal(mean, a["mean"])
  np.testing.assert_array_equal(log_var, 0.0)
  rng_a, rng_b = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  loss_a, _ = ae.loss("vae", {"vae": params}, x, rng_a, {}, 0, vae.apply)
  loss_b, _ = ae.loss("vae", {"vae": params}, x, rng_b, {}, 0, vae.apply)
  assert float(loss_a) == float(loss_b)  # No sampling.


def test_conv_impls_compute_the_same_network():
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 64, 64, 1))
  fast = models.create_model(model_config("conv64", conv_impl="fast"), (64, 64, 1))
  xla = models.create_model(model_config("conv64", conv_impl="xla"), (64, 64, 1))
  params = fast.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  a = fast.apply({"params": params}, x, jax.random.PRNGKey(1))
  b = xla.apply({"params": params}, x, jax.random.PRNGKey(1))
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_unusable_settings_are_clear_errors():
  with pytest.raises(ValueError, match="64×64"):
    models.create_model(model_config("conv64"), (32, 32, 1))
  with pytest.raises(ValueError, match="architecture"):
    models.create_model(model_config("resnet"), (64, 64, 1))


@pytest.mark.parametrize("architecture", ["mlp", "conv64"])
def test_pytorch_init_is_uniform_over_plus_minus_one_over_root_fan_in(architecture, test_config):
  test_config.model.architecture = architecture
  test_config.model.mlp_width = 256
  params = {}
  for init in ("pytorch", "lecun"):
    test_config.model.init = init
    model = models.create_model(test_config.model, (64, 64, 1))
    key = jax.random.PRNGKey(0)
    params[init] = model.init(key, jnp.zeros((1, 64, 64, 1)), key)["params"]
  layers_checked = 0
  for path, kernel in jax.tree_util.tree_flatten_with_path(params["pytorch"])[0]:
    if path[-1].key != "kernel":
      continue
    fan_in = int(np.prod(kernel.shape[:-1]))
    bound = fan_in**-0.5
    bias = params["pytorch"]
    for p in path[:-1]:
      bias = bias[p.key]
    assert np.abs(kernel).max() <= bound and np.abs(bias["bias"]).max() <= bound
    if kernel.size >= 4096:  # Enough entries for the moments.
      np.testing.assert_allclose(np.std(kernel), bound / np.sqrt(3), rtol=0.1)
      np.testing.assert_allclose(np.abs(kernel).max(), bound, rtol=0.05)
    layers_checked += 1
  assert layers_checked >= 5
  lecun_biases = [b for p, b in jax.tree_util.tree_flatten_with_path(params["lecun"])[0] if p[-1].key == "bias"]
  assert all(np.all(np.asarray(b) == 0) for b in lecun_biases)


def test_unknown_init_is_rejected(test_config):
  test_config.model.init = "xavier"
  with pytest.raises(ValueError, match="model.init='xavier'; use one of \\('pytorch', 'lecun'\\)"):
    configlib.validate_config(test_config)


def test_log_sigma_scale_output_doubles_the_encoders_scale_head():
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 1))
  plain = models.create_model(model_config("mlp", mlp_width=16), (64, 64, 1))
  log_sigma = models.create_model(model_config("mlp", mlp_width=16, scale_output="log_sigma"), (64, 64, 1))
  params = plain.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  mean, log_var = plain.apply({"params": params}, x, method="encode")
  mean2, log_var2 = log_sigma.apply({"params": params}, x, method="encode")
  np.testing.assert_array_equal(mean, mean2)
  np.testing.assert_allclose(log_var2, 2.0 * log_var, rtol=1e-6)
  with pytest.raises(ValueError, match="scale_output"):
    models.create_model(model_config("mlp", scale_output="sigma"), (64, 64, 1))
