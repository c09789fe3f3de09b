"""The metric suite beside MIG: BetaVAE, FactorVAE, DCI, SAP, modularity/explicitness, DCIMIG and
disentanglement_lib's unsupervised scores.

Known answers on small factor grids with synthetic codes (a perfect code: one monotone code
per factor; random codes; a 45° rotation of two factors), and each formula against an
independent NumPy/scikit-learn computation on inputs where every step can be checked.
"""

import json
import math
import types

import jax
import ml_collections
import numpy as np
import pytest

from vae_jax import configlib, evaluate, metrics
from vae_jax.data.dsprites import ProceduralDSprites
from vae_jax.data.grid import index_to_factors
from vae_jax.evaluation.mig import histogram_discretize
from vae_jax.metrics import (beta_vae_score, dci, dcimig, factor_vae_score, modularity_explicitness, sap,
                             unsupervised)

SUITE = ("beta_vae_score", "factor_vae_score", "dci", "sap", "modularity_explicitness", "dcimig", "unsupervised")
SIZES = (2, 3, 4, 5)  # 120 grid points, four factors: classifier chance 1/4.
NAMES = ("a", "b", "c", "d")
# Random codes are a random table over the grid: on a tiny grid two rows that share a factor
# with many values coincide more often (|Δz| = 0), which the classifier scores pick up;
# their chance tests use a grid where that is rare.
BIG = (6, 7, 8, 9)


def grid_factors(sizes=SIZES):
  return index_to_factors(np.arange(int(np.prod(sizes))), sizes)


def perfect_codes(sizes=SIZES):
  """One code per factor, a monotone (affine) function of that factor's index: [N, F]."""
  f = grid_factors(sizes).astype(np.float64)
  return (f - f.mean(axis=0)) / f.std(axis=0)


def random_codes(sizes=SIZES, k=4, seed=0):
  return np.random.default_rng(seed).normal(size=(int(np.prod(sizes)), k))


def rotated_codes(sizes=SIZES):
  """The perfect code with factors c and d mixed by a 45° rotation."""
  z = perfect_codes(sizes)
  c, d = z[:, 2].copy(), z[:, 3].copy()
  z[:, 2], z[:, 3] = (c + d) / math.sqrt(2), (c - d) / math.sqrt(2)
  return z


def context(codes, sizes=SIZES, names=NAMES, key=0, nuisance=(), **settings):
  n = int(np.prod(sizes))
  base = dict(histogram_bins=20, histogram_points=n, score_train_points=2000, score_test_points=1000,
              score_batch_size=64, score_variance_points=2000)
  dataset = types.SimpleNamespace(factor_names=names, factor_sizes=sizes, nuisance_factors=nuisance)
  return metrics.MetricContext(
      posterior=metrics.Posterior(np.asarray(codes), None, sizes, np.arange(n), grid_factors(sizes)),
      dataset=dataset, settings=ml_collections.ConfigDict({**base, **settings}), key=jax.random.PRNGKey(key),
      points={"dcimig": np.arange(n)}, counted_factors=tuple(range(len(sizes))))


# ---------------------------------------------------------------------------
# The registry and the results' form.


def test_the_suite_is_registered_and_its_results_are_json_with_factors_and_sample_sizes():
  ctx = context(perfect_codes(), score_train_points=300, score_test_points=200, score_variance_points=300,
                dci_importance="lasso")  # GBT: test_dci_perfect_random_rotated
  for name in SUITE:
    assert name in metrics.available()
    module = metrics.get(name)
    result = module.compute(ctx)
    json.dumps(result)  # JSON-able as computed.
    assert "factors" in result and isinstance(result["value"], float), name
    assert any(k.startswith("num_") for k in result), name
    assert all(isinstance(v, float) and np.isfinite(v) for v in module.scalars(result).values()), name
  assert metrics.get("dci").compute(ctx)["factors"] == list(NAMES)
  assert metrics.get("unsupervised").compute(ctx)["factors"] == []


