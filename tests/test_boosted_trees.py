"""vae_jax.evaluation.boosted_trees against scikit-learn's GradientBoostingClassifier.

Where no two features tie for a node's best split (continuous features, checked by the fit's
`ties` count), the raw predictions and importances equal scikit-learn's to rounding. On
realistic data ties occur (the lowest feature index wins, scikit-learn draws a feature order),
so the importances, top features and accuracy are compared with tolerances.
"""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from vae_jax.evaluation import boosted_trees
from vae_jax.evaluation.boosted_trees import fit_boosted_trees


def labelled(n, k, classes, seed):
  """Gaussian codes x [n, k] and labels in 0..classes−1 from a noisy function of codes 0 and 1."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, k))
  s = x[:, 0] + 0.5 * x[:, 1] + 0.5 * rng.normal(size=n)
  return x, np.digitize(s, np.quantile(s, np.linspace(0, 1, classes + 1)[1:-1]))


def assert_equal_to_sklearn(x, y, held_out, n_stages, split_dtype="float64"):
  ours = fit_boosted_trees(x, y, n_stages=n_stages, split_dtype=split_dtype)
  theirs = GradientBoostingClassifier(n_estimators=n_stages, random_state=0).fit(x, y)
  assert ours.ties == 0  # Otherwise the comparison below is not meant to hold.
  np.testing.assert_array_equal(ours.classes_, theirs.classes_)
  np.testing.assert_allclose(ours.decision_function(held_out), theirs.decision_function(held_out), rtol=0, atol=1e-9)
  np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, rtol=0, atol=1e-9)
  np.testing.assert_array_equal(ours.predict(held_out), theirs.predict(held_out))
  return ours


@pytest.mark.parametrize("classes, split_dtype", [(2, "float64"), (2, "float32"), (3, "float64")])
def test_equal_to_sklearn_without_ties(classes, split_dtype):
  x, y = labelled(600, 4, classes, seed=classes)
  assert_equal_to_sklearn(x[:500], y[:500], x[500:], n_stages=5, split_dtype=split_dtype)


def test_repeated_and_nearly_equal_values_equal_to_sklearn():
  # Integer values repeat; 1e-8 steps are closer than scikit-learn's 1e-7 split threshold.
  rng = np.random.default_rng(5)
  base = rng.integers(0, 6, size=300).astype(float)
  x = (base + 1e-8 * rng.integers(0, 3, size=300))[:, None]
  y = (base + rng.integers(0, 3, size=300)) % 3
  ours = assert_equal_to_sklearn(x, y, np.arange(-1, 7, 0.5)[:, None], n_stages=10)
  constant = fit_boosted_trees(np.concatenate([x, np.full_like(x, 0.5)], 1), y, n_stages=10, split_dtype="float64")
  assert constant.feature_importances_[1] == 0
  np.testing.assert_allclose(constant.feature_importances_[0], ours.feature_importances_[0])


def test_close_to_sklearn_on_realistic_codes():
  x, y = labelled(2500, 10, 5, seed=0)
  x[:, 2] = x[:, 0] + 0.1 * x[:, 2]  # A weaker copy of the main code.
  ours = fit_boosted_trees(x[:2000], y[:2000], n_stages=20)
  theirs = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x[:2000], y[:2000])
  assert ours.ties > 0  # Realistic: some nodes tie, so the trees may differ from scikit-learn's.
  np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, rtol=0, atol=0.02)
  assert set(np.argsort(ours.feature_importances_)[-2:]) == set(np.argsort(theirs.feature_importances_)[-2:])
  accuracy = lambda model: np.mean(model.predict(x[2000:]) == y[2000:])
  assert abs(accuracy(ours) - accuracy(theirs)) <= 0.02
  assert accuracy(ours) > 0.4  # Chance: 0.2.


def test_classifier_choice():
  assert isinstance(boosted_trees.gradient_boosting_classifier("vae_jax"), boosted_trees.BoostedTreesClassifier)
  assert isinstance(boosted_trees.gradient_boosting_classifier("sklearn", 3), GradientBoostingClassifier)
  with pytest.raises(ValueError, match="sklearn"):
    boosted_trees.gradient_boosting_classifier("xgboost")
  with pytest.raises(ValueError, match="2"):
    fit_boosted_trees(np.zeros((4, 2)), np.ones(4))


def test_auto_uses_the_jax_trees_from_auto_min_points_on():
  assert boosted_trees.resolve_implementation("auto", boosted_trees.AUTO_MIN_POINTS) == "vae_jax"
  assert boosted_trees.resolve_implementation("auto", boosted_trees.AUTO_MIN_POINTS - 1) == "sklearn"
  assert boosted_trees.resolve_implementation("sklearn", 10**6) == "sklearn"
  assert boosted_trees.resolve_implementation("vae_jax", 10) == "vae_jax"
  with pytest.raises(ValueError, match="gbt_implementation='xgb'"):
    boosted_trees.resolve_implementation("xgb", 10)
