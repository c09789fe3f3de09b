"""The evaluation run: encode a factor grid once for all members, then every metric of
`eval.metrics` (vae_jax.metrics) per member.

`evaluate_ensemble` encodes the whole dataset (or a cheap sub-grid during training)
and returns one `rundir.MemberResults` per member. The default metrics: Chen et al.'s
MIG (sampling estimator, dSprites' shape left out), disentanglement_lib's histogram
MIG (all factors), the ELBO decomposition over the aggregate posterior, active units,
and the ELBO and importance-weighted log p(x) on a random subset of images. Every
MIG names its estimator and the factors it counted.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae_jax import losses, metrics as metrics_lib, parallel, rundir, writers
from vae_jax.data.grid import FactorDataset, default_mig_factors, index_to_factors
from vae_jax.evaluation import encode as encode_lib

DEFAULT_METRICS = ("mig", "mig_histogram", "elbo_decomposition", "active_units", "likelihood")


def mig_factors(dataset: FactorDataset, names: Sequence[str] = ()) -> tuple[int, ...]:
  """Indices of the factors Chen et al.'s MIG counts: `names`, or the dataset's default."""
  return default_mig_factors(dataset, names)


def subgrid_strides(factor_sizes: Sequence[int], max_images: int) -> tuple[int, ...]:
  """Strides that thin the largest factors (halving repeatedly) until the grid has at most max_images."""
  strides = [1] * len(factor_sizes)
  sizes = list(factor_sizes)
  while int(np.prod(sizes)) > max_images and max(sizes) > 1:
    f = int(np.argmax(sizes))
    strides[f] *= 2
    sizes[f] = len(range(0, factor_sizes[f], strides[f]))
  return tuple(strides)


def evaluated_indices(factor_sizes: Sequence[int], full: bool, subset_images: int) -> tuple[np.ndarray, tuple[int, ...]]:
  """(flat indices [N], grid sizes) of the whole grid, or of the sub-grid of at most subset_images."""
  if full:
    return np.arange(int(np.prod(factor_sizes))), tuple(factor_sizes)
  return encode_lib.subgrid_indices(factor_sizes, subgrid_strides(factor_sizes, subset_images))


def make_likelihood_fn(encoder: Callable, decoder: Callable, likelihood: str, num_importance: int):
  """jit((params, x [B, ...], key) -> {"reconstruction", "elbo", "log_px_iw"} [B]) for one member.

  encoder(params, x) -> (mean, log_var); decoder(params, z) -> logits or means.
  """

  def one_member(params, x, key):
    mean, log_var = encoder(params, x)

    def one_sample(k):
      z = losses.reparameterize(k, mean, log_var)
      decoded = decoder(params, z)
      log_px_z = losses.reconstruction_log_likelihood(dict(decoded=decoded), x, likelihood)
      log_pz = jnp.sum(losses.log_standard_normal(z), -1)
      log_qz_x = jnp.sum(losses.log_normal(z, mean, log_var), -1)
      return log_px_z, log_px_z + log_pz - log_qz_x

    log_px_z, log_w = jax.vmap(one_sample)(jax.random.split(key, num_importance))  # [K, B]
    return dict(
        reconstruction=-jnp.mean(log_px_z, 0),
        elbo=jnp.mean(log_px_z, 0) - losses.gaussian_kl(mean, log_var),
        log_px_iw=jax.nn.logsumexp(log_w, 0) - jnp.log(num_importance),
    )

  return jax.jit(one_member)


def draw_points(metric_names: Sequence[str], eval_config: ml_collections.ConfigDict, num_points: int,
                seed: int) -> dict[str, np.ndarray]:
  """{metric: row indices} of the random subsets the metrics ask for (their SUBSET setting).

  Drawn without replacement from one NumPy generator seeded with `seed`, in the order
  of `metric_names`, so the same settings always give the same points.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for name in metric_names:
    setting = getattr(metrics_lib.get(name), "SUBSET", None)
    if setting:
      out[name] = rng.choice(num_points, size=min(eval_config[setting], num_points), replace=False)
  return out


