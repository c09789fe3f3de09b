"""Mutual information gap (MIG) over the full dataset.

Two estimators, which give different numbers for the same model (every reported MIG
names its estimator and the factors it counts):

- `mig`: Chen et al.'s (β-TCVAE paper) sampling estimator. H(z_j) = −E log q(z_j),
  q(z_j) = (1/N) Σ_n q(z_j | x_n) over all N posteriors, evaluated at sampled
  z ~ q(z | x_n); H(z_j | v_k) the same within each slice v_k = a, averaged over a.
  `mig_brute_force` is the exact reference (chunked logsumexp over all pairs).
- `mig_histogram`: disentanglement_lib's protocol (posterior means discretised into
  equal-width bins, discrete mutual information normalised by factor entropy).

How `mig` is fast: every density it needs is a one-dimensional mixture of Gaussians
(per latent, per slice) evaluated at S points; `vae_jax.evaluation.mixture` evaluates
them all per latent at once (binned, ~1e-4 nats per entropy against brute force), and
each density is floored by the point's own component term, an exact lower bound.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.data.grid import index_to_factors
from vae_jax.densities import log_normal
from vae_jax.evaluation.mixture import KdeConfig
from vae_jax.evaluation.mixture import exact_log_mixture
from vae_jax.evaluation.mixture import mixture_sums_1d

SAMPLING_ESTIMATOR = "sampling (Chen et al.)"
HISTOGRAM_ESTIMATOR = "histogram (disentanglement_lib)"


# ---------------------------------------------------------------------------
# Inputs.


def as_posteriors(mean, log_var, factor_sizes=None):
  """Float64 NumPy copies of posterior parameters, checked.

  Args:
    mean, log_var: [N, K] array-likes, finite.
    factor_sizes: optional grid factor sizes whose product must be N.

  Returns:
    (mean, log_var), both [N, K] float64 NumPy arrays; raises ValueError otherwise.
  """
  mean = np.asarray(mean, dtype=np.float64)
  log_var = np.asarray(log_var, dtype=np.float64)
  if mean.ndim != 2 or mean.shape != log_var.shape:
    raise ValueError(f"mean and log_var must both be [N, K]; got {mean.shape} and {log_var.shape}.")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(log_var))):
    raise ValueError("mean and log_var must be finite.")
  if factor_sizes is not None:
    n = int(np.prod(factor_sizes))
    if mean.shape[0] != n:
      raise ValueError(
          f"mean has {mean.shape[0]} rows but factor_sizes {tuple(factor_sizes)} describe {n} images; "
          "posteriors must cover the whole grid in factor-grid (row-major) order.")
  return mean, log_var


def _counted_factors(factor_sizes: Sequence[int], factors) -> tuple[int, ...]:
  """The factor indices that count; None means every factor with more than one value."""
  if factors is None:
    return tuple(k for k, size in enumerate(factor_sizes) if size > 1)
  factors = tuple(int(k) for k in factors)
  for k in factors:
    if not 0 <= k < len(factor_sizes):
      raise ValueError(f"factor index {k} out of range for {len(factor_sizes)} factors.")
    if factor_sizes[k] < 2:
      raise ValueError(f"factor {k} has a single value: its entropy is 0 and its MIG is undefined.")
  if len(set(factors)) != len(factors) or not factors:
    raise ValueError(f"factors must be distinct and non-empty; got {factors}.")
  return factors


def draw_points(mean, log_var, *, samples=None, num_samples=10_000, key=None):
  """Evaluation points of the sampling estimators.

  Args:
    mean, log_var: [N, K] posterior parameters.
    samples: optional [N, K] one z per image; drawn from q(z | x_n) with `key` if None.
    num_samples: S; a random subset (chosen with `key`) of S images supplies the points;
      num_samples >= N uses every image in order, so the result depends on the samples only.
    key: jax PRNG key (raw or typed), default PRNGKey(0); its bits seed NumPy generators.

  Returns:
    (points [S, K] float64, indices [S] int64: the image (= own posterior) of each point).
  """
  n, k = mean.shape
  # NumPy generators seeded from the key's bits: no compilation, and the same z for an
  # image whatever S is (the subset comes from a second, independent stream).
  key = jax.random.PRNGKey(0) if key is None else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  rng_z, rng_subset = (np.random.default_rng(seq)
                       for seq in np.random.SeedSequence(np.asarray(key, np.uint32).ravel().tolist()).spawn(2))
  if samples is None:
    samples = mean + np.exp(0.5 * log_var) * rng_z.standard_normal((n, k))
  else:
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape != mean.shape:
      raise ValueError(f"samples must be [N, K] = {mean.shape}; got {samples.shape}.")
  if num_samples is None or num_samples >= n:
    indices = np.arange(n, dtype=np.int64)
  else:
    indices = np.sort(rng_subset.choice(n, int(num_samples), replace=False)).astype(np.int64)
  return samples[indices], indices


# ---------------------------------------------------------------------------
# Shared estimator.



def log_q_at_points(points, indices, mean, log_var, factor_sizes, factors, *, method="fast",
                    cfg: KdeConfig = KdeConfig()):
  """log q(z_j) and log q(z_j | v_k = v_k(point)) at the evaluation points.

  Args:
    points: [S, K] evaluation points; indices: [S] the grid index of each point's image.
    mean, log_var: [N, K] posteriors in factor-grid order over `factor_sizes`.
    factors: the counted factor indices (F of them).
    method: "fast" (binned 1-D mixtures) or "exact" (chunked logsumexp over all pairs).

  Returns:
    [1 + F, S, K]: set 0 is the marginal q(z_j), set 1 + i the slice of factors[i] the
    point belongs to.
  """
  mean, log_var = as_posteriors(mean, log_var, factor_sizes)
  n, k = mean.shape
  points = np.asarray(points, dtype=np.float64)
  indices = np.asarray(indices, dtype=np.int64)
  point_factors = index_to_factors(indices, factor_sizes)
  sizes = [1] + [int(factor_sizes[f]) for f in factors]
  out = np.empty((len(sizes), points.shape[0], k))
  comp_factors = index_to_factors(np.arange(n), factor_sizes)
  if method == "exact":
    out[0] = exact_log_mixture(points, mean, log_var)
    for i, f in enumerate(factors, start=1):
      for a in range(factor_sizes[f]):
        sel = point_factors[:, f] == a
        if sel.any():
          comps = np.flatnonzero(comp_factors[:, f] == a)
          out[i, sel] = exact_log_mixture(points[sel], mean[comps], log_var[comps])
    return out
  if method != "fast":
    raise ValueError(f"method must be 'fast' or 'exact'; got {method!r}.")

  comp_keys = np.stack([np.zeros(n, np.int64)] + [comp_factors[:, f] for f in factors])
  point_keys = np.stack([np.zeros(len(indices), np.int64)] + [point_factors[:, f] for f in factors])
  del comp_factors
  log_weights = np.log(np.asarray(sizes, dtype=np.float64) / n)  # 1 / slice size
  log_sigma = 0.5 * log_var
  for j in range(k):
    sums = mixture_sums_1d(points[:, j], point_keys, mean[:, j], log_sigma[:, j], comp_keys, sizes, cfg)
    own = log_normal(points[:, j], mean[indices, j], log_var[indices, j])
    with np.errstate(divide="ignore", invalid="ignore"):
      log_sums = np.where(sums > 0, np.log(sums), -np.inf)
    out[:, :, j] = np.maximum(log_sums, own[None, :]) + log_weights[:, None]
  return out


def top_two_gap(mi):
  """Gap between the largest and second-largest entry of each row of mi [F, K] → [F]."""
  ordered = -np.sort(-mi, axis=1)
  return ordered[:, 0] - (ordered[:, 1] if mi.shape[1] > 1 else 0.0)


def mig_from_log_q(log_q, indices, factor_sizes, factors, estimator=SAMPLING_ESTIMATOR):
  """MIG and its parts from `log_q_at_points` output [1 + F, S, K] at grid indices [S]."""
  point_factors = index_to_factors(np.asarray(indices, dtype=np.int64), factor_sizes)
  entropy_z = -log_q[0].mean(axis=0)
  cond = np.empty((len(factors), log_q.shape[2]))
  for i, f in enumerate(factors):
    a = point_factors[:, f]
    counts = np.bincount(a, minlength=factor_sizes[f]).astype(np.float64)
    per_slice = np.stack([np.bincount(a, -log_q[i + 1, :, j], minlength=factor_sizes[f])
                          for j in range(log_q.shape[2])], axis=1)
    present = counts > 0
    cond[i] = (per_slice[present] / counts[present, None]).mean(axis=0)  # slices weigh equally
  mi_un = np.maximum(entropy_z[None, :] - cond, 0.0)
  entropy_v = np.log(np.asarray([factor_sizes[f] for f in factors], dtype=np.float64))
  mi = mi_un / entropy_v[:, None]
  gap = top_two_gap(mi)
  return {
      "mig": float(gap.mean()),
      "mi": mi,
      "mi_unnormalised": mi_un,
      "entropy_z": entropy_z,
      "cond_entropy": cond,
      "entropy_factors": entropy_v,
      "best_latent": np.argmax(mi, axis=1),
      "gap": gap,
      "factors": tuple(factors),
      "estimator": estimator,
      "num_samples": int(log_q.shape[1]),
  }


def _mig(method, mean, log_var, factor_sizes, samples, num_samples, factors, key):
  factor_sizes = tuple(int(s) for s in factor_sizes)
  mean, log_var = as_posteriors(mean, log_var, factor_sizes)
  factors = _counted_factors(factor_sizes, factors)
  points, indices = draw_points(mean, log_var, samples=samples, num_samples=num_samples, key=key)
  log_q = log_q_at_points(points, indices, mean, log_var, factor_sizes, factors, method=method)
  return mig_from_log_q(log_q, indices, factor_sizes, factors)


def mig(mean, log_var, factor_sizes, *, samples=None, num_samples=10_000, factors=None, key=None) -> dict:
  """Chen et al.'s sampling MIG over the whole dataset (fast 1-D mixture evaluation).

  Args:
    mean, log_var: [N, K] posterior parameters of every image, in factor-grid order
      (row-major over `factor_sizes`, last factor fastest).
    factor_sizes: the grid's factor sizes; their product is N.
    samples: optional [N, K] one z per image; None draws z ~ q(z | x_n) with `key`.
    num_samples: S, how many of the N points the entropies average over (a random
      subset chosen with `key`); S >= N uses every point (deterministic given samples).
    factors: indices of the factors that count; None: every factor with > 1 value.
      (Chen et al. leave dSprites' shape out: pass factors=(1, 2, 3, 4).)
    key: jax PRNG key; default PRNGKey(0).

  Returns:
    dict with "mig" (float, mean over counted factors of the top-1 − top-2 gap),
    "mi" [F, K] I(z_j; v_k) / log|V_k|, "mi_unnormalised" [F, K] (nats), "entropy_z" [K],
    "cond_entropy" [F, K], "entropy_factors" [F], "best_latent" [F], "gap" [F],
    "factors" (counted factor indices), "estimator", "num_samples" (S used).
  """
  return _mig("fast", mean, log_var, factor_sizes, samples, num_samples, factors, key)


def mig_brute_force(mean, log_var, factor_sizes, *, samples=None, num_samples=10_000, factors=None,
                    key=None) -> dict:
  """Reference for `mig`: the same estimator with exact chunked logsumexp over all pairs.

  Same arguments and return as `mig`; costs S·N·K Gaussian log-densities per entropy
  (float64, memory bounded by chunking). Same key → same points as `mig`.
  """
  return _mig("exact", mean, log_var, factor_sizes, samples, num_samples, factors, key)


# ---------------------------------------------------------------------------
# disentanglement_lib's histogram MIG.


def _discrete_entropy(labels):
  """Entropy in nats of the empirical distribution of integer labels [n]."""
  p = np.bincount(labels) / labels.shape[0]
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def histogram_discretize(codes, num_bins=20) -> np.ndarray:
  """disentanglement_lib's histogram discretizer: codes [n, K] -> bin indices [n, K] in 0..num_bins-1.

  Equal-width bins over each code's observed range: digitize against np.histogram's left
  edges (disentanglement_lib's _histogram_discretize, shifted to start at 0).
  """
  codes = np.asarray(codes, dtype=np.float64)
  return np.stack([np.digitize(codes[:, j], np.histogram(codes[:, j], num_bins)[1][:-1]) - 1
                   for j in range(codes.shape[1])], axis=1)


def mig_histogram(codes, factor_indices, num_bins=20) -> dict:
  """disentanglement_lib's MIG: histogram-discretised codes vs discrete factors.

  Args:
    codes: [n, K] representations (posterior means) of n sampled images.
    factor_indices: [n, F] integer factor values of the same images.
    num_bins: equal-width bins per code over its observed range (np.histogram edges).

  Returns:
    dict with "mig" (mean over factors of the top-1 − top-2 gap of normalised MI),
    "mi" [F, K] I(code_j; v_k) / H(v_k) in nats, "mi_unnormalised" [F, K],
    "entropy_factors" [F], "best_latent" [F], "gap" [F], "factors" (counted: all with
    non-zero empirical entropy), "estimator", "num_samples" (n).
  """
  codes = np.asarray(codes, dtype=np.float64)
  factor_indices = np.asarray(factor_indices)
  if codes.ndim != 2 or factor_indices.ndim != 2 or codes.shape[0] != factor_indices.shape[0]:
    raise ValueError(f"codes [n, K] and factor_indices [n, F] expected; got {codes.shape}, {factor_indices.shape}.")
  n, k = codes.shape
  f = factor_indices.shape[1]
  bins = histogram_discretize(codes, num_bins).T  # [K, n] in 0..num_bins-1
  labels = np.stack([np.unique(factor_indices[:, i], return_inverse=True)[1].reshape(-1) for i in range(f)])
  num_values = labels.max(axis=1) + 1  # [F]
  v_max = int(num_values.max())
  # One bincount for every (code, factor) contingency table, padded to v_max values.
  flat = ((np.arange(k)[:, None, None] * f + np.arange(f)[None, :, None]) * num_bins
          + bins[:, None, :]) * v_max + labels[None, :, :]
  joint = np.bincount(flat.reshape(-1), minlength=k * f * num_bins * v_max).reshape(k, f, num_bins, v_max) / n
  p_code = joint.sum(axis=3, keepdims=True)
  p_factor = joint.sum(axis=2, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(joint > 0, joint * np.log(joint / (p_code * p_factor)), 0.0)
  mi_un = np.maximum(terms.sum(axis=(2, 3)).T, 0.0)  # [F, K]
  entropy = np.array([_discrete_entropy(labels[i]) for i in range(f)])
  counted = np.flatnonzero(entropy > 0)
  mi = np.zeros_like(mi_un)
  mi[counted] = mi_un[counted] / entropy[counted, None]
  gap = top_two_gap(mi)
  return {
      "mig": float(gap[counted].mean()) if counted.size else float("nan"),
      "mi": mi,
      "mi_unnormalised": mi_un,
      "entropy_factors": entropy,
      "best_latent": np.argmax(mi, axis=1),
      "gap": gap,
      "factors": tuple(int(i) for i in counted),
      "estimator": HISTOGRAM_ESTIMATOR,
      "num_samples": n,
  }

