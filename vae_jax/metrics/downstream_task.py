"""Downstream sample efficiency, by disentanglement_lib's protocol (`downstream_task`, Locatello et
al., "Challenging common assumptions in the unsupervised learning of disentangled
representations", ICML 2019): how well simple classifiers predict each factor from the codes
given few or many labelled examples.

For each predictor and each training size s in `downstream_train_sizes` (10, 100, 1,000,
10,000): s grid rows drawn i.i.d. uniformly (a fresh draw per size), one classifier per scored
factor fitted on their posterior means and factor indices, accuracy on `downstream_test_points`
(5,000) test rows. Predictors (`downstream_predictors`):
- "logistic_regression": scikit-learn LogisticRegressionCV(Cs=10, cv=KFold(5)) (its other
  defaults: lbfgs, max_iter 100), disentanglement_lib's logistic_regression_cv;
- "gbt": GradientBoostingClassifier() with scikit-learn's defaults (100 stages, depth 3,
  learning rate 0.1), disentanglement_lib's gradient_boosting_classifier. Its cost grows with
  the number of classes (one tree per class and stage: 113 per stage on dSprites). The eval
  setting `gbt_implementation` (shared with DCI) picks the code: "vae_jax"
  (vae_jax.evaluation.boosted_trees, the same algorithm in jitted JAX, several times faster;
  deviation: where several codes give a node's best split equally well the lowest code index
  wins, where scikit-learn picks by a feature order drawn from its random_state, so the
  accuracies agree closely but not exactly), "sklearn" (scikit-learn's, random_state from
  this metric's key; it dominates the suite's time, docs/performance.md) or "auto" (default:
  the JAX trees for sizes of at least 1,000 points, scikit-learn's below, where its fit is
  faster than compiling the JAX trees for another shape).
Sample efficiency (disentanglement_lib's ratio): mean test accuracy at 100 training points
divided by mean test accuracy at 10,000 (`downstream_efficiency_sizes`); None if a size is absent.

Deviations: the test rows are drawn once and shared by every size and predictor
(disentanglement_lib draws a fresh test set per size), so the sizes differ only in their
training points. A factor whose training rows all share one value is predicted as that value
(scikit-learn's classifiers refuse one class); such cases are listed in "constant_predictions".
"""

from __future__ import annotations

import warnings

import numpy as np

from vae_jax.evaluation.boosted_trees import gradient_boosting_classifier
from vae_jax.evaluation.boosted_trees import resolve_implementation
from vae_jax.metrics.base import MetricContext, fit_in_threads
from vae_jax.metrics.beta_vae_score import labelled_points, metric_rng, scored_factors, setting

SALT = 8  # This metric's generator: fold_in(ctx.key, SALT).
PREDICTORS = ("logistic_regression", "gbt")

# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"downstream_train_sizes": (10, 100, 1000, 10_000), "downstream_test_points": 5000,
            "downstream_predictors": PREDICTORS, "downstream_efficiency_sizes": (100, 10_000),
            "gbt_implementation": "auto"}


def make_predictor(name: str, seed: int, gbt_implementation: str = "auto"):
  """A fresh classifier: disentanglement_lib's logistic_regression_cv (scikit-learn) or
  gradient_boosting_classifier (gbt_implementation "vae_jax" or "sklearn")."""
  from sklearn.linear_model import LogisticRegressionCV
  from sklearn.model_selection import KFold

  if name == "logistic_regression":
    return LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))
  if name == "gbt":
    return gradient_boosting_classifier(gbt_implementation, seed)
  raise ValueError(f"Unknown downstream predictor {name!r}; use one of {PREDICTORS}.")


def factor_accuracies(name: str, x_train, y_train, x_test, y_test, seed: int = 0, gbt_implementation: str = "auto"):
  """(train accuracy [F], test accuracy [F], constant [F] bool) of one classifier per factor.

  x_*: codes [n, K]; y_*: integer factor indices [n, F]. A factor with a single value in
  y_train is predicted as that value (constant True). The scikit-learn fits run on threads;
  the JAX trees one factor after another (XLA uses every core).
  """
  f = y_train.shape[1]
  train, test, constant = np.zeros(f), np.zeros(f), np.zeros(f, bool)
  varying = [i for i in range(f) if len(np.unique(y_train[:, i])) > 1]
  for i in set(range(f)) - set(varying):
    constant[i] = True
    train[i], test[i] = 1.0, float(np.mean(y_test[:, i] == y_train[0, i]))

  gbt_implementation = resolve_implementation(gbt_implementation, x_train.shape[0])

  def fit(i):
    model = make_predictor(name, seed, gbt_implementation).fit(x_train, y_train[:, i])
    return np.mean(model.predict(x_train) == y_train[:, i]), np.mean(model.predict(x_test) == y_test[:, i])

  # Warning filters are process-wide: set once here, not inside the threads.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # lbfgs convergence and KFold folds that miss a class, as in disentanglement_lib.
    accuracies = fit_in_threads(fit, varying, 1 if name == "gbt" and gbt_implementation == "vae_jax" else None)
  for i, (train_accuracy, test_accuracy) in zip(varying, accuracies):
    train[i], test[i] = train_accuracy, test_accuracy
  return train, test, constant


