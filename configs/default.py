"""The default job: β-TCVAE (β = 6, MWS) with Chen et al.'s MLP on procedural dSprites.

Runs offline (the dSprites grid is rendered procedurally, not the original file):

    python -m vae_jax.main --config=configs/default.py --workdir=runs/demo

(`make demo` runs exactly this.) 2,000 steps of batch 256 (512k images) take about 6
minutes on a 2-core CPU; the run ends by evaluating the model and writing
runs/demo/metrics.json. Expect the MIG (Chen et al.'s estimator, shape excluded) to
reach roughly 0.2–0.3: β-TCVAE separates posX, posY and scale first.
"""

from vae_jax.configlib import base_config


def get_config():
  return base_config()
