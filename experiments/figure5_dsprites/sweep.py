"""Chen et al.'s Figure 5 on procedural dSprites: MIG by model and β over seeds.

One command runs a protocol (each run is one program: an ensemble over seeds and β,
vmapped and compiled once; an interrupted sweep resumes from its checkpoints):

    python -m vae_jax.sweep --sweep=experiments/figure5_dsprites/sweep.py --protocol=cpu \
        --workdir=runs/figure5_cpu

and one draws the figure and the table from the committed results:

    python -m vae_jax.report experiments/figure5_dsprites/results/cpu --out=experiments/figure5_dsprites

Protocols:
  cpu_v2:       the power study: Chen et al.'s MLP, the recipe study's length (2,500 steps
                of 256, experiments/recipe_dsprites/); VAE, β-VAE and β-TCVAE (MWS) at
                β ∈ {2, 4, 6, 8}, 5 seeds each (45 models), one run per (objective, β) with
                seeds 0–4 in every cell, so every comparison is between the same five
                initialisations and data orders. Runs are named <objective>_beta<β>
                (the VAE: vae).
  cpu:          Chen et al.'s MLP networks; VAE (β = 1), β-VAE and β-TCVAE (MWS) at
                β ∈ {4, 8}, FactorVAE at γ = β − 1 ∈ {3, 7}, DIP-VAE-I and -II at
                λ_od = 10, AnnealedVAE at C_max = 25 nats (γ = 1,000, C rising over the
                first 2,000 steps); 3 seeds each (30 models), the same images per model;
                the zoo's objectives one run per value.
  accelerator:  the conv64 networks; VAE, β-VAE and β-TCVAE at β ∈ {1, 2, 4, 6, 8, 10},
                FactorVAE at γ = β − 1, DIP-VAE-I/II at λ_od ∈ {1, 10, 100},
                AnnealedVAE at C_max ∈ {5, 25, 50}; 5 seeds each. Its input is rendered
                from factor indices by NumPy (data.pipeline = "numpy"), so it needs JAX
                only, not TensorFlow.
  test:         a few steps of tiny networks (VAE, β-VAE, β-TCVAE), for the tests and the
                notebook's CPU check.

FactorVAE's γ weighs the TC on top of the ELBO's own, so γ = β − 1 puts the same total
weight on the TC as β-TCVAE's β (Chen et al. compare the two at matched weights).

Every model is evaluated over the whole 737,280-image grid: Chen et al.'s MIG (shape
excluded), the histogram MIG, the ELBO decomposition and the likelihood.
"""

from vae_jax.configlib import base_config, shrink_to_test_size

PROTOCOLS = ("cpu", "cpu_v2", "accelerator", "test")
OBJECTIVES = ("vae", "betavae", "betatcvae", "factorvae", "dipvae_i", "dipvae_ii", "annealedvae")

_SETTINGS = {
    #              betas, seeds, architecture, steps, batch
    "cpu": dict(betas=(4.0, 8.0), seeds=3, architecture="mlp", steps=2_500, batch=256),
    "cpu_v2": dict(betas=(2.0, 4.0, 6.0, 8.0), seeds=5, architecture="mlp", steps=2_500, batch=256, paired=True),
    "accelerator": dict(betas=(1.0, 2.0, 4.0, 6.0, 8.0, 10.0), seeds=5, architecture="conv64", steps=30_000,
                        batch=256),
    "test": dict(betas=(4.0,), seeds=2, architecture="mlp", steps=4, batch=16),
}
# The swept hyperparameter of the objectives without β, per protocol: (name, values).
_ZOO = {
    "cpu": dict(dipvae=("lambda_od", (10.0,)), annealedvae=("c_max", (25.0,))),
    "accelerator": dict(dipvae=("lambda_od", (1.0, 10.0, 100.0)), annealedvae=("c_max", (5.0, 25.0, 50.0))),
    "test": dict(dipvae=("lambda_od", (10.0,)), annealedvae=("c_max", (25.0,))),
}
# Steps over which AnnealedVAE's capacity rises to C_max, as a share of the run.
CAPACITY_SHARE = 0.8


