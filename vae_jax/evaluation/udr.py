"""UDR, the unsupervised disentanglement ranking (Duan et al., "Unsupervised model selection for
variational disentangled representation learning", ICLR 2020), by disentanglement_lib's
protocol (`udr_sklearn` in evaluation/udr/metrics/udr.py).

Idea: disentangled representations of one dataset are alike up to permutation and sign of
their codes, entangled ones differ from model to model. UDR scores each model by how well its
codes match, one to one, those of other models trained with other seeds (or settings).

For models a and b encoded on the same n inputs (codes [n, K_a], [n, K_b]):
1. each code is standardised over the n points (StandardScaler); with per-latent KLs given,
   latents whose mean KL(q(z_j|x) ‖ N(0, 1)) over the points is <= `kl_threshold` (0.01) are
   zeroed and then left out of the score (disentanglement_lib's filter_low_kl);
2. a similarity matrix R [K_a, K_b] >= 0: "lasso" (disentanglement_lib's default, "UDR_L"):
   |coefficients| of scikit-learn Lasso(alpha=0.1) predicting b's codes from a's, transposed
   (R[i, j]: how much a's code i enters b's code j); or "spearman" ("UDR_S"): |Spearman rank
   correlation| of every pair of codes;
3. relative strength over the active rows and columns of R:
     UDR_ab = ½ (mean_j max_i R_ij² / Σ_i R_ij  +  mean_i max_j R_ij² / Σ_j R_ij)
   (0/0 counts 0), which is 1 for a permutation-with-signs match (Spearman) and lower when a
   code of one model spreads over several codes of the other;
4. each model's score: the median over the other models b of UDR_ba (disentanglement_lib's
   `model_scores`, all pairs of the given models: the "A2A" all-to-all aggregate).
Defaults: 1,000 points (disentanglement_lib's udr.gin num_data_points), Lasso, KL threshold 0.01.
With Lasso's shrinkage on standardised codes a perfect match scores about 0.9, not 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.stats

SIMILARITIES = ("lasso", "spearman")
LASSO_ALPHA = 0.1
KL_THRESHOLD = 0.01
NUM_POINTS = 1000


def mean_gaussian_kl(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
  """Mean over points of KL(N(mean, exp(log_var)) ‖ N(0, 1)) per latent: [n, K] → [K] (nats)."""
  mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
  return np.mean(0.5 * (mean ** 2 + np.exp(log_var) - log_var - 1.0), axis=0)


def standardise(codes: np.ndarray) -> np.ndarray:
  """Codes [n, K] centred and scaled to unit std per column (a constant column becomes 0)."""
  codes = np.asarray(codes, np.float64)
  std = codes.std(axis=0)
  return (codes - codes.mean(axis=0)) / np.where(std > 0, std, 1.0)


def spearman_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """|Spearman correlation| [K_a, K_b] between every code of a [n, K_a] and of b [n, K_b]
  (Pearson correlation of average ranks); 0 where a code is constant."""
  ra = standardise(scipy.stats.rankdata(a, axis=0))
  rb = standardise(scipy.stats.rankdata(b, axis=0))
  return np.abs(ra.T @ rb) / a.shape[0]


def lasso_similarity(a: np.ndarray, b: np.ndarray, alpha: float = LASSO_ALPHA) -> np.ndarray:
  """|coefficients| [K_a, K_b] of one multi-output scikit-learn Lasso(alpha) predicting b [n, K_b]
  from a [n, K_a] (entry (i, j): weight of a's code i in b's code j)."""
  from sklearn.linear_model import Lasso

  return np.abs(Lasso(alpha=alpha).fit(a, b).coef_).T


def relative_strength(r: np.ndarray) -> float:
  """½ (mean over columns of max² / sum + mean over rows of max² / sum) of R [K_a, K_b] >= 0;
  a row or column summing to 0 counts 0; NaN for an empty matrix."""
  if r.size == 0:
    return float("nan")
  with np.errstate(divide="ignore", invalid="ignore"):
    cols = np.nan_to_num(r.max(axis=0) ** 2 / r.sum(axis=0), nan=0.0, posinf=0.0)
    rows = np.nan_to_num(r.max(axis=1) ** 2 / r.sum(axis=1), nan=0.0, posinf=0.0)
  return float((cols.mean() + rows.mean()) / 2)


def udr(codes: Sequence[np.ndarray], kls: Sequence[np.ndarray] | None = None, *, similarity: str = "lasso",
        kl_threshold: float = KL_THRESHOLD, alpha: float = LASSO_ALPHA) -> dict:
  """UDR of M >= 2 models from their codes of the same n inputs.

  codes: M arrays [n, K_m] (row i of every array encodes the same input); kls: M arrays [K_m]
  of mean per-latent KL to the prior (None: no KL filter, every latent counts); similarity:
  "lasso" or "spearman"; kl_threshold: latents with KL <= it are dropped.
  Returns {"model_scores" [M] (median over b != m of pairwise[b, m]), "pairwise" [M, M]
  (UDR of (a, b); diagonal NaN), "active" (M lists of kept latent indices), "similarity"}.
  """
  if similarity not in SIMILARITIES:
    raise ValueError(f"similarity={similarity!r}; use one of {SIMILARITIES}.")
  m = len(codes)
  if m < 2:
    raise ValueError(f"UDR compares models with each other; it needs at least 2, got {m}.")
  n = {np.shape(c)[0] for c in codes}
  if len(n) != 1 or any(np.ndim(c) != 2 for c in codes):
    raise ValueError(f"codes must be M arrays [n, K] of the same n inputs; got shapes {[np.shape(c) for c in codes]}.")
  active = [np.arange(np.shape(c)[1]) if kls is None else np.flatnonzero(np.asarray(kl) > kl_threshold)
            for c, kl in zip(codes, kls if kls is not None else [None] * m)]
  reps = []
  for c, keep in zip(codes, active):
    z = np.zeros(np.shape(c))
    z[:, keep] = standardise(np.asarray(c)[:, keep])
    reps.append(z)
  pairwise = np.full((m, m), np.nan)
  for a in range(m):
    for b in range(m):
      if a != b:
        r = lasso_similarity(reps[a], reps[b], alpha) if similarity == "lasso" else spearman_similarity(reps[a], reps[b])
        pairwise[a, b] = relative_strength(r[np.ix_(active[a], active[b])])
  scores = np.array([np.median(np.delete(pairwise[:, i], i)) for i in range(m)])
  return {"model_scores": scores, "pairwise": pairwise, "active": [a.tolist() for a in active],
          "similarity": similarity}