def test_nuisance_and_constant_factors_are_not_scored():
  sizes = (1,) + SIZES
  ctx = context(perfect_codes(SIZES), sizes=sizes, names=("k",) + NAMES, nuisance=("a",))
  assert beta_vae_score.scored_factors(ctx) == (2, 3, 4)
  assert sap.compute(context(perfect_codes(), nuisance=("a",), score_train_points=300,
                             score_test_points=200))["factors"] == ["b", "c", "d"]


def test_sampling_is_a_function_of_the_key():
  codes = random_codes()
  a = beta_vae_score.compute(context(codes, key=1))
  assert beta_vae_score.compute(context(codes, key=1)) == a
  assert beta_vae_score.compute(context(codes, key=2))["train_accuracy"] != a["train_accuracy"]
  # Metric-specific streams: the same key gives different draws to different metrics.
  assert not np.array_equal(beta_vae_score.metric_rng(jax.random.PRNGKey(0), 1).integers(10**9, size=4),
                            beta_vae_score.metric_rng(jax.random.PRNGKey(0), 2).integers(10**9, size=4))


def test_set_coordinate_changes_one_factor_of_a_grid_row():
  sizes = (3, 4, 5)
  rows = np.random.default_rng(0).integers(60, size=200)
  factor = np.random.default_rng(1).integers(3, size=200)
  values = np.random.default_rng(2).integers(np.asarray(sizes)[factor])
  moved = beta_vae_score.set_coordinate(rows, sizes, factor, values)
  before, after = index_to_factors(rows, sizes), index_to_factors(moved, sizes)
  np.testing.assert_array_equal(after[np.arange(200), factor], values)
  keep = np.ones((200, 3), bool)
  keep[np.arange(200), factor] = False
  np.testing.assert_array_equal(after[keep], before[keep])
  np.testing.assert_array_equal(beta_vae_score.coordinate(rows, sizes, factor), before[np.arange(200), factor])


# ---------------------------------------------------------------------------
# Known answers: perfect code ≈ 1, random codes ≈ chance, a rotation lowers the score.


def test_beta_vae_score_perfect_random():
  assert beta_vae_score.compute(context(perfect_codes()))["value"] > 0.99
  result = beta_vae_score.compute(context(random_codes(BIG), sizes=BIG))
  assert result["chance"] == 0.25
  assert abs(result["value"] - 0.25) < 0.06  # chance: 1 / #factors


def test_beta_vae_features_are_mean_absolute_differences_with_one_factor_shared():
  """Codes = factor indices: the fixed factor's feature is 0; another factor's is E|X − Y| for
  X, Y independent uniform on {0..n−1}, i.e. (n² − 1) / (3n)."""
  codes = grid_factors().astype(np.float64)
  features, labels = beta_vae_score.pair_features(codes, SIZES, (0, 1, 2, 3), np.random.default_rng(0), 400, 256)
  assert np.all(features[np.arange(400), labels] == 0)
  for f, n in enumerate(SIZES):
    others = features[labels != f, f]
    assert abs(others.mean() - (n * n - 1) / (3 * n)) < 0.02 * n


def test_factor_vae_score_perfect_random_and_pruning():
  assert factor_vae_score.compute(context(perfect_codes()))["value"] > 0.99
  result = factor_vae_score.compute(context(random_codes(BIG), sizes=BIG))
  assert abs(result["value"] - 0.25) < 0.08  # chance: 1 / #factors (majority vote over 4 dimensions)
  # A collapsed dimension (std 0.01 < 0.05) is pruned; with threshold 0 it is kept.
  codes = np.concatenate([perfect_codes(), 0.01 * random_codes(k=1)], axis=1)
  assert factor_vae_score.compute(context(codes))["active_dims"] == [0, 1, 2, 3]
  assert factor_vae_score.compute(context(codes, factor_vae_prune_threshold=0.0))["num_active_dims"] == 5
  assert factor_vae_score.compute(context(0.01 * random_codes()))["value"] == 0.0  # nothing active


