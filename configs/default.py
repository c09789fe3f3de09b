"""The default job: β-TCVAE (β = 6, MWS) with Chen et al.'s MLP on procedural dSprites.

Runs offline (the dSprites grid is rendered procedurally, not the original file):

    python -m vae_jax.main --config=configs/default.py --workdir=runs/demo

(`make demo` runs exactly this.) 1,500 steps of batch 256 (384k images), then the
evaluation over the whole 737,280-image grid (metrics.json) and the figures
(figures/: traversal grid and GIFs, reconstructions, latent-vs-factor, MI heat map).
See README.md for the wall time and the metrics measured on a 2-core CPU: at this
length the model has not disentangled yet (MIG 0.044 for seed 0, Chen et al.'s
estimator, shape excluded), so this is a check that everything runs. For
disentanglement results over seeds see experiments/figure5_dsprites/.
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.num_train_steps = 1500
  config.eval.elbo_samples = 2_000  # The aggregate-posterior terms cost O(S·N·K); 2k points keep the demo short.
  return config
