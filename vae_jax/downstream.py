"""Downstream uses of a trained model: anomaly detection, embedding export, generation.

    # AUROC of held-out factor values (data.holdout) against training images → workdir/anomaly.json
    python -m vae_jax.main --config=configs/anomaly_dsprites.py --workdir=runs/anomaly --mode=anomaly
    # posterior mean, log-variance and factors of a split → .npz (for UMAP, t-SNE, PCA, ...)
    python -m vae_jax.main --config=... --workdir=... --mode=export --split=subgrid --output=emb.npz
    # decode latent values you choose (one code per ';'-separated row) → a PNG strip
    python -m vae_jax.main --config=... --workdir=... --mode=generate --latents="0,0,1.5,0;0,0,-1.5,0"

Anomaly scores (higher = more anomalous), per image x:
  - neg_elbo: −ELBO = −E_q log p(x | z) + KL(q(z | x) || p(z)), the expectation a Monte
    Carlo average over eval.importance_samples draws, the KL analytic;
  - neg_log_px_iw: −log p̂(x), the importance-weighted bound with the same draws;
  - kl: the analytic KL(q(z | x) || N(0, I)) alone (how far the code is from the prior);
  - llr_background: −ELBO − (−log p_bg(x)), a likelihood ratio against a background
    model p_bg with independent pixels (the training images' mean image under the same
    likelihood). Raw likelihoods favour simple images (Nalisnick et al., 2019: small
    sprites have fewer pixels to explain); the ratio cancels much of that (Ren et al.,
    2019; Serrà et al., 2020 use other reference models for the same purpose).
AUROC is the probability that a random held-out image scores above a random
in-distribution one (ties count one half): the Mann–Whitney U statistic / (n₊ n₋).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae_jax import codes, configlib, evaluate, figures, losses, models, parallel, plotting, rundir
from vae_jax.data import holdout as holdout_lib
from vae_jax.data.grid import dataset_note, index_to_factors
from vae_jax.evaluation import encode as encode_lib

ANOMALY_SCORES = ("neg_elbo", "neg_log_px_iw", "kl", "llr_background")
BACKGROUND_IMAGES = 10_000  # Training images whose mean image is the background model.


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve of scores [n] for binary labels [n] (1 = positive, scored higher).

  Rank-based (Mann–Whitney): tied scores get their average rank, so a tie between a
  positive and a negative counts one half.

  Raises:
    ValueError: a class is empty, shapes differ, or a score is not finite.
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1).astype(bool)
  if scores.shape != labels.shape:
    raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same length.")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores must be finite.")
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0:
    raise ValueError(f"AUROC needs both classes; got {n_pos} positives and {n_neg} negatives.")
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of each distinct value's first element.
  ranks = (first_rank + (counts - 1) / 2.0)[inverse.reshape(-1)]
  u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


@functools.lru_cache(maxsize=8)
def make_score_fn(model: models.VAE, objective, num_importance: int):
  """jit((params [S], x [B, ...], keys [S]) -> dict of [S, B]): the ANOMALY_SCORES of every image
  but llr_background, encoding through the objective's encoder."""
  encoder = functools.partial(objective.encode, model.apply)
  likelihood_fn = evaluate.make_likelihood_fn(encoder, lambda p, z: model.apply({"params": p}, z, method="decode"),
                                              objective.likelihood, num_importance)

  def one_member(params, x, key):
    ll = likelihood_fn(params, x, key)
    return dict(neg_elbo=-ll["elbo"], neg_log_px_iw=-ll["log_px_iw"], kl=losses.gaussian_kl(*encoder(params, x)))

  return jax.jit(parallel.vmap_members(one_member, in_axes=(0, None, 0)))


def background_log_likelihood(images: np.ndarray, mean_image: np.ndarray, likelihood: str) -> np.ndarray:
  """log p_bg(x) [n] of images [n, H, W, C] under independent pixels with mean mean_image [H, W, C].

  Bernoulli: pixel probabilities mean_image (clipped to [1e-3, 1 − 1e-3]); Gaussian:
  unit variance around mean_image (as the VAE's Gaussian likelihood).
  """
  x = np.asarray(images, np.float64).reshape(len(images), -1)
  mu = np.asarray(mean_image, np.float64).reshape(-1)
  if likelihood == "bernoulli":
    p = np.clip(mu, 1e-3, 1.0 - 1e-3)
    return x @ np.log(p) + (1.0 - x) @ np.log1p(-p)
  return -0.5 * np.sum((x - mu) ** 2 + np.log(2.0 * np.pi), axis=1)