def test_factor_vae_votes_and_majority_vote():
  codes = perfect_codes()
  var = codes.var(axis=0, ddof=1)
  v = factor_vae_score.votes(codes, SIZES, (0, 1, 2, 3), var, np.ones(4, bool), np.random.default_rng(0), 500, 64)
  assert v.sum() == 500 and np.all(v == np.diag(np.diag(v)))  # every vote on the fixed factor's code
  train = np.array([[5, 1, 0], [2, 6, 0]])
  evaluation = np.array([[3, 1, 2], [1, 2, 0]])
  classifier, train_acc, eval_acc = factor_vae_score.majority_vote_accuracy(train, evaluation)
  np.testing.assert_array_equal(classifier, [0, 1, 0])  # an unvoted dimension goes to factor 0
  assert train_acc == pytest.approx(11 / 14) and eval_acc == pytest.approx((3 + 2 + 2) / 9)


@pytest.mark.parametrize("importance", ["gbt", "lasso"])
def test_dci_perfect_random_rotated(importance):
  small = dict(dci_importance=importance, score_train_points=400, score_test_points=200)
  perfect = dci.compute(context(perfect_codes(), **small))
  assert perfect["importance"] == importance
  assert perfect["disentanglement"] > 0.95 and perfect["completeness"] > 0.95
  rotated = dci.compute(context(rotated_codes(), **small))
  assert rotated["disentanglement"] < perfect["disentanglement"] - 0.1
  assert rotated["completeness"] < perfect["completeness"] - 0.1
  noise = dci.compute(context(random_codes(), **small))
  assert noise["disentanglement"] < 0.5  # chance: no structure, importances spread (D → 0 with more data)
  if importance == "gbt":
    assert perfect["informativeness_test"] == 1.0 and "dci_informativeness" in dci.scalars(perfect)
    assert perfect["gbt_implementation"] == "auto" and perfect["gbt_fitted_with"] == "sklearn"  # 400 < AUTO_MIN_POINTS
  else:
    assert perfect["informativeness_test"] < 0.05 and "dci_nrmse" in dci.scalars(perfect)
    assert noise["informativeness_test"] > 0.9  # chance: NRMSE ≈ 1


def test_dci_entropy_weights_from_a_given_importance_matrix():
  r = np.array([[0.6, 0.2, 0.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.9], [0.0, 0.0, 0.0]])  # [K=4, F=3]
  k, f = r.shape

  def one_minus_entropy(p, base):
    p = [x + 1e-11 for x in p]
    p = [x / sum(p) for x in p]
    return 1 - sum(-x * math.log(x) for x in p) / math.log(base)

  d_code = [one_minus_entropy(r[j], f) for j in range(k)]
  c_factor = [one_minus_entropy(r[:, i], k) for i in range(f)]
  total = r.sum()
  expected_d = sum(d_code[j] * r[j].sum() / total for j in range(k))
  expected_c = sum(c_factor[i] * r[:, i].sum() / total for i in range(f))
  np.testing.assert_allclose(dci.disentanglement_per_code(r), d_code, atol=1e-9)
  np.testing.assert_allclose(dci.completeness_per_factor(r), c_factor, atol=1e-9)
  assert dci.disentanglement(r) == pytest.approx(expected_d)
  assert dci.completeness(r) == pytest.approx(expected_c)
  # Hand-checkable cases: one code per factor; one code for both factors.
  assert dci.disentanglement(np.eye(2)) == pytest.approx(1) and dci.completeness(np.eye(2)) == pytest.approx(1)
  both = np.array([[1.0, 1.0], [0.0, 0.0]])
  assert dci.disentanglement(both) == pytest.approx(0, abs=1e-9) and dci.completeness(both) == pytest.approx(1)


