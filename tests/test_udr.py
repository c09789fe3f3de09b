"""UDR (vae_jax.evaluation.udr, vae_jax.metrics.udr): known answers (a permuted, sign-flipped copy
scores 1 with Spearman, 0.9 with Lasso's shrinkage; independent codes score low), the formula
against a loop-by-loop NumPy/SciPy/scikit-learn computation, the KL filter, and the ensemble
plumbing of the evaluation run."""

import types

import jax
import ml_collections
import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import Lasso

from vae_jax import evaluate, metrics
from vae_jax.data.grid import index_to_factors
from vae_jax.evaluation import udr as udr_lib


def base_codes(n=400, k=4, seed=0):
  return np.random.default_rng(seed).normal(size=(n, k))


def permuted_flipped(z, seed=1):
  rng = np.random.default_rng(seed)
  return z[:, rng.permutation(z.shape[1])] * rng.choice([-1.0, 1.0], size=z.shape[1])


def reference_udr_pair(a, b, similarity, alpha=0.1):
  """UDR of (a, b) computed the slow way: per-pair spearmanr, per-output Lasso, explicit loops."""
  a = (a - a.mean(0)) / a.std(0)
  b = (b - b.mean(0)) / b.std(0)
  ka, kb = a.shape[1], b.shape[1]
  r = np.zeros((ka, kb))
  for i in range(ka):
    for j in range(kb):
      if similarity == "spearman":
        r[i, j] = abs(scipy.stats.spearmanr(a[:, i], b[:, j])[0])
  if similarity == "lasso":
    for j in range(kb):
      r[:, j] = np.abs(Lasso(alpha=alpha).fit(a, b[:, j]).coef_)
  col = [max(r[:, j]) ** 2 / sum(r[:, j]) if sum(r[:, j]) > 0 else 0.0 for j in range(kb)]
  row = [max(r[i, :]) ** 2 / sum(r[i, :]) if sum(r[i, :]) > 0 else 0.0 for i in range(ka)]
  return (sum(col) / kb + sum(row) / ka) / 2


def grid_codes(sizes=(5, 6, 7, 8)):
  """One code per factor of a full grid: exactly uncorrelated (also in rank), [1680, 4]."""
  f = index_to_factors(np.arange(int(np.prod(sizes))), sizes).astype(np.float64)
  return f + 0.1 * f ** 2  # Monotone, not affine.


def test_a_permuted_sign_flipped_copy_scores_one_and_independent_codes_score_low():
  # Codes exactly uncorrelated with each other: a copy matches one to one with nothing left over.
  # (Independent random codes carry spurious correlations |ρ| ~ 1/√n that lower the score a little.)
  z = grid_codes()
  copy = permuted_flipped(z)
  warped = np.tanh(copy) ** 3  # A monotone map of each code: Spearman cannot tell.
  s = udr_lib.udr([z, copy, warped], similarity="spearman")
  np.testing.assert_allclose(s["model_scores"], 1.0, atol=1e-12)
  lasso = udr_lib.udr([z, copy], similarity="lasso")
  np.testing.assert_allclose(lasso["model_scores"], 0.9, atol=1e-3)  # Lasso(0.1) shrinks unit slopes to 0.9.
  independent = [base_codes(seed=s) for s in (10, 11, 12)]
  for similarity in ("spearman", "lasso"):
    low = udr_lib.udr(independent, similarity=similarity)["model_scores"]
    assert np.all(low < 0.1), (similarity, low)


def test_entangled_models_score_between():
  """A 45° rotation of two codes: each code of one model spreads equally over two of the other."""
  z = base_codes(n=2000)
  rotated = z.copy()
  rotated[:, 0], rotated[:, 1] = (z[:, 0] + z[:, 1]) / np.sqrt(2), (z[:, 0] - z[:, 1]) / np.sqrt(2)
  score = udr_lib.udr([z, rotated], similarity="spearman")["pairwise"][0, 1]
  # Two rotated pairs give max²/sum ≈ ρ/2 ≈ 0.35 each, the two untouched codes 1: ≈ (2 · 0.35 + 2) / 4.
  assert 0.6 < score < 0.75


