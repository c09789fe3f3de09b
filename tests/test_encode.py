"""Encoding a grid: factor-grid order, padding of the last batch, ensembles, sub-grids."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae_jax import models, parallel
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.evaluation import encode


def test_subgrid_indices_match_a_direct_enumeration():
  sizes, strides = (3, 6, 40, 32, 32), (1, 2, 4, 4, 8)
  indices, sub_sizes = encode.subgrid_indices(sizes, strides)
  want = [np.ravel_multi_index(f, sizes) for f in itertools.product(*[range(0, s, t) for s, t in zip(sizes, strides)])]
  np.testing.assert_array_equal(indices, want)
  assert sub_sizes == (3, 3, 10, 8, 4) and len(indices) == np.prod(sub_sizes)


def test_encode_dataset_is_in_grid_order_for_every_member():
  dataset = ProceduralDSprites()
  config = ml_collections.ConfigDict(dict(architecture="mlp", latent_dim=3, conv_impl="fast", mlp_width=16, init="pytorch"))
  model = models.create_model(config, dataset.image_shape)
  x0 = jnp.zeros((1, 64, 64, 1))
  params = jax.vmap(lambda k: model.init(k, x0, k)["params"])(jax.random.split(jax.random.PRNGKey(0), 2))
  mesh = parallel.create_mesh()  # 4 forced CPU devices (tests/conftest.py)
  indices = np.random.default_rng(0).choice(len(dataset), size=50, replace=False)  # 50: not a multiple of 16.
  mean, log_var = encode.encode_dataset(encode.model_encoder(model), params, dataset, mesh, indices=indices, batch_size=16, progress=False)
  assert mean.shape == log_var.shape == (2, 50, 3)
  images = jnp.asarray(dataset.images(indices))
  for m in range(2):
    p = jax.tree.map(lambda a: a[m], params)
    want_mean, want_log_var = model.apply({"params": p}, images, method=model.encode)
    np.testing.assert_allclose(mean[m], want_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_var[m], want_log_var, rtol=1e-5, atol=1e-5)
  assert not np.allclose(mean[0], mean[1])
