"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, "A framework for
the quantitative evaluation of disentangled representations", ICLR 2018), by
disentanglement_lib's protocol (`dci`).

Per scored factor, a predictor of the factor from all K codes gives a column of the
importance matrix R [K, F] (entry (j, k): how much code j matters for factor k).
  disentanglement = Σ_j ρ_j (1 − H_F(R_j· / Σ_k R_jk)),  ρ_j = Σ_k R_jk / Σ R   ("value")
  completeness    = Σ_k ρ_k (1 − H_K(R_·k / Σ_j R_jk)),  ρ_k = Σ_j R_jk / Σ R
with H_F the entropy in base F (so each term lies in [0, 1]); 1e-11 is added to R before
normalising, as disentanglement_lib does. Weighting completeness by ρ_k follows
disentanglement_lib (Eastwood & Williams average the factors).

Two predictors, chosen by the eval setting `dci_importance` (read with a default; the
config may add it), named in the result's "importance":
- "gbt" (default, disentanglement_lib): one gradient-boosted-tree classifier per factor,
  scikit-learn's GradientBoostingClassifier() algorithm (100 stages, depth 3, learning rate
  0.1), R = |feature_importances_|; informativeness = mean classification accuracy over
  factors, on the training and the test points. Its cost is one depth-3 tree per class and
  stage on the 10,000 training points: 100 × (3 + 6 + 40 + 32 + 32) = 11,300 trees on dSprites.
  The eval setting `gbt_implementation` picks the code:
  - "auto" (default): "vae_jax" from 1,000 training points on (the protocol's 10,000),
    "sklearn" below, where scikit-learn's fit is faster than compiling the JAX trees.
  - "vae_jax": vae_jax.evaluation.boosted_trees, the same algorithm in jitted JAX,
    several times faster. Deviation: where several codes give a node's best split equally
    well, the lowest code index wins (scikit-learn picks by a feature order drawn from its
    random_state); such ties change some trees, so R and the accuracies agree with
    scikit-learn's closely but not exactly (benchmarks/boosted_trees_vs_sklearn.py).
  - "sklearn": scikit-learn's GradientBoostingClassifier (random_state from this metric's key),
    as disentanglement_lib; minutes on a small CPU (docs/performance.md), the factors fitted
    in parallel on threads (the same numbers as a serial loop).
  No binned predictor is substituted: scikit-learn's HistGradientBoostingClassifier has no
  feature_importances_.
