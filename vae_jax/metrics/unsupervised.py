"""disentanglement_lib's unsupervised scores (`unsupervised_metrics`; Locatello et al., "Challenging
common assumptions in the unsupervised learning of disentangled representations", ICML 2019):
statistics of the codes alone, no factors.

On the posterior means of `score_train_points` (10,000, disentanglement_lib's
unsupervised_metrics.num_train) grid rows drawn i.i.d. uniformly, with Σ their covariance
[K, K] (np.cov, ddof 1) and D = diag(Σ):
- Gaussian total correlation ("value"): KL(N(0, Σ) ‖ N(0, D)) = ½ (Σ_j log Σ_jj − log det Σ)
  (nats; 0 for uncorrelated codes, lower is more factorised).
- Gaussian Wasserstein correlation: W₂²(N(0, Σ), N(0, D)) = 2 tr Σ − 2 tr (D Σ)^{1/2}, and
  normalised by tr Σ.
- Mutual information score: the mean over the K² − K ordered pairs j ≠ i of the histogram
  MI (nats) between codes j and i, each discretised into `histogram_bins` (20) equal-width
  bins (disentanglement_lib's discretizer; evaluation.mig's histogram estimator).
Codes with exactly zero variance are left out of the two Gaussian scores (log 0 otherwise
makes the total correlation NaN; a constant code is independent of the rest and adds 0 to
both); their number is "constant_codes". The MI score keeps all K codes, as disentanglement_lib.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from vae_jax.evaluation.mig import histogram_discretize, mig_histogram
from vae_jax.metrics.base import MetricContext
from vae_jax.metrics.beta_vae_score import NUM_TRAIN, metric_rng, setting

SALT = 7  # This metric's generator: fold_in(ctx.key, SALT).


def gaussian_total_correlation(cov: np.ndarray) -> float:
  """½ (Σ log diag(cov) − log det cov) of a covariance [K, K]: KL(N(0, cov) ‖ N(0, diag cov)), nats."""
  return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
  """2 tr cov − 2 tr sqrtm(diag(cov) cov) of a covariance [K, K]: W₂² between N(0, cov) and N(0, diag cov)."""
  root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
  return float(2 * np.trace(cov) - 2 * np.real(np.trace(root)))


def mutual_info_score(codes: np.ndarray, num_bins: int) -> tuple[float, np.ndarray]:
  """(mean off-diagonal MI, MI matrix [K, K] in nats) of histogram-discretised codes [n, K]."""
  mi = mig_histogram(codes, histogram_discretize(codes, num_bins), num_bins=num_bins)["mi_unnormalised"]
  k = mi.shape[0]
  off = mi.sum() - np.trace(mi)
  return (float(off / (k * k - k)) if k > 1 else 0.0), mi


def compute(ctx: MetricContext) -> dict:
  """{"value" (Gaussian total correlation), "gaussian_total_correlation", "gaussian_wasserstein_correlation",
  "gaussian_wasserstein_correlation_norm", "mutual_info_score", "mi" [K, K], "constant_codes",
  "factors" ([]: none used), "num_points", "num_bins"}."""
  rng = metric_rng(ctx.key, SALT)
  num_points = int(setting(ctx, "score_train_points", NUM_TRAIN))
  bins = int(setting(ctx, "histogram_bins", 20))
  codes = np.asarray(ctx.posterior.mean[rng.integers(ctx.posterior.mean.shape[0], size=num_points)], np.float64)
  cov = np.atleast_2d(np.cov(codes, rowvar=False))
  varying = np.diag(cov) > 0
  cov_v = cov[np.ix_(varying, varying)]
  if varying.any():
    tc, wc = gaussian_total_correlation(cov_v), gaussian_wasserstein_correlation(cov_v)
    wc_norm = wc / float(np.trace(cov_v))
  else:
    tc = wc = wc_norm = 0.0
  mi_score, mi = mutual_info_score(codes, bins)
  return {
      "value": tc,
      "gaussian_total_correlation": tc,
      "gaussian_wasserstein_correlation": wc,
      "gaussian_wasserstein_correlation_norm": wc_norm,
      "mutual_info_score": mi_score,
      "mi": mi.tolist(),
      "constant_codes": int((~varying).sum()),
      "factors": [],
      "num_points": num_points,
      "num_bins": bins,
  }


def scalars(result: dict) -> dict[str, float]:
  """The four scores, prefixed by nothing (their names are disentanglement_lib's)."""
  return {k: result[k] for k in ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                                 "gaussian_wasserstein_correlation_norm", "mutual_info_score")}
