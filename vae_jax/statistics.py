"""Comparisons of scores over seeds: the statistics the study reports use.

A claim about models is a claim over seeds, so two groups of models (e.g. β-TCVAE and
β-VAE at one β, five seeds each) are compared by
- the difference of their medians, with a 95% percentile-bootstrap interval that resamples
  each group's seeds independently (`bootstrap_median_difference`), and
- the exact two-sided Mann–Whitney U test of "neither group tends to score higher"
  (`mann_whitney`; with 5 against 5 seeds the smallest possible p is 2/252 ≈ 0.008).
"""

from __future__ import annotations

from typing import Sequence

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
