"""MIG estimators against an independent NumPy implementation, known answers and invariances."""

import collections
import itertools
import math

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax import evaluation
from vae_jax.evaluation.mig import log_q_at_points

SIZES = (3, 4, 5)  # N = 60


# ---------------------------------------------------------------------------
# Independent NumPy reference: every (point, posterior) pair, scipy logsumexp, loops.
def np_log_normal(x, mean, log_var):
  """log N(x; mean, exp(log_var)), elementwise."""
  return -0.5 * (np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def np_mig(mean, log_var, samples, sizes, factors):
  """Chen et al.'s MIG with every sample as an evaluation point: entropies [K], [F, K], MI, MIG."""
  n, k = mean.shape
  grid = np.array(list(itertools.product(*[range(s) for s in sizes])))  # row-major, last fastest
  log_dens = np_log_normal(samples[:, None, :], mean[None], log_var[None])  # [S, N, K]
  h_z = np.array([-np.mean(logsumexp(log_dens[:, :, j], axis=1) - np.log(n)) for j in range(k)])
  cond = np.zeros((len(factors), k))
  for i, f in enumerate(factors):
    for a in range(sizes[f]):
      members = np.flatnonzero(grid[:, f] == a)
      for j in range(k):
        sub = log_dens[np.ix_(members, members, [j])][:, :, 0]
        cond[i, j] += -np.mean(logsumexp(sub, axis=1) - np.log(len(members))) / sizes[f]
  mi = np.maximum(h_z[None] - cond, 0) / np.log([sizes[f] for f in factors])[:, None]
  top = np.sort(mi, axis=1)[:, ::-1]
  return {"mig": np.mean(top[:, 0] - top[:, 1]), "mi": mi, "entropy_z": h_z, "cond_entropy": cond}


def grid_factors(sizes):
  """Factor values [N, F] of every grid image, row-major (last factor fastest)."""
  return np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.float64)


def posteriors(kind, sizes=SIZES, k=4, seed=0):
  """Synthetic posteriors: latent j encodes factor j % F (or nothing), in a given σ regime."""
  rng = np.random.default_rng(seed)
  v = grid_factors(sizes)
  n = v.shape[0]
  mean = np.zeros((n, k))
  log_var = np.zeros((n, k))
  for j in range(k):
    f = j % len(sizes)
    code = v[:, f] / (sizes[f] - 1) * 2 - 1
    if kind == "tiny":  # collapsed posteriors: σ ~ 1e-5..1e-3
      mean[:, j] = code + 0.02 * rng.normal(size=n)
      log_var[:, j] = 2 * np.log(rng.uniform(1e-5, 1e-3, n))
    elif kind == "prior":  # inactive latents: mean ≈ 0, σ ≈ 1
      mean[:, j] = 0.05 * rng.normal(size=n)
      log_var[:, j] = 0.1 * rng.normal(size=n)
    else:  # mixed: active with σ 0.05-0.3, one inactive, one very spread in σ
      if j == k - 1:
        mean[:, j] = 0.05 * rng.normal(size=n)
        log_var[:, j] = 0.1 * rng.normal(size=n)
      elif j == k - 2:
        mean[:, j] = code + 0.01 * rng.normal(size=n)
        log_var[:, j] = 2 * np.log(rng.uniform(1e-4, 0.5, n))
      else:
        mean[:, j] = code + 0.1 * rng.normal(size=n)
        log_var[:, j] = 2 * np.log(rng.uniform(0.05, 0.3, n))
  samples = mean + np.exp(0.5 * log_var) * rng.normal(size=mean.shape)
  return mean, log_var, samples


