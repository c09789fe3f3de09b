"""The base experiment config, and the checks every config passes before a run.

Config files in configs/ start from `base_config()` and change what their
experiment needs. The returned config is locked: a key that does not exist (a typo
on the command line, say) is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import ml_collections

from vae_jax import losses, metrics, models, objectives
from vae_jax.data import CACHE_MODES, DATASETS, FACTORLESS_DATASETS, PROCEDURAL_DATASETS, get_dataset
from vae_jax.data import holdout as holdout_lib
from vae_jax.data.grid import FactorDataset


def base_config() -> ml_collections.ConfigDict:
  """Every key a run reads, with the defaults of the β-TCVAE MLP on procedural dSprites."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "dsprites_procedural"
  c.data.pipeline = "tf"  # "tf" (tf.data) or "numpy" (no TensorFlow needed).
  c.data.prefetch = 4
  c.data.workers = 2
  # Real datasets: the TFDS data directory ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets;
  # manual files go in <data_dir>/downloads/manual), and how the decoded grid cached
  # there is held: "auto" (in RAM if it fits, else memory-mapped), "memory" or "mmap".
  c.data.data_dir = ""
  c.data.cache = "auto"
  # Train on part of the grid only, e.g. "shape=2" leaves dSprites' hearts out (for
  # anomaly detection); "" trains on everything. Evaluation always sees the whole grid.
  c.data.holdout = ""

  c.model = ml_collections.ConfigDict()
  c.model.architecture = "mlp"  # "mlp" or "conv64".
  c.model.latent_dim = 10
  c.model.conv_impl = "fast"  # "fast" (matmul-friendly rewrite) or "xla" (textbook layers).
  c.model.mlp_width = 1200  # Hidden width of the MLP encoder and decoder (Chen et al.: 1200).
  # Initialisation: "pytorch" (U(±1/√fan_in) for weights and biases, as Chen et al.'s
  # code) or "lecun" (Flax's default). It changes what a run learns; docs/ARCHITECTURE.md.
  c.model.init = "pytorch"
  # What the encoder's scale head outputs: "log_var" (log σ²) or "log_sigma" (log σ, as
  # Chen et al.'s code; log σ² = 2·output). It changes the training dynamics, not the model class.
  c.model.scale_output = "log_var"

  c.loss = ml_collections.ConfigDict()
  c.loss.objective = "betatcvae"  # A module of vae_jax/objectives: "ae", "vae", "betavae", "betatcvae", ...
  c.loss.likelihood = "bernoulli"  # "bernoulli" (logits) or "gaussian" (unit variance).
  c.loss.estimator = "mws"  # "mws" or "mss" minibatch estimator of log q(z).
  # Every objective's hyperparameters, with their defaults (β-TCVAE: alpha weighs the
  # index-code MI, beta the TC, gamma the dimension-wise KL; β-VAE: beta the KL).
  for name, default in objectives.all_hparams().items():
    c.loss[name] = float(default)
  for name, default in objectives.all_settings().items():  # Static settings of the objectives.
    c.loss[name] = default

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8

  c.batch_size = 256
  c.num_train_steps = 2000

  # Ensembles: num_members models trained as one vmapped program. Member m uses seed
  # `seed + m` (initialisation, sampling and data order). ensemble.hparams.<name>, if
  # not empty, gives each member its own value of the objective's hyperparameter
  # (length num_members), e.g. --config.ensemble.hparams.beta="(1., 4., 8.)";
  # ensemble.betas is the same as ensemble.hparams.beta.
  c.ensemble = ml_collections.ConfigDict()
  c.ensemble.num_members = 1
  c.ensemble.betas = ()
  c.ensemble.hparams = ml_collections.ConfigDict({name: () for name in objectives.all_hparams()})

  # Evaluation: a cheap sub-grid every eval.every_steps during training (0: never), and
  # at the end eval.final: "full" (the whole dataset), "subset" (the sub-grid) or "none".
  # --mode=evaluate always evaluates the whole dataset.
  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0
  # Metrics of the evaluation run: modules of vae_jax/metrics, in this order.
  c.eval.metrics = ("mig", "mig_histogram", "elbo_decomposition", "active_units", "likelihood")
  c.eval.final = "full"
  c.eval.subset_images = 12_000  # Size bound of the sub-grid used during training.
  c.eval.batch_size = 2048
  c.eval.mig_samples = 10_000  # Evaluation points of Chen et al.'s MIG estimator.
  c.eval.mig_factors = ()  # Factor names Chen's MIG counts; () = the dataset's default.
  c.eval.histogram_points = 10_000  # disentanglement_lib's histogram MIG protocol.
  c.eval.histogram_bins = 20
  c.eval.elbo_samples = 10_000  # Evaluation points of the aggregate-posterior decomposition.
  c.eval.likelihood_images = 2_000  # Images for the ELBO and importance-weighted log p(x).
  c.eval.importance_samples = 20
  c.eval.figures = True  # Write figures/ (traversals, GIFs, reconstructions, ...) after training.

  # The metric modules' own settings (vae_jax/metrics/*.py SETTINGS; e.g. score_train_points,
  # dci_importance: "gbt" as disentanglement_lib or "lasso", fast).
  for name, default in metrics.all_settings().items():
    if name not in c.eval:
      c.eval[name] = default

  c.log_every_steps = 100
  # TensorBoard event files in the workdir (clu's writers; imports TensorFlow, several
  # seconds of start-up). False, or no TensorFlow installed: scalars go to metrics.jsonl.
  c.tensorboard = True
  c.checkpoint_every_steps = 500
  c.max_checkpoints_to_keep = 3
  c.multi_host = False  # Call jax.distributed.initialize() (multi-host TPU pods, several processes).
  # The device mesh ('members', 'data'): parallel.member_devices devices split the
  # ensemble members (each member's state lives on its group only), the rest split each
  # member's batch. 0 chooses: gcd(num_members, devices) on accelerators, 1 on CPU.
  c.parallel = ml_collections.ConfigDict()
  c.parallel.member_devices = 0
  c.lock()  # Config files and the command line may change keys, not invent them.
  return c