- "lasso" (much faster; Eastwood & Williams' linear predictor): codes and factor indices
  standardised with the training points' mean and std, one scikit-learn Lasso per factor
  with α = `dci_lasso_alpha` (default 0.02, our fixed choice: Eastwood & Williams pick α
  on a validation split), R = |coef_|; informativeness = mean normalised RMSE (RMSE / std of
  the factor; lower is better), on the training and the test points.

Defaults (disentanglement_lib's unsupervised_study_v1 config): 10,000 training and 5,000
test points drawn i.i.d. uniformly from the grid (settings `score_train_points`,
`score_test_points`). On a small grid many test points are training points too (the
fraction is in "test_in_train"), which inflates test informativeness.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from vae_jax.evaluation.boosted_trees import gradient_boosting_classifier
from vae_jax.evaluation.boosted_trees import resolve_implementation
from vae_jax.metrics.base import MetricContext, fit_in_threads
from vae_jax.metrics.beta_vae_score import NUM_TEST, NUM_TRAIN, metric_rng, scored_factors, setting, train_test_points

SALT = 3  # This metric's generator: fold_in(ctx.key, SALT).
IMPORTANCES = ("gbt", "lasso")
LASSO_ALPHA = 0.02
EPS = 1e-11  # disentanglement_lib's offset before the entropies.


# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"dci_importance": "gbt", "dci_lasso_alpha": LASSO_ALPHA, "gbt_implementation": "auto"}


def gbt_per_factor(x_train, y_train, x_test, y_test, seed: int = 0, n_jobs: int | None = None,
                   implementation: str = "auto"):
  """One gradient-boosted-tree classifier (GradientBoostingClassifier() defaults) per factor.

  x_*: codes [n, K]; y_*: integer factor indices [n, F]; implementation: "vae_jax" (jitted
  JAX, factors one after another: XLA uses every core) or "sklearn" (random_state=seed; the F
  fits on joblib threads, n_jobs: default min(F, CPU cores), scikit-learn building trees
  without the GIL; each fit has the same seed, so the result equals a serial loop). Returns
  (importances [K, F] = |feature_importances_|, train accuracy [F], test accuracy [F]).
  """
  implementation = resolve_implementation(implementation, x_train.shape[0])

  def fit(i):
    model = gradient_boosting_classifier(implementation, seed).fit(x_train, y_train[:, i])
    return (np.abs(model.feature_importances_), np.mean(model.predict(x_train) == y_train[:, i]),
            np.mean(model.predict(x_test) == y_test[:, i]))

  fits = fit_in_threads(fit, range(y_train.shape[1]), 1 if implementation == "vae_jax" else n_jobs)
  return np.stack([r[0] for r in fits], 1), np.array([r[1] for r in fits]), np.array([r[2] for r in fits])


def importance_gbt(x_train, y_train, x_test, y_test, seed: int = 0, implementation: str = "auto"):
  """Gradient-boosted-tree importances, as disentanglement_lib's compute_importance_gbt.

  x_*: codes [n, K]; y_*: integer factor indices [n, F]; seed: scikit-learn's random_state;
  implementation: "auto" (the JAX trees from AUTO_MIN_POINTS training points on, scikit-learn
  below), "vae_jax" or "sklearn" (gbt_per_factor). Returns (R [K, F], train accuracy [F], test
  accuracy [F]).
  """
  return gbt_per_factor(x_train, y_train, x_test, y_test, seed, implementation=implementation)


def standardise(x_train, x_test):
  """(x_train, x_test) [n, D] centred and scaled by x_train's mean and std (std 0 → 1)."""
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  return (x_train - mean) / std, (x_test - mean) / std


def importance_lasso(x_train, y_train, x_test, y_test, alpha: float = LASSO_ALPHA):
  """Lasso importances on standardised codes and factor indices.

  x_*: codes [n, K]; y_*: factor indices [n, F]. Returns (R [K, F] = |coefficients|,
  train NRMSE [F], test NRMSE [F]); NRMSE = RMSE / std of the standardised factor (1 on the
  training points).
  """
  from sklearn.linear_model import Lasso

  x_train, x_test = standardise(x_train, x_test)
  y_train, y_test = standardise(np.asarray(y_train, np.float64), np.asarray(y_test, np.float64))
  k, f = x_train.shape[1], y_train.shape[1]
  importance = np.zeros((k, f))
  train_err, test_err = np.zeros(f), np.zeros(f)
  for i in range(f):
    model = Lasso(alpha=alpha).fit(x_train, y_train[:, i])
    importance[:, i] = np.abs(model.coef_)
    for err, x, y in ((train_err, x_train, y_train), (test_err, x_test, y_test)):
      scale = y[:, i].std()
      err[i] = np.sqrt(np.mean((model.predict(x) - y[:, i]) ** 2)) / (scale if scale > 0 else 1.0)
  return importance, train_err, test_err


def normalised_entropy(p: np.ndarray) -> np.ndarray:
  """1 − entropy in base D of each column of p [D, M] (normalised to sum 1) → [M]; 1 when D = 1."""
  if p.shape[0] < 2:
    return np.ones(p.shape[1])
  return 1.0 - scipy.stats.entropy(p, base=p.shape[0])


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
  """1 − H_F of each code's importances: R [K, F] → [K]."""
  return normalised_entropy(importance.T + EPS)


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
  """1 − H_K of each factor's importances: R [K, F] → [F]."""
  return normalised_entropy(importance + EPS)


def weights(importance: np.ndarray, axis: int) -> np.ndarray:
  """Relative importance of each code (axis=1 → [K]) or factor (axis=0 → [F]); uniform if R = 0."""
  if importance.sum() == 0:
    importance = np.ones_like(importance)
  return importance.sum(axis=axis) / importance.sum()


def disentanglement(importance: np.ndarray) -> float:
  """DCI disentanglement of R [K, F]: per-code scores weighted by code importance."""
  return float(np.sum(disentanglement_per_code(importance) * weights(importance, 1)))


def completeness(importance: np.ndarray) -> float:
  """DCI completeness of R [K, F]: per-factor scores weighted by factor importance."""
  return float(np.sum(completeness_per_factor(importance) * weights(importance, 0)))


def compute(ctx: MetricContext) -> dict:
  """{"value" (disentanglement), "disentanglement", "completeness", "informativeness_train",
  "informativeness_test", "informativeness_measure", "importance" (predictor), "gbt_implementation"
  (for "gbt": the setting) and "gbt_fitted_with" (the code that fitted: "vae_jax" or "sklearn"), "importance_matrix"
  [K, F], "disentanglement_per_code" [K], "completeness_per_factor" [F], "informativeness_per_factor"
  [F] (test), "factors", "num_train", "num_test", "test_in_train"}."""
  method = str(setting(ctx, "dci_importance", "gbt"))
  if method not in IMPORTANCES:
    raise ValueError(f"eval.dci_importance={method!r}; use one of {IMPORTANCES}.")
  implementation = str(setting(ctx, "gbt_implementation", SETTINGS["gbt_implementation"]))
  resolve_implementation(implementation, 0)  # Checked before any point is drawn.
  factors = scored_factors(ctx)
  rng = metric_rng(ctx.key, SALT)
  num_train = int(setting(ctx, "score_train_points", NUM_TRAIN))
  num_test = int(setting(ctx, "score_test_points", NUM_TEST))
  x_train, y_train, x_test, y_test, overlap = train_test_points(ctx, rng, factors, num_train, num_test)
  if method == "gbt":
    importance, train, test = importance_gbt(x_train, y_train, x_test, y_test, seed=int(rng.integers(2**31)),
                                             implementation=implementation)
    measure = "accuracy"
  else:
    alpha = float(setting(ctx, "dci_lasso_alpha", LASSO_ALPHA))
    importance, train, test = importance_lasso(x_train, y_train, x_test, y_test, alpha=alpha)
    measure = f"nrmse (lasso alpha {alpha})"
  d = disentanglement(importance)
  return {
      "value": d,
      "disentanglement": d,
      "completeness": completeness(importance),
      "informativeness_train": float(np.mean(train)),
      "informativeness_test": float(np.mean(test)),
      "informativeness_measure": measure,
      "importance": method,
      **({"gbt_implementation": implementation, "gbt_fitted_with": resolve_implementation(implementation, num_train)}
         if method == "gbt" else {}),
      "importance_matrix": importance.tolist(),
      "disentanglement_per_code": disentanglement_per_code(importance).tolist(),
      "completeness_per_factor": completeness_per_factor(importance).tolist(),
      "informativeness_per_factor": np.asarray(test).tolist(),
      "factors": [ctx.dataset.factor_names[f] for f in factors],
      "num_train": num_train,
      "num_test": num_test,
      "test_in_train": overlap,
  }


def scalars(result: dict) -> dict[str, float]:
  """dci_disentanglement, dci_completeness, and dci_informativeness (GBT test accuracy) or
  dci_nrmse (lasso test NRMSE, lower is better): the two are different quantities."""
  out = {"dci_disentanglement": result["disentanglement"], "dci_completeness": result["completeness"]}
  out["dci_informativeness" if result["importance"] == "gbt" else "dci_nrmse"] = result["informativeness_test"]
  return out