# ---------------------------------------------------------------------------
# Against the independent reference.
@pytest.mark.parametrize("kind", ["mixed", "tiny", "prior"])
def test_fast_and_brute_force_match_numpy_reference(kind):
  mean, log_var, samples = posteriors(kind)
  factors = (0, 1, 2)
  ref = np_mig(mean, log_var, samples, SIZES, factors)
  n = mean.shape[0]
  brute = evaluation.mig_brute_force(mean, log_var, SIZES, samples=samples, num_samples=n)
  fast = evaluation.mig(mean, log_var, SIZES, samples=samples, num_samples=10 * n)
  np.testing.assert_allclose(brute["entropy_z"], ref["entropy_z"], atol=1e-9)
  np.testing.assert_allclose(brute["cond_entropy"], ref["cond_entropy"], atol=1e-9)
  np.testing.assert_allclose(brute["mi"], ref["mi"], atol=1e-9)
  assert brute["mig"] == pytest.approx(ref["mig"], abs=1e-9)
  # The fast path bins the 1-D mixtures: second-order errors, ~1e-4 nats here.
  np.testing.assert_allclose(fast["entropy_z"], ref["entropy_z"], atol=3e-3)
  np.testing.assert_allclose(fast["cond_entropy"], ref["cond_entropy"], atol=3e-3)
  assert fast["mig"] == pytest.approx(ref["mig"], abs=3e-3)
  assert fast["num_samples"] == n and fast["factors"] == factors


@pytest.mark.parametrize("kind", ["mixed", "tiny", "prior"])
def test_fast_matches_brute_force_on_a_larger_grid(kind):
  sizes = (3, 6, 8, 8)  # N = 1152
  mean, log_var, _ = posteriors(kind, sizes=sizes, k=6, seed=1)
  key = jax.random.PRNGKey(3)
  fast = evaluation.mig(mean, log_var, sizes, num_samples=500, key=key)
  brute = evaluation.mig_brute_force(mean, log_var, sizes, num_samples=500, key=key)
  assert fast["num_samples"] == brute["num_samples"] == 500
  np.testing.assert_allclose(fast["entropy_z"], brute["entropy_z"], atol=5e-3)
  np.testing.assert_allclose(fast["cond_entropy"], brute["cond_entropy"], atol=5e-3)
  assert abs(fast["mig"] - brute["mig"]) < 2.5e-3


def test_fast_per_point_log_densities_match_exact():
  mean, log_var, samples = posteriors("mixed", sizes=(4, 6, 7), k=5, seed=2)
  idx = np.arange(mean.shape[0])
  fast = log_q_at_points(samples, idx, mean, log_var, (4, 6, 7), (0, 1, 2))
  exact = log_q_at_points(samples, idx, mean, log_var, (4, 6, 7), (0, 1, 2), method="exact")
  # Per point a few percent at worst (far tails); averaged, far smaller.
  assert np.abs(fast - exact).max() < 0.1
  assert np.abs((fast - exact).mean(axis=1)).max() < 2e-3


# ---------------------------------------------------------------------------
# Known answers.
def coded(sizes, codes, sigma=0.05, noise=0.002, seed=0):
  """Posteriors whose means are `codes(v)` [N, K] of the factor values, plus noise; σ fixed.

  σ is small against the unit spacing of the codes but large against the noise: with
  well-separated components of few images per slice, Chen et al.'s estimator has a
  positive bias (each point's own component weighs 1/slice size), not a property tested here.
  """
  rng = np.random.default_rng(seed)
  mean = codes(grid_factors(sizes))
  mean = mean + noise * rng.normal(size=mean.shape)
  return mean, np.full(mean.shape, 2 * np.log(sigma))


def test_axis_aligned_code_gives_mig_near_one():
  sizes = (3, 5, 6)
  mean, log_var = coded(sizes, lambda v: np.stack([v[:, 0], v[:, 1], v[:, 2], 0 * v[:, 0]], axis=1))
  out = evaluation.mig(mean, log_var, sizes, num_samples=1000)
  assert out["mig"] > 0.97
  np.testing.assert_array_equal(out["best_latent"], [0, 1, 2])
  np.testing.assert_allclose(out["mi"][[0, 1, 2], [0, 1, 2]], 1.0, atol=0.02)
  assert out["estimator"] == "sampling (Chen et al.)"


