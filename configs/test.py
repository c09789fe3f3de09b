"""A tiny config for tests: a few steps of a small MLP β-TCVAE on procedural dSprites.

    python -m vae_jax.main --config=configs/test.py --workdir=/tmp/vae_jax_test

Finishes in seconds; checks that the pieces fit, not that anything is learned.
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.data.pipeline = "numpy"
  config.batch_size = 16
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.checkpoint_every_steps = 3
  config.model.latent_dim = 4
  config.model.mlp_width = 64
  config.eval.final = "subset"
  config.eval.subset_images = 600
  config.eval.mig_samples = 600
  config.eval.histogram_points = 600
  config.eval.elbo_samples = 300
  config.eval.likelihood_images = 64
  config.eval.importance_samples = 4
  config.eval.batch_size = 256
  return config