def conv64_betavae_config(dataset: str, beta: float, latent_dim: int = 10) -> ml_collections.ConfigDict:
  """A β-VAE config for one of the real 64×64 datasets (data.name `dataset`).

  What the shipped configs for those datasets share: the conv64 networks, a Bernoulli
  likelihood, Adam at disentanglement_lib's 1e-4, 20,000 steps of base_config's batch
  (256), a log line every 200 steps and a checkpoint every 2,000. Each config adds its
  own evaluation factors.
  """
  config = base_config()
  config.data.name = dataset
  config.model.architecture = "conv64"
  config.model.latent_dim = latent_dim
  config.loss.objective = "betavae"
  config.loss.likelihood = "bernoulli"
  config.loss.beta = beta
  config.optimizer.learning_rate = 1e-4
  config.num_train_steps = 20_000
  config.log_every_steps = 200
  config.checkpoint_every_steps = 2000
  return config


def member_hparams(config: ml_collections.ConfigDict) -> dict[str, tuple[float, ...]]:
  """Each of the objective's hyperparameters per ensemble member: {name: [num_members] values}.

  ensemble.hparams.<name> (or ensemble.betas for beta) if given, else loss.<name> for
  every member.
  """
  num = config.ensemble.num_members
  out = {}
  for name in objectives.get(config.loss.objective).HPARAMS:
    values = tuple(config.ensemble.hparams.get(name, ()))
    if name == "beta" and config.ensemble.betas:
      values = tuple(config.ensemble.betas)
    out[name] = tuple(float(v) for v in values) if values else (float(config.loss[name]),) * num
  return out


def member_betas(config: ml_collections.ConfigDict) -> tuple[float, ...]:
  """β of each ensemble member; ValueError for an objective without β."""
  hparams = member_hparams(config)
  if "beta" not in hparams:
    raise ValueError(f"Objective {config.loss.objective!r} has no β.")
  return hparams["beta"]