def discrete_mi(x, y):
  """I(x; y) in nats of two integer label arrays, by counting."""
  n = len(x)
  pxy = collections.Counter(zip(x, y))
  px, py = collections.Counter(x), collections.Counter(y)
  return sum(c / n * math.log(c * n / (px[a] * py[b])) for (a, b), c in pxy.items())


def test_one_latent_carrying_two_factors_gives_a_small_gap_for_both():
  # z0 = v0 + v1 (sums collide): z0 holds part of each factor; z1 is noise.
  sizes = (5, 5)
  mean, log_var = coded(sizes, lambda v: np.stack([v[:, 0] + v[:, 1], 0 * v[:, 0]], axis=1), noise=0.0)
  out = evaluation.mig(mean, log_var, sizes, num_samples=1000)
  v = grid_factors(sizes).astype(int)
  expected = discrete_mi(v[:, 0] + v[:, 1], v[:, 0]) / math.log(5)  # ≈ 0.36
  np.testing.assert_allclose(out["mi"][:, 0], expected, atol=0.02)
  np.testing.assert_array_equal(out["best_latent"], [0, 0])
  np.testing.assert_allclose(out["gap"], expected, atol=0.02)
  assert out["mig"] < 0.4


def test_redundant_code_gives_a_small_gap():
  sizes = (4, 6)  # factor 0 copied into two latents; factor 1 in one
  mean, log_var = coded(sizes, lambda v: np.stack([v[:, 0], v[:, 0], v[:, 1]], axis=1))
  out = evaluation.mig(mean, log_var, sizes, num_samples=1000)
  assert out["gap"][0] < 0.05 and out["gap"][1] > 0.95


def test_rotated_code_gives_a_low_mig():
  sizes = (6, 6)
  aligned = evaluation.mig(*coded(sizes, lambda v: v.copy()), sizes, num_samples=1000)
  rot = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
  rotated = evaluation.mig(*coded(sizes, lambda v: v @ rot.T), sizes, num_samples=1000)
  assert aligned["mig"] > 0.95
  assert rotated["mig"] < 0.05


def test_invariant_to_permuting_and_flipping_latents():
  mean, log_var, samples = posteriors("mixed", k=4, seed=4)
  perm = np.array([2, 0, 3, 1])
  signs = np.array([1.0, -1.0, -1.0, 1.0])
  base = evaluation.mig(mean, log_var, SIZES, samples=samples, num_samples=10**6)
  moved = evaluation.mig(mean[:, perm] * signs, log_var[:, perm], SIZES, samples=samples[:, perm] * signs,
                         num_samples=10**6)
  assert moved["mig"] == pytest.approx(base["mig"], abs=1e-3)
  np.testing.assert_allclose(moved["mi"], base["mi"][:, perm], atol=1e-3)
  np.testing.assert_array_equal(perm[moved["best_latent"]], base["best_latent"])
  brute = evaluation.mig_brute_force(mean, log_var, SIZES, samples=samples, num_samples=10**6)
  brute_moved = evaluation.mig_brute_force(mean[:, perm] * signs, log_var[:, perm], SIZES,
                                           samples=samples[:, perm] * signs, num_samples=10**6)
  np.testing.assert_allclose(brute_moved["mi"], brute["mi"][:, perm], atol=1e-10)


