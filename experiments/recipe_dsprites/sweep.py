"""Which β-TCVAE recipe disentangles procedural dSprites within a CPU demo's budget?

Every arm is one run: a 5-member ensemble (seeds 0–4) of the same recipe, trained for
about the same wall time on a 2-core CPU as the others (the demo's budget: about 4–5
minutes of training per model), with Chen et al.'s MIG on an 11,520-image sub-grid
logged every `eval_every` steps (results.json "eval_history": images seen and
seconds) and the full-grid MIG at the end.

    python -m vae_jax.sweep --sweep=experiments/recipe_dsprites/sweep.py --protocol=cpu \
        --workdir=runs/recipe_cpu
    python -m vae_jax.report experiments/recipe_dsprites/results/cpu --out=experiments/recipe_dsprites

Finished runs' results.json are committed; the sweep skips them, so the study can be
continued on another machine. Protocols: `cpu` (the study), `screen` (below), `demo`
(below) and `test` (tiny, for tests).

The `demo` protocol is the demo itself: configs/default.py, one model per seed 0–4
(`--config.seed=S`, exactly what `make demo` trains for seed 0), each evaluated over
the whole grid; figures are left to `make demo`.

    python -m vae_jax.sweep --sweep=experiments/recipe_dsprites/sweep.py --protocol=demo \
        --workdir=runs/recipe_demo

The `screen` protocol trains further candidates for 500 steps only (128,000 images),
5 seeds each, and scores the sub-grid MIG at the end: in the `mws` arm a seed's
outcome is already visible at 128,000 images (the seeds above 0.2 there are the ones
above 0.2 at the end), so a screen costs a fifth of an arm. Its baseline is the `mws`
arm's first `eval_history` entry (the same recipe, seeds and sub-grid at the same images).

    python -m vae_jax.sweep --sweep=experiments/recipe_dsprites/sweep.py --protocol=screen \
        --workdir=runs/recipe_screen
"""

import importlib.util
import os

from vae_jax.configlib import base_config, shrink_to_test_size

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "default.py")

PROTOCOLS = ("cpu", "screen", "demo", "test")
SEEDS = 5

# Arm name -> the settings it changes from the current demo recipe (β-TCVAE, β = 6,
# MWS, Chen et al.'s MLP of width 1,200, PyTorch initialisation, batch 256, Adam 1e-3).
# Steps are chosen so that the arms take about the same wall time per model.
ARMS = {
    "mss": dict(estimator="mss"),
    "mws": dict(),
    "mss_warmup": dict(estimator="mss", warmup_steps=1000),
    "mss_log_sigma": dict(estimator="mss", scale_output="log_sigma"),
    "mss_lecun": dict(estimator="mss", init="lecun"),
    "mss_width600": dict(estimator="mss", mlp_width=600, steps_factor=2),
    "mss_batch1024": dict(estimator="mss", batch=1024, steps_factor=0.25),
    "mws_beta10": dict(beta=10.0),
    "mws_warmup200": dict(warmup_steps=200),
}
BASE_STEPS = 2_500

# The screen's candidates (MWS, batch 256, 500 steps), as ARMS.
SCREEN_ARMS = {
    "mws_beta10": dict(beta=10.0),
    "mws_beta16": dict(beta=16.0),
    "mws_lr3e-3": dict(learning_rate=3e-3),
    "mws_lecun": dict(init="lecun"),
    "mws_log_sigma": dict(scale_output="log_sigma"),
    "mws_width600": dict(mlp_width=600),
    "mws_warmup200": dict(warmup_steps=200),
    # The demo's recipe on the narrower MLP (about 2.4 times fewer FLOPs per image, for a
    # demo that fits 8 minutes on a CPU without AMX): does the warm-up keep posX and posY apart?
    "mws_width600_warmup200": dict(mlp_width=600, warmup_steps=200),
}
SCREEN_STEPS = 500


def run_config(protocol: str, arm: str):
  """The config of one arm: a 5-member ensemble over seeds 0–4."""
  a = (SCREEN_ARMS if protocol == "screen" else ARMS)[arm]
  config = base_config()
  config.seed = 0
  config.loss.objective = "betatcvae"
  config.loss.beta = a.get("beta", 6.0)
  config.loss.estimator = a.get("estimator", "mws")
  config.model.architecture = "mlp"
  config.model.mlp_width = a.get("mlp_width", 1200)
  config.model.init = a.get("init", "pytorch")
  config.model.scale_output = a.get("scale_output", "log_var")
  config.loss.warmup_steps = a.get("warmup_steps", 0)
  config.optimizer.learning_rate = a.get("learning_rate", 1e-3)
  config.batch_size = a.get("batch", 256)
  config.num_train_steps = int(BASE_STEPS * a.get("steps_factor", 1))
  config.ensemble.num_members = SEEDS
  config.data.pipeline = "numpy"
  config.checkpoint_every_steps = 250
  config.eval.every_steps = max(1, config.num_train_steps // 5)
  config.eval.final = "full"
  config.eval.figures = False
  config.eval.elbo_samples = 2_000
  if protocol == "screen":
    config.num_train_steps = SCREEN_STEPS
    config.eval.every_steps = 0
    config.eval.final = "subset"
  if protocol == "test":
    shrink_to_test_size(config)
    config.ensemble.num_members = 2
    config.batch_size = 16
    config.num_train_steps = 4
    config.checkpoint_every_steps = 2
    config.eval.every_steps = 2
  return config


def demo_config(seed: int):
  """configs/default.py with `seed` (the demo command with --config.seed=seed), no figures."""
  spec = importlib.util.spec_from_file_location("_vae_jax_demo_config", DEMO_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.seed = seed
  config.eval.figures = False
  return config


def get_sweep(protocol: str):
  """{arm name: config}, in the order the study runs them."""
  if protocol == "demo":
    return {f"seed{s}": demo_config(s) for s in range(SEEDS)}
  return {arm: run_config(protocol, arm) for arm in (SCREEN_ARMS if protocol == "screen" else ARMS)}
