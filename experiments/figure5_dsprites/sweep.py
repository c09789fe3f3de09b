"""Chen et al.'s Figure 5 on procedural dSprites: MIG by model and β over seeds.

One command runs a protocol (each run is one program: an ensemble over seeds and β,
vmapped and compiled once; an interrupted sweep resumes from its checkpoints):

    python -m vae_jax.sweep --sweep=experiments/figure5_dsprites/sweep.py --protocol=cpu \
        --workdir=runs/figure5_cpu

and one draws the figure and the table from the committed results:

    python -m vae_jax.report experiments/figure5_dsprites/results/cpu --out=experiments/figure5_dsprites

Protocols:
  cpu:          Chen et al.'s MLP networks; VAE (β = 1), β-VAE and β-TCVAE (MWS) at
                β ∈ {4, 8}; 3 seeds each (15 models), the same images per model. Sized
                for about 2 hours on a 2-core CPU (see README.md for the measured time).
  accelerator:  the conv64 networks; VAE, β-VAE and β-TCVAE at β ∈ {1, 2, 4, 6, 8, 10};
                5 seeds each (65 models). Its input is rendered from factor indices by
                NumPy (data.pipeline = "numpy"), so it needs JAX only, not TensorFlow.
  test:         a few steps of tiny networks, for the tests and the notebook's CPU check.

Every model is evaluated over the whole 737,280-image grid: Chen et al.'s MIG (shape
excluded), the histogram MIG, the ELBO decomposition and the likelihood.
"""

from vae_jax.configlib import base_config, shrink_to_test_size

PROTOCOLS = ("cpu", "accelerator", "test")
OBJECTIVES = ("vae", "betavae", "betatcvae")

_SETTINGS = {
    #              betas, seeds, architecture, steps, batch
    "cpu": dict(betas=(4.0, 8.0), seeds=3, architecture="mlp", steps=2_500, batch=256),
    "accelerator": dict(betas=(1.0, 2.0, 4.0, 6.0, 8.0, 10.0), seeds=5, architecture="conv64", steps=30_000,
                        batch=256),
    "test": dict(betas=(4.0,), seeds=2, architecture="mlp", steps=4, batch=16),
}


def run_config(protocol: str, objective: str):
  """The config of one run: an ensemble over every (β, seed) pair of `objective`."""
  s = _SETTINGS[protocol]
  betas = (1.0,) if objective == "vae" else s["betas"]
  config = base_config()
  config.seed = 0
  config.loss.objective = objective
  config.loss.estimator = "mws"
  config.model.architecture = s["architecture"]
  config.batch_size = s["batch"]
  config.num_train_steps = s["steps"]
  # Member m uses seed m (initialisation, sampling and data order): the β values take
  # consecutive blocks of seeds, and the three objectives see the same seeds.
  config.ensemble.num_members = len(betas) * s["seeds"]
  if objective != "vae":  # The VAE has no β (it is β = 1).
    config.ensemble.betas = tuple(b for b in betas for _ in range(s["seeds"]))
  config.data.pipeline = "numpy"
  config.checkpoint_every_steps = 500
  config.eval.final = "full"
  config.eval.figures = False
  config.eval.elbo_samples = 2_000
  if protocol == "test":
    shrink_to_test_size(config)
    config.checkpoint_every_steps = 2
  return config


def get_sweep(protocol: str):
  """{run name: config} for `protocol`: one ensemble run per objective."""
  return {objective: run_config(protocol, objective) for objective in OBJECTIVES}