def test_dci_gbt_importance_is_sklearns_feature_importance():
  from sklearn.ensemble import GradientBoostingClassifier

  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 3))
  y = np.stack([(x[:, 0] > 0).astype(int), np.digitize(x[:, 2], [-0.5, 0.5])], axis=1)
  r, train_acc, test_acc = dci.importance_gbt(x[:200], y[:200], x[200:], y[200:], seed=3, implementation="sklearn")
  ours, _, our_test_acc = dci.importance_gbt(x[:200], y[:200], x[200:], y[200:], implementation="vae_jax")
  for i in range(2):
    model = GradientBoostingClassifier(random_state=3).fit(x[:200], y[:200, i])
    np.testing.assert_allclose(r[:, i], model.feature_importances_)
    assert test_acc[i] == np.mean(model.predict(x[200:]) == y[200:, i])
  np.testing.assert_allclose(ours, r, atol=0.02)  # Ties go to the lowest code index (boosted_trees).
  np.testing.assert_allclose(our_test_acc, test_acc, atol=0.03)
  assert np.argmax(r[:, 0]) == 0 and np.argmax(r[:, 1]) == 2


def test_sap_perfect_random_and_gap_from_a_given_score_matrix():
  small = dict(score_train_points=1000, score_test_points=500)
  perfect = sap.compute(context(perfect_codes(), **small))
  noise = sap.compute(context(random_codes(), **small))
  assert perfect["best_latent"] == [0, 1, 2, 3]
  assert perfect["gap"][0] > 0.4  # binary factor: its code thresholds it exactly, the others ≈ 1/2
  assert perfect["value"] > noise["value"] + 0.15 and noise["value"] < 0.1  # chance: gap ≈ 0
  scores = np.array([[0.9, 0.1], [0.5, 0.2], [0.1, 0.8]])  # [K=3, F=2]
  value, gaps = sap.sap_from_scores(scores)
  np.testing.assert_allclose(gaps, [0.9 - 0.5, 0.8 - 0.2])
  assert value == pytest.approx(0.5)


def test_sap_score_matrices_against_direct_computations():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 2))
  y = np.stack([(x[:, 0] > 0.3).astype(int), rng.integers(2, size=400)], axis=1)
  s = sap.score_matrix_discrete(x[:300], y[:300], x[300:], y[300:])
  from sklearn.svm import LinearSVC

  for i in range(2):
    for j in range(2):
      model = LinearSVC(C=0.01, class_weight="balanced", random_state=0).fit(x[:300, i:i + 1], y[:300, j])
      assert s[i, j] == np.mean(model.predict(x[300:, i:i + 1]) == y[300:, j])
  # C = 0.01 shrinks the threshold's intercept, so the thresholded code is not quite exact.
  assert s[0, 0] > 0.85 and abs(s[1, 0] - 0.5) < 0.15 and np.all(s[:, 1] < 0.7)
  corr = sap.score_matrix_continuous(x, y)
  for i in range(2):
    for j in range(2):
      assert corr[i, j] == pytest.approx(np.corrcoef(x[:, i], y[:, j])[0, 1] ** 2)
  assert np.all(sap.score_matrix_continuous(np.ones((10, 1)), np.arange(10)[:, None]) == 0)


def test_modularity_explicitness_perfect_random_rotated():
  small = dict(score_train_points=1000, score_test_points=500)
  perfect = modularity_explicitness.compute(context(perfect_codes(), **small))
  assert perfect["modularity"] > 0.95 and perfect["explicitness_test"] > 0.99
  rotated = modularity_explicitness.compute(context(rotated_codes(), **small))
  assert rotated["modularity"] < perfect["modularity"] - 0.1
  assert all(m < 0.8 for m in rotated["modularity_per_code"][2:])
  noise = modularity_explicitness.compute(context(random_codes(BIG), sizes=BIG, **small))
  assert abs(noise["explicitness_test"] - 0.5) < 0.05  # chance: AUC 1/2
  assert noise["test_in_train"] < 0.5


def test_modularity_deviation_from_a_given_mi_matrix():
  mi = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 3.0, 0.0]])  # [K=4, F=3]
  # Code 0: θ² = 4, δ = (4 + 1 − 4) / (4 · 2); code 1 carries nothing: 0; code 2: δ = (3 − 1) / (1 · 2).
  np.testing.assert_allclose(modularity_explicitness.modularity_per_code(mi), [1 - 1 / 8, 0.0, 0.0, 1.0])


