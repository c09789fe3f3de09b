"""β-TCVAE (α = γ = 1, β = 6) on procedural dSprites, minibatch-weighted sampling.

    python -m vae_jax.main --config=configs/betatcvae_dsprites.py --workdir=runs/betatcvae_dsprites

Chen et al.'s MLP, 10 latents, 6,000 steps of batch 256 (1.5M images, about 20 minutes
on a 2-core CPU). Select the stratified estimator with --config.loss.estimator=mss.
Expect a MIG (Chen's estimator, shape excluded) around 0.3 (one seed; seeds vary by
about ±0.1), with posX, posY and scale each captured by one latent.
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "betatcvae"
  config.loss.beta = 6.0
  config.loss.estimator = "mws"
  config.num_train_steps = 6000
  return config
