"""Evaluating trained models: MIG both ways, the ELBO decomposition, log p(x).

`evaluate_ensemble` encodes a factor grid (the whole dataset, or a cheap sub-grid
during training) once for all ensemble members and computes, per member:
  - MIG with Chen et al.'s sampling estimator (`vae_jax.evaluation.mig`) over the
    factors that count (dSprites: shape left out, as Chen et al. do);
  - MIG with disentanglement_lib's histogram protocol (all factors);
  - the ELBO decomposition over the aggregate posterior (index-code MI, TC,
    dimension-wise KL), active units, and on a random subset of images the ELBO and
    an importance-weighted estimate of log p(x).
Every MIG names its estimator and the factors it counted.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae_jax import checkpoints, losses, models, parallel, writers
from vae_jax import evaluation
from vae_jax.data import get_dataset
from vae_jax.data.grid import FactorDataset, index_to_factors
from vae_jax.evaluation import encode as encode_lib

# Factors left out of Chen et al.'s MIG by default, per dataset: dSprites' shape is
# categorical and not encoded smoothly by any model (Chen et al., 2018).
_EXCLUDED_MIG_FACTORS = {"dsprites_procedural": ("shape",), "dsprites": ("shape",)}


def mig_factors(dataset: FactorDataset, names: Sequence[str] = ()) -> tuple[int, ...]:
  """Indices of the factors Chen et al.'s MIG counts: `names`, or the dataset's default."""
  if names:
    unknown = set(names) - set(dataset.factor_names)
    if unknown:
      raise ValueError(f"eval.mig_factors names {sorted(unknown)}; {dataset.name} has {dataset.factor_names}.")
    return tuple(dataset.factor_names.index(n) for n in names)
  excluded = _EXCLUDED_MIG_FACTORS.get(dataset.name, ()) + tuple(getattr(dataset, "nuisance_factors", ()))
  return tuple(i for i, (name, size) in enumerate(zip(dataset.factor_names, dataset.factor_sizes))
               if name not in excluded and size > 1)


def subgrid_strides(factor_sizes: Sequence[int], max_images: int) -> tuple[int, ...]:
  """Strides that thin the largest factors (halving repeatedly) until the grid has at most max_images."""
  strides = [1] * len(factor_sizes)
  sizes = list(factor_sizes)
  while int(np.prod(sizes)) > max_images and max(sizes) > 1:
    f = int(np.argmax(sizes))
    strides[f] *= 2
    sizes[f] = len(range(0, factor_sizes[f], strides[f]))
  return tuple(strides)


def make_likelihood_fn(model: models.VAE, likelihood: str, num_importance: int):
  """jit((params [S], x [B, ...], keys [S]) -> dict of [S, B]): ELBO, reconstruction, log p(x)."""

  def one_member(params, x, key):
    mean, log_var = model.apply({"params": params}, x, method=model.encode)

    def one_sample(k):
      z = losses.reparameterize(k, mean, log_var)
      decoded = model.apply({"params": params}, z, method=model.decode)
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

  return jax.jit(parallel.vmap_members(one_member, in_axes=(0, None, 0)))


def evaluate_ensemble(
    config: ml_collections.ConfigDict,
    model: models.VAE,
    params: Any,
    dataset: FactorDataset,
    mesh,
    *,
    full: bool,
    seed: int,
) -> list[dict[str, Any]]:
  """Per-member evaluation of params [S, ...] on the whole grid (`full`) or a sub-grid.

  `seed` fixes every random choice (evaluation points, posterior samples), so the
  same parameters always get the same numbers.

  Returns one dict per member with "mig", "mig_histogram", "elbo_decomposition",
  "active_units", "likelihood" and what was evaluated ("images", "subgrid_sizes").
  """
  ec = config.eval
  if not dataset.factor_sizes:
    raise ValueError(f"{dataset.name} has no ground-truth factors, so MIG and the grid evaluation do not apply; "
                     "set --config.eval.final=none and --config.eval.every_steps=0.")
  if full:
    indices, sizes = np.arange(len(dataset)), tuple(dataset.factor_sizes)
  else:
    indices, sizes = encode_lib.subgrid_indices(dataset.factor_sizes, subgrid_strides(dataset.factor_sizes,
                                                                                       ec.subset_images))
  means, log_vars = encode_lib.encode_dataset(model, params, dataset, mesh, indices=indices,
                                              batch_size=ec.batch_size, progress=full)
  factors = mig_factors(dataset, ec.mig_factors)
  num_members = means.shape[0]
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  hist_points = rng.choice(len(indices), size=min(ec.histogram_points, len(indices)), replace=False)
  hist_factors = index_to_factors(indices[hist_points], dataset.factor_sizes)
  ll_points = np.sort(rng.choice(len(indices), size=min(ec.likelihood_images, len(indices)), replace=False))
  ll_images = dataset.images(indices[ll_points])
  likelihood_fn = make_likelihood_fn(model, config.loss.likelihood, ec.importance_samples)
  member_keys = jax.random.split(key, num_members)
  # Chunks keep memory bounded: each image is decoded importance_samples times.
  chunk = max(1, 4096 // ec.importance_samples)
  parts = [jax.device_get(likelihood_fn(params, jnp.asarray(ll_images[i:i + chunk]), jax.vmap(jax.random.fold_in)(
      member_keys, jnp.full((num_members,), i)))) for i in range(0, len(ll_images), chunk)]
  ll = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}

  results = []
  for m in range(num_members):
    mig_key, elbo_key = jax.random.split(member_keys[m])
    chen = evaluation.mig(means[m], log_vars[m], sizes, num_samples=ec.mig_samples, factors=factors, key=mig_key)
    hist = evaluation.mig_histogram(means[m][hist_points], hist_factors, num_bins=ec.histogram_bins)
    decomposition = evaluation.elbo_decomposition_terms(means[m], log_vars[m], num_samples=ec.elbo_samples,
                                                        key=elbo_key)
    results.append({
        "images": int(len(indices)),
        "subgrid_sizes": list(sizes),
        "mig": {
            "value": float(chen["mig"]),
            "estimator": chen["estimator"],
            "factors": [dataset.factor_names[f] for f in chen["factors"]],
            "num_samples": int(chen["num_samples"]),
            "mi": np.asarray(chen["mi"]).tolist(),
            "best_latent": np.asarray(chen["best_latent"]).tolist(),
            "gap": np.asarray(chen["gap"]).tolist(),
        },
        "mig_histogram": {
            "value": float(hist["mig"]),
            "estimator": hist["estimator"],
            "factors": list(dataset.factor_names),
            "num_points": int(len(hist_points)),
            "num_bins": ec.histogram_bins,
            "mi": np.asarray(hist["mi"]).tolist(),
        },
        "elbo_decomposition": {k: _to_json(v) for k, v in decomposition.items()},
        "active_units": {k: _to_json(v) for k, v in evaluation.active_units(means[m]).items()},
        "likelihood": {
            "num_images": int(len(ll_points)),
            "importance_samples": ec.importance_samples,
            **{k: float(np.mean(v[m])) for k, v in ll.items()},
        },
    })
  return results


def _to_json(value):
  value = np.asarray(value) if not isinstance(value, (str, int, float)) else value
  if isinstance(value, np.ndarray):
    return value.item() if value.ndim == 0 else value.tolist()
  return value


def summary_scalars(results: list[dict[str, Any]], prefix: str) -> dict[str, float]:
  """Flat scalars for the metric writers: prefix/name, with /member_m for ensembles."""
  out = {}
  for m, r in enumerate(results):
    suffix = f"/member_{m}" if len(results) > 1 else ""
    values = {
        "mig": r["mig"]["value"],
        "mig_histogram": r["mig_histogram"]["value"],
        "active_units": r["active_units"]["num_active"],
        **{k: r["likelihood"][k] for k in ("elbo", "reconstruction", "log_px_iw")},
        **{k: r["elbo_decomposition"][k] for k in ("index_code_mi", "total_correlation", "dimwise_kl")},
    }
    out.update({f"{prefix}/{k}{suffix}": float(v) for k, v in values.items()})
  return out


def write_json_atomic(path: str, payload: dict[str, Any]) -> None:
  """Writes `payload` to `path` so that a reader sees the old file or the whole new one."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def write_metrics_json(workdir: str, payload: dict[str, Any]) -> None:
  """Writes workdir/metrics.json atomically."""
  write_json_atomic(os.path.join(workdir, "metrics.json"), payload)


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """--mode=evaluate: evaluates workdir's latest checkpoint → metrics.json and TensorBoard.

  Evaluates the whole dataset, or the sub-grid if eval.final == "subset".
  """
  from vae_jax import train  # The state structure and its construction live with training.

  dataset = get_dataset(config.data)
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  mesh = parallel.create_mesh()
  target = jax.device_put(train.create_ensemble_state(config, model, dataset.image_shape), parallel.replicated(mesh))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  if state is None:
    raise FileNotFoundError(f"No checkpoint under {os.path.join(workdir, 'checkpoints')}: train first with "
                            f"--mode=train and the same --workdir.")
  step = int(jax.device_get(state.step)[0])
  full = config.eval.final != "subset"
  results = evaluate_ensemble(config, model, state.params, dataset, mesh, full=full, seed=config.seed)
  payload = train.results_payload(config, dataset, step, results)
  scalars = summary_scalars(results, "eval_full" if full else "eval_subset")
  if jax.process_index() == 0:
    write_metrics_json(workdir, payload)
    writer = writers.create_writer(workdir)
    writer.write_scalars(step, scalars)
    writer.close()
  logging.info("Evaluated step %d: %s", step, scalars)
  return payload