def test_explicitness_matches_disentanglement_libs_multilabel_auc():
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import roc_auc_score
  from sklearn.preprocessing import MultiLabelBinarizer

  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 3))
  y = np.digitize(x[:, 0] + 0.5 * rng.normal(size=600), [-0.7, 0.0, 0.7])
  train, test = modularity_explicitness.explicitness_per_factor(x[:400], y[:400], x[400:], y[400:])
  model = LogisticRegression(max_iter=1000).fit(x[:400], y[:400])
  mlb = MultiLabelBinarizer()
  assert train == pytest.approx(roc_auc_score(mlb.fit_transform(y[:400, None]), model.predict_proba(x[:400])))
  assert test == pytest.approx(roc_auc_score(mlb.fit_transform(y[400:, None]), model.predict_proba(x[400:])))
  assert 0.7 < test < 1.0


def test_macro_auc_from_ranks_is_sklearns_roc_auc_with_ties():
  from sklearn.metrics import roc_auc_score

  rng = np.random.default_rng(1)
  labels = rng.integers(4, size=300)
  onehot = (labels[:, None] == np.arange(4)[None, :]).astype(int)
  scores = np.round(rng.uniform(size=(300, 4)) + 0.3 * onehot, 1)  # Rounded: many tied scores.
  want = roc_auc_score(onehot, scores, average="macro")
  assert modularity_explicitness.macro_auc_one_vs_rest(onehot, scores) == pytest.approx(want, abs=1e-12)
  assert 0.6 < want < 0.95
  # Known answers: perfectly ranked columns score 1, reversed ones 0.
  assert modularity_explicitness.macro_auc_one_vs_rest(onehot, onehot.astype(float)) == 1.0
  assert modularity_explicitness.macro_auc_one_vs_rest(onehot, -onehot.astype(float)) == 0.0


def test_dcimig_combination_from_a_given_mi_matrix():
  mi = np.array([[1.0, 0.2, 0.0, 0.3], [0.5, 0.9, 0.0, 0.1], [0.0, 0.0, 0.0, 0.2]])  # [F=3, K=4]
  out = dcimig.dcimig_from_mi(mi, np.array([1.0, 1.0, 0.5]))
  # Codes go to factors 0, 1, 0 (tie at 0), 0 with gaps 0.5, 0.7, 0, 0.1; factors keep 0.5, 0.7, 0.
  np.testing.assert_array_equal(out["code_factor"], [0, 1, 0, 0])
  np.testing.assert_allclose(out["code_gap"], [0.5, 0.7, 0.0, 0.1])
  np.testing.assert_allclose(out["factor_gap"], [0.5, 0.7, 0.0])
  assert out["dcimig"] == pytest.approx(1.2 / 2.5)


def test_dcimig_perfect_rotated_and_its_mi_is_sklearns():
  from sklearn.metrics import mutual_info_score

  perfect = dcimig.compute(context(perfect_codes()))
  assert perfect["value"] == pytest.approx(1.0, abs=1e-9)  # every code: its factor's whole entropy
  rotated = dcimig.compute(context(rotated_codes()))
  assert rotated["value"] < perfect["value"] - 0.1
  noise = dcimig.compute(context(random_codes(k=2)))
  assert noise["value"] < 0.3  # chance: ≈ 0 (plug-in MI bias on 120 points keeps it above)
  bins = histogram_discretize(rotated_codes(), 20)
  factors = grid_factors()
  expected = [[mutual_info_score(factors[:, f], bins[:, j]) for j in range(4)] for f in range(4)]
  np.testing.assert_allclose(rotated["mi"], expected, atol=1e-12)


