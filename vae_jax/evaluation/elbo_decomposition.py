"""Full-dataset ELBO (KL) decomposition, as Chen et al. report it, and active units.

With z ~ q(z | x_n) for a random subset of S images and the aggregate posterior
q(z) = (1/N) Σ_n q(z | x_n) over all N posteriors:

    E[log q(z|x) − log p(z)] =   (E log q(z|x) − E log q(z))          index-code MI
                               + (E log q(z) − E log Π_j q(z_j))      total correlation
                               + (E log Π_j q(z_j) − E log p(z))      dimension-wise KL

The joint log q(z) is a K-dimensional mixture: its Gaussian log-density is a quadratic
form in z, so S × N of them are one matrix product (float64, chunked over N, jitted),
followed by a running logsumexp. The marginals q(z_j) are one-dimensional mixtures and
use the fast binned evaluation of `vae_jax.evaluation.mixture`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.densities import LOG_2PI
from vae_jax.densities import log_normal
from vae_jax.densities import log_standard_normal
# Explicit names: the package rebinds the attribute `mig` to the function of that name.
from vae_jax.evaluation.mig import as_posteriors
from vae_jax.evaluation.mig import draw_points
from vae_jax.evaluation.mixture import exact_log_mixture
from vae_jax.evaluation.mixture import mixture_sums_1d


@functools.partial(jax.jit, static_argnames=("chunk",))
def _joint_log_sum_chunked(points, mu, log_var, valid, chunk):
  """log Σ_m valid_m Π_d N(points_td; mu_md, exp(log_var_md)) → [T], scanning chunks of m."""
  k = mu.shape[1]
  prec = jnp.exp(-log_var)
  coef = jnp.concatenate([-0.5 * prec, mu * prec], axis=1)  # [M, 2K] against [z², z]
  const = -0.5 * (k * LOG_2PI + jnp.sum(log_var + mu * mu * prec, axis=1))
  const = jnp.where(valid, const, -jnp.inf)
  feats = jnp.concatenate([points * points, points], axis=1)  # [T, 2K]

  def body(carry, xs):
    run_max, run_sum = carry
    coef_c, const_c = xs
    log_dens = feats @ coef_c.T + const_c[None, :]  # [T, chunk]
    new_max = jnp.maximum(run_max, log_dens.max(axis=1))
    safe = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    # The exponentials in float32 (a quarter of the cost): each term is in (0, 1] with relative
    # error ~1e-7, the chunk's sum stays far from float32's limits, the running sum is float64.
    terms = jnp.exp((log_dens - safe[:, None]).astype(jnp.float32))
    run_sum = run_sum * jnp.exp(run_max - safe) + terms.sum(axis=1, dtype=jnp.float32).astype(run_sum.dtype)
    return (new_max, run_sum), None

  init = (jnp.full(points.shape[:1], -jnp.inf, points.dtype), jnp.zeros(points.shape[:1], points.dtype))
  xs = (coef.reshape(-1, chunk, 2 * k), const.reshape(-1, chunk))
  (run_max, run_sum), _ = jax.lax.scan(body, init, xs)
  return run_max + jnp.log(run_sum)


def joint_log_sum(points, mean, log_var, *, point_chunk=1024, comp_chunk=512):
  """log Σ_n q(points_t | x_n) with q(z|x_n) = N(mean_n, diag(exp(log_var_n))) → [T] (float64).

  Args:
    points: [T, K]; mean, log_var: [N, K].
    point_chunk, comp_chunk: memory is O(point_chunk · comp_chunk); the T·N·2K
      multiply-adds are one matrix product per chunk. A [1024, 512] float64 block (4 MiB)
      stays in cache through the max, exp and sum passes (`benchmarks/evaluation.py
      --suite --metrics elbo_decomposition` times the whole term).
  """
  points = np.asarray(points, dtype=np.float64)
  mean = np.asarray(mean, dtype=np.float64)
  log_var = np.asarray(log_var, dtype=np.float64)
  n = mean.shape[0]
  center = mean.mean(axis=0)  # better-conditioned quadratic form
  points, mean = points - center, mean - center
  comp_chunk = min(comp_chunk, 1 << max(0, (n - 1).bit_length()))
  n_pad = -(-n // comp_chunk) * comp_chunk
  valid = np.arange(n_pad) < n
  mean = np.pad(mean, ((0, n_pad - n), (0, 0)))
  log_var = np.pad(log_var, ((0, n_pad - n), (0, 0)))
  out = np.empty(points.shape[0])
  with jax.enable_x64(True):
    mu_j, lv_j, valid_j = jnp.asarray(mean), jnp.asarray(log_var), jnp.asarray(valid)
    for t0 in range(0, points.shape[0], point_chunk):
      block = points[t0:t0 + point_chunk]
      size = block.shape[0]
      padded = min(point_chunk, 1 << max(3, (size - 1).bit_length()))  # few shapes, few compilations
      res = _joint_log_sum_chunked(jnp.asarray(np.pad(block, ((0, padded - size), (0, 0)))), mu_j, lv_j,
                                   valid_j, comp_chunk)
      out[t0:t0 + size] = np.asarray(res)[:size]
  return out


def _mixture_log_density(log_sum, log_own, n, dataset_size):
  """log q at points from log Σ_n (all N components) and log of each point's own term.

  With dataset_size D = N this is log Σ − log N. With D > N the N posteriors are a random
  subset of the dataset: the point's own posterior gets weight 1/D and the other N − 1
  stand for the remaining D − 1 images, (D − 1)/(D (N − 1)) each.
  """
  if dataset_size == n:
    return log_sum - math.log(n)
  log_own = np.minimum(log_own, log_sum)
  with np.errstate(divide="ignore"):
    log_rest = log_sum + np.log1p(-np.exp(log_own - log_sum))  # log(Σ − own), may be −inf
  log_rest_weight = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(n - 1)
  return np.logaddexp(log_own - math.log(dataset_size), log_rest + log_rest_weight)


def elbo_decomposition_terms(mean, log_var, dataset_size=None, *, num_samples=10_000, key=None,
                             samples=None, marginals="fast") -> dict:
  """Chen et al.'s full-dataset decomposition of the KL term of the ELBO.

  Args:
    mean, log_var: [N, K] posterior parameters of every image of the dataset (any order).
    dataset_size: D, the number of images the aggregate posterior is over; None: N. With
      D > N the posteriors are taken as a uniform random subset of the dataset (the own
      posterior weighs 1/D, the others (D − 1)/(D (N − 1)), as in minibatch-stratified
      sampling).
    num_samples: S evaluation points z ~ q(z | x_n), one per image of a random subset
      (chosen with `key`); S >= N uses every image once.
    key: jax PRNG key, default PRNGKey(0) (same points as `mig` with the same key).
    samples: optional [N, K] one z per image; None draws z ~ q(z | x_n) with `key`.
    marginals: "fast" (binned 1-D mixtures, as `mig`) or "exact" (chunked logsumexp).

  Returns:
    dict of floats (nats, averages over the S points): "log_qz_given_x", "log_qz",
    "log_prod_qzi", "log_pz"; "index_code_mi", "total_correlation", "dimwise_kl",
    "kl" (their sum = E[log q(z|x) − log p(z)]); "kl_per_dim" [K], the analytic
    KL(q(z_j|x_n) ‖ N(0, 1)) averaged over all N; "kl_analytic" (its sum);
    "num_samples", "dataset_size".
  """
  mean, log_var = as_posteriors(mean, log_var)
  n, k = mean.shape
  dataset_size = n if dataset_size is None else int(dataset_size)
  if dataset_size < n or (dataset_size > n and n < 2):
    raise ValueError(f"dataset_size {dataset_size} must be >= N = {n} (and N >= 2 when larger).")
  points, indices = draw_points(mean, log_var, samples=samples, num_samples=num_samples, key=key)

  log_own = log_normal(points, mean[indices], log_var[indices])  # [S, K]
  log_qz_given_x = log_own.sum(axis=1)
  log_pz = log_standard_normal(points).sum(axis=1)

  if marginals == "fast":
    log_sums = np.empty_like(points)
    zeros_pts = np.zeros((1, points.shape[0]), np.int64)
    zeros_comps = np.zeros((1, n), np.int64)
    for j in range(k):
      sums = mixture_sums_1d(points[:, j], zeros_pts, mean[:, j], 0.5 * log_var[:, j], zeros_comps, [1])[0]
      with np.errstate(divide="ignore", invalid="ignore"):
        log_sum = np.where(sums > 0, np.log(sums), -np.inf)
      log_sums[:, j] = np.maximum(log_sum, log_own[:, j])  # the own term bounds the sum below
  elif marginals == "exact":
    log_sums = exact_log_mixture(points, mean, log_var) + math.log(n)
  else:
    raise ValueError(f"marginals must be 'fast' or 'exact'; got {marginals!r}.")
  log_qzj = _mixture_log_density(log_sums, log_own, n, dataset_size)
  log_joint = joint_log_sum(points, mean, log_var)
  log_qz = _mixture_log_density(log_joint, log_qz_given_x, n, dataset_size)

  e_qzx, e_qz, e_prod, e_pz = (float(v.mean()) for v in (log_qz_given_x, log_qz, log_qzj.sum(axis=1), log_pz))
  kl_per_dim = 0.5 * (mean**2 + np.exp(log_var) - log_var - 1.0).mean(axis=0)
  return {
      "log_qz_given_x": e_qzx,
      "log_qz": e_qz,
      "log_prod_qzi": e_prod,
      "log_pz": e_pz,
      "index_code_mi": e_qzx - e_qz,
      "total_correlation": e_qz - e_prod,
      "dimwise_kl": e_prod - e_pz,
      "kl": e_qzx - e_pz,
      "kl_per_dim": kl_per_dim,
      "kl_analytic": float(kl_per_dim.sum()),
      "num_samples": int(points.shape[0]),
      "dataset_size": dataset_size,
  }


def active_units(mean, threshold=0.01) -> dict:
  """Active latent dimensions: Var_x[E_q(z|x) z_j] > threshold (Burda et al.).

  Args:
    mean: [N, K] posterior means.
    threshold: variance above which a dimension counts as active.

  Returns:
    dict with "variance" [K] (variance of the posterior means over the data), "active"
    [K] bool, "num_active" (int), "threshold".
  """
  mean = np.asarray(mean)
  if mean.ndim != 2:
    raise ValueError(f"mean must be [N, K]; got {mean.shape}.")
  # Two-pass with NumPy's pairwise sums: float32 error ~1e-7·log N relative, far below the threshold's scale.
  variance = np.var(mean, axis=0).astype(np.float64)
  active = variance > threshold
  return {"variance": variance, "active": active, "num_active": int(active.sum()), "threshold": float(threshold)}
