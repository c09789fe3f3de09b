"""Full-dataset ELBO decomposition against an independent NumPy computation; identities; active units."""

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax import evaluation
from vae_jax.evaluation.elbo_decomposition import joint_log_sum


# ---------------------------------------------------------------------------
# Independent NumPy reference: all pairs, scipy logsumexp, no quadratic-form tricks.
def np_log_normal(x, mean, log_var):
  """log N(x; mean, exp(log_var)), elementwise."""
  return -0.5 * (np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def np_terms(mean, log_var, z, own, dataset_size=None):
  """Per-point log q(z|x), log q(z), log Π q(z_j), log p(z) at points z [S, K] of images `own`."""
  n = mean.shape[0]
  d = n if dataset_size is None else dataset_size
  pair = np_log_normal(z[:, None, :], mean[None], log_var[None])  # [S, N, K]
  weights = np.full((z.shape[0], n), (d - 1) / (d * (n - 1)) if d > n else 1.0 / n)
  weights[np.arange(z.shape[0]), own] = 1.0 / d
  log_qz = logsumexp(pair.sum(axis=2), b=weights, axis=1)
  log_prod = sum(logsumexp(pair[:, :, j], b=weights, axis=1) for j in range(z.shape[1]))
  log_qzx = np_log_normal(z, mean[own], log_var[own]).sum(axis=1)
  log_pz = np_log_normal(z, 0.0, 0.0).sum(axis=1)
  return log_qzx, log_qz, log_prod, log_pz


def random_posteriors(n, k, seed=0):
  """Posterior params [n, k] of mixed scales and σ in [0.01, 1], and one sample z per row."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(n, k)) * np.array([1.0, 0.5, 0.05, 2.0, 0.3])[:k]
  log_var = np.log(rng.uniform(0.01, 1.0, size=(n, k)) ** 2)
  samples = mean + np.exp(0.5 * log_var) * rng.normal(size=(n, k))
  return mean, log_var, samples


@pytest.mark.parametrize("marginals", ["fast", "exact"])
def test_matches_independent_numpy(marginals):
  mean, log_var, samples = random_posteriors(80, 4)
  out = evaluation.elbo_decomposition_terms(mean, log_var, num_samples=10**6, samples=samples,
                                            marginals=marginals)
  log_qzx, log_qz, log_prod, log_pz = np_terms(mean, log_var, samples, np.arange(80))
  tol = 1e-6 if marginals == "exact" else 2e-3
  assert out["log_qz_given_x"] == pytest.approx(log_qzx.mean(), abs=1e-9)
  # The joint q(z) sums its mixture terms' exponentials in float32: ~1e-7 relative per term.
  assert out["log_qz"] == pytest.approx(log_qz.mean(), abs=1e-6)
  assert out["log_pz"] == pytest.approx(log_pz.mean(), abs=1e-9)
  assert out["log_prod_qzi"] == pytest.approx(log_prod.mean(), abs=tol)
  assert out["index_code_mi"] == pytest.approx(log_qzx.mean() - log_qz.mean(), abs=1e-6)
  assert out["total_correlation"] == pytest.approx(log_qz.mean() - log_prod.mean(), abs=tol)
  assert out["dimwise_kl"] == pytest.approx(log_prod.mean() - log_pz.mean(), abs=tol)
  assert out["num_samples"] == 80 and out["dataset_size"] == 80


def test_identity_and_analytic_kl():
  mean, log_var, _ = random_posteriors(300, 5, seed=1)
  out = evaluation.elbo_decomposition_terms(mean, log_var, num_samples=200)
  total = out["index_code_mi"] + out["total_correlation"] + out["dimwise_kl"]
  assert total == pytest.approx(out["kl"], abs=1e-9)
  assert out["kl"] == pytest.approx(out["log_qz_given_x"] - out["log_pz"], abs=1e-9)
  kl = 0.5 * (mean**2 + np.exp(log_var) - log_var - 1).mean(axis=0)
  np.testing.assert_allclose(out["kl_per_dim"], kl, rtol=1e-12)
  assert out["kl_analytic"] == pytest.approx(kl.sum())
  assert out["num_samples"] == 200
  # A Monte Carlo estimate of the same KL: within its sampling error of the analytic one.
  assert out["kl"] == pytest.approx(out["kl_analytic"], rel=0.15)


def grid_code(sizes, code, sigma):
  """Posteriors over a full factor grid: mean = code(factor values) [N, K], σ fixed."""
  v = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.float64)
  mean = code(v)
  return mean, np.full(mean.shape, 2 * np.log(sigma))


def test_total_correlation_zero_for_independent_and_positive_for_correlated_codes():
  sizes = (8, 9)
  # Factorised: z0 encodes v0, z1 encodes v1, over the full grid → q(z) = q(z0) q(z1) exactly.
  mean, log_var = grid_code(sizes, lambda v: v / 4.0 - 1.0, 0.2)
  indep = evaluation.elbo_decomposition_terms(mean, log_var, num_samples=10**6)
  assert abs(indep["total_correlation"]) < 5e-3
  assert indep["index_code_mi"] > 0.5
  # Correlated: both latents carry v0 → TC close to I(z0; z1) ≈ log 8.
  mean, log_var = grid_code(sizes, lambda v: np.stack([v[:, 0], v[:, 0]], axis=1) / 4.0 - 1.0, 0.05)
  corr = evaluation.elbo_decomposition_terms(mean, log_var, num_samples=10**6)
  assert corr["total_correlation"] > 0.8 * np.log(8)


def test_subset_of_a_larger_dataset_uses_stratified_weights():
  mean, log_var, samples = random_posteriors(60, 3, seed=2)
  d = 6000
  out = evaluation.elbo_decomposition_terms(mean, log_var, dataset_size=d, num_samples=10**6, samples=samples,
                                            marginals="exact")
  log_qzx, log_qz, log_prod, log_pz = np_terms(mean, log_var, samples, np.arange(60), dataset_size=d)
  assert out["log_qz"] == pytest.approx(log_qz.mean(), abs=1e-6)  # float32 exponentials (see above).
  assert out["log_prod_qzi"] == pytest.approx(log_prod.mean(), abs=1e-9)
  fast = evaluation.elbo_decomposition_terms(mean, log_var, dataset_size=d, num_samples=10**6, samples=samples)
  assert fast["log_prod_qzi"] == pytest.approx(log_prod.mean(), abs=2e-3)
  with pytest.raises(ValueError):
    evaluation.elbo_decomposition_terms(mean, log_var, dataset_size=10)


def test_joint_log_sum_is_exact_with_tiny_sigma_and_small_chunks():
  rng = np.random.default_rng(3)
  mean = rng.normal(size=(1000, 6)) * 2
  log_var = 2 * np.log(rng.uniform(1e-3, 1.0, size=(1000, 6)))  # tiny σ stresses the quadratic form
  z = mean[:37] + np.exp(0.5 * log_var[:37]) * rng.normal(size=(37, 6))
  ref = logsumexp(np_log_normal(z[:, None, :], mean[None], log_var[None]).sum(axis=2), axis=1)
  np.testing.assert_allclose(joint_log_sum(z, mean, log_var, point_chunk=16, comp_chunk=128), ref, atol=1e-6)


def test_active_units():
  rng = np.random.default_rng(4)
  mean = rng.normal(size=(5000, 4)) * np.array([1.0, 0.05, 0.2, 0.0])
  out = evaluation.active_units(mean)
  np.testing.assert_allclose(out["variance"], mean.var(axis=0))
  np.testing.assert_array_equal(out["active"], [True, False, True, False])
  assert out["num_active"] == 2 and out["threshold"] == 0.01
  assert evaluation.active_units(mean, threshold=1e-3)["num_active"] == 3