def evaluate_ensemble(
    eval_config: ml_collections.ConfigDict,
    model,
    objective,
    params: Any,
    dataset: FactorDataset,
    mesh,
    *,
    full: bool,
    seed: int,
) -> list[rundir.MemberResults]:
  """Per-member evaluation of the VAE's params [S, ...] on the whole grid (`full`) or a sub-grid.

  eval_config: the `eval` settings (metrics, sample sizes); objective: how the model
  encodes (vae_jax.objectives). `seed` fixes every random choice (evaluation points,
  posterior samples), so the same parameters always get the same numbers.
  """
  ec = eval_config
  if not dataset.factor_sizes:
    raise ValueError(f"{dataset.name} has no ground-truth factors, so MIG and the grid evaluation do not apply; "
                     "set --config.eval.final=none and --config.eval.every_steps=0.")
  names = tuple(ec.metrics)
  params, mesh = parallel.process_local(params, mesh)  # Members on other hosts: gathered, evaluated here too.
  indices, sizes = evaluated_indices(dataset.factor_sizes, full, ec.subset_images)
  encoder = functools.partial(objective.encode, model.apply)
  means, log_vars = encode_lib.encode_dataset(encoder, params, dataset, mesh, indices=indices,
                                              batch_size=ec.batch_size, progress=full)
  factors = index_to_factors(indices, dataset.factor_sizes)
  counted = mig_factors(dataset, ec.mig_factors)
  points = draw_points(names, ec, len(indices), seed)
  likelihood_fn = make_likelihood_fn(encoder, lambda p, z: model.apply({"params": p}, z, method="decode"),
                                     objective.likelihood, ec.importance_samples)
  member_keys = jax.random.split(jax.random.PRNGKey(seed), means.shape[0])
  ctxs = []
  for m in range(means.shape[0]):
    member_params = jax.tree.map(lambda a: a[m], params)
    ctxs.append(metrics_lib.MetricContext(
        posterior=metrics_lib.Posterior(means[m], log_vars[m], sizes, indices, factors),
        dataset=dataset, settings=ec, key=member_keys[m], points=points, counted_factors=counted,
        likelihood_fn=lambda x, key, p=member_params: likelihood_fn(p, jnp.asarray(x), key)))
  per_member = compute_metrics(names, ctxs)
  return [rundir.MemberResults(member=m, seed=-1, hparams={}, images=int(len(indices)), subgrid_sizes=list(sizes),
                               metrics=per_member[m]) for m in range(len(ctxs))]


def compute_metrics(names: Sequence[str], ctxs: Sequence[metrics_lib.MetricContext]) -> list[dict[str, dict]]:
  """[{metric name: result}] per member: each metric's compute(ctx) per member, and an ensemble
  metric's (ENSEMBLE = True, e.g. UDR) compute_ensemble(ctxs) once over all members, in `names` order."""
  out = [{} for _ in ctxs]
  for name in names:
    module = metrics_lib.get(name)
    if getattr(module, "ENSEMBLE", False):
      for member, result in zip(out, module.compute_ensemble(ctxs)):
        member[name] = result
    else:
      for member, ctx in zip(out, ctxs):
        member[name] = module.compute(ctx)
  return out


def member_scalars(result: rundir.MemberResults) -> dict[str, float]:
  """Every metric's scalars of one member: {name: value}."""
  out = {}
  for name, value in result.metrics.items():
    if name in metrics_lib.available():
      out.update({k: float(v) for k, v in metrics_lib.get(name).scalars(value).items()})
  return out


def summary_scalars(results: Sequence[rundir.MemberResults], prefix: str) -> dict[str, float]:
  """Flat scalars for the metric writers: prefix/name, with /member_m for ensembles."""
  out = {}
  for m, r in enumerate(results):
    suffix = f"/member_{m}" if len(results) > 1 else ""
    out.update({f"{prefix}/{k}{suffix}": v for k, v in member_scalars(r).items()})
  return out


def log_line(result: rundir.MemberResults) -> str:
  """One member's metrics as a short line for the log."""
  return ", ".join(f"{k} {v:.3f}" if abs(v) < 100 else f"{k} {v:.1f}" for k, v in member_scalars(result).items())


REPRESENTATION_METRICS = ("mig_histogram", "active_units")


