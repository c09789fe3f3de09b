"""A tiny config for tests: a few steps of a small MLP β-TCVAE on procedural dSprites.

    python -m vae_jax.main --config=configs/test.py --workdir=/tmp/vae_jax_test

Finishes in seconds; checks that the pieces fit, not that anything is learned.
"""

from vae_jax.configlib import base_config, shrink_to_test_size


def get_config():
  config = shrink_to_test_size(base_config())
  config.data.pipeline = "numpy"
  config.batch_size = 16
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.checkpoint_every_steps = 3
  # Scalars to metrics.jsonl: no TensorFlow import, seconds off each of the suite's many
  # runs. The tests of the TensorBoard path turn it on.
  config.tensorboard = False
  return config
