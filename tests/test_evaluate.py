"""The evaluation runner: which factors count, sub-grids, likelihood bounds, records."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vae_jax import evaluate, models, parallel, rundir
from vae_jax.evaluation import encode as encode_lib
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
  model = models.create_model(config, (64, 64, 1))
  x = jnp.asarray(ProceduralDSprites().images(np.arange(0, 737280, 73728)))
  params = model.init(jax.random.PRNGKey(0), x[:1], jax.random.PRNGKey(0))["params"]
  key = jax.random.PRNGKey(1)
  encoder = encode_lib.model_encoder(model)
  decoder = lambda p, z: model.apply({"params": p}, z, method="decode")
  few = jax.device_get(evaluate.make_likelihood_fn(encoder, decoder, "bernoulli", 1)(params, x, key))
  many = jax.device_get(evaluate.make_likelihood_fn(encoder, decoder, "bernoulli", 256)(params, x, key))
  # With K = 1 the importance-weighted estimate is a single-sample ELBO; with K = 256 it
  # is a tighter bound, above the analytic ELBO for every image.
  assert np.all(many["log_px_iw"] >= many["elbo"] - 1e-3)
  assert np.mean(many["log_px_iw"]) > np.mean(few["log_px_iw"])
  assert np.all(many["reconstruction"] > 0)


def test_evaluate_ensemble_records_name_estimator_and_factors(test_config):
  dataset = ProceduralDSprites()
  config = test_config
  config.ensemble.num_members = 2
  model, objective, _, state = rundir.build(config, dataset, len(dataset))
  mesh = parallel.create_mesh()
  a = evaluate.evaluate_ensemble(config.eval, model, objective, state.params["vae"], dataset, mesh, full=False, seed=0)
  b = evaluate.evaluate_ensemble(config.eval, model, objective, state.params["vae"], dataset, mesh, full=False, seed=0)
  assert len(a) == 2 and list(a[0].metrics) == list(config.eval.metrics)
  assert a[0].metrics["mig"]["value"] == b[0].metrics["mig"]["value"]  # Deterministic given the seed.
  assert a[0].metrics["mig"]["factors"] == ["scale", "orientation", "posX", "posY"]
  assert "Chen" in a[0].metrics["mig"]["estimator"] and "histogram" in a[0].metrics["mig_histogram"]["estimator"]
  assert a[0].images <= config.eval.subset_images
  scalars = evaluate.summary_scalars(a, "eval_subset")
  assert "eval_subset/mig/member_1" in scalars and np.isfinite(list(scalars.values())).all()


def test_only_the_configured_metrics_run_and_points_do_not_depend_on_the_others(test_config):
  """eval.metrics picks the registered metrics; a metric's random points are the same whichever others run
  before it, as long as the ones that draw points come in the same order."""
  dataset = ProceduralDSprites()
  config = test_config
  model, objective, _, state = rundir.build(config, dataset, len(dataset))
  mesh = parallel.create_mesh()
  config.eval.metrics = ("active_units", "mig_histogram")
  (few,) = evaluate.evaluate_ensemble(config.eval, model, objective, state.params["vae"], dataset, mesh, full=False,
                                      seed=0)
  assert list(few.metrics) == ["active_units", "mig_histogram"]
  config.eval.metrics = ("mig", "mig_histogram", "active_units")
  (more,) = evaluate.evaluate_ensemble(config.eval, model, objective, state.params["vae"], dataset, mesh, full=False,
                                       seed=0)
  assert more.metrics["mig_histogram"] == few.metrics["mig_histogram"]
  assert set(evaluate.member_scalars(more)) == {"mig", "mig_histogram", "active_units"}
  points = evaluate.draw_points(("mig_histogram", "likelihood"), config.eval, 1000, seed=3)
  assert len(points["mig_histogram"]) == min(config.eval.histogram_points, 1000)
  assert len(set(points["likelihood"])) == len(points["likelihood"]) == config.eval.likelihood_images


def _centroid_code(images):
  """A hand-made representation of dSprites: the sprite's centre (x, y) and its area."""
  ys, xs = np.mgrid[0:64, 0:64]
  area = images[..., 0].sum((1, 2)) + 1e-6
  return np.stack([(images[..., 0] * xs).sum((1, 2)) / area, (images[..., 0] * ys).sum((1, 2)) / area, area], 1)


def test_evaluate_representation_scores_any_encoder():
  """A hand-made code that reads off position and size beats random codes; NumPy and JAX callables,
  more or fewer code dimensions than factors, and (mean, log_var) posteriors all work."""
  from vae_jax.evaluation import evaluate_representation

  dataset = ProceduralDSprites()
  indices, sizes = evaluate.evaluated_indices(dataset.factor_sizes, False, 3000)
  good = evaluate_representation(_centroid_code, dataset, indices=indices)
  assert good.subgrid_sizes == list(sizes) and set(good.metrics) == {"mig_histogram", "active_units"}
  random_code = lambda x: jnp.asarray(np.random.default_rng(0).normal(size=(len(x), 8)))  # More dims than factors.
  bad = evaluate_representation(random_code, dataset, indices=indices)
  assert good.metrics["mig_histogram"]["value"] > 0.3 > 0.05 > bad.metrics["mig_histogram"]["value"]
  posterior = evaluate_representation(lambda x: (_centroid_code(x), np.full((len(x), 3), -4.0)), dataset,
                                      indices=indices, metrics=("mig",))
  assert posterior.metrics["mig"]["value"] > 0.2 and posterior.metrics["mig"]["factors"][0] == "scale"


def test_evaluate_representation_rejects_bad_input_with_one_clear_error():
  from vae_jax.evaluation import evaluate_representation

  dataset = ProceduralDSprites()
  indices, _ = evaluate.evaluated_indices(dataset.factor_sizes, False, 600)
  with pytest.raises(ValueError, match=r"codes \[B, K\].*shape \(\d+,\)"):
    evaluate_representation(lambda x: np.zeros(len(x)), dataset, indices=indices)
  with pytest.raises(ValueError, match="NaN"):
    evaluate_representation(lambda x: np.full((len(x), 2), np.nan), dataset, indices=indices)
  with pytest.raises(ValueError, match="no ground-truth factors"):
    evaluate_representation(lambda x: x, types.SimpleNamespace(name="faces", factor_sizes=()))
  with pytest.raises(ValueError, match="sub-grid"):
    evaluate_representation(_centroid_code, dataset, indices=indices[::-1])
  with pytest.raises(ValueError, match="decoder"):
    evaluate_representation(_centroid_code, dataset, indices=indices, metrics=("likelihood",))