def sample_efficiency(per_size: dict, sizes) -> float | None:
  """Mean test accuracy at sizes[0] / at sizes[1] from {size: {"mean_test_accuracy"}}; None if absent."""
  small, large = (str(int(s)) for s in sizes)
  if small not in per_size or large not in per_size or per_size[large]["mean_test_accuracy"] == 0:
    return None
  return float(per_size[small]["mean_test_accuracy"] / per_size[large]["mean_test_accuracy"])


def compute(ctx: MetricContext) -> dict:
  """{"value" (the first predictor's mean test accuracy at the largest size), predictor name:
  {"sizes": {str(size): {"mean_train_accuracy", "mean_test_accuracy", "min_test_accuracy",
  "test_accuracy" [F], "train_accuracy" [F], "test_in_train", and for "gbt" "fitted_with" (the code
  that fitted at this size: "vae_jax" or "sklearn")}}, "sample_efficiency"},
  "predictors", "factors", "train_sizes", "num_test", "gbt_implementation", "efficiency_sizes",
  "constant_predictions"}."""
  factors = scored_factors(ctx)
  rng = metric_rng(ctx.key, SALT)
  sizes = [int(s) for s in setting(ctx, "downstream_train_sizes", SETTINGS["downstream_train_sizes"])]
  num_test = int(setting(ctx, "downstream_test_points", 5000))
  predictors = tuple(setting(ctx, "downstream_predictors", PREDICTORS))
  efficiency_sizes = tuple(setting(ctx, "downstream_efficiency_sizes", (100, 10_000)))
  unknown = [p for p in predictors if p not in PREDICTORS]
  if unknown or not predictors:
    raise ValueError(f"eval.downstream_predictors={predictors!r}; use names from {PREDICTORS}.")
  implementation = str(setting(ctx, "gbt_implementation", SETTINGS["gbt_implementation"]))
  resolve_implementation(implementation, 0)  # Checked before any point is drawn.
  n = ctx.posterior.mean.shape[0]
  test_rows = rng.integers(n, size=num_test)
  x_test, y_test = labelled_points(ctx, test_rows, factors)
  train_rows = {s: rng.integers(n, size=s) for s in sizes}
  seed = int(rng.integers(2**31))
  names = [ctx.dataset.factor_names[f] for f in factors]
  out = {"predictors": list(predictors), "factors": names, "train_sizes": sizes, "num_test": num_test,
         "gbt_implementation": implementation,
         "efficiency_sizes": list(efficiency_sizes), "constant_predictions": []}
  for predictor in predictors:
    per_size = {}
    for s in sizes:
      x_train, y_train = labelled_points(ctx, train_rows[s], factors)
      train, test, constant = factor_accuracies(predictor, x_train, y_train, x_test, y_test, seed, implementation)
      per_size[str(s)] = {"mean_train_accuracy": float(train.mean()), "mean_test_accuracy": float(test.mean()),
                          "min_test_accuracy": float(test.min()), "train_accuracy": train.tolist(),
                          "test_accuracy": test.tolist(),
                          "test_in_train": float(np.isin(test_rows, train_rows[s]).mean()),
                          **({"fitted_with": resolve_implementation(implementation, s)} if predictor == "gbt" else {})}
      out["constant_predictions"] += [f"{predictor} {s} {names[i]}" for i in np.flatnonzero(constant)]
    out[predictor] = {"sizes": per_size, "sample_efficiency": sample_efficiency(per_size, efficiency_sizes)}
  out["value"] = out[predictors[0]]["sizes"][str(max(sizes))]["mean_test_accuracy"]
  return out


def scalars(result: dict) -> dict[str, float]:
  """downstream_<predictor>_<size> (mean test accuracy) per size, and downstream_<predictor>_efficiency."""
  out = {}
  for predictor in result["predictors"]:
    for size, r in result[predictor]["sizes"].items():
      out[f"downstream_{predictor}_{size}"] = r["mean_test_accuracy"]
    if result[predictor]["sample_efficiency"] is not None:
      out[f"downstream_{predictor}_efficiency"] = result[predictor]["sample_efficiency"]
  return out
