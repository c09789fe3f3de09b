"""The 1-D Gaussian-mixture engine against a direct NumPy computation over every (point, component) pair."""

import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax.evaluation.mixture import KdeConfig
from vae_jax.evaluation.mixture import exact_log_mixture
from vae_jax.evaluation.mixture import mixture_sums_1d


def np_log_normal(x, mean, log_var):
  """log N(x; mean, exp(log_var)), elementwise, written out independently of vae_jax."""
  return -0.5 * (np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def np_log_sums(points, point_keys, mu, log_sigma, comp_keys):
  """log Σ_{n: comp_keys[p, n] = point_keys[p, t]} N(points_t; mu_n, exp(log_sigma_n)²) → [P, T], by loops."""
  out = np.full(point_keys.shape, -np.inf)
  pair = np_log_normal(points[:, None], mu[None, :], 2 * log_sigma[None, :])  # [T, M]
  for p in range(point_keys.shape[0]):
    for t in range(points.shape[0]):
      members = comp_keys[p] == point_keys[p, t]
      if members.any():
        out[p, t] = logsumexp(pair[t, members])
  return out


def components(kind, m=600, seed=0):
  """Means and log σ of M components, the slice of each in two key sets (all; 5 slices), in a σ regime."""
  rng = np.random.default_rng(seed)
  slices = rng.integers(0, 5, m)
  if kind == "spread_sigma":  # σ from 1e-4 to 0.5: many lattice nodes, both paths
    mu = slices * 0.5 + 0.05 * rng.normal(size=m)
    log_sigma = np.log(rng.uniform(1e-4, 0.5, m))
  elif kind == "tiny_sigma":  # isolated components: the window path
    mu = slices + 0.02 * rng.normal(size=m)
    log_sigma = np.log(rng.uniform(1e-5, 1e-3, m))
  elif kind == "crowded":  # σ ≈ 1, means over ± 4: many occupied cells per window (dense window sums)
    mu = rng.uniform(-4.0, 4.0, m)
    log_sigma = 0.05 * rng.normal(size=m)
  else:  # "prior": overlapping, σ ≈ 1, means near 0: the convolution line
    mu = 0.05 * rng.normal(size=m)
    log_sigma = 0.05 * rng.normal(size=m)
  keys = np.stack([np.zeros(m, np.int64), slices])
  own = rng.permutation(m)[:300]  # points drawn from their own components
  points = mu[own] + np.exp(log_sigma[own]) * rng.normal(size=own.shape[0])
  return points, keys[:, own], mu, log_sigma, keys


@pytest.mark.parametrize("kind", ["spread_sigma", "tiny_sigma", "crowded", "prior"])
@pytest.mark.parametrize("cfg", [KdeConfig(), KdeConfig(dense_budget=0, sparse_chunk=1000)],
                         ids=["default", "window_path"])
def test_mixture_sums_match_direct_numpy(kind, cfg):
  points, point_keys, mu, log_sigma, comp_keys = components(kind)
  sums = mixture_sums_1d(points, point_keys, mu, log_sigma, comp_keys, [1, 5], cfg)
  ref = np_log_sums(points, point_keys, mu, log_sigma, comp_keys)
  assert sums.shape == ref.shape == (2, points.shape[0])
  assert np.all(sums > 0)
  err = np.log(sums) - ref
  # Binning errors are second order in 1/rho: tiny on average, larger only for far-tail points.
  assert np.abs(err).max() < 1e-2
  assert np.abs(err.mean(axis=1)).max() < 2e-4


def test_mixture_sums_tighter_config_is_more_accurate():
  points, point_keys, mu, log_sigma, comp_keys = components("spread_sigma", seed=1)
  ref = np_log_sums(points, point_keys, mu, log_sigma, comp_keys)
  errors = []
  for cfg in (KdeConfig(rho=4.0, log_sigma_step=0.2), KdeConfig(rho=16.0, log_sigma_step=0.05)):
    sums = mixture_sums_1d(points, point_keys, mu, log_sigma, comp_keys, [1, 5], cfg)
    errors.append(np.abs(np.log(sums) - ref).mean())
  assert errors[1] < errors[0] / 4


@pytest.mark.parametrize("point_chunk, comp_chunk", [(256, 2048), (7, 100)])
def test_exact_log_mixture_matches_direct_numpy(point_chunk, comp_chunk):
  rng = np.random.default_rng(3)
  m, t, k = 333, 45, 3  # chunks that do not divide M or T: padded components must not count
  mu = rng.normal(size=(m, k))
  log_var = rng.uniform(-12.0, 1.0, size=(m, k))
  points = np.concatenate([mu[:t] + np.exp(0.5 * log_var[:t]) * rng.normal(size=(t, k)),
                           np.full((2, k), 40.0)])  # far from every component: logsumexp underflow guard
  got = exact_log_mixture(points, mu, log_var, point_chunk=point_chunk, comp_chunk=comp_chunk)
  pair = np_log_normal(points[:, None, :], mu[None], log_var[None])  # [T, M, K]
  want = logsumexp(pair, axis=1) - np.log(m)
  assert got.shape == want.shape and got.dtype == np.float64
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
