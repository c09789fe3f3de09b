"""DIP-VAE-I (λ_od = 10, λ_d = 10·λ_od) on procedural dSprites.

    python -m vae_jax.main --config=configs/dipvae_dsprites.py --workdir=runs/dipvae_dsprites

Chen et al.'s MLP, 10 latents, 4,000 steps of batch 256. DIP-VAE-II (the covariance
of q(z) instead of the posterior means', λ_d = λ_od) is the same command with
--config.loss.objective=dipvae_ii. Change λ_od with --config.loss.lambda_od=5 (λ_d
follows it by the variant's factor, 10 or 1, as in disentanglement_lib); the
penalties are logged as dip_off_diagonal and dip_diagonal.
Expected result: not measured yet (no run of this config has been made).
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "dipvae_i"
  config.loss.lambda_od = 10.0
  config.num_train_steps = 4000
  return config