def swept_hparam(protocol: str, objective: str) -> tuple[str, tuple[float, ...]]:
  """(hyperparameter name, its values) that `objective`'s run sweeps in `protocol` ("" for the VAE)."""
  betas = _SETTINGS[protocol]["betas"]
  if objective == "vae":
    return "", (1.0,)
  if objective in ("betavae", "betatcvae"):
    return "beta", betas
  if objective == "factorvae":
    return "tc_weight", tuple(b - 1.0 for b in betas)
  return _ZOO[protocol]["dipvae" if objective.startswith("dipvae") else objective]


def run_config(protocol: str, objective: str, value_index: int | None = None):
  """The config of one run: an ensemble over every (hyperparameter, seed) pair of
  `objective`, or over the seeds of its `value_index`-th value only (seeds 0.. in a paired
  protocol, else that value's block in a whole-grid run)."""
  s = _SETTINGS[protocol]
  hparam, values = swept_hparam(protocol, objective)
  config = base_config()
  config.seed = 0
  if value_index is not None:
    config.seed = 0 if s.get("paired") else value_index * s["seeds"]
    values = values[value_index:value_index + 1]
  config.loss.objective = objective
  config.loss.estimator = "mws"
  config.model.architecture = s["architecture"]
  config.batch_size = s["batch"]
  config.num_train_steps = s["steps"]
  # Member m uses seed m (initialisation, sampling and data order): the values take
  # consecutive blocks of seeds, and the objectives see the same seeds.
  config.ensemble.num_members = len(values) * s["seeds"]
  if hparam == "beta":
    config.ensemble.betas = tuple(v for v in values for _ in range(s["seeds"]))
  elif hparam:  # The VAE has no hyperparameter (it is β = 1).
    config.ensemble.hparams[hparam] = tuple(v for v in values for _ in range(s["seeds"]))
  if objective == "annealedvae":
    config.loss.capacity_steps = int(CAPACITY_SHARE * s["steps"])
  config.data.pipeline = "numpy"
  config.checkpoint_every_steps = 500
  config.eval.final = "full"
  config.eval.figures = False
  config.eval.elbo_samples = 2_000
  if protocol == "test":
    shrink_to_test_size(config)
    config.checkpoint_every_steps = 2
  return config


# On the CPU the zoo's objectives run one value per run (a few models each, so each run's
# results land within an hour), the cheapest first.
_CPU_ZOO_RUNS = (("dipvae_i", 0), ("annealedvae", 0), ("dipvae_ii", 0), ("factorvae", 1), ("factorvae", 0))


def get_sweep(protocol: str):
  """{run name: config} for `protocol`: one ensemble run per objective (test: the first
  three; cpu: the zoo's objectives one run per value, named <objective>_<hyperparameter><value>;
  cpu_v2: the VAE, then β-TCVAE and β-VAE one run per β)."""
  if protocol == "test":
    return {objective: run_config(protocol, objective) for objective in OBJECTIVES[:3]}
  if protocol == "cpu_v2":  # One run per β (about 45 min each on the 2-core CPU), the largest β first.
    runs = {"vae": run_config(protocol, "vae")}
    betas = _SETTINGS[protocol]["betas"]
    for i in reversed(range(len(betas))):
      for objective in ("betatcvae", "betavae"):
        runs[f"{objective}_beta{betas[i]:g}"] = run_config(protocol, objective, i)
    return runs
  if protocol != "cpu":
    return {objective: run_config(protocol, objective) for objective in OBJECTIVES}
  runs = {objective: run_config(protocol, objective) for objective in OBJECTIVES[:3]}
  for objective, i in _CPU_ZOO_RUNS:
    hparam, values = swept_hparam(protocol, objective)
    runs[f"{objective}_{hparam}{values[i]:g}"] = run_config(protocol, objective, i)
  return runs
