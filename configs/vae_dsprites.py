"""VAE (β = 1, the ELBO, analytic KL) on procedural dSprites.

    python -m vae_jax.main --config=configs/vae_dsprites.py --workdir=runs/vae_dsprites

Chen et al.'s MLP, 10 latents, Bernoulli likelihood, 4,000 steps of batch 256 (about 12
minutes on a 2-core CPU). The baseline the disentangling objectives are compared with:
expect a low MIG (Chen's estimator, shape excluded), around 0.03–0.1.
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "vae"
  config.loss.beta = 1.0
  config.num_train_steps = 4000
  return config
