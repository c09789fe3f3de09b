"""β-VAE (β = 4, as Higgins et al. use for dSprites) on procedural dSprites.

    python -m vae_jax.main --config=configs/betavae_dsprites.py --workdir=runs/betavae_dsprites

Chen et al.'s MLP, 10 latents, 4,000 steps of batch 256 (about 12 minutes on a 2-core
CPU). Change β with --config.loss.beta=8. Expect a MIG (Chen's estimator, shape
excluded) above the plain VAE's and, at the same β, usually below β-TCVAE's.
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "betavae"
  config.loss.beta = 4.0
  config.num_train_steps = 4000
  return config
