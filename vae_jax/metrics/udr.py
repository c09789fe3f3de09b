"""UDR (Duan et al., ICLR 2020) over an ensemble: each member scored against the other members
(vae_jax.evaluation.udr has the formulas and the protocol).

An ensemble metric: `ENSEMBLE = True`, so the evaluation run calls `compute_ensemble(ctxs)`
with every member's context at once and stores each member's own result. All members are
compared on the same `udr_points` (1,000) grid rows, drawn once without replacement
(disentanglement_lib draws 1,000 observations with replacement); the per-latent KL that
filters inactive latents is the mean over those rows of each posterior's KL to N(0, I), and
codes without a posterior variance are not filtered. `udr_similarity` ("lasso", as
disentanglement_lib, or "spearman") and `udr_kl_threshold` (0.01) are eval settings.
A single member has nothing to be compared with: its value is NaN with a note.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vae_jax.evaluation import udr as udr_lib
from vae_jax.metrics.base import MetricContext

ENSEMBLE = True
SUBSET = "udr_points"

# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"udr_points": udr_lib.NUM_POINTS, "udr_similarity": "lasso", "udr_kl_threshold": udr_lib.KL_THRESHOLD}


def compute(ctx: MetricContext) -> dict:
  """One member alone: UDR needs the others (ValueError pointing to compute_ensemble)."""
  raise ValueError("UDR compares the members of an ensemble with each other; use compute_ensemble(contexts), "
                   "which the evaluation run calls, or vae_jax.evaluation.udr.udr(codes, kls).")


def compute_ensemble(ctxs: Sequence[MetricContext]) -> list[dict]:
  """One result per member: {"value" (median UDR against the other members), "pairwise" [M, M]
  (row a, column b: UDR of a's codes against b's), "active_latents", "kl" [K], "similarity",
  "kl_filter", "num_points", "num_models", "factors" ([]: no factors used)}."""
  settings = ctxs[0].settings
  similarity = str(settings.get("udr_similarity", "lasso"))
  threshold = float(settings.get("udr_kl_threshold", udr_lib.KL_THRESHOLD))
  rows = ctxs[0].points["udr"]
  codes = [np.asarray(c.posterior.mean[rows], np.float64) for c in ctxs]
  with_kl = all(c.posterior.log_var is not None for c in ctxs)
  kls = [udr_lib.mean_gaussian_kl(c.posterior.mean[rows], c.posterior.log_var[rows]) for c in ctxs] if with_kl else None
  common = {"similarity": similarity, "kl_filter": threshold if with_kl else None, "num_points": int(len(rows)),
            "num_models": len(ctxs), "factors": []}
  if len(ctxs) < 2:
    return [{"value": float("nan"), "pairwise": [[float("nan")]], "active_latents": [],
             "kl": kls[0].tolist() if kls else None, "note": "UDR needs an ensemble of at least 2 members", **common}]
  out = udr_lib.udr(codes, kls, similarity=similarity, kl_threshold=threshold)
  pairwise = np.where(np.isnan(out["pairwise"]), None, out["pairwise"]).tolist()
  return [{"value": float(out["model_scores"][m]), "pairwise": pairwise, "active_latents": out["active"][m],
           "kl": kls[m].tolist() if kls else None, **common} for m in range(len(ctxs))]


def scalars(result: dict) -> dict[str, float]:
  """{"udr": the member's median UDR against the other members}."""
  return {"udr": result["value"]}