def shrink_to_test_size(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Makes `config`'s networks and evaluation tiny (seconds on a CPU), for tests; returns it.

  A 4-latent MLP of width 64, and the sub-grid evaluation on a few hundred points.
  """
  config.model.latent_dim = 4
  config.model.mlp_width = 64
  config.eval.final = "subset"
  config.eval.subset_images = 600
  config.eval.mig_samples = 600
  config.eval.histogram_points = 600
  config.eval.elbo_samples = 300
  config.eval.likelihood_images = 64
  config.eval.importance_samples = 4
  config.eval.batch_size = 256
  config.eval.score_train_points = 500
  config.eval.score_test_points = 200
  config.eval.score_variance_points = 500
  return config


def validate_config(config: ml_collections.ConfigDict, dataset: FactorDataset | None = None) -> None:
  """Raises ValueError naming the key and the fix for any value a run cannot use.

  The settings that name parts of the dataset (eval.mig_factors, data.holdout) are
  checked against `dataset`, or, for a procedural dataset (cheap to build), against
  config.data's; for a real dataset without `dataset` they are checked by
  `validate_dataset` once it is loaded (training and rundir.restore_run do).
  """

  def check(ok: bool, message: str) -> None:
    if not ok:
      raise ValueError(f"Invalid config: {message}")

  check(config.data.name in DATASETS, f"data.name={config.data.name!r}; use one of {DATASETS}.")
  check(config.data.pipeline in ("tf", "numpy"), f"data.pipeline={config.data.pipeline!r}; use 'tf' or 'numpy'.")
  check(isinstance(config.data.data_dir, str), f"data.data_dir={config.data.data_dir!r}; give a directory path or ''.")
  check(config.data.cache in CACHE_MODES, f"data.cache={config.data.cache!r}; use one of {CACHE_MODES}.")
  check(config.data.name not in FACTORLESS_DATASETS or (config.eval.final == "none" and config.eval.every_steps == 0),
        f"data.name={config.data.name!r} has no ground-truth factors, so the factor metrics cannot run on it; set "
        "eval.final='none' and eval.every_steps=0.")
  check(config.model.architecture in models.ARCHITECTURES,
        f"model.architecture={config.model.architecture!r}; use one of {models.ARCHITECTURES}.")
  check(config.model.conv_impl in ("fast", "xla"), f"model.conv_impl={config.model.conv_impl!r}; use 'fast' or 'xla'.")
  check(config.model.init in models.INITS, f"model.init={config.model.init!r}; use one of {models.INITS}.")
  check(config.model.scale_output in models.SCALE_OUTPUTS,
        f"model.scale_output={config.model.scale_output!r}; use one of {models.SCALE_OUTPUTS}.")
  check(config.loss.warmup_steps >= 0, f"loss.warmup_steps={config.loss.warmup_steps}; 0 disables the β warm-up.")
  check(config.model.latent_dim >= 1, f"model.latent_dim={config.model.latent_dim}; must be at least 1.")
  check(config.loss.objective in objectives.available(),
        f"loss.objective={config.loss.objective!r}; use one of {objectives.available()}.")
  check(config.loss.likelihood in losses.LIKELIHOODS,
        f"loss.likelihood={config.loss.likelihood!r}; use one of {losses.LIKELIHOODS}.")
  check(config.loss.estimator in losses.ESTIMATORS,
        f"loss.estimator={config.loss.estimator!r}; use one of {losses.ESTIMATORS}.")
  check(config.batch_size >= 2, f"batch_size={config.batch_size}; the TC estimators need at least 2.")
  check(config.num_train_steps >= 0, f"num_train_steps={config.num_train_steps}; must be non-negative.")
  check(config.ensemble.num_members >= 1, f"ensemble.num_members={config.ensemble.num_members}; must be at least 1.")
  check(not config.ensemble.betas or not config.ensemble.hparams.beta,
        "both ensemble.betas and ensemble.hparams.beta are set; give one of them.")
  own = objectives.get(config.loss.objective).HPARAMS
  per_member = {"betas" if name == "beta" else f"hparams.{name}": values
                for name, values in [("beta", config.ensemble.betas), *config.ensemble.hparams.items()] if values}
  for key, values in per_member.items():
    name = "beta" if key == "betas" else key.split(".", 1)[1]
    check(name in own, f"ensemble.{key} is set, but objective {config.loss.objective!r} has no hyperparameter "
          f"{name!r} (its hyperparameters: {sorted(own) or 'none'}); leave it empty.")
    check(len(values) == config.ensemble.num_members,
          f"ensemble.{key} has {len(values)} values but ensemble.num_members={config.ensemble.num_members}; "
          "give one value per member or leave it empty.")
  for name, values in member_hparams(config).items():
    check(all(v >= 0 for v in values), f"loss.{name} (or its per-member values) = {values}; weights must be >= 0.")
  check(config.optimizer.learning_rate > 0, f"optimizer.learning_rate={config.optimizer.learning_rate}; must be > 0.")
  check(config.optimizer.eps > 0, f"optimizer.eps={config.optimizer.eps}; must be > 0.")
  check(config.eval.final in ("full", "subset", "none"), f"eval.final={config.eval.final!r}; use 'full', 'subset' or 'none'.")
  unknown = [m for m in config.eval.metrics if m not in metrics.available()]
  check(not unknown, f"eval.metrics names {unknown}; use names from {metrics.available()}.")
  check(config.eval.every_steps >= 0, f"eval.every_steps={config.eval.every_steps}; 0 disables it.")
  check(isinstance(config.parallel.member_devices, int) and config.parallel.member_devices >= 0
        and (config.parallel.member_devices == 0 or config.ensemble.num_members % config.parallel.member_devices == 0),
        f"parallel.member_devices={config.parallel.member_devices}; use 0 (automatic) or a divisor of "
        f"ensemble.num_members={config.ensemble.num_members} (and of the device count).")
  for key in ("log_every_steps", "checkpoint_every_steps", "max_checkpoints_to_keep"):
    check(config[key] >= 1, f"{key}={config[key]}; must be at least 1.")
  if dataset is None and config.data.name in PROCEDURAL_DATASETS:
    dataset = get_dataset(config.data)
  if dataset is not None:
    validate_dataset(config, dataset)


def validate_dataset(config: ml_collections.ConfigDict, dataset: FactorDataset) -> None:
  """Raises ValueError when eval.mig_factors or data.holdout name what `dataset` (the full grid) lacks."""
  names = tuple(dataset.factor_names)
  unknown = [n for n in config.eval.mig_factors if n not in names]
  if unknown:
    raise ValueError(f"Invalid config: eval.mig_factors names {unknown}, which {dataset.name} lacks; use factors "
                     f"of {names} or () for the default.")
  spec = (config.data.holdout or "").strip()
  if not spec:
    return
  try:
    mask = holdout_lib.holdout_mask(spec, dataset)
  except ValueError as e:
    raise ValueError(f"Invalid config: {e}") from None
  if not mask.any():
    raise ValueError(f"Invalid config: data.holdout={spec!r} holds out no image of {dataset.name}.")
  if mask.all():
    raise ValueError(f"Invalid config: data.holdout={spec!r} holds out every image of {dataset.name}; nothing is "
                     "left to train on.")


# Keys that may differ between a workdir's config.json and the config that resumes it
# (or evaluates, visualises or exports it): how long to train; what to evaluate and
# draw; how often to log and checkpoint and how many checkpoints to keep, and where the
# scalars go (tensorboard); how and from
# where the input is read (the batches are the same); how processes start and how the
# devices are split (the same updates up to float32 rounding). Every other
# key (seed, data.name, data.holdout, model.*, loss.*, optimizer.*, batch_size,
# ensemble.*) defines what the checkpoints hold, and a change is refused.
RESUMABLE_KEYS = ("num_train_steps", "eval", "log_every_steps", "checkpoint_every_steps", "max_checkpoints_to_keep",
                  "tensorboard", "data.prefetch", "data.workers", "data.pipeline", "data.data_dir", "data.cache",
                  "multi_host", "parallel")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a.b.c": value} of a nested mapping (a ConfigDict or a config.json's dict)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, (Mapping, ml_collections.ConfigDict)):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_differences(saved: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
  """{key: (saved value, config's value)} for every key outside RESUMABLE_KEYS whose values differ.

  saved: a config as written to a workdir's config.json (JSON-decoded). Values are
  compared in their JSON form (tuples as lists). Keys only one side has (a key added
  to base_config after the workdir was written, say) are not compared.
  """
  old = flatten(saved)
  new = flatten(json.loads(config.to_json()))

  def resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)

  return {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if not resumable(k) and old[k] != new[k]}
