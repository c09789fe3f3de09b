"""FactorVAE (γ = 35, Kim & Mnih's value for dSprites) on procedural dSprites.

    python -m vae_jax.main --config=configs/factorvae_dsprites.py --workdir=runs/factorvae_dsprites

Chen et al.'s MLP, 10 latents, 4,000 steps of batch 256, the VAE's Adam at this
project's default (lr 1e-3). The TC discriminator is disentanglement_lib's: 6 × 1,000
LeakyReLU units, Adam lr 1e-4, β1 0.5, β2 0.9 (loss.discriminator_width,
loss.discriminator_layers, loss.discriminator_learning_rate). Change γ with
--config.loss.tc_weight=10; sweep it in one run with --config.ensemble.num_members=3
--config.ensemble.hparams.tc_weight="(10., 35., 100.)". The discriminator's metrics
(discriminator_loss, discriminator_accuracy, tc_estimate) are logged with the others.
Expected result: not measured yet (no run of this config has been made).
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.loss.objective = "factorvae"
  config.loss.tc_weight = 35.0
  config.num_train_steps = 4000
  return config
