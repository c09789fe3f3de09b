"""Modularity and explicitness (Ridgeway & Mozer, "Learning deep disentangled embeddings with the
F-statistic loss", NeurIPS 2018), by disentanglement_lib's protocol
(`modularity_explicitness`).

Modularity ("value"): the mutual information m [K, F] (nats) between each histogram-
discretised code and each factor on the training points; per code j with θ_j = max_k m_jk,
δ_j = Σ_{k ≠ argmax} m_jk² / (θ_j² (F − 1)) and modularity_j = 1 − δ_j (0 for a code with
no information, θ_j = 0; 1 when F = 1); modularity is the mean over codes (all K of them,
as disentanglement_lib: uninformative codes count 0). A code that carries one factor only
scores 1.

Explicitness: per factor, a multinomial logistic regression of the factor index on all
codes (standardised by the training points' mean and std), scored by the macro-averaged
one-vs-rest ROC AUC of its class probabilities (disentanglement_lib's MultiLabelBinarizer
+ roc_auc_score; computed here from ranks, `macro_auc_one_vs_rest`, the same number); explicitness is the mean over factors, on the training and the test
points. Chance is 0.5.

Defaults (disentanglement_lib's unsupervised_study_v1 config): 10,000 training and 5,000
test points drawn i.i.d. uniformly (settings `score_train_points`, `score_test_points`);
20 equal-width bins per code (the shared eval setting `histogram_bins`, disentanglement_lib's
`discretizer.num_bins = 20`). The MI is evaluation.mig.mig_histogram's. LogisticRegression
uses scikit-learn's current defaults (lbfgs, C = 1) with max_iter 1000 instead of 100.
"""

from __future__ import annotations

import numpy as np

from vae_jax.evaluation.mig import mig_histogram
from vae_jax.metrics.base import MetricContext, fit_in_threads
from vae_jax.metrics.beta_vae_score import NUM_TEST, NUM_TRAIN, metric_rng, scored_factors, setting, train_test_points
from vae_jax.metrics.dci import standardise

SALT = 5  # This metric's generator: fold_in(ctx.key, SALT).
MAX_ITER = 1000


def modularity_per_code(mi: np.ndarray) -> np.ndarray:
  """Ridgeway & Mozer's modularity of each code from the MI matrix m [K, F] (nats) → [K]."""
  mi = np.asarray(mi, np.float64)
  squared = mi ** 2
  peak = squared.max(axis=1)
  if mi.shape[1] < 2:
    return np.where(peak > 0, 1.0, 0.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    delta = (squared.sum(axis=1) - peak) / (peak * (mi.shape[1] - 1))
  return np.where(peak > 0, 1.0 - delta, 0.0)


def macro_auc_one_vs_rest(onehot: np.ndarray, scores: np.ndarray) -> float:
  """Mean over columns of the ROC AUC of scores [n, C] for the labels onehot [n, C] (0/1).

  Each column's AUC is the Mann–Whitney statistic with average ranks for ties, (Σ ranks of
  the positives − P(P + 1)/2) / (P·N), which equals the trapezoidal area scikit-learn's
  roc_auc_score computes; every column must hold both labels.
  """
  import scipy.stats

  onehot = np.asarray(onehot, bool)
  ranks = scipy.stats.rankdata(np.asarray(scores, np.float64), axis=0)  # [n, C], ties averaged
  positives = onehot.sum(axis=0)
  negatives = onehot.shape[0] - positives
  rank_sums = np.where(onehot, ranks, 0.0).sum(axis=0)
  return float(np.mean((rank_sums - positives * (positives + 1) / 2.0) / (positives * negatives)))


def explicitness_per_factor(x_train, y_train, x_test, y_test) -> tuple[float, float]:
  """(train AUC, test AUC) of a logistic regression predicting one factor y [n] from codes x [n, K].

  Macro average over classes of the one-vs-rest ROC AUC of the predicted class
  probabilities; classes without both positives and negatives in a set are left out there.
  NaN for a factor with a single value among the training points.
  """
  from sklearn.linear_model import LogisticRegression

  if len(np.unique(y_train)) < 2:
    return float("nan"), float("nan")
  model = LogisticRegression(max_iter=MAX_ITER).fit(x_train, y_train)
  out = []
  for x, y in ((x_train, y_train), (x_test, y_test)):
    proba = model.predict_proba(x)
    onehot = (y[:, None] == model.classes_[None, :]).astype(np.int64)
    keep = (onehot.sum(axis=0) > 0) & (onehot.sum(axis=0) < len(y))
    out.append(macro_auc_one_vs_rest(onehot[:, keep], proba[:, keep]) if keep.any() else float("nan"))
  return out[0], out[1]


def compute(ctx: MetricContext) -> dict:
  """{"value" (modularity), "modularity", "modularity_per_code" [K], "mi" [K, F] (nats),
  "explicitness_train", "explicitness_test", "explicitness_per_factor" [F] (test), "factors",
  "num_train", "num_test", "num_bins", "test_in_train"}."""
  factors = scored_factors(ctx)
  rng = metric_rng(ctx.key, SALT)
  num_train = int(setting(ctx, "score_train_points", NUM_TRAIN))
  num_test = int(setting(ctx, "score_test_points", NUM_TEST))
  bins = int(setting(ctx, "histogram_bins", 20))
  x_train, y_train, x_test, y_test, overlap = train_test_points(ctx, rng, factors, num_train, num_test)
  mi = mig_histogram(x_train, y_train, num_bins=bins)["mi_unnormalised"].T  # [K, F]
  per_code = modularity_per_code(mi)
  x_train_n, x_test_n = standardise(x_train, x_test)
  aucs = np.array(fit_in_threads(lambda i: explicitness_per_factor(x_train_n, y_train[:, i], x_test_n, y_test[:, i]),
                                  range(len(factors))))  # [F, 2]
  modularity = float(per_code.mean())
  return {
      "value": modularity,
      "modularity": modularity,
      "modularity_per_code": per_code.tolist(),
      "mi": mi.tolist(),
      "explicitness_train": float(aucs[:, 0].mean()),
      "explicitness_test": float(aucs[:, 1].mean()),
      "explicitness_per_factor": aucs[:, 1].tolist(),
      "factors": [ctx.dataset.factor_names[f] for f in factors],
      "num_train": num_train,
      "num_test": num_test,
      "num_bins": bins,
      "test_in_train": overlap,
  }


def scalars(result: dict) -> dict[str, float]:
  """{"modularity", "explicitness" (test)}."""
  return {"modularity": result["modularity"], "explicitness": result["explicitness_test"]}
