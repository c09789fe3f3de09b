"""The FactorVAE score (Kim & Mnih, "Disentangling by factorising", ICML 2018), by
disentanglement_lib's protocol (`factor_vae_score`).

1. Global scale: the variance (ddof 1) of every code over `score_variance_points` grid rows
   drawn uniformly; dimensions whose standard deviation is below `factor_vae_prune_threshold`
   are pruned as collapsed (disentanglement_lib's `prune_dims`).
2. One vote: pick a factor k uniformly among the scored factors and one of its values;
   draw `batch_size` grid rows with that value (other factors uniform); divide each active
   code's variance over the batch (ddof 1) by its global variance (i.e. normalise the codes
   by their global standard deviation) and vote (k, argmin over the active dimensions).
3. The majority-vote classifier maps each dimension to the factor with most training
   votes; the score ("value") is the fraction of eval votes it gets right.
Chance is 1 / (number of scored factors). With no active dimension the score is 0, as in
disentanglement_lib.

Defaults (disentanglement_lib's unsupervised_study_v1 config): batch_size 64, 10,000 points
for the variances, 10,000 train and 5,000 eval votes, prune threshold 0.05 (the config's
`prune_dims.threshold = 0.05`; the function's own default is 0). Eval settings read with
defaults (the config may add them): `score_batch_size` (64), `score_variance_points`
(10,000), `score_train_points` (10,000), `score_test_points` (5,000),
`factor_vae_prune_threshold` (0.05). Unlike disentanglement_lib, which records
len(mask) (every dimension) as num_active_dims and files votes under the position among
the active dimensions, this module counts the active dimensions and votes for the
dimension itself.
"""

from __future__ import annotations

import numpy as np

from vae_jax.metrics.base import MetricContext
from vae_jax.metrics.beta_vae_score import (BATCH_SIZE, CHUNK, NUM_TEST, NUM_TRAIN, metric_rng, scored_factors,
                                            set_coordinate, setting)

SALT = 2  # This metric's generator: fold_in(ctx.key, SALT).
NUM_VARIANCE = 10_000
PRUNE_THRESHOLD = 0.05


# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"score_variance_points": NUM_VARIANCE, "factor_vae_prune_threshold": PRUNE_THRESHOLD}

def global_variances(codes: np.ndarray, rng: np.random.Generator, num_points: int) -> np.ndarray:
  """Variances [K] (ddof 1) of codes [N, K] over num_points rows drawn uniformly with replacement."""
  rows = rng.integers(codes.shape[0], size=num_points)
  return np.var(np.asarray(codes[rows], np.float64), axis=0, ddof=1)


def votes(codes: np.ndarray, grid_sizes, factors, variances: np.ndarray, active: np.ndarray,
          rng: np.random.Generator, num_points: int, batch_size: int) -> np.ndarray:
  """The protocol's votes [F', K]: entry (i, j) counts batches with factors[i] fixed whose
  normalised variance was smallest in dimension j (only active dimensions get votes).

  codes: [N, K] of the evaluated grid (row-major over grid_sizes); variances: [K] global
  variances; active: [K] bool.
  """
  sizes = np.asarray(grid_sizes, np.int64)
  labels = rng.integers(len(factors), size=num_points)
  fixed = np.asarray(factors, np.int64)[labels]
  values = rng.integers(sizes[fixed])
  rows = set_coordinate(rng.integers(codes.shape[0], size=(num_points, batch_size)), sizes, fixed[:, None],
                        values[:, None])
  dims = np.flatnonzero(active)
  winners = np.empty(num_points, np.int64)
  for s in range(0, num_points, CHUNK):
    batch = np.asarray(codes[rows[s:s + CHUNK]][:, :, dims], np.float64)
    winners[s:s + CHUNK] = dims[np.argmin(np.var(batch, axis=1, ddof=1) / variances[dims], axis=1)]
  out = np.zeros((len(factors), codes.shape[1]), np.int64)
  np.add.at(out, (labels, winners), 1)
  return out


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[np.ndarray, float, float]:
  """(classifier [K]: the factor position each dimension votes for, train accuracy, eval accuracy)
  of the majority-vote classifier fitted on train_votes [F', K]."""
  classifier = np.argmax(train_votes, axis=0)
  dims = np.arange(train_votes.shape[1])
  return (classifier, float(train_votes[classifier, dims].sum() / train_votes.sum()),
          float(eval_votes[classifier, dims].sum() / eval_votes.sum()))


def compute(ctx: MetricContext) -> dict:
  """{"value" (eval accuracy), "train_accuracy", "eval_accuracy", "chance", "factors",
  "num_active_dims", "active_dims" [K'], "global_variances" [K], "classifier" ({dim: factor}),
  "batch_size", "num_variance_points", "num_train", "num_eval", "prune_threshold"}."""
  factors = scored_factors(ctx)
  names = [ctx.dataset.factor_names[f] for f in factors]
  rng = metric_rng(ctx.key, SALT)
  batch = int(setting(ctx, "score_batch_size", BATCH_SIZE))
  num_var = int(setting(ctx, "score_variance_points", NUM_VARIANCE))
  num_train = int(setting(ctx, "score_train_points", NUM_TRAIN))
  num_eval = int(setting(ctx, "score_test_points", NUM_TEST))
  threshold = float(setting(ctx, "factor_vae_prune_threshold", PRUNE_THRESHOLD))
  p = ctx.posterior
  variances = global_variances(p.mean, rng, num_var)
  active = np.sqrt(variances) >= threshold
  out = {"chance": 1.0 / len(factors), "factors": names, "num_active_dims": int(active.sum()),
         "active_dims": np.flatnonzero(active).tolist(), "global_variances": variances.tolist(),
         "batch_size": batch, "num_variance_points": num_var, "num_train": num_train, "num_eval": num_eval,
         "prune_threshold": threshold}
  if not active.any():
    return {"value": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, "classifier": {}, **out}
  train_votes = votes(p.mean, p.grid_sizes, factors, variances, active, rng, num_train, batch)
  eval_votes = votes(p.mean, p.grid_sizes, factors, variances, active, rng, num_eval, batch)
  classifier, train_accuracy, eval_accuracy = majority_vote_accuracy(train_votes, eval_votes)
  return {"value": eval_accuracy, "train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy,
          "classifier": {str(j): names[classifier[j]] for j in np.flatnonzero(active)}, **out}


def scalars(result: dict) -> dict[str, float]:
  """{"factor_vae_score": eval accuracy}."""
  return {"factor_vae_score": result["value"]}
