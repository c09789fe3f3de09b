"""Downstream sample efficiency (vae_jax.metrics.downstream_task): the per-factor accuracies are
scikit-learn's classifiers' (checked by fitting them directly), known answers on a small grid
(a perfect code is predicted almost exactly from many points, random codes at chance), the
sample-efficiency ratio, the sizes and factors reported, and sampling as a function of the key."""

import json
import warnings

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold

from test_metric_suite import context, perfect_codes, random_codes
from vae_jax.metrics import downstream_task

FAST = dict(downstream_train_sizes=(10, 120), downstream_test_points=150, downstream_efficiency_sizes=(10, 120))
# Two scored factors (few classifiers to fit) and a 200-value nuisance factor, so that the training
# rows (at most 120) cover a tenth of the 1,200-row grid and random codes cannot be memorised.
SMALL = dict(sizes=(2, 3, 200), names=("a", "b", "c"), nuisance=("c",))


def test_accuracies_are_those_of_sklearns_classifiers_fitted_per_factor():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(100, 3))
  y = np.stack([(x[:, 0] > 0).astype(int), np.digitize(x[:, 1] + 0.3 * x[:, 2], [-0.5, 0.5])], 1)
  train, test, constant = downstream_task.factor_accuracies("logistic_regression", x[:70], y[:70], x[70:], y[70:])
  gbt = downstream_task.factor_accuracies("gbt", x[:70], y[:70], x[70:], y[70:], seed=3, gbt_implementation="sklearn")
  ours = downstream_task.factor_accuracies("gbt", x[:70], y[:70], x[70:], y[70:], gbt_implementation="vae_jax")
  np.testing.assert_allclose(ours[1], gbt[1], atol=0.07)  # 30 test points: ±2
  for i in range(2):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      lr = LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)).fit(x[:70], y[:70, i])
    assert test[i] == pytest.approx(np.mean(lr.predict(x[70:]) == y[70:, i]))
    assert train[i] == pytest.approx(np.mean(lr.predict(x[:70]) == y[:70, i]))
    trees = GradientBoostingClassifier(random_state=3).fit(x[:70], y[:70, i])
    assert gbt[1][i] == pytest.approx(np.mean(trees.predict(x[70:]) == y[70:, i]))
  assert not constant.any() and test[0] > 0.9  # Factor 0 is a threshold of code 0.
  one_class = downstream_task.factor_accuracies("gbt", x[:5], np.zeros((5, 1), int), x[5:9], np.array([[0], [1], [0], [0]]))
  assert one_class[2][0] and one_class[1][0] == 0.75


def test_perfect_codes_are_predicted_from_many_points_and_random_codes_at_chance():
  perfect = downstream_task.compute(context(perfect_codes(SMALL["sizes"]), **SMALL, **FAST))
  rand = downstream_task.compute(context(random_codes(SMALL["sizes"], k=3), **SMALL, **FAST))
  assert perfect["gbt"]["sizes"]["120"]["mean_test_accuracy"] == 1.0
  assert perfect["logistic_regression"]["sizes"]["120"]["mean_test_accuracy"] > 0.8
  chance = np.mean([1 / 2, 1 / 3])
  assert rand["logistic_regression"]["sizes"]["120"]["mean_test_accuracy"] < chance + 0.1
  assert rand["gbt"]["sizes"]["120"]["mean_test_accuracy"] < chance + 0.15  # Trees memorise the few shared rows.
  for predictor in ("logistic_regression", "gbt"):
    sizes = perfect[predictor]["sizes"]
    ratio = sizes["10"]["mean_test_accuracy"] / sizes["120"]["mean_test_accuracy"]
    assert perfect[predictor]["sample_efficiency"] == pytest.approx(ratio)
    assert sizes["10"]["mean_test_accuracy"] <= sizes["120"]["mean_test_accuracy"]
  assert perfect["factors"] == ["a", "b"] and perfect["train_sizes"] == [10, 120]
  # "auto" fits sizes below AUTO_MIN_POINTS with scikit-learn, and each size records what fitted it.
  assert perfect["gbt_implementation"] == "auto"
  assert [sizes["fitted_with"] for sizes in perfect["gbt"]["sizes"].values()] == ["sklearn", "sklearn"]
  assert "fitted_with" not in perfect["logistic_regression"]["sizes"]["10"]
  assert perfect["num_test"] == 150 and perfect["value"] == perfect["logistic_regression"]["sizes"]["120"]["mean_test_accuracy"]
  json.dumps(perfect)
  s = downstream_task.scalars(perfect)
  assert s["downstream_gbt_efficiency"] == perfect["gbt"]["sample_efficiency"] and "downstream_gbt_120" in s


def test_sampling_is_a_function_of_the_key():
  settings = dict(FAST, downstream_predictors=("gbt",), downstream_train_sizes=(10, 20))
  codes = random_codes(SMALL["sizes"], k=3)
  a = downstream_task.compute(context(codes, key=1, **SMALL, **settings))
  b = downstream_task.compute(context(codes, key=1, **SMALL, **settings))
  c = downstream_task.compute(context(codes, key=2, **SMALL, **settings))
  assert a == b and a != c
  assert a["gbt"]["sample_efficiency"] is None  # 120 is not among the sizes.
  with pytest.raises(ValueError, match="downstream_predictors"):
    downstream_task.compute(context(codes, **SMALL, **dict(settings, downstream_predictors=("svm",))))


def test_parallel_gbt_fits_equal_a_serial_loop():
  from vae_jax.metrics import dci

  rng = np.random.default_rng(1)
  x = rng.normal(size=(80, 3))
  y = np.stack([(x[:, 0] > 0).astype(int), np.digitize(x[:, 1], [-0.5, 0.5]), (x[:, 2] > 1).astype(int)], 1)
  parallel = dci.gbt_per_factor(x[:60], y[:60], x[60:], y[60:], seed=4, n_jobs=3, implementation="sklearn")
  serial = dci.gbt_per_factor(x[:60], y[:60], x[60:], y[60:], seed=4, n_jobs=1, implementation="sklearn")
  for a, b in zip(parallel, serial):
    np.testing.assert_array_equal(a, b)
  trees = GradientBoostingClassifier(random_state=4).fit(x[:60], y[:60, 1])
  np.testing.assert_array_equal(parallel[0][:, 1], trees.feature_importances_)


def test_gbt_implementation_setting_is_checked():
  with pytest.raises(ValueError, match="gbt_implementation"):
    downstream_task.compute(context(perfect_codes(SMALL["sizes"]), **SMALL, **FAST, gbt_implementation="xgboost"))
