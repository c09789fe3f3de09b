"""The evaluation runner: which factors count, sub-grids, likelihood bounds, records."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vae_jax import evaluate, models, parallel
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.data.shapes3d import ProceduralShapes3D


def test_chen_mig_leaves_dsprites_shape_out_by_default():
  assert evaluate.mig_factors(ProceduralDSprites()) == (1, 2, 3, 4)
  assert evaluate.mig_factors(ProceduralShapes3D()) == (0, 1, 2, 3, 4, 5)
  assert evaluate.mig_factors(ProceduralDSprites(), ("posX", "shape")) == (3, 0)
  with pytest.raises(ValueError, match="colour"):
    evaluate.mig_factors(ProceduralDSprites(), ("colour",))


def test_subgrid_strides_thin_the_largest_factors():
  assert evaluate.subgrid_strides((3, 6, 40, 32, 32), 12_000) == (1, 1, 4, 4, 4)  # 11,520 images
  assert evaluate.subgrid_strides((3, 6, 40, 32, 32), 10**7) == (1,) * 5
  strides = evaluate.subgrid_strides((10, 10, 10, 8, 4, 15), 5_000)
  sizes = [len(range(0, s, t)) for s, t in zip((10, 10, 10, 8, 4, 15), strides)]
  assert np.prod(sizes) <= 5_000
  # Minimal: undoing the last halving of any thinned factor would exceed the bound.
  for f, t in enumerate(strides):
    if t > 1:
      bigger = list(sizes)
      bigger[f] = len(range(0, (10, 10, 10, 8, 4, 15)[f], t // 2))
      assert np.prod(bigger) > 5_000 or bigger[f] < max(sizes)


def test_importance_weighted_bound_is_above_the_elbo():
  config = ml_collections.ConfigDict(dict(architecture="mlp", latent_dim=4, conv_impl="fast", mlp_width=32, init="pytorch"))
  model = models.create_model(config, (64, 64, 1), "vae")
  x = jnp.asarray(ProceduralDSprites().images(np.arange(0, 737280, 73728)))
  params = jax.vmap(lambda k: model.init(k, x[:1], k)["params"])(jax.random.split(jax.random.PRNGKey(0), 1))
  keys = jax.random.split(jax.random.PRNGKey(1), 1)
  few = jax.device_get(evaluate.make_likelihood_fn(model, "bernoulli", 1)(params, x, keys))
  many = jax.device_get(evaluate.make_likelihood_fn(model, "bernoulli", 256)(params, x, keys))
  # With K = 1 the importance-weighted estimate is a single-sample ELBO; with K = 256 it
  # is a tighter bound, above the analytic ELBO for every image.
  assert np.all(many["log_px_iw"] >= many["elbo"] - 1e-3)
  assert np.mean(many["log_px_iw"]) > np.mean(few["log_px_iw"])
  assert np.all(many["reconstruction"] > 0)


def test_evaluate_ensemble_records_name_estimator_and_factors(test_config):
  dataset = ProceduralDSprites()
  config = test_config
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  x0 = jnp.zeros((1, 64, 64, 1))
  params = jax.vmap(lambda k: model.init(k, x0, k)["params"])(jax.random.split(jax.random.PRNGKey(0), 2))
  mesh = parallel.create_mesh()
  a = evaluate.evaluate_ensemble(config, model, params, dataset, mesh, full=False, seed=0)
  b = evaluate.evaluate_ensemble(config, model, params, dataset, mesh, full=False, seed=0)
  assert len(a) == 2
  assert a[0]["mig"]["value"] == b[0]["mig"]["value"]  # Deterministic given the seed.
  assert a[0]["mig"]["factors"] == ["scale", "orientation", "posX", "posY"]
  assert "Chen" in a[0]["mig"]["estimator"] and "histogram" in a[0]["mig_histogram"]["estimator"]
  assert a[0]["images"] <= config.eval.subset_images
  scalars = evaluate.summary_scalars(a, "eval_subset")
  assert "eval_subset/mig/member_1" in scalars and np.isfinite(list(scalars.values())).all()
