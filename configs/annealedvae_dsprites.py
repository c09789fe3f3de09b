"""AnnealedVAE (γ = 1,000, C_max = 25 nats) on procedural dSprites.

    python -m vae_jax.main --config=configs/annealedvae_dsprites.py --workdir=runs/annealedvae_dsprites

Chen et al.'s MLP, 10 latents, 6,000 steps of batch 256. The capacity C(t) rises
linearly from 0 to C_max over the first 5,000 steps (loss.capacity_steps; Burgess et
al. and disentanglement_lib ramp over 100,000 steps of batch 64, out of reach on a
CPU), then stays at C_max. Change C_max with --config.loss.c_max=10, or sweep it with
--config.ensemble.num_members=3 --config.ensemble.hparams.c_max="(5., 25., 50.)".
The KL and its target are logged as kl and capacity.
Expected result: not measured yet (no run of this config has been made).
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "annealedvae"
  config.loss.capacity_weight = 1000.0
  config.loss.c_max = 25.0
  config.loss.capacity_steps = 5000
  config.num_train_steps = 6000
  return config
