"""SAP, the separated attribute predictability score (Kumar, Sattigeri & Balakrishnan, "Variational
inference of disentangled latent concepts from unlabeled observations", ICLR 2018), by
disentanglement_lib's protocol (`sap_score`).

A score matrix S [K, F]: entry (j, k) says how well code j alone predicts factor k. Per
factor, the gap between the best and the second-best code's score; SAP ("value") is the
mean gap over the scored factors. A code that predicts its factor well while no other
code does scores a large gap; random codes give gaps near 0.

Scores (disentanglement_lib's compute_score_matrix):
- discrete factors (default, disentanglement_lib's `sap_score.continuous_factors = False`):
  the test accuracy of scikit-learn's LinearSVC(C=0.01, class_weight="balanced") fitted on
  the one code (a threshold for two values, one-vs-rest thresholds for more; random_state
  from this metric's key). A single code classifies a many-valued ordinal factor only
  partly this way, so even a perfect code's score stays well below 1 for such factors.
- continuous factors (eval setting `sap_continuous`, default False): the squared
  correlation of code and factor index on the training points (0 for a constant code).

Defaults (disentanglement_lib's unsupervised_study_v1 config): 10,000 training and 5,000
test points, i.i.d. uniform over the grid (settings `score_train_points`,
`score_test_points`); "test_in_train" is the fraction of test rows also drawn for training.
"""

from __future__ import annotations

import numpy as np

from vae_jax.evaluation.mig import top_two_gap
from vae_jax.metrics.base import MetricContext, fit_in_threads
from vae_jax.metrics.beta_vae_score import NUM_TEST, NUM_TRAIN, metric_rng, scored_factors, setting, train_test_points

SALT = 4  # This metric's generator: fold_in(ctx.key, SALT).
SVC_C = 0.01


# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"sap_continuous": False}

def score_matrix_discrete(x_train, y_train, x_test, y_test, seed: int = 0) -> np.ndarray:
  """S [K, F]: test accuracy of LinearSVC(C=0.01, balanced) on code j alone predicting factor k.

  x_*: codes [n, K]; y_*: integer factor indices [n, F]. A factor with one value in the
  training points is predicted exactly by every code (accuracy of that constant). The K × F
  fits run on threads (fit_in_threads: the serial loop's numbers).
  """
  from sklearn.svm import LinearSVC

  k, f = x_train.shape[1], y_train.shape[1]
  out = np.zeros((k, f))
  varying = []
  for j in range(f):
    if len(np.unique(y_train[:, j])) < 2:
      out[:, j] = np.mean(y_test[:, j] == y_train[0, j])
    else:
      varying += [(i, j) for i in range(k)]

  def fit(pair):
    i, j = pair
    model = LinearSVC(C=SVC_C, class_weight="balanced", random_state=seed).fit(x_train[:, i:i + 1], y_train[:, j])
    return np.mean(model.predict(x_test[:, i:i + 1]) == y_test[:, j])

  for (i, j), accuracy in zip(varying, fit_in_threads(fit, varying)):
    out[i, j] = accuracy
  return out


def score_matrix_continuous(x_train, y_train) -> np.ndarray:
  """S [K, F]: squared correlation cov(z_j, v_k)² / (var z_j var v_k) (ddof 1) on the training
  points [n, K] and [n, F]; 0 where var z_j <= 1e-12 (disentanglement_lib's rule) or var v_k = 0."""
  x = x_train - x_train.mean(axis=0)
  y = np.asarray(y_train, np.float64) - y_train.mean(axis=0)
  n = x.shape[0]
  cov = x.T @ y / (n - 1)
  var_x, var_y = (x ** 2).sum(axis=0) / (n - 1), (y ** 2).sum(axis=0) / (n - 1)
  denom = var_x[:, None] * var_y[None, :]
  ok = (var_x[:, None] > 1e-12) & (denom > 0)
  return np.where(ok, cov ** 2 / np.where(ok, denom, 1.0), 0.0)


def sap_from_scores(scores: np.ndarray) -> tuple[float, np.ndarray]:
  """(SAP, gaps [F]) of a score matrix S [K, F]: per factor, best minus second-best code."""
  gaps = top_two_gap(np.asarray(scores).T)
  return float(np.mean(gaps)), gaps


def compute(ctx: MetricContext) -> dict:
  """{"value" (SAP), "gap" [F], "best_latent" [F], "score_matrix" [K, F], "scores" (what S holds),
  "factors", "num_train", "num_test", "test_in_train"}."""
  factors = scored_factors(ctx)
  rng = metric_rng(ctx.key, SALT)
  num_train = int(setting(ctx, "score_train_points", NUM_TRAIN))
  num_test = int(setting(ctx, "score_test_points", NUM_TEST))
  x_train, y_train, x_test, y_test, overlap = train_test_points(ctx, rng, factors, num_train, num_test)
  if bool(setting(ctx, "sap_continuous", False)):
    scores, kind = score_matrix_continuous(x_train, y_train), "squared correlation (continuous factors)"
  else:
    scores = score_matrix_discrete(x_train, y_train, x_test, y_test, seed=int(rng.integers(2**31)))
    kind = f"LinearSVC(C={SVC_C}, balanced) test accuracy (discrete factors)"
  value, gaps = sap_from_scores(scores)
  return {
      "value": value,
      "gap": gaps.tolist(),
      "best_latent": np.argmax(scores, axis=0).tolist(),
      "score_matrix": scores.tolist(),
      "scores": kind,
      "factors": [ctx.dataset.factor_names[f] for f in factors],
      "num_train": num_train,
      "num_test": num_test,
      "test_in_train": overlap,
  }


def scalars(result: dict) -> dict[str, float]:
  """{"sap": mean top-two gap}."""
  return {"sap": result["value"]}
