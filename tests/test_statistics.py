"""vae_jax.statistics: the exact Mann–Whitney p against an enumeration of every split of the
pooled scores, the signed-rank p against scipy's exact test and known answers (ties, zeros),
and the bootstrap intervals against known cases."""

import itertools

import numpy as np
import pytest

from vae_jax import statistics


def enumerated_two_sided_p(a, b):
  """Exact permutation p of U (no ties): the share of all C(n_a + n_b, n_a) splits whose U is
  at least as far from its mean n_a·n_b/2 as the observed one."""
  pooled = np.concatenate([a, b])
  u = lambda x, y: sum(xi > yi for xi in x for yi in y)
  observed = abs(u(a, b) - len(a) * len(b) / 2)
  splits = list(itertools.combinations(range(pooled.size), len(a)))
  extreme = 0
  for idx in splits:
    rest = np.delete(pooled, idx)
    extreme += abs(u(pooled[list(idx)], rest) - len(a) * len(b) / 2) >= observed - 1e-12
  return extreme / len(splits)


def test_mann_whitney_is_the_exact_permutation_test():
  rng = np.random.default_rng(0)
  for shift in (0.0, 0.7, 3.0):
    a, b = rng.normal(size=5) + shift, rng.normal(size=5)
    result = statistics.mann_whitney(a, b)
    assert result["p"] == pytest.approx(enumerated_two_sided_p(a, b), rel=1e-9)
    assert result["u"] == sum(x > y for x in a for y in b)
  # Complete separation of 5 vs 5: the smallest two-sided p, 2 / C(10, 5).
  assert statistics.mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])["p"] == pytest.approx(2 / 252)


def test_bootstrap_interval_of_the_median_difference():
  # Constant groups: every resample has the same medians, so the interval is the point difference.
  assert statistics.bootstrap_median_difference([3.0] * 5, [1.0] * 4) == (2.0, 2.0)
  # Separated groups: every resampled difference lies between the extreme pairwise differences.
  a, b = np.array([10.0, 11.0, 12.0, 13.0, 14.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])
  low, high = statistics.bootstrap_median_difference(a, b)
  assert 6.0 <= low < 10.0 < high <= 14.0
  out = statistics.compare(a, b)
  assert out["difference"] == 10.0 and (out["low"], out["high"]) == (low, high) and out["p"] < 0.01
  # Overlapping groups from one distribution: the interval covers 0.
  rng = np.random.default_rng(1)
  low, high = statistics.bootstrap_median_difference(rng.normal(size=20), rng.normal(size=20))
  assert low < 0.0 < high
  with pytest.raises(ValueError, match="at least one value"):
    statistics.bootstrap_median_difference([], [1.0])


def test_wilcoxon_signed_rank_matches_scipys_exact_test_and_known_answers():
  from scipy.stats import wilcoxon

  rng = np.random.default_rng(2)
  for n, shift in ((5, 0.0), (6, 0.5), (8, 2.0), (9, -0.4)):
    d = rng.normal(size=n) + shift
    result = statistics.wilcoxon_signed_rank(d)
    assert result["p"] == pytest.approx(wilcoxon(d, method="exact").pvalue, rel=1e-9)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    assert result["w_plus"] == ranks[d > 0].sum()
  # Five pairs all one way: the smallest two-sided p, 2 / 2^5.
  assert statistics.wilcoxon_signed_rank([0.1, 0.2, 0.3, 0.4, 0.5])["p"] == pytest.approx(2 / 32)
  # Ties: five equal differences share rank 3; only "all +" and "all −" are as extreme.
  assert statistics.wilcoxon_signed_rank([0.25] * 5) == {"w_plus": 15.0, "p": pytest.approx(2 / 32)}
  # Zeros carry no sign and are dropped: four positive pairs left, p = 2 / 2^4.
  assert statistics.wilcoxon_signed_rank([0.0, 0.1, 0.2, 0.3, 0.4])["p"] == pytest.approx(2 / 16)
  assert statistics.wilcoxon_signed_rank([0.0, 0.0])["p"] == 1.0
  # Beyond max_exact, the normal approximation stays close to the exact p.
  d = rng.normal(size=12) + 0.6
  assert statistics.wilcoxon_signed_rank(d, max_exact=4)["p"] == pytest.approx(
      statistics.wilcoxon_signed_rank(d)["p"], abs=0.02)


def test_paired_comparison_uses_each_seeds_difference():
  a = {3: 0.30, 0: 0.10, 1: 0.50, 2: 0.20, 4: 0.25}
  b = {0: 0.05, 1: 0.52, 2: 0.05, 3: 0.10, 4: 0.05}
  out = statistics.compare_paired(a, b)
  assert out["differences"] == pytest.approx({0: 0.05, 1: -0.02, 2: 0.15, 3: 0.20, 4: 0.20})
  assert out["median"] == pytest.approx(0.15) and out["higher"] == 4 and out["n"] == 5
  # The bootstrap medians lie between the smallest and largest difference.
  assert -0.02 - 1e-12 <= out["low"] <= out["median"] <= out["high"] <= 0.20 + 1e-12
  with pytest.raises(ValueError, match="same seeds"):
    statistics.compare_paired({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})
  assert statistics.bootstrap_median([2.0] * 4) == (2.0, 2.0)


def test_signed_interval_prints_every_sign_and_rounds_to_three_decimals():
  assert statistics.signed_interval(0.1424, -0.2106, 0.25949) == "+0.142 [-0.211, +0.259]"
  assert statistics.signed_interval(-0.0005, 0.0, -1.0) == "-0.001 [+0.000, -1.000]"