def anomaly_scores(model: models.VAE, objective, params: Any, dataset, indices: np.ndarray, *,
                   num_importance: int, key: jax.Array, batch_size: int = 500,
                   background: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Anomaly scores [S, n] of the full-grid images `indices` [n], for the VAE's params with ensemble
  axis S; the objective gives the encoder and the likelihood.

  Returns neg_elbo, neg_log_px_iw and kl, and llr_background if a background mean
  image [H, W, C] is given. Each batch uses its own keys (fold_in(key, batch)), so
  scores are reproducible.
  """
  grid = holdout_lib.full_grid(dataset)
  likelihood = objective.likelihood
  score_fn = make_score_fn(model, objective, num_importance)
  s = codes.num_members(params)
  out = {name: [] for name in ANOMALY_SCORES}
  for b, start in enumerate(range(0, len(indices), batch_size)):
    chunk = np.asarray(indices[start:start + batch_size])
    images = grid.images(chunk)
    x = images
    if len(chunk) < batch_size:  # One shape for every batch: one compilation.
      x = np.concatenate([x, np.zeros((batch_size - len(chunk), *x.shape[1:]), x.dtype)])
    keys = jax.random.split(jax.random.fold_in(key, b), s)
    values = jax.device_get(score_fn(params, jnp.asarray(x), keys))
    for name in ("neg_elbo", "neg_log_px_iw", "kl"):
      out[name].append(np.asarray(values[name])[:, :len(chunk)])
    if background is not None:
      log_bg = background_log_likelihood(images, background, likelihood)
      out["llr_background"].append(out["neg_elbo"][-1] + log_bg[None, :])
  return {name: np.concatenate(v, axis=1) for name, v in out.items() if v}


def anomaly_report(config: ml_collections.ConfigDict, workdir: str, *, num_images: int = 5000,
                   seed: int | None = None, run: rundir.Run | None = None) -> dict[str, Any]:
  """AUROC of held-out images (config.data.holdout) against in-distribution ones → workdir/anomaly.json.

  Scores up to `num_images` random images of each group (training images and held-out
  images) with every ensemble member of the latest checkpoint, and draws the score
  histograms to workdir/figures/anomaly_scores[_member_m].png.

  Returns the anomaly.json record: per member, the AUROC of each score and the score
  means of both groups. `run` (rundir.restore_run's result) saves restoring again.
  Holds the workdir's lock (rundir.hold_workdir) throughout.
  """
  with rundir.hold_workdir(workdir, existing=run is None):
    return _anomaly_report(config, workdir, num_images=num_images, seed=seed, run=run)


def _anomaly_report(config: ml_collections.ConfigDict, workdir: str, *, num_images: int, seed: int | None,
                    run: rundir.Run | None) -> dict[str, Any]:
  spec = config.data.get("holdout", "")
  if not spec:
    raise ValueError("anomaly detection needs held-out factor values: train with data.holdout set (e.g. "
                     "--config.data.holdout=shape=2, as configs/anomaly_dsprites.py does) and pass the same config.")
  run = run if run is not None else rundir.restore_run(config, workdir)
  dataset = run.dataset
  if not hasattr(dataset, "holdout_indices"):
    raise ValueError(f"The restored dataset has no holdout; restore it with config.data.holdout={spec!r}.")
  seed = config.seed if seed is None else seed
  rng = np.random.default_rng(seed)
  inliers = np.sort(rng.choice(dataset.kept_indices, size=min(num_images, len(dataset.kept_indices)), replace=False))
  outliers = np.sort(rng.choice(dataset.holdout_indices, size=min(num_images, len(dataset.holdout_indices)),
                                replace=False))
  indices = np.concatenate([inliers, outliers])
  labels = np.concatenate([np.zeros(len(inliers), bool), np.ones(len(outliers), bool)])
  num_importance = int(config.eval.importance_samples)
  grid = holdout_lib.full_grid(dataset)
  background_indices = np.sort(rng.choice(dataset.kept_indices, replace=False,
                                          size=min(BACKGROUND_IMAGES, len(dataset.kept_indices))))
  chunks = [background_indices[i:i + 2000] for i in range(0, len(background_indices), 2000)]
  background = sum(grid.images(c).sum(0, dtype=np.float64) for c in chunks) / len(background_indices)
  scores = anomaly_scores(run.model, run.objective, run.params, dataset, indices, num_importance=num_importance,
                          key=jax.random.PRNGKey(seed), background=background)
  hparams = configlib.member_hparams(config)
  members = []
  for m in range(codes.num_members(run.params)):
    members.append({
        "member": m,
        "seed": config.seed + m,
        "hparams": {k: v[m] for k, v in hparams.items()},
        "auroc": {name: auroc(scores[name][m], labels) for name in ANOMALY_SCORES},
        "mean_score": {
            "in_distribution": {name: float(scores[name][m][~labels].mean()) for name in ANOMALY_SCORES},
            "held_out": {name: float(scores[name][m][labels].mean()) for name in ANOMALY_SCORES},
        },
    })
  members_total = len(members)
  for m in range(members_total):
    name = "anomaly_scores.png" if members_total == 1 else f"anomaly_scores_member_{m}.png"
    draw_score_histograms({k: v[m] for k, v in scores.items()}, labels, members[m]["auroc"],
                          os.path.join(workdir, "figures", name),
                          title=f"Anomaly scores: held-out images ({spec}) vs training images"
                                f"{f', member {m}' if members_total > 1 else ''}, step {run.step}; "
                                f"{figures.dataset_label(dataset)}")
  record = {
      "holdout": spec,
      "dataset": grid.name,
      "dataset_note": dataset_note(dataset),
      "objective": config.loss.objective,
      "checkpoint_step": run.step,
      "num_in_distribution": int(len(inliers)),
      "num_held_out": int(len(outliers)),
      "importance_samples": num_importance,
      "positive_class": "held-out images (anomalies); higher scores are more anomalous",
      "in_distribution_note": "in-distribution images are drawn from the training grid (images seen in training)",
      "scores": {"neg_elbo": "−ELBO (Monte Carlo reconstruction term, analytic KL), nats",
                 "neg_log_px_iw": "−importance-weighted log p(x) bound, nats",
                 "kl": "analytic KL(q(z|x) || N(0, I)), nats",
                 "llr_background": "−ELBO + log p_bg(x): likelihood ratio against independent pixels with the mean "
                                   f"of {len(background_indices):,} training images, nats"},
      "members": members,
  }
  if jax.process_index() == 0:
    path = os.path.join(workdir, "anomaly.json")
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
  for r in members:
    logging.info("Member %d: AUROC %s", r["member"], ", ".join(f"{k} {v:.3f}" for k, v in r["auroc"].items()))
  return record


def draw_score_histograms(scores: dict[str, np.ndarray], labels: np.ndarray, aurocs: dict[str, float], path: str, *,
                          title: str) -> str:
  """One panel per score: histograms of scores [n] for labels False (in-distribution) and True (held out)."""
  w, h = 3.8 * len(scores), 3.6
  fig = plotting.new_figure((w, h))
  axes = fig.subplots(1, len(scores), squeeze=False, gridspec_kw=dict(
      left=0.7 / w, right=1 - 0.2 / w, top=1 - 0.75 / h, bottom=0.55 / h, wspace=0.3))[0]
  nice = {"neg_elbo": "−ELBO (nats)", "neg_log_px_iw": "−log p(x), importance-weighted (nats)",
          "kl": "KL(q(z|x) ‖ p(z)) (nats)", "llr_background": "−ELBO + log p_bg(x) (nats)"}
  for ax, (name, values) in zip(axes, scores.items()):
    lo, hi = np.percentile(values, [0.5, 99.5])
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
    ax.hist(values[~labels], bins=bins, alpha=0.6, density=True, label="in-distribution (training grid)")
    ax.hist(values[labels], bins=bins, alpha=0.6, density=True, label="held out")
    ax.set_xlabel(nice.get(name, name), fontsize=9)
    ax.set_ylabel("density", fontsize=9)
    ax.set_title(f"{name}: AUROC {aurocs[name]:.3f}", fontsize=9.5)
    ax.tick_params(labelsize=8)
  axes[0].legend(fontsize=8)
  text, size = plotting.fit_title(title, w - 0.3, 2)
  fig.suptitle(text, fontsize=size, y=1 - 0.06 / h, va="top")
  return plotting.save_figure(fig, path)


# ---------------------------------------------------------------------------
# Embeddings.


def split_indices(config: ml_collections.ConfigDict, dataset, split: str) -> np.ndarray:
  """Full-grid indices [n] of `split`: "all", "train" (grid minus holdout), "holdout",
  "subgrid" (the evaluation sub-grid of at most eval.subset_images images, in grid
  order) or "subgrid:N" (a sub-grid of at most N images)."""
  grid = holdout_lib.full_grid(dataset)
  if split == "subgrid" or split.startswith("subgrid:"):
    _, _, bound = split.partition(":")
    try:
      max_images = int(bound) if bound else int(config.eval.subset_images)
    except ValueError:
      raise ValueError(f"split {split!r}: give the sub-grid's size bound as an integer, e.g. 'subgrid:20000'.") \
          from None
    strides = evaluate.subgrid_strides(grid.factor_sizes, max_images)
    return encode_lib.subgrid_indices(grid.factor_sizes, strides)[0]
  if split not in ("all", "train", "holdout"):
    raise ValueError(f"Unknown split {split!r}; use 'all', 'train', 'holdout', 'subgrid' or 'subgrid:N'.")
  return holdout_lib.split_indices(dataset, split)


def export_embeddings(config: ml_collections.ConfigDict, workdir: str, split: str, path: str, *,
                      member: int = 0, run: rundir.Run | None = None) -> dict[str, np.ndarray]:
  """Writes one member's posterior parameters of a split's images to an .npz; returns its arrays.

  Keys: mean [n, K], log_var [n, K] (float32), factor_indices [n, F], indices [n]
  (full-grid flat indices), factor_values [n, F] (float64), factor_names [F],
  and scalars split, dataset, member, seed, beta, checkpoint_step. `run`
  (rundir.restore_run's result) saves restoring again. Holds the workdir's lock
  (rundir.hold_workdir) when `path` lies inside the workdir.
  """
  lock = rundir.hold_workdir(workdir, existing=run is None) if _inside(path, workdir) else contextlib.nullcontext()
  with lock:
    return _export_embeddings(config, workdir, split, path, member=member, run=run)


def _inside(path: str, directory: str) -> bool:
  """Whether `path` lies in `directory` (or is it)."""
  path, directory = os.path.realpath(path), os.path.realpath(directory)
  return os.path.commonpath([path, directory]) == directory


def _export_embeddings(config: ml_collections.ConfigDict, workdir: str, split: str, path: str, *, member: int,
                       run: rundir.Run | None) -> dict[str, np.ndarray]:
  run = run if run is not None else rundir.restore_run(config, workdir)
  members = codes.num_members(run.params)
  if not 0 <= member < members:
    raise ValueError(f"member {member} does not exist; the checkpoint has {members} member(s).")
  grid = holdout_lib.full_grid(run.dataset)
  indices = split_indices(config, run.dataset, split)
  one = jax.tree.map(lambda x: x[member:member + 1], run.params)
  encoder = functools.partial(run.objective.encode, run.model.apply)
  means, log_vars = encode_lib.encode_dataset(encoder, one, grid, run.mesh, indices=indices,
                                              batch_size=config.eval.batch_size, progress=len(indices) > 50_000)
  factors = index_to_factors(indices, grid.factor_sizes)
  arrays = dict(
      mean=means[0].astype(np.float32),
      log_var=log_vars[0].astype(np.float32),
      factor_indices=factors,
      indices=np.asarray(indices, np.int64),
      factor_values=np.stack([np.asarray(v, np.float64)[factors[:, f]] for f, v in enumerate(grid.factor_values)],
                             axis=1) if grid.factor_names else np.zeros((len(indices), 0)),
      factor_names=np.asarray(grid.factor_names, dtype=str),
      split=np.asarray(split),
      dataset=np.asarray(grid.name),
      member=np.asarray(member),
      seed=np.asarray(config.seed + member),
      **{name: np.asarray(values[member]) for name, values in configlib.member_hparams(config).items()},
      checkpoint_step=np.asarray(run.step),
  )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path, **arrays)
  logging.info("Wrote %d embeddings (%s split, member %d) to %s.", len(indices), split, member, path)
  return arrays


# ---------------------------------------------------------------------------
# Generation.


def parse_latents(text: str, latent_dim: int) -> np.ndarray:
  """Codes [n, K] from "z1,z2,...;z1,z2,..." (rows separated by ';', values by ',')."""
  rows = [r for r in text.replace(" ", "").split(";") if r]
  if not rows:
    raise ValueError(f"--latents is empty; give {latent_dim} comma-separated values per code, codes separated by ';'.")
  try:
    codes = np.asarray([[float(v) for v in r.split(",")] for r in rows], np.float32)
  except ValueError:
    raise ValueError(f"--latents={text!r}: values must be numbers, e.g. '0,0,1.5'.") from None
  if codes.ndim != 2 or codes.shape[1] != latent_dim:
    lengths = sorted({len(r.split(",")) for r in rows})
    raise ValueError(f"--latents={text!r}: every code needs model.latent_dim={latent_dim} values; got {lengths}.")
  return codes


def generate(config: ml_collections.ConfigDict, workdir: str, latents: np.ndarray, *, member: int = 0,
             run: rundir.Run | None = None) -> np.ndarray:
  """Decoder means [n, H, W, C] in [0, 1] of user-set latents [n, K] (one member of workdir's checkpoint)."""
  latents = np.asarray(latents, np.float32)
  if latents.ndim != 2 or latents.shape[1] != config.model.latent_dim:
    raise ValueError(f"latents must be [n, {config.model.latent_dim}], got {latents.shape}.")
  run = run if run is not None else rundir.restore_run(config, workdir)
  members = codes.num_members(run.params)
  if not 0 <= member < members:
    raise ValueError(f"member {member} does not exist; the checkpoint has {members} member(s).")
  return codes.decode_images(run.model, codes.member_params(run.params, member), latents,
                               run.objective.likelihood)


def _code_label(z: np.ndarray) -> str:
  """'z = (0, 1.5, …)' wrapped after every 5 values."""
  values = [f"{v:g}" for v in z]
  return "z = (" + ",\n".join(", ".join(values[i:i + 5]) for i in range(0, len(values), 5)) + ")"


def generate_to_file(config: ml_collections.ConfigDict, workdir: str, latents_text: str, output: str = "", *,
                     member: int = 0, run: rundir.Run | None = None) -> str:
  """--mode=generate: decodes --latents and draws them in a row → output (default workdir/figures/generated.png).

  Holds the workdir's lock (rundir.hold_workdir) when the output lies inside the workdir.
  """
  latents = parse_latents(latents_text, config.model.latent_dim)
  output = output or os.path.join(workdir, "figures", "generated.png")
  lock = rundir.hold_workdir(workdir, existing=run is None) if _inside(output, workdir) else contextlib.nullcontext()
  with lock:
    return _generate_to_file(config, workdir, latents, output, member=member, run=run)


def _generate_to_file(config: ml_collections.ConfigDict, workdir: str, latents: np.ndarray, output: str, *,
                      member: int, run: rundir.Run | None) -> str:
  run = run if run is not None else rundir.restore_run(config, workdir)
  images = generate(config, workdir, latents, member=member, run=run)
  cols = min(len(images), 8)
  rows = -(-len(images) // cols)
  cells, titles = [], []
  for r in range(rows):
    chunk = range(r * cols, min((r + 1) * cols, len(images)))
    cells.append([images[i] for i in chunk] + [None] * (cols - len(chunk)))
    titles.append([_code_label(latents[i]) for i in chunk] + [""] * (cols - len(chunk)))
  lines = -(-latents.shape[1] // 5)
  cell, gap = 1.1, 0.12 * lines + 0.1
  left = max(0.2, (5.5 - cols * (cell + gap)) / 2)  # Centred in a figure at least 5.5 in wide.
  layout = plotting.GridLayout(rows, cols, left=left, right=left, title_lines=3, cell=cell,
                                header=0.12 * lines + 0.05, gap=gap)
  plotting.draw_image_grid(cells, output, layout=layout, cell_titles=titles, col_label_size=6.5,
                            title=f"Decoder means at the latent values given above each image (member {member}, "
                                  f"{figures.dataset_label(run.dataset)})")
  logging.info("Wrote %d generated images to %s.", len(images), output)
  return output


__all__ = ["ANOMALY_SCORES", "anomaly_report", "anomaly_scores", "auroc", "export_embeddings", "generate",
           "generate_to_file", "make_score_fn", "parse_latents", "split_indices"]