def test_unsupervised_scores_against_closed_forms():
  rho = 0.6
  cov = np.array([[1.0, rho], [rho, 1.0]])
  assert unsupervised.gaussian_total_correlation(cov) == pytest.approx(-0.5 * math.log(1 - rho ** 2))
  cov = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 0.5]])
  d_half = np.diag(np.sqrt(np.diag(cov)))
  root_trace = np.sum(np.sqrt(np.linalg.eigvalsh(d_half @ cov @ d_half)))  # tr (DΣ)^½ = tr (D^½ Σ D^½)^½
  assert unsupervised.gaussian_wasserstein_correlation(cov) == pytest.approx(2 * np.trace(cov) - 2 * root_trace)
  assert unsupervised.gaussian_wasserstein_correlation(np.diag([1.0, 2.0])) == pytest.approx(0, abs=1e-12)
  from sklearn.metrics import mutual_info_score

  codes = np.random.default_rng(0).normal(size=(500, 3))
  codes[:, 2] += codes[:, 0]
  score, mi = unsupervised.mutual_info_score(codes, 20)
  bins = histogram_discretize(codes, 20)
  expected = np.array([[mutual_info_score(bins[:, i], bins[:, j]) for j in range(3)] for i in range(3)])
  np.testing.assert_allclose(mi, expected, atol=1e-12)
  assert score == pytest.approx((expected.sum() - np.trace(expected)) / 6)


def test_unsupervised_compute_on_correlated_and_independent_codes():
  z = perfect_codes()
  independent = unsupervised.compute(context(z, score_train_points=20_000))
  assert abs(independent["gaussian_total_correlation"]) < 0.01  # a full grid: factors independent
  mixed = z.copy()
  mixed[:, 1] = 0.8 * z[:, 0] + 0.6 * z[:, 1]  # corr(z0, z1) = 0.8
  correlated = unsupervised.compute(context(np.concatenate([mixed, np.zeros((120, 1))], 1), score_train_points=20_000))
  assert correlated["gaussian_total_correlation"] == pytest.approx(-0.5 * math.log(1 - 0.64), rel=0.1)
  assert correlated["gaussian_wasserstein_correlation_norm"] > 0.05 and correlated["constant_codes"] == 1
  assert correlated["mutual_info_score"] > independent["mutual_info_score"]


# ---------------------------------------------------------------------------
# Any representation, through evaluate_representation on a dSprites sub-grid.


def test_the_suite_scores_a_representation_through_evaluate_representation():
  dataset = ProceduralDSprites()
  indices, _ = evaluate.evaluated_indices(dataset.factor_sizes, False, 600)  # 432 images
  settings = configlib.base_config().eval
  settings.unlock()
  settings.update(dict(score_train_points=800, score_test_points=400, score_variance_points=800,
                       dci_importance="lasso", histogram_points=432))

  def centroid(images):  # [B, 64, 64, 1] -> (x, y, mass): codes of posX, posY and scale
    w = images[..., 0]
    mass = w.sum(axis=(1, 2))
    grid = np.arange(64, dtype=np.float32)
    return np.stack([(w.sum(1) * grid).sum(1) / mass, (w.sum(2) * grid).sum(1) / mass, mass], axis=1)

  result = evaluate.evaluate_representation(centroid, dataset, metrics=SUITE, settings=settings, indices=indices)
  json.dumps(result.metrics)
  factors = result.metrics["dci"]["factors"]
  assert factors == ["shape", "scale", "orientation", "posX", "posY"]
  r = np.asarray(result.metrics["dci"]["importance_matrix"])
  assert np.argmax(r[:, factors.index("posX")]) == 0 and np.argmax(r[:, factors.index("posY")]) == 1
  assert result.metrics["sap"]["best_latent"][factors.index("posX")] == 0
  assert result.metrics["beta_vae_score"]["value"] > 0.5  # chance 1/5


def test_fit_in_threads_returns_results_in_the_order_of_its_items():
  import time

  from vae_jax.metrics.base import fit_in_threads

  def slow_square(i):  # The first items finish last.
    time.sleep(0.02 * (6 - i))
    return i * i

  assert fit_in_threads(slow_square, range(6), n_jobs=3) == [i * i for i in range(6)]
  assert fit_in_threads(slow_square, [], n_jobs=None) == []


def test_gbt_implementation_setting_is_checked():
  with pytest.raises(ValueError, match="gbt_implementation"):
    dci.compute(context(perfect_codes(), gbt_implementation="xgboost", score_train_points=50, score_test_points=20))
