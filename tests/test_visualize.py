"""Figures: the arrays behind them (traversals decode what they claim) and the files they become."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from vae_jax import models, train, visualize
from vae_jax.data import holdout
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.data.grid import index_to_factors


def test_traversal_codes_vary_only_the_chosen_latent():
  z0 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
  order = [2, 0, 3]
  values = visualize.traversal_values(7)
  np.testing.assert_allclose(values, [-3, -2, -1, 0, 1, 2, 3])
  codes = visualize.traversal_codes(z0, order, values)
  assert codes.shape == (3, 7, 4)
  for r, k in enumerate(order):
    np.testing.assert_allclose(codes[r, :, k], values)
    others = np.delete(codes[r], k, axis=1)
    np.testing.assert_array_equal(others, np.broadcast_to(np.delete(z0, k), others.shape))


@pytest.fixture(scope="module")
def small_model():
  model_config = ml_collections.ConfigDict(dict(architecture="mlp", latent_dim=4, conv_impl="fast", mlp_width=64, init="pytorch"))
  model = models.create_model(model_config, (64, 64, 1), "betatcvae")
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)), jax.random.PRNGKey(1))["params"]
  return model, params


def test_traversal_images_change_only_through_the_traversed_latent(small_model):
  model, params = small_model
  # A decoder that reads latent 1 only: zero the other rows of its first layer.
  kernel = params["decoder"]["Dense_0"]["kernel"]
  only_1 = jax.tree.map(lambda x: x, params)
  only_1["decoder"]["Dense_0"]["kernel"] = kernel * (jnp.arange(4) == 1)[:, None]
  z0 = np.array([0.3, -0.2, 0.1, 0.7], np.float32)
  values = visualize.traversal_values(5)
  images = visualize.traversal_images(model, only_1, z0, [1, 0, 2, 3], values)
  assert images.shape == (4, 5, 64, 64, 1)
  assert images.min() >= 0 and images.max() <= 1
  # Row 0 traverses latent 1: its images differ column to column; rows of ignored latents are constant.
  assert np.abs(np.diff(images[0], axis=0)).max() > 1e-3
  for r in (1, 2, 3):
    np.testing.assert_allclose(images[r], np.broadcast_to(images[r, :1], images[r].shape), atol=1e-6)
  # With the real decoder, every image is the decoder mean of the code it stands for.
  full = visualize.traversal_images(model, params, z0, [3, 1], values)
  codes = visualize.traversal_codes(z0, [3, 1], values)
  direct = jax.nn.sigmoid(model.apply({"params": params}, jnp.asarray(codes.reshape(-1, 4)), method=model.decode))
  np.testing.assert_allclose(full.reshape(-1, 64, 64, 1), np.asarray(direct), atol=1e-6)
  assert np.abs(np.diff(full[1], axis=0)).max() > 1e-3


def test_latent_factor_means_average_over_the_other_factors():
  sizes = (3, 4, 5)
  f = index_to_factors(np.arange(60), sizes)
  means = np.stack([f[:, 1] * 1.0 + f[:, 2] * 0.1, f[:, 0] * 2.0 - f[:, 1]], axis=1)  # [60, 2]
  cube = means.reshape(*sizes, 2)
  curves = visualize.latent_factor_means(means, f, 1, 4)
  np.testing.assert_allclose(curves[0], cube.mean(axis=(0, 2)))
  by_group = visualize.latent_factor_means(means, f, 1, 4, group=0, num_groups=3)
  np.testing.assert_allclose(by_group, cube.mean(axis=2))
  kl = visualize.kl_per_latent(np.array([[1.0, 0.0]]), np.array([[0.0, np.log(2.0)]]))
  np.testing.assert_allclose(kl, [0.5, 0.5 * (2 - 1 - np.log(2))])
  np.testing.assert_array_equal(visualize.latent_order_by_kl(np.array([0.1, 3.0, 0.1, 1.0])), [1, 3, 0, 2])


def test_grid_layout_and_title_fitting():
  layout = visualize.GridLayout(2, 3, left=1.0, title_lines=2, header=0.2)
  w = 1.0 + 3 * 0.8 + 2 * 0.06 + 0.15
  h = 0.12 + 2 * 0.18 + 0.2 + 2 * 0.8 + 0.06 + 0.15
  assert layout.size_pixels == (round(w * 100), round(h * 100))
  text, size = visualize.fit_title("word " * 40, 5.0, 3)
  assert len(text.split("\n")) <= 3 and size < 10


def test_write_figures_writes_every_figure_at_its_size(test_config, tmp_path):
  config = test_config
  dataset = holdout.apply_holdout(ProceduralDSprites(), "shape=2")
  config.ensemble.num_members = 2
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  params = train.create_ensemble_state(config, model, dataset.image_shape).params
  paths = visualize.write_figures(config, model, params, dataset, str(tmp_path), member=1, step=6)
  out = tmp_path / "figures" / "member_1"
  k = config.model.latent_dim
  expected = {
      "reconstructions": visualize.reconstructions_layout(10).size_pixels,
      "reconstructions_holdout": visualize.reconstructions_layout(10).size_pixels,
      "prior_samples": visualize.prior_samples_layout(8, 8).size_pixels,
      "traversal_grid": visualize.traversal_layout(k, visualize.TRAVERSAL_STEPS).size_pixels,
      "latent_vs_factor": tuple(round(v * 100) for v in visualize.latent_vs_factor_size(4, k)),
      "mi_heatmap": tuple(round(v * 100) for v in visualize.mi_heatmap_size(5, k)),
  }
  for name, size in expected.items():
    assert paths[name] == str(out / f"{name}.png")
    with Image.open(paths[name]) as im:
      assert im.size == size, name
  # The traversal grid has one row per latent: its height grows by one cell per latent.
  assert (visualize.traversal_layout(k + 1, 9).size_pixels[1] - visualize.traversal_layout(k, 9).size_pixels[1]
          == round((0.8 + 0.06) * 100))
  frames = 2 * visualize.GIF_STEPS - 2
  for latent in range(k):
    with Image.open(out / f"traversal_latent{latent}.gif") as im:
      assert im.size == (64 * visualize.GIF_SCALE, 64 * visualize.GIF_SCALE) and im.n_frames == frames
  with Image.open(out / "traversal_all.gif") as im:
    assert im.size == (visualize.GIF_SCALE * (k * 66 - 2), visualize.GIF_SCALE * 64) and im.n_frames == frames
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))


def test_mi_can_come_from_a_metrics_record():
  dataset = ProceduralDSprites()
  mi, names, estimator = visualize._mi_rows({"mi": [[0.1, 0.9]], "factors": ["posX"], "estimator": "x"}, dataset)
  assert names == ["posX"] and estimator == "x" and mi.shape == (1, 2)
  with pytest.raises(ValueError, match="one per factor"):
    visualize._mi_rows(np.zeros((2, 3)), dataset)
  assert visualize.best_factor_per_latent(np.array([[0.1, 0.9], [0.5, 0.2]]))[0].tolist() == [1, 0]
