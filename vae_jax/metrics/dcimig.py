"""DCIMIG (Sepliarskaia, Kiseleva & de Rijke, "Evaluating disentangled representations" /
"How to not measure disentanglement", arXiv:1910.05587): a MIG that also penalises codes
that mix factors.

With the mutual information I(c_j; v_k) [F, K] (nats) of histogram-discretised codes and
factors: each code j goes to its most informative factor l_j with the gap
R_j = I(c_j; v_{l_j}) − (second-largest I(c_j; v_k) over k) (the whole I if F = 1); each
factor k keeps D_k = max{R_j : l_j = k} (0 if no code goes to it);
DCIMIG ("value") = Σ_k D_k / Σ_k H(v_k). It lies in [0, 1]; 1 needs every factor's code to
carry all of that factor's entropy and nothing of any other factor. Ties in l_j go to the
first factor. As in the authors' and the Ubisoft La Forge reference code, the sums run over
the factors (no per-factor normalisation).

Estimator and defaults: disentanglement_lib's histogram MI (evaluation.mig.mig_histogram,
the same as the histogram MIG): `histogram_bins` (20) equal-width bins per code on the
posterior means of `histogram_points` (10,000) grid rows drawn without replacement
(SUBSET, the evaluation's shared random subsets); factors are discrete, entropies
empirical. The paper gives no sample size; this follows the histogram MIG's so that the
two are comparable. Nuisance factors and factors with one value are left out.
"""

from __future__ import annotations

import numpy as np

from vae_jax.evaluation.mig import mig_histogram
from vae_jax.metrics.base import MetricContext
from vae_jax.metrics.beta_vae_score import scored_factors

SUBSET = "histogram_points"


def dcimig_from_mi(mi: np.ndarray, entropy: np.ndarray) -> dict:
  """DCIMIG from the MI matrix [F, K] (nats) and the factor entropies [F] (nats).

  Returns {"dcimig", "code_factor" [K] (l_j), "code_gap" [K] (R_j), "factor_gap" [F] (D_k)}.
  """
  mi = np.asarray(mi, np.float64)
  f, k = mi.shape
  ordered = -np.sort(-mi, axis=0)
  code_gap = ordered[0] - (ordered[1] if f > 1 else 0.0)
  code_factor = np.argmax(mi, axis=0)
  factor_gap = np.zeros(f)
  np.maximum.at(factor_gap, code_factor, code_gap)
  total = float(np.sum(entropy))
  return {"dcimig": float(factor_gap.sum() / total) if total > 0 else float("nan"),
          "code_factor": code_factor, "code_gap": code_gap, "factor_gap": factor_gap}


def compute(ctx: MetricContext) -> dict:
  """{"value", "estimator", "factors", "num_points", "num_bins", "mi" [F, K] (nats),
  "entropy_factors" [F], "code_factor" [K], "code_gap" [K], "factor_gap" [F]}."""
  factors = scored_factors(ctx)
  rows = ctx.points["dcimig"]
  bins = int(ctx.settings.histogram_bins)
  hist = mig_histogram(ctx.posterior.mean[rows], ctx.posterior.factors[rows][:, list(factors)], num_bins=bins)
  out = dcimig_from_mi(hist["mi_unnormalised"], hist["entropy_factors"])
  return {
      "value": out["dcimig"],
      "estimator": hist["estimator"],
      "factors": [ctx.dataset.factor_names[f] for f in factors],
      "num_points": int(len(rows)),
      "num_bins": bins,
      "mi": hist["mi_unnormalised"].tolist(),
      "entropy_factors": hist["entropy_factors"].tolist(),
      **{key: out[key].tolist() for key in ("code_factor", "code_gap", "factor_gap")},
  }


def scalars(result: dict) -> dict[str, float]:
  """{"dcimig"}."""
  return {"dcimig": result["value"]}