@pytest.mark.parametrize("similarity", ["spearman", "lasso"])
def test_pairwise_scores_and_medians_match_a_loop_by_loop_computation(similarity):
  rng = np.random.default_rng(3)
  z = base_codes(n=300, k=3)
  models = [z @ rng.normal(size=(3, 3)) + 0.3 * rng.normal(size=(300, 3)) for _ in range(4)]
  out = udr_lib.udr(models, similarity=similarity)
  for a in range(4):
    for b in range(4):
      if a != b:
        assert out["pairwise"][a, b] == pytest.approx(reference_udr_pair(models[a], models[b], similarity), abs=1e-6)
  for m in range(4):
    assert out["model_scores"][m] == pytest.approx(np.median([out["pairwise"][b, m] for b in range(4) if b != m]))


def test_latents_with_low_kl_are_left_out():
  z = grid_codes()
  noisy = np.c_[permuted_flipped(z), np.random.default_rng(5).normal(size=(len(z), 2))]  # Two inactive latents.
  kls = [np.ones(4), np.array([1.0, 1.0, 1.0, 1.0, 0.001, 0.0])]
  filtered = udr_lib.udr([z, noisy], kls, similarity="spearman")
  assert filtered["active"][1] == [0, 1, 2, 3]
  np.testing.assert_allclose(filtered["model_scores"], 1.0, atol=1e-12)
  unfiltered = udr_lib.udr([z, noisy], similarity="spearman")
  assert np.all(unfiltered["model_scores"] < 0.95)  # The noise latents' rows count as unmatched.
  np.testing.assert_allclose(udr_lib.mean_gaussian_kl(np.zeros((3, 2)), np.zeros((3, 2))), 0.0)
  np.testing.assert_allclose(udr_lib.mean_gaussian_kl(np.ones((3, 1)), np.zeros((3, 1))), 0.5)


def test_bad_input_is_one_clear_error():
  with pytest.raises(ValueError, match="at least 2"):
    udr_lib.udr([base_codes()])
  with pytest.raises(ValueError, match="same n"):
    udr_lib.udr([base_codes(n=10), base_codes(n=11)])
  with pytest.raises(ValueError, match="similarity"):
    udr_lib.udr([base_codes(), base_codes()], similarity="pearson")


def test_the_evaluation_run_scores_each_member_against_the_others():
  sizes = (6, 7, 8)
  n = int(np.prod(sizes))
  f = index_to_factors(np.arange(n), sizes).astype(np.float64)
  perfect = f / f.std(0)
  means = [perfect, permuted_flipped(perfect), np.random.default_rng(0).normal(size=(n, 3))]
  log_var = np.log(np.full((n, 3), 0.01))
  settings = ml_collections.ConfigDict(dict(udr_points=n, udr_similarity="spearman", udr_kl_threshold=0.01))
  points = evaluate.draw_points(("udr",), settings, n, 0)
  dataset = types.SimpleNamespace(factor_names=("a", "b", "c"), factor_sizes=sizes)
  ctxs = [metrics.MetricContext(posterior=metrics.Posterior(m, log_var, sizes, np.arange(n), f.astype(int)),
                                dataset=dataset, settings=settings, key=jax.random.PRNGKey(i), points=points,
                                counted_factors=(0, 1, 2)) for i, m in enumerate(means)]
  results = evaluate.compute_metrics(("udr",), ctxs)
  scores = [r["udr"]["value"] for r in results]
  # The two disentangled members agree with each other (UDR 1) and not with the random one (≈ 0):
  # each one's median over {1, ≈0} is ≈ 0.5, the random member's median over {≈0, ≈0} is ≈ 0.
  assert results[0]["udr"]["pairwise"][0][1] == pytest.approx(1.0)
  assert scores[0] > 0.45 and scores[1] > 0.45 and scores[2] < 0.1
  assert results[0]["udr"]["num_points"] == n and results[0]["udr"]["num_models"] == 3
  assert metrics.get("udr").scalars(results[2]["udr"]) == {"udr": scores[2]}
  with pytest.raises(ValueError, match="ensemble"):
    metrics.get("udr").compute(ctxs[0])


def test_evaluate_representation_refuses_an_ensemble_metric_before_encoding():
  encoded = []
  dataset = types.SimpleNamespace(name="grid", factor_names=("a",), factor_sizes=(3,),
                                  images=lambda idx: encoded.append(idx) or np.zeros((len(idx), 1, 1, 1)))
  with pytest.raises(ValueError, match="several models"):
    evaluate.evaluate_representation(lambda x: x[:, 0, 0, :], dataset, metrics=("udr",))
  assert not encoded
