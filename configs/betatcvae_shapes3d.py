"""β-TCVAE (α = γ = 1, β = 6, MWS) with the conv64 networks on PROCEDURAL 3dshapes.

Runs offline: the 480,000-image 3dshapes grid is rendered procedurally
(data.name='shapes3d_procedural'), not read from DeepMind's 3dshapes.h5, so results
are results on a stand-in and are labelled as such in metrics.json.

    python -m vae_jax.main --config=configs/betatcvae_shapes3d.py --workdir=runs/betatcvae_shapes3d

Needs no files. 2,000 steps of batch 256 (512k images, 1.07 epochs). EXPECTED_RESULT
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.data.name = "shapes3d_procedural"
  config.model.architecture = "conv64"
  config.loss.objective = "betatcvae"
  config.loss.likelihood = "bernoulli"  # Cross-entropy on RGB intensities, as disentanglement_lib does.
  config.loss.beta = 6.0
  config.loss.estimator = "mws"
  config.num_train_steps = 2000
  config.log_every_steps = 100
  # The importance-weighted log p(x) decodes likelihood_images x importance_samples images
  # in one batch; with conv64 the default 2,000 x 20 needs tens of GB.
  config.eval.likelihood_images = 256
  return config
