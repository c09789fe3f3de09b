"""Mutual information gap (MIG) over the full dataset.

Two estimators, which give different numbers for the same model (every reported MIG
names its estimator and the factors it counts):

- `mig`: Chen et al.'s (β-TCVAE paper) sampling estimator. H(z_j) = −E log q(z_j),
  q(z_j) = (1/N) Σ_n q(z_j | x_n) over all N posteriors, evaluated at sampled
  z ~ q(z | x_n); H(z_j | v_k) the same within each slice v_k = a, averaged over a.
  `mig_brute_force` is the exact reference (chunked logsumexp over all pairs).
- `mig_histogram`: disentanglement_lib's protocol (posterior means discretised into
  equal-width bins, discrete mutual information normalised by factor entropy).

How `mig` is fast. Every density it needs is a one-dimensional mixture of Gaussians
(per latent, per slice) evaluated at S points, which brute force costs S·N per
latent and set of slices (~10^11 for dSprites). Instead, per latent:

1. log σ is put on a lattice σ_g = exp(g · log_sigma_step); each component is spread
   over the 3 lattice widths nearest its own with Lagrange weights in the variance,
   so the node Gaussians' mixture matches its moments through the 5th (weights can be
   slightly negative). Each lattice "node" then holds components of one width.
2. Within a node, components are linearly binned (mass and mean preserved) onto
   cells of width h = σ_g / rho, separately for every slice; the slices of every
   factor lie end to end on one line, padded by more than the kernel's reach, so one
   `np.convolve` with the truncated Gaussian kernel (± truncation·σ_g) smooths all of
   them at once, and each point linearly interpolates its slice's line. Where the
   line would be mostly empty (σ tiny against the spread of the means), runs of empty
   blocks are squeezed out first.
3. Where components are isolated (few per kernel width), each point instead sums the
   occupied cells within its window directly (sorted cells + searchsorted). A rough
   cost model picks 2 or 3 per node.

Errors are second order in 1/rho (binning, interpolation; mean-zero at points drawn
from the mixture itself, and the kernel is narrowed by the variance they add on
average) and third order in log_sigma_step. Measured against brute force: about 1e-4
nats in every entropy, at worst ~1e-2 nats for single points in far tails. Each
density is floored by the point's own component term, an exact lower bound.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.data.grid import index_to_factors

_LOG_2PI = math.log(2.0 * math.pi)
SAMPLING_ESTIMATOR = "sampling (Chen et al.)"
HISTOGRAM_ESTIMATOR = "histogram (disentanglement_lib)"


# ---------------------------------------------------------------------------
# Inputs.


def _as_posteriors(mean, log_var, factor_sizes=None):
  """Float64 NumPy copies of `mean`, `log_var` [N, K], checked against the grid."""
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
# Fast one-dimensional Gaussian-mixture densities.


@dataclasses.dataclass(frozen=True)
class KdeConfig:
  """Accuracy/speed knobs of the fast 1-D mixture evaluation (see the module docstring)."""

  rho: float = 8.0  # grid cells per node standard deviation
  truncation: float = 8.0  # kernel support, in standard deviations
  log_sigma_step: float = 0.1  # spacing of the log σ lattice
  sigma_nodes: int = 3  # lattice widths each component is spread over (interpolation order + 1)
  dense_budget: int = 1 << 23  # longest line (float64 cells) before the window path
  sparse_chunk: int = 1 << 22  # most (point, cell) pairs materialised at once
  min_rel_sigma: float = 1e-12  # σ floor relative to the spread of the means (int64 cells)


def _gaussian_taps(half, std):
  """Truncated Gaussian kernel [2·half + 1] of standard deviation `std` (cells), unit integral."""
  taps = np.arange(-half, half + 1, dtype=np.float64)
  return np.exp(-0.5 * (taps / std) ** 2) / (math.sqrt(2.0 * math.pi) * std)


@functools.partial(jax.jit, static_argnames=("width",))
def _full_windows(x, start, count, cell_pos, cell_weights, std, width):
  """Σ_{i < count_t} cell_weights[start_t + i] · exp(−½((x_t − cell_pos[start_t + i]) / std)²) → [T].

  The window path's inner sum as a dense [T, width] computation, which XLA fuses into
  one loop: several times faster than NumPy's ragged version when windows are full.
  """
  offsets = jnp.arange(width)
  idx = jnp.minimum(start[:, None] + offsets[None, :], cell_pos.shape[0] - 1)
  d = (x[:, None] - cell_pos[idx]) / std
  terms = jnp.where(offsets[None, :] < count[:, None], cell_weights[idx] * jnp.exp(-0.5 * d * d), 0.0)
  return terms.sum(axis=1)


def _window_sums(x_pts, point_keys, cells, frac, weights, comp_keys, half, std, cfg):
  """`_node_sums` by direct sums over the occupied cells within ± half cells of each point.

  Keys here are already unique across sets ([P, T] and [P, M] with per-set offsets).
  """
  p_sets, t = point_keys.shape
  cmax = int(cells.max()) + 1
  stride = cmax + 1
  codes = (comp_keys * stride + cells[None, :]).reshape(-1)
  uniq, inverse = np.unique(np.concatenate([codes, codes + 1]), return_inverse=True)
  w0, w1 = np.tile(weights * (1.0 - frac), p_sets), np.tile(weights * frac, p_sets)
  cell_weights = np.bincount(inverse, np.concatenate([w0, w1]))
  cell_pos = (uniq % stride).astype(np.float64)
  x_all = np.tile(x_pts, p_sets)
  key_all = point_keys.reshape(-1)
  lo_cell = np.ceil(x_all - half)
  hi_cell = np.floor(x_all + half)
  empty = (hi_cell < 0) | (lo_cell > cmax)
  start = np.searchsorted(uniq, key_all * stride + np.clip(lo_cell, 0, cmax).astype(np.int64), side="left")
  stop = np.searchsorted(uniq, key_all * stride + np.clip(hi_cell, 0, cmax).astype(np.int64), side="right")
  counts = np.where(empty, 0, stop - start)
  norm = 1.0 / (math.sqrt(2.0 * math.pi) * std)
  width = 2 * half + 1
  if counts.mean() > width / 4:  # crowded windows: dense and jitted
    rows = 1 << 15
    padded = 1 << max(10, (uniq.shape[0] - 1).bit_length())  # few shapes, few compilations
    cell_pos = np.pad(cell_pos, (0, padded - uniq.shape[0]))
    cell_weights = np.pad(cell_weights, (0, padded - uniq.shape[0]))
    out = np.empty(x_all.shape[0])
    with jax.enable_x64(True):
      pos_j, w_j = jnp.asarray(cell_pos), jnp.asarray(cell_weights)
      for t0 in range(0, x_all.shape[0], rows):
        sl = slice(t0, t0 + rows)
        size = x_all[sl].shape[0]
        pad = (0, rows - size) if x_all.shape[0] > rows else (0, (1 << max(3, (size - 1).bit_length())) - size)
        res = _full_windows(jnp.asarray(np.pad(x_all[sl], pad)), jnp.asarray(np.pad(start[sl], pad)),
                            jnp.asarray(np.pad(counts[sl], pad)), pos_j, w_j, std, width)
        out[sl] = np.asarray(res)[:size] * norm
    return out.reshape(p_sets, t)
  ends = np.cumsum(counts)
  out = np.zeros(x_all.shape[0])
  t0 = 0
  while t0 < x_all.shape[0]:  # bounded memory: about cfg.sparse_chunk (point, cell) pairs at once
    done = ends[t0 - 1] if t0 else 0
    t1 = max(int(np.searchsorted(ends, done + cfg.sparse_chunk, side="right")), t0 + 1)
    c = counts[t0:t1]
    total = int(c.sum())
    if total:
      owner = np.repeat(np.arange(t1 - t0), c)
      offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c) + np.repeat(start[t0:t1], c)
      d = (x_all[t0:t1][owner] - cell_pos[offsets]) / std
      out[t0:t1] = np.bincount(owner, cell_weights[offsets] * np.exp(-0.5 * d * d), minlength=t1 - t0) * norm
    t0 = t1
  return out.reshape(p_sets, t)


def _node_sums(x_pts, point_keys, cells, frac, weights, comp_keys, total_keys, half, kernel_std, cfg):
  """Σ over one σ-node's components of a cell-unit Gaussian kernel, at the points, per key set.

  Args:
    x_pts: [T] point positions in cell units.
    point_keys: [P, T] the slice of each point in each key set, numbered across sets
      (set p's slices are offset by the slice counts of sets < p).
    cells, frac: [M] integer cell (>= 0) and fractional offset of each component's mean.
    weights: [M] the components' shares of this node.
    comp_keys: [P, M] the slice of each component in each key set, numbered likewise.
    total_keys: slices over all sets; half: kernel half-width in cells.
    kernel_std: (line path, window path) kernel standard deviations in cells.

  Returns:
    [P, T] Σ_{m in the point's slice} weights_m · exp(−d²/2) / (√(2π)·std), d the distance
    in kernel standard deviations, cut at ± half cells (divide by the cell width for a density).

  Two paths. The line path bins every slice of every set onto one line (slices end to
  end, each padded by more than the kernel's reach), convolves it once and interpolates
  at the points; where the line would be mostly empty (σ small against the spread of
  the means) it is cut into blocks of half + 1 cells and empty runs are squeezed to one
  block, which no kernel crosses. The window path sums, for each point, the occupied
  cells within its window directly; it wins when the components are isolated.
  """
  p_sets, t = point_keys.shape
  m = cells.shape[0]
  width = 2 * half + 1
  block = half + 1
  cmax = int(cells.max()) + 1
  blocks_per_key = -(-(cmax + 2 + 2 * block) // block)  # a slice's cells sit at [block, cmax + block]
  stride = blocks_per_key * block
  valid = (x_pts > -half - 1) & (x_pts < cmax + half + 1)  # farther points get nothing from this node
  x_valid = x_pts[valid]
  i_pts = np.floor(x_valid).astype(np.int64)
  f_pts = x_valid - i_pts
  pt_codes = point_keys[:, valid] * stride + (i_pts + block)[None, :]  # [P, Tv]
  codes = (comp_keys * stride + (cells + block)[None, :]).reshape(-1)  # [P·M]

  # Rough costs in ns on a 2-core x86 CPU: convolution ~0.3 per tap and cell; a pass over
  # the components ~10 per set; a window-path (point, cell) pair ~20; its sort ~100 per cell.
  dense_length = total_keys * stride
  compress_cost = 20.0 * p_sets * (m + t)
  if dense_length <= cfg.dense_budget and 0.3 * width * dense_length <= max(compress_cost, 1e7):
    length = dense_length

    def position(code):
      return code
  else:
    # Every key set covers at least the blocks the components occupy when pooled, so the
    # pooled count bounds the compressed line's cost from below without building it.
    pooled = np.unique(cells // block).shape[0] if cells.shape[0] < (1 << 16) else None
    if pooled is None:
      seen = np.zeros(cmax // block + 2, dtype=bool)
      seen[cells // block] = True
      pooled = int(seen.sum())
    per_window = 2.0 * min(block, 2.0 * m / pooled)
    window_cost = 100.0 * p_sets * m + 20.0 * p_sets * t * per_window
    if 0.3 * width * p_sets * pooled * block > window_cost:
      return _window_sums(x_pts, point_keys, cells, frac, weights, comp_keys, half, kernel_std[1], cfg)
    total_blocks = total_keys * blocks_per_key
    if total_blocks <= cfg.dense_budget:
      occupied = np.zeros(total_blocks + 1, dtype=bool)
      occupied[codes // block] = True
      occupied[(codes + 1) // block] = True
      comp_blocks = int(occupied.sum())
      occupied[pt_codes // block] = True
      occupied[(pt_codes + 1) // block] = True
      keep = occupied.copy()
      keep[1:] |= occupied[:-1]  # one empty block after each occupied run
      new_block = np.cumsum(keep) - 1
      length = int(new_block[-1] + 1) * block

      def position(code):
        return new_block[code // block] * block + code % block
    else:
      comp_used = np.unique(np.concatenate([codes // block, (codes + 1) // block]))
      comp_blocks = comp_used.shape[0]
      used = np.union1d(comp_used, np.concatenate([pt_codes // block, (pt_codes + 1) // block]).reshape(-1))
      new_used = np.cumsum(np.concatenate([[0], np.minimum(np.diff(used), 2)]))
      length = int(new_used[-1] + 2) * block

      def position(code):
        return new_used[np.searchsorted(used, code // block)] * block + code % block
    per_window = 2.0 * min(block, 2.0 * p_sets * m / max(comp_blocks, 1))
    window_cost = 100.0 * p_sets * m + 20.0 * p_sets * t * per_window
    if length > cfg.dense_budget or 0.3 * width * length > window_cost:
      return _window_sums(x_pts, point_keys, cells, frac, weights, comp_keys, half, kernel_std[1], cfg)

  pos = position(codes)
  line = np.bincount(pos, np.tile(weights * (1.0 - frac), p_sets), minlength=length)
  line[1:] += np.bincount(pos, np.tile(weights * frac, p_sets), minlength=length)[:-1]  # pos + 1 < length
  line = np.convolve(line, _gaussian_taps(half, kernel_std[0]), mode="same")
  out = np.zeros((p_sets, t))
  pos = position(pt_codes)
  out[:, valid] = (1.0 - f_pts) * line[pos] + f_pts * line[pos + 1]
  return out


def mixture_sums_1d(points, point_keys, mu, log_sigma, comp_keys, num_keys, cfg: KdeConfig = KdeConfig()):
  """Approximate Σ_{n: key_n = key_t} N(points_t; mu_n, exp(log_sigma_n)²) for several key sets.

  Args:
    points: [T] evaluation points of one latent dimension.
    point_keys: [P, T] int, the slice of each point in each of P key sets (e.g. set 0 the
      whole dataset with one key, set p the values of one factor).
    mu, log_sigma: [M] component means and log standard deviations.
    comp_keys: [P, M] int, the slice of each component in each key set.
    num_keys: [P] number of slices in each key set.
    cfg: accuracy knobs.

  Returns:
    [P, T] unnormalised mixture sums (divide by the slice size for the mixture density).
  """
  points = np.asarray(points, dtype=np.float64)
  mu = np.asarray(mu, dtype=np.float64)
  point_keys = np.asarray(point_keys, dtype=np.int64)
  num_keys = [int(v) for v in num_keys]
  spread = float(mu.max() - mu.min()) + float(np.abs(mu).max()) * 1e-12 + 1e-300
  log_sigma = np.maximum(np.asarray(log_sigma, dtype=np.float64), math.log(cfg.min_rel_sigma * spread))
  step = cfg.log_sigma_step
  half = int(math.ceil(cfg.truncation * cfg.rho))
  # Binning (mean-preserving) and interpolation each add h²/6 of variance on average.
  kernel_std = (math.sqrt(cfg.rho**2 - 1.0 / 3.0), math.sqrt(cfg.rho**2 - 1.0 / 6.0))

  # Split each component over `sigma_nodes` consecutive lattice widths σ_g = exp(g·step)
  # around its own, with Lagrange weights in the variance: the mixture of the node
  # Gaussians then matches its moments up to order 2·sigma_nodes − 1 (weights may be < 0).
  q = cfg.sigma_nodes
  u = log_sigma / step
  first = (np.floor(u + 0.5) if q % 2 else np.floor(u)).astype(np.int64) - (q - 1) // 2
  order = np.argsort(first, kind="stable")
  first = first[order]
  mu = mu[order]
  var = np.exp(2.0 * log_sigma[order])
  offsets = np.concatenate([[0], np.cumsum(num_keys)[:-1]]).astype(np.int64)[:, None]
  comp_keys = (np.asarray(comp_keys, dtype=np.int64) + offsets)[:, order]  # numbered across sets
  point_keys = point_keys + offsets
  node_var = [np.exp(2.0 * step * (first + i)) for i in range(q)]
  shares = []
  for i in range(q):
    w = np.ones_like(var)
    for l in range(q):
      if l != i:
        w *= (var - node_var[l]) / (node_var[i] - node_var[l])
    shares.append(w)

  out = np.zeros(point_keys.shape)
  for g in range(int(first[0]), int(first[-1]) + q):
    # Node g holds the components whose first node is g − i (share i), for i = q − 1 .. 0:
    # contiguous after the sort.
    bounds = np.searchsorted(first, np.arange(g - q + 1, g + 2))
    lo, hi = bounds[0], bounds[-1]
    if hi == lo:
      continue
    weights = np.concatenate([shares[q - 1 - r][bounds[r]:bounds[r + 1]] for r in range(q)])
    h = math.exp(step * g) / cfg.rho
    origin = float(mu[lo:hi].min())
    x = (mu[lo:hi] - origin) / h
    cells = np.floor(x).astype(np.int64)
    out += _node_sums((points - origin) / h, point_keys, cells, x - cells, weights, comp_keys[:, lo:hi],
                      sum(num_keys), half, kernel_std, cfg) / h
  return out


# ---------------------------------------------------------------------------
# Exact (brute-force) mixture log-densities.


@functools.partial(jax.jit, static_argnames=("chunk",))
def _exact_log_sum_chunked(points, mu, log_var, valid, chunk):
  """log Σ_m valid_m N(points_td; mu_md, exp(log_var_md)) → [T, K], scanning over chunks of m."""
  k = mu.shape[1]
  mu_c = mu.reshape(-1, chunk, k)
  lv_c = log_var.reshape(-1, chunk, k)
  valid_c = valid.reshape(-1, chunk)

  def body(carry, xs):
    run_max, run_sum = carry
    m_c, l_c, v_c = xs
    log_dens = -0.5 * (_LOG_2PI + l_c[None] + (points[:, None, :] - m_c[None]) ** 2 * jnp.exp(-l_c)[None])
    log_dens = jnp.where(v_c[None, :, None], log_dens, -jnp.inf)
    new_max = jnp.maximum(run_max, log_dens.max(axis=1))
    shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    run_sum = run_sum * jnp.exp(run_max - shift) + jnp.exp(log_dens - shift[:, None, :]).sum(axis=1)
    return (new_max, run_sum), None

  init = (jnp.full(points.shape, -jnp.inf, points.dtype), jnp.zeros(points.shape, points.dtype))
  (run_max, run_sum), _ = jax.lax.scan(body, init, (mu_c, lv_c, valid_c))
  return run_max + jnp.log(run_sum)


def exact_log_mixture(points, mu, log_var, *, point_chunk=256, comp_chunk=2048):
  """Exact log((1/M) Σ_m N(points_td; mu_md, σ²_md)) per dimension → [T, K] (float64, chunked).

  Args:
    points: [T, K]; mu, log_var: [M, K]. Memory is O(point_chunk · comp_chunk · K).
  """
  points = np.asarray(points, dtype=np.float64)
  mu = np.asarray(mu, dtype=np.float64)
  log_var = np.asarray(log_var, dtype=np.float64)
  m, k = mu.shape
  comp_chunk = min(comp_chunk, 1 << max(0, (m - 1).bit_length()))
  m_pad = -(-m // comp_chunk) * comp_chunk
  valid = np.arange(m_pad) < m
  mu = np.pad(mu, ((0, m_pad - m), (0, 0)))
  log_var = np.pad(log_var, ((0, m_pad - m), (0, 0)))
  out = np.empty(points.shape)
  with jax.enable_x64(True):
    mu_j, lv_j, valid_j = jnp.asarray(mu), jnp.asarray(log_var), jnp.asarray(valid)
    for t0 in range(0, points.shape[0], point_chunk):
      block = points[t0:t0 + point_chunk]
      size = block.shape[0]
      padded = 1 << max(3, (size - 1).bit_length())  # few distinct shapes → few compilations
      block = np.pad(block, ((0, padded - size), (0, 0)))
      res = _exact_log_sum_chunked(jnp.asarray(block), mu_j, lv_j, valid_j, comp_chunk)
      out[t0:t0 + size] = np.asarray(res)[:size]
  return out - math.log(m)


# ---------------------------------------------------------------------------
# Shared estimator.


def _log_normal(x, mean, log_var):
  return -0.5 * (_LOG_2PI + log_var + (x - mean) ** 2 * np.exp(-log_var))


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
  mean, log_var = _as_posteriors(mean, log_var, factor_sizes)
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
    own = _log_normal(points[:, j], mean[indices, j], log_var[indices, j])
    with np.errstate(divide="ignore", invalid="ignore"):
      log_sums = np.where(sums > 0, np.log(sums), -np.inf)
    out[:, :, j] = np.maximum(log_sums, own[None, :]) + log_weights[:, None]
  return out


def _top_two_gap(mi):
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
  gap = _top_two_gap(mi)
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
  mean, log_var = _as_posteriors(mean, log_var, factor_sizes)
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
  # As disentanglement_lib's _histogram_discretize: digitize against the left edges → 1..num_bins.
  bins = np.stack([np.digitize(codes[:, j], np.histogram(codes[:, j], num_bins)[1][:-1]) - 1
                   for j in range(k)])  # [K, n] in 0..num_bins-1
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
  gap = _top_two_gap(mi)
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

