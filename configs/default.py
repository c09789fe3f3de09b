"""The default job: β-TCVAE (β = 6, MWS, β warmed up over 200 steps) with Chen et al.'s
MLP on procedural dSprites.

Runs offline (the dSprites grid is rendered procedurally, not the original file):

    python -m vae_jax.main --config=configs/default.py --workdir=runs/demo

(`make demo` runs exactly this.) 2,500 steps of batch 256 (640k images), β rising
linearly from 0 to 6 over the first 200 (the recipe study's `mws_warmup200` arm,
experiments/recipe_dsprites/), then the evaluation over the whole 737,280-image grid
(metrics.json) and the figures (figures/: traversal grid and GIFs, reconstructions,
latent-vs-factor, MI heat map). Expected: full-grid Chen MIG (shape excluded) 0.262 for
seed 0, median 0.262 over seeds 0–4 with 3 of 5 above 0.2 (the demo table of README.md
and experiments/recipe_dsprites/README.md; `--protocol=demo` there reruns it); whether
a run disentangles still depends on its seed. On this project's 2-core AMD EPYC (AVX2)
host: about 11 minutes of training (3.7 steps/s) and 2.5 for the evaluation; about 4.5
minutes of training on the 2-core Xeon with AMX it had before (9.5 steps/s).
"""

from vae_jax.configlib import base_config


def get_config():
  config = base_config()
  config.num_train_steps = 2500
  config.loss.warmup_steps = 200
  config.eval.elbo_samples = 2_000  # The aggregate-posterior terms cost O(S·N·K); 2k points keep the demo short.
  return config
