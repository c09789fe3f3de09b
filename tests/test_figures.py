"""Model figures: the arrays behind them (traversals decode what they claim, encoding goes through
the objective) and the files they become."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from vae_jax import figures, losses, models, objectives, plotting, rundir
from vae_jax import codes as codes_lib
from vae_jax.data import holdout
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.data.grid import index_to_factors


def test_traversal_codes_vary_only_the_chosen_latent():
  z0 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
  order = [2, 0, 3]
  values = codes_lib.traversal_values(7)
  np.testing.assert_allclose(values, [-3, -2, -1, 0, 1, 2, 3])
  codes = codes_lib.traversal_codes(z0, order, values)
  assert codes.shape == (3, 7, 4)
  for r, k in enumerate(order):
    np.testing.assert_allclose(codes[r, :, k], values)
    others = np.delete(codes[r], k, axis=1)
    np.testing.assert_array_equal(others, np.broadcast_to(np.delete(z0, k), others.shape))


@pytest.fixture(scope="module")
def small_model():
  model_config = ml_collections.ConfigDict(dict(architecture="mlp", latent_dim=4, conv_impl="fast", mlp_width=64,
                                                init="pytorch"))
  model = models.create_model(model_config, (64, 64, 1))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)), jax.random.PRNGKey(1))["params"]
  return model, params


def test_traversal_images_change_only_through_the_traversed_latent(small_model):
  model, params = small_model
  # A decoder that reads latent 1 only: zero the other rows of its first layer.
  kernel = params["decoder"]["Dense_0"]["kernel"]
  only_1 = jax.tree.map(lambda x: x, params)
  only_1["decoder"]["Dense_0"]["kernel"] = kernel * (jnp.arange(4) == 1)[:, None]
  z0 = np.array([0.3, -0.2, 0.1, 0.7], np.float32)
  values = codes_lib.traversal_values(5)
  images = codes_lib.traversal_images(model, only_1, z0, [1, 0, 2, 3], values)
  assert images.shape == (4, 5, 64, 64, 1)
  assert images.min() >= 0 and images.max() <= 1
  # Row 0 traverses latent 1: its images differ column to column; rows of ignored latents are constant.
  assert np.abs(np.diff(images[0], axis=0)).max() > 1e-3
  for r in (1, 2, 3):
    np.testing.assert_allclose(images[r], np.broadcast_to(images[r, :1], images[r].shape), atol=1e-6)
  # With the real decoder, every image is the decoder mean of the code it stands for.
  full = codes_lib.traversal_images(model, params, z0, [3, 1], values)
  codes = codes_lib.traversal_codes(z0, [3, 1], values)
  direct = jax.nn.sigmoid(model.apply({"params": params}, jnp.asarray(codes.reshape(-1, 4)), method=model.decode))
  np.testing.assert_allclose(full.reshape(-1, 64, 64, 1), np.asarray(direct), atol=1e-6)
  assert np.abs(np.diff(full[1], axis=0)).max() > 1e-3


def test_encoding_goes_through_the_objective(small_model, test_config):
  model, params = small_model
  x = ProceduralDSprites().images(np.array([0, 500, 70_000]))
  raw_mean, raw_log_var = model.apply({"params": params}, x, method="encode")
  for name, zero_log_var in (("betatcvae", False), ("ae", True)):
    test_config.loss.objective = name
    objective = objectives.create(test_config.loss, 1000)
    encoder = codes_lib.member_encoder(model, objective)
    assert codes_lib.member_encoder(model, objective) is encoder  # One compilation per model and objective.
    mean, log_var = codes_lib.encode_images(encoder, params, x)
    np.testing.assert_allclose(mean, raw_mean, atol=1e-5)
    np.testing.assert_allclose(log_var, 0.0 if zero_log_var else raw_log_var, atol=1e-5)
    # A grid's posteriors (evaluation.encode) are the same as the images'.
    stacked = jax.tree.map(lambda p: jnp.stack([p, p]), params)
    m, lv = codes_lib.encode_member(encoder, stacked, 1, ProceduralDSprites(), np.array([0, 500, 70_000]))
    np.testing.assert_allclose(m, mean, atol=1e-5)
    np.testing.assert_allclose(lv, log_var, atol=1e-5)


def test_latent_factor_means_average_over_the_other_factors():
  sizes = (3, 4, 5)
  f = index_to_factors(np.arange(60), sizes)
  means = np.stack([f[:, 1] * 1.0 + f[:, 2] * 0.1, f[:, 0] * 2.0 - f[:, 1]], axis=1)  # [60, 2]
  cube = means.reshape(*sizes, 2)
  curves = codes_lib.latent_factor_means(means, f, 1, 4)
  np.testing.assert_allclose(curves[0], cube.mean(axis=(0, 2)))
  by_group = codes_lib.latent_factor_means(means, f, 1, 4, group=0, num_groups=3)
  np.testing.assert_allclose(by_group, cube.mean(axis=2))
  kl = codes_lib.kl_per_latent(np.array([[1.0, 0.0]]), np.array([[0.0, np.log(2.0)]]))
  np.testing.assert_allclose(kl, [0.5, 0.5 * (2 - 1 - np.log(2))], rtol=1e-6)
  rng = np.random.default_rng(0)
  m, lv = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
  np.testing.assert_allclose(codes_lib.kl_per_latent(m, lv), np.asarray(losses.gaussian_kl_per_latent(m, lv)).mean(0),
                             rtol=1e-6)
  np.testing.assert_array_equal(codes_lib.latent_order_by_kl(np.array([0.1, 3.0, 0.1, 1.0])), [1, 3, 0, 2])


def test_posteriors_must_be_a_subgrid():
  dataset = ProceduralDSprites()
  assert codes_lib.grid_shape_of(np.array([0, 1, 32, 33]), (1, 1, 1, 32, 32)) == (1, 1, 1, 2, 2)
  with pytest.raises(ValueError, match="not a sub-grid"):
    codes_lib.grid_shape_of(np.array([0, 1, 32]), dataset.factor_sizes)
  with pytest.raises(ValueError, match="must both be"):
    codes_lib.member_posteriors(None, None, 0, dataset, means=np.zeros((3, 2)), log_vars=np.zeros((3, 2)),
                              indices=np.arange(4))
  indices = codes_lib.figure_indices(dataset, 600, seed=0)
  assert len(indices) <= 600 and np.all(np.diff(indices) > 0)
  codes_lib.grid_shape_of(indices, dataset.factor_sizes)


def test_mi_can_come_from_a_metrics_record():
  dataset = ProceduralDSprites()
  table = codes_lib.mi_table({"mi": [[0.1, 0.9]], "factors": ["posX"], "estimator": "x", "value": 0.8}, dataset)
  assert table.factors == ["posX"] and table.note == "x" and table.mi.shape == (1, 2)
  with pytest.raises(ValueError, match="one per factor"):
    codes_lib.mi_table(np.zeros((2, 3)), dataset)
  assert codes_lib.best_factor_per_latent(np.array([[0.1, 0.9], [0.5, 0.2]]))[0].tolist() == [1, 0]


def test_labels_read_dataset_attributes():
  dataset = holdout.apply_holdout(ProceduralDSprites(), "shape=2")
  assert figures.dataset_label(dataset) == "dsprites_procedural (procedurally generated, not the original file)"
  assert figures.categorical_group_factor(dataset) == 0 and figures.value_name(dataset, 0, 1) == "ellipse"
  index = figures.default_image_index(dataset)
  assert index in dataset.kept_indices


def test_write_figures_writes_every_figure_at_its_size(test_config, tmp_path):
  config = test_config
  dataset = holdout.apply_holdout(ProceduralDSprites(), "shape=2")
  config.ensemble.num_members = 2
  model, objective, _, state = rundir.build(config, dataset, len(dataset))
  paths = figures.write_figures(model, objective, state.params["vae"], dataset, str(tmp_path), member=1, step=6,
                                subset_images=config.eval.subset_images, seed=config.seed)
  out = tmp_path / "figures" / "member_1"
  k = config.model.latent_dim
  expected = {
      "reconstructions": plotting.reconstructions_layout(10).size_pixels,
      "reconstructions_holdout": plotting.reconstructions_layout(10).size_pixels,
      "prior_samples": plotting.prior_samples_layout(8, 8).size_pixels,
      "traversal_grid": plotting.traversal_layout(k, codes_lib.TRAVERSAL_STEPS).size_pixels,
      "latent_vs_factor": tuple(round(v * 100) for v in plotting.latent_vs_factor_size(4, k)),
      "mi_heatmap": tuple(round(v * 100) for v in plotting.mi_heatmap_size(5, k)),
  }
  for name, size in expected.items():
    assert paths[name] == str(out / f"{name}.png")
    with Image.open(paths[name]) as im:
      assert im.size == size, name
  frames = 2 * figures.GIF_STEPS - 2
  for latent in range(k):
    with Image.open(out / f"traversal_latent{latent}.gif") as im:
      assert im.size == (64 * plotting.GIF_SCALE, 64 * plotting.GIF_SCALE) and im.n_frames == frames
  with Image.open(out / "traversal_all.gif") as im:
    assert im.size == (plotting.GIF_SCALE * (k * 66 - 2), plotting.GIF_SCALE * 64) and im.n_frames == frames
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
  # The final evaluation's MI record and posteriors can be passed instead of being computed here.
  indices = np.arange(0, 32 * 32)  # shape 0, scale 0, orientation 0: a 32 × 32 sub-grid.
  means, log_vars = np.zeros((len(indices), k)), np.zeros((len(indices), k))
  record = {"value": 0.1, "estimator": "given", "factors": ["posX", "posY"], "mi": np.eye(2, k).tolist()}
  single = jax.tree.map(lambda p: p[:1], state.params["vae"])
  paths = figures.write_figures(model, objective, single, dataset, str(tmp_path / "one"), mi=record, means=means,
                                log_vars=log_vars, indices=indices, num_values=5)
  with Image.open(paths["mi_heatmap"]) as im:
    assert im.size == tuple(round(v * 100) for v in plotting.mi_heatmap_size(2, k))
  with Image.open(paths["latent_vs_factor"]) as im:
    assert im.size == tuple(round(v * 100) for v in plotting.latent_vs_factor_size(2, k))
  with Image.open(paths["traversal_grid"]) as im:
    assert im.size == plotting.traversal_layout(k, 5).size_pixels
  assert os.path.dirname(paths["traversal_grid"]) == str(tmp_path / "one" / "figures")