def test_factor_selection_sampling_and_determinism():
  mean, log_var, samples = posteriors("mixed", k=4, seed=5)
  all_f = evaluation.mig(mean, log_var, SIZES, samples=samples, num_samples=10**6)
  some = evaluation.mig(mean, log_var, SIZES, samples=samples, num_samples=10**6, factors=(2, 0))
  assert some["factors"] == (2, 0) and some["mi"].shape == (2, 4)
  np.testing.assert_allclose(some["mi"], all_f["mi"][[2, 0]], atol=1e-12)
  assert some["mig"] == pytest.approx(np.mean(all_f["gap"][[2, 0]]))
  # samples=None draws with the key; the same key gives the same answer.
  a = evaluation.mig(mean, log_var, SIZES, key=jax.random.PRNGKey(7))
  b = evaluation.mig(mean, log_var, SIZES, key=jax.random.PRNGKey(7))
  assert a["mig"] == b["mig"]
  for k in ("mi", "mi_unnormalised", "entropy_z", "cond_entropy", "gap"):
    assert np.all(np.isfinite(a[k]))
  with pytest.raises(ValueError):
    evaluation.mig(mean[:-1], log_var[:-1], SIZES)
  with pytest.raises(ValueError):
    evaluation.mig(mean, log_var, SIZES, factors=(3,))
  # Size-1 factors carry no information: left out by default, refused when asked for.
  out = evaluation.mig(mean, log_var, (1,) + SIZES, samples=samples, num_samples=10**6)
  assert out["factors"] == (1, 2, 3)
  assert out["mig"] == pytest.approx(all_f["mig"], abs=1e-12)
  with pytest.raises(ValueError):
    evaluation.mig(mean, log_var, (1,) + SIZES, factors=(0, 1))


# ---------------------------------------------------------------------------
# Histogram MIG (disentanglement_lib's protocol) against a direct count.
def test_histogram_mig_matches_direct_count():
  rng = np.random.default_rng(0)
  n = 2000
  factors = np.stack([rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 10, n)], axis=1)
  codes = np.stack([
      factors[:, 1] + 0.3 * rng.normal(size=n),
      factors[:, 2] * 0.5 + factors[:, 0] + 0.2 * rng.normal(size=n),
      rng.normal(size=n),
      np.exp(factors[:, 0] + 0.1 * rng.normal(size=n)),  # skewed range
  ], axis=1)
  out = evaluation.mig_histogram(codes, factors, num_bins=20)
  mi = np.zeros((3, 4))
  for j in range(4):
    edges = np.histogram(codes[:, j], bins=20)[1]
    for f in range(3):
      values = np.unique(factors[:, f])
      counts, _, _ = np.histogram2d(codes[:, j], factors[:, f], bins=[edges, np.append(values, values[-1] + 1) - 0.5])
      p = counts / n
      px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
      nz = p > 0
      mi[f, j] = np.sum(p[nz] * np.log(p[nz] / (px * py)[nz]))
  entropy = np.array([-sum(c / n * math.log(c / n) for c in collections.Counter(factors[:, f]).values())
                      for f in range(3)])
  np.testing.assert_allclose(out["entropy_factors"], entropy, rtol=1e-12)
  np.testing.assert_allclose(out["mi_unnormalised"], mi, atol=1e-12)
  np.testing.assert_allclose(out["mi"], mi / entropy[:, None], atol=1e-12)
  top = np.sort(mi / entropy[:, None], axis=1)[:, ::-1]
  assert out["mig"] == pytest.approx(np.mean(top[:, 0] - top[:, 1]), abs=1e-12)
  assert out["estimator"] == "histogram (disentanglement_lib)" and out["factors"] == (0, 1, 2)


def test_histogram_mig_known_answers():
  rng = np.random.default_rng(1)
  factors = np.stack([rng.integers(0, 4, 5000), rng.integers(0, 5, 5000), np.zeros(5000, int)], axis=1)
  codes = np.stack([factors[:, 0] * 1.0, factors[:, 1] * 1.0, rng.normal(size=5000)], axis=1)
  out = evaluation.mig_histogram(codes, factors)
  assert out["factors"] == (0, 1)  # the constant factor has zero entropy and is left out
  np.testing.assert_allclose(out["mi"][[0, 1], [0, 1]], 1.0, atol=1e-12)
  assert out["mig"] > 0.97
  rotated = evaluation.mig_histogram(np.stack([codes[:, 0] + codes[:, 1], codes[:, 0] - codes[:, 1]], 1),
                                     factors[:, :2])
  assert rotated["mig"] < 0.2
