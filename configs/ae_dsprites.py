"""Plain autoencoder (mean squared error, no sampling, no KL) on procedural dSprites.

    python -m vae_jax.main --config=configs/ae_dsprites.py --workdir=runs/ae_dsprites

Chen et al.'s MLP, 10 latents, 4,000 steps of batch 256 (about 12 minutes on a 2-core
CPU). Reconstructions become sharp, but nothing pushes the code towards independent
factors: expect a low MIG (the AE's log-variance is fixed at 0, so the histogram MIG
on the posterior means is the meaningful one for it).
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "ae"
  config.num_train_steps = 4000
  return config
