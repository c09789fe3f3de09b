"""Comparisons of scores over seeds: the statistics the study reports use.

A claim about models is a claim over seeds, so two groups of models (e.g. β-TCVAE and
β-VAE at one β, five seeds each) are compared by
- the difference of their medians, with a 95% percentile-bootstrap interval that resamples
  each group's seeds independently (`bootstrap_median_difference`), and
- the exact two-sided Mann–Whitney U test of "neither group tends to score higher"
  (`mann_whitney`; with 5 against 5 seeds the smallest possible p is 2/252 ≈ 0.008).

When the two groups share their seeds (the same initialisations and data orders, a
paired design), `compare_paired` also uses the pairing: the per-seed differences, the
median of them with a bootstrap interval that resamples seeds, and the exact Wilcoxon
signed-rank test (`wilcoxon_signed_rank`; with 5 pairs the smallest two-sided p is
2/32 = 0.0625, so five paired seeds cannot reach p < 0.05 however large the effect).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def bootstrap_median_difference(a: Sequence[float], b: Sequence[float], *, reps: int = 10_000,
                                seed: int = 0, level: float = 0.95) -> tuple[float, float]:
  """`level` percentile-bootstrap interval of median(a) − median(b), for scores a [n_a] and b [n_b]:
  `reps` resamples of each group's values with replacement, independently."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size == 0 or b.size == 0:
    raise ValueError(f"Both groups need at least one value (got {a.size} and {b.size}).")
  rng = np.random.default_rng(seed)
  diffs = np.median(rng.choice(a, (reps, a.size)), 1) - np.median(rng.choice(b, (reps, b.size)), 1)
  tail = 100 * (1 - level) / 2
  return float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """Mann–Whitney U test of scores a [n_a] against b [n_b]: {"u" (U of a: the pairs where a
  scores higher, ties counting 1/2), "p" (two-sided; exact without ties, else the normal
  approximation with continuity correction, scipy's method="auto")}."""
  from scipy.stats import mannwhitneyu

  result = mannwhitneyu(np.asarray(a, np.float64), np.asarray(b, np.float64), alternative="two-sided")
  return {"u": float(result.statistic), "p": float(result.pvalue)}


def compare(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> dict[str, float]:
  """median(a) − median(b), its 95% bootstrap interval ("low", "high") and the Mann–Whitney
  "u" and two-sided "p", for scores a [n_a] and b [n_b]."""
  low, high = bootstrap_median_difference(a, b, seed=seed)
  return {"difference": float(np.median(a) - np.median(b)), "low": low, "high": high, **mann_whitney(a, b)}


def signed_interval(estimate: float, low: float, high: float) -> str:
  """An estimate with its interval, signed, to 3 decimals, as every report prints a difference
  of scores: signed_interval(0.142, -0.211, 0.259) == "+0.142 [-0.211, +0.259]"."""
  return f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}]"


def wilcoxon_signed_rank(differences: Sequence[float], *, max_exact: int = 16) -> dict[str, float]:
  """Wilcoxon signed-rank test of paired differences d [n] against "symmetric about 0":
  {"w_plus" (sum of the ranks of |d| where d > 0, tied |d| sharing their average rank),
  "p" (two-sided)}. Zero differences are dropped (they carry no sign). Up to `max_exact`
  nonzero differences p is exact: the share of all 2^n sign assignments to the ranks whose
  W+ lies at least as far from its mean as the observed one (exact with ties too); beyond,
  the normal approximation with continuity correction (scipy)."""
  from scipy.stats import rankdata, wilcoxon

  d = np.asarray(differences, np.float64)
  d = d[d != 0]
  if d.size == 0:
    return {"w_plus": 0.0, "p": 1.0}
  ranks = rankdata(np.abs(d))
  w_plus = float(ranks[d > 0].sum())
  if d.size > max_exact:
    return {"w_plus": w_plus, "p": float(wilcoxon(d, method="approx", correction=True).pvalue)}
  centre = ranks.sum() / 2
  signs = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1  # [2^n, n]: every sign assignment.
  extreme = np.abs(signs @ ranks - centre) >= abs(w_plus - centre) - 1e-9
  return {"w_plus": w_plus, "p": float(np.mean(extreme))}


def bootstrap_median(values: Sequence[float], *, reps: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
  """`level` percentile-bootstrap interval of the median of values [n] (resampled with replacement)."""
  v = np.asarray(values, np.float64)
  if v.size == 0:
    raise ValueError("Need at least one value.")
  medians = np.median(np.random.default_rng(seed).choice(v, (reps, v.size)), 1)
  tail = 100 * (1 - level) / 2
  return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def compare_paired(a: Mapping[int, float], b: Mapping[int, float], *, seed: int = 0) -> dict:
  """Paired comparison of scores a and b keyed by seed (the same seeds in both): "differences"
  {seed: a − b}, their "median" with a 95% bootstrap interval ("low", "high") over seeds,
  "higher" (seeds where a > b), "n", and the Wilcoxon signed-rank "w_plus" and two-sided "p"."""
  if set(a) != set(b) or not a:
    raise ValueError(f"A paired comparison needs the same seeds on both sides (got {sorted(a)} and {sorted(b)}).")
  seeds = sorted(a)
  d = np.array([a[s] - b[s] for s in seeds])
  low, high = bootstrap_median(d, seed=seed)
  return {"differences": dict(zip(seeds, d.tolist())), "median": float(np.median(d)), "low": low, "high": high,
          "higher": int(np.sum(d > 0)), "n": len(seeds), **wilcoxon_signed_rank(d)}