def evaluate_representation(fn: Callable, dataset: FactorDataset, *, metrics: Sequence[str] | None = None,
                            key: jax.Array | None = None, settings: ml_collections.ConfigDict | None = None,
                            indices: np.ndarray | None = None) -> rundir.MemberResults:
  """Scores any representation of a factor dataset with the registered metrics.

  fn: images [B, H, W, C] (NumPy float32 in [0, 1]) -> codes [B, K] (NumPy or JAX), or
    a pair (mean, log_var) of [B, K] for a posterior (then Chen's MIG and the ELBO
    decomposition apply too). A PyTorch encoder works wrapped in a lambda.
  dataset: a FactorDataset; indices: which grid images ([N], a sub-grid in grid order
    such as `evaluated_indices` gives; default the whole grid).
  metrics: names from vae_jax.metrics (default: the histogram MIG and active units for
    codes; also Chen's MIG and the ELBO decomposition for posteriors).
  key: fixes every random choice (default PRNGKey(0)); settings: an `eval` config
    (default configlib.base_config().eval) for the metrics' sample sizes.
  Returns the typed MemberResults the evaluation run writes to metrics.json.
  """
  from vae_jax import configlib  # The defaults of the eval settings.

  if not getattr(dataset, "factor_sizes", None):
    raise ValueError(f"{getattr(dataset, 'name', dataset)!r} has no ground-truth factors; the disentanglement "
                     "metrics need a factor grid (a FactorDataset with factor_sizes).")
  for name in metrics or ():
    module = metrics_lib.get(name)
    if getattr(module, "NEEDS_MODEL", False):
      raise ValueError(f"{name!r} needs a model's decoder; evaluate_representation scores codes only "
                       "(use --mode=evaluate on a vae_jax workdir).")
    if getattr(module, "ENSEMBLE", False):
      raise ValueError(f"{name!r} compares several models; evaluate_representation scores one representation "
                       "(use vae_jax.evaluation.udr.udr(codes, kls) on several models' codes).")
  settings = settings or configlib.base_config().eval
  key = jax.random.PRNGKey(0) if key is None else key
  sizes = tuple(dataset.factor_sizes)
  if indices is None:
    indices = np.arange(int(np.prod(sizes)))
  else:
    sizes = evaluation_grid_sizes(indices, sizes)
  means, log_vars = [], []
  for start in range(0, len(indices), settings.batch_size):
    chunk = indices[start:start + settings.batch_size]
    out = fn(dataset.images(chunk))
    mean, log_var = out if isinstance(out, tuple) else (out, None)
    mean = np.asarray(mean)
    if mean.ndim != 2 or mean.shape[0] != len(chunk):
      raise ValueError(f"fn must map images [B, H, W, C] to codes [B, K]; for {len(chunk)} images it returned "
                       f"shape {mean.shape}.")
    if not np.isfinite(mean).all() or (log_var is not None and not np.isfinite(np.asarray(log_var)).all()):
      raise ValueError("fn returned NaN or infinite codes; check the encoder and its input scaling ([0, 1] floats).")
    means.append(mean)
    log_vars.append(None if log_var is None else np.asarray(log_var, np.float32))
  mean = np.concatenate(means)
  log_var = None if log_vars[0] is None else np.concatenate(log_vars)
  names = tuple(metrics) if metrics is not None else (
      REPRESENTATION_METRICS if log_var is None else ("mig", "mig_histogram", "elbo_decomposition", "active_units"))
  ctx = metrics_lib.MetricContext(
      posterior=metrics_lib.Posterior(mean, log_var, sizes, indices, index_to_factors(indices, dataset.factor_sizes)),
      dataset=dataset, settings=settings, key=key, points=draw_points(names, settings, len(indices), 0),
      counted_factors=mig_factors(dataset, settings.mig_factors))
  return rundir.MemberResults(member=0, seed=0, hparams={}, images=int(len(indices)), subgrid_sizes=list(sizes),
                              metrics={name: metrics_lib.get(name).compute(ctx) for name in names})


def evaluation_grid_sizes(indices: np.ndarray, factor_sizes: Sequence[int]) -> tuple[int, ...]:
  """The factor sizes of the sub-grid `indices` [N] (in row-major grid order); ValueError if it is not one."""
  factors = index_to_factors(np.asarray(indices), factor_sizes)
  sizes = tuple(len(np.unique(factors[:, f])) for f in range(factors.shape[1]))
  if int(np.prod(sizes)) != len(indices) or np.any(np.diff(np.asarray(indices)) <= 0):
    raise ValueError("indices must be a sub-grid of the dataset in grid order (e.g. from evaluate.evaluated_indices).")
  return sizes


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> rundir.RunResults:
  """--mode=evaluate: evaluates workdir's latest checkpoint → metrics.json and TensorBoard.

  Evaluates the whole dataset, or the sub-grid if eval.final == "subset". Holds the
  workdir's lock (rundir.hold_workdir); FileNotFoundError, creating nothing, when the
  workdir has no checkpoint.
  """
  with rundir.hold_workdir(workdir, existing=True):
    return _evaluate_workdir(config, workdir)


def _evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> rundir.RunResults:
  run = rundir.restore_run(config, workdir, with_holdout=False)
  full = config.eval.final != "subset"
  evaluations = evaluate_ensemble(config.eval, run.model, run.objective, run.params, run.dataset, run.mesh,
                                  full=full, seed=config.seed)
  results = rundir.run_results(config, run.dataset, run.step, evaluations)
  scalars = summary_scalars(evaluations, "eval_full" if full else "eval_subset")
  if jax.process_index() == 0:
    rundir.write_metrics(workdir, results)
    writer = writers.create_writer(workdir, tensorboard=config.tensorboard)
    writer.write_scalars(run.step, scalars)
    writer.close()
  logging.info("Evaluated step %d: %s", run.step, scalars)
  return results
