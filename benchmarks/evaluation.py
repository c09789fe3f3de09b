"""Evaluation-time benchmark: full-dataset MIG and ELBO decomposition on dSprites-sized posteriors.

    python benchmarks/evaluation.py            # full size: N = 737,280, K = 10, S = 10,000 (~1-2 min)
    python benchmarks/evaluation.py --quick    # a 1/16 sub-grid, seconds
    python benchmarks/evaluation.py --suite [--points 10000]   # every registered metric vs. a
                                               # straightforward sklearn/NumPy version, a table of ratios

Prints figures; it is not a test. The posteriors are synthetic (no model is trained
here): dSprites' factor grid (shape 3, scale 6, orientation 40, posX 32, posY 32), some
latents encoding a factor with σ ~ 0.05-0.2, one encoding orientation's cosine with
shape mixed in, inactive latents with mean ≈ 0 and σ ≈ 1, noise on every mean.

Reports: the fast sampling MIG (Chen et al.) end to end; the brute-force reference on a
slice of the same evaluation points, extrapolated linearly to S; their agreement on the
same points (entropies and MIG computed from the same slice both ways); peak memory;
the ELBO decomposition; the histogram MIG; the encoder pass over the procedural grid
(images/s, mlp and conv64) next to the PyTorch baseline's encoder forward pass.
"""

from __future__ import annotations

import argparse
import pathlib
import os
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # This checkout's vae_jax, not an installed one.

import jax
import numpy as np

from vae_jax import evaluation
from vae_jax.data.grid import index_to_factors
from vae_jax.evaluation.mig import draw_points
from vae_jax.evaluation.mig import log_q_at_points
from vae_jax.evaluation.mig import mig_from_log_q

DSPRITES_SIZES = (3, 6, 40, 32, 32)
DSPRITES_NAMES = ("shape", "scale", "orientation", "posX", "posY")
CHEN_FACTORS = (1, 2, 3, 4)  # Chen et al. leave shape out


def synthetic_posteriors(sizes=DSPRITES_SIZES, num_latents=10, seed=0, collapsed=False):
  """Realistic-looking posterior params [N, K] (float32, as an encoder returns) over the grid.

  collapsed=True shrinks the active latents' σ to 1e-4-1e-3 (near-deterministic codes,
  the slow regime of the fast MIG path).
  """
  rng = np.random.default_rng(seed)
  n = int(np.prod(sizes))
  v = index_to_factors(np.arange(n), sizes).astype(np.float64)
  unit = v / (np.asarray(sizes, dtype=np.float64) - 1.0)  # each factor in [0, 1]
  mean = np.empty((n, num_latents), np.float32)
  log_var = np.empty((n, num_latents), np.float32)

  def active(j, code, lo, hi, noise):
    """Latent j = code + noise, σ log-uniform-ish in [lo, hi]."""
    if collapsed:
      lo, hi, noise = 1e-4, 1e-3, 0.02
    mean[:, j] = code + noise * rng.normal(size=n)
    log_var[:, j] = 2.0 * np.log(rng.uniform(lo, hi, n))

  active(0, 3.0 * unit[:, 3] - 1.5, 0.05, 0.1, 0.05)  # posX
  active(1, 1.5 - 3.0 * unit[:, 4], 0.05, 0.1, 0.05)  # posY (sign flipped)
  active(2, 2.0 * unit[:, 1] - 1.0, 0.1, 0.2, 0.1)  # scale
  active(3, np.cos(2 * np.pi * unit[:, 2]) + 0.5 * (v[:, 0] - 1), 0.1, 0.2, 0.1)  # orientation + shape
  active(4, 0.8 * unit[:, 3] + 0.3 * rng.normal(size=n), 0.3, 0.6, 0.1)  # weak, partly posX
  for j in range(5, num_latents):  # inactive: the prior
    mean[:, j] = 0.02 * rng.normal(size=n)
    log_var[:, j] = 0.05 * rng.normal(size=n)
  return mean, log_var


TORCH_REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "bench" / "torch_reference.py"


def encoder_throughput(arch: str, num_images: int = 16_384, batch_size: int = 2048) -> float:
  """images/s of vae_jax's grid encoding (rendering, jit-compiled sharded encoder, fetch).

  Times `vae_jax.evaluation.encode.encode_dataset` on the first `num_images` grid
  images after one warm-up batch, i.e. what the full-dataset evaluation pays per image.
  """
  import jax

  from vae_jax import configlib, models, parallel
  from vae_jax.data.dsprites import ProceduralDSprites
  from vae_jax.evaluation import encode

  config = configlib.base_config()
  config.model.architecture = arch
  dataset = ProceduralDSprites()
  model = models.create_model(config.model, dataset.image_shape, "betatcvae")
  x0 = jax.numpy.zeros((1, 64, 64, 1))
  params = jax.vmap(lambda k: model.init(k, x0, k)["params"])(jax.random.split(jax.random.PRNGKey(0), 1))
  mesh = parallel.create_mesh()
  encode.encode_dataset(model, params, dataset, mesh, indices=np.arange(batch_size), batch_size=batch_size,
                        progress=False)
  t = time.perf_counter()
  encode.encode_dataset(model, params, dataset, mesh, indices=np.arange(num_images), batch_size=batch_size,
                        progress=False)
  return num_images / (time.perf_counter() - t)


def torch_encoder_throughput(arch: str, num_images: int = 16_384, batch_size: int = 2048) -> float | None:
  """images/s of the PyTorch baseline's encoder forward pass (no_grad) on random binary images.

  Uses ../shared/bench/torch_reference.py's networks; None when torch or the file is absent.
  """
  try:
    import importlib.util

    import torch
  except ImportError:
    return None
  if not TORCH_REFERENCE.exists():
    return None
  spec = importlib.util.spec_from_file_location("torch_reference", TORCH_REFERENCE)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  net = ref.ConvVAE() if arch == "conv64" else ref.MlpVAE()
  x = (torch.rand(batch_size, 1, 64, 64) > 0.9).float()
  with torch.no_grad():
    net.encode(x)
    t = time.perf_counter()
    for _ in range(num_images // batch_size):
      net.encode(x)
  return (num_images // batch_size) * batch_size / (time.perf_counter() - t)


def _rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def metric_suite(sizes, points: int, num_members: int = 5, only: tuple[str, ...] = (), reference: bool = True) -> None:
  """Times every registered metric (but the likelihood, which needs a decoder) on the synthetic
  posteriors of the grid, next to benchmarks/suite_reference.py's straightforward version of the
  same protocol, and prints a table. `points`: the supervised protocols' training points
  (disentanglement_lib's 10,000; test sets half; downstream sizes up to it). UDR compares
  `num_members` members (the posterior with its codes permuted, sign-flipped and noised);
  `only`: these metrics (default all); reference=False skips the straightforward versions (the
  scikit-learn GBT and LogisticRegressionCV references of DCI and the downstream task take many
  minutes at the protocol's sizes)."""
  import suite_reference as ref

  from vae_jax import configlib, evaluate, metrics
  from vae_jax.evaluation.elbo_decomposition import elbo_decomposition_terms

  n = int(np.prod(sizes))
  mean, log_var = synthetic_posteriors(sizes)
  settings = configlib.base_config().eval
  settings.unlock()
  train_sizes = tuple(s for s in (10, 100, 1000, 10_000) if s <= points)
  settings.update(dict(score_train_points=points, score_test_points=points // 2, downstream_train_sizes=train_sizes,
                       downstream_test_points=points // 2, downstream_efficiency_sizes=(100, max(train_sizes))))
  rng = np.random.default_rng(0)
  members = [(mean, log_var)]
  for m in range(1, num_members):
    perm, sign = rng.permutation(10), rng.choice([-1.0, 1.0], 10)
    members.append(((mean[:, perm] * sign + 0.05 * rng.normal(size=mean.shape)).astype(np.float32), log_var[:, perm]))
  names = tuple(x for x in metrics.available() if x != "likelihood" and (not only or x in only))
  points_of = evaluate.draw_points(names, settings, n, 0)
  factors = index_to_factors(np.arange(n), sizes)
  dataset = type("Grid", (), dict(name="synthetic dSprites grid", factor_names=DSPRITES_NAMES, factor_sizes=sizes,
                                  nuisance_factors=(), mig_excluded_factors=(0,)))()
  ctxs = [metrics.MetricContext(posterior=metrics.Posterior(mu, lv, tuple(sizes), np.arange(n), factors),
                                dataset=dataset, settings=settings, key=jax.random.PRNGKey(m), points=points_of,
                                counted_factors=CHEN_FACTORS) for m, (mu, lv) in enumerate(members)]
  codes = np.asarray(mean, np.float64)
  s_elbo, s_mig = settings.elbo_samples, settings.mig_samples

  def brute_mig():  # Chen's MIG by chunked logsumexp on 64 points, extrapolated linearly to S.
    t = time.perf_counter()
    evaluation.mig_brute_force(mean, log_var, sizes, num_samples=64, factors=CHEN_FACTORS)
    return (time.perf_counter() - t) * s_mig / 64

  def brute_elbo():
    t = time.perf_counter()
    elbo_decomposition_terms(mean, log_var, num_samples=256, marginals="exact")
    return (time.perf_counter() - t) * s_elbo / 256

  def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t

  references = {
      "active_units": lambda: timed(lambda: ref.active_units(mean)),
      "beta_vae_score": lambda: timed(lambda: ref.beta_vae(codes, sizes, rng, points, points // 2)),
      "dci": lambda: timed(lambda: ref.dci_gbt(codes, sizes, rng, points, points // 2)),
      "dcimig": lambda: timed(lambda: ref.dcimig(codes, sizes, rng, settings.histogram_points)),
      "downstream_task": lambda: timed(lambda: ref.downstream(codes, sizes, rng, train_sizes, points // 2)),
      "elbo_decomposition": brute_elbo,
      "factor_vae_score": lambda: timed(lambda: ref.factor_vae(codes, sizes, rng, points, points // 2)),
      "mig": brute_mig,
      "mig_histogram": lambda: timed(lambda: ref.mig_histogram(codes, sizes, rng, settings.histogram_points)),
      "modularity_explicitness": lambda: timed(lambda: ref.modularity_explicitness(codes, sizes, rng, points,
                                                                                   points // 2)),
      "sap": lambda: timed(lambda: ref.sap(codes, sizes, rng, points, points // 2)),
      "udr": lambda: timed(lambda: ref.udr(members, rng, settings.udr_points)),
      "unsupervised": lambda: timed(lambda: ref.unsupervised(codes, sizes, rng, points)),
  }
  print(f"\nmetric suite on N = {n:,} codes × 10 (synthetic posteriors), supervised protocols with {points:,} "
        f"training / {points // 2:,} test points, downstream sizes {train_sizes}, UDR over {num_members} members")
  print(f"{'metric':<26}{'ours s':>10}{'straightforward s':>20}{'ratio':>8}   headline")
  total = 0.0
  for name in names:
    module = metrics.get(name)
    t = time.perf_counter()
    if getattr(module, "ENSEMBLE", False):
      result = module.compute_ensemble(ctxs)[0]
    else:
      result = module.compute(ctxs[0])
    ours = time.perf_counter() - t
    total += ours
    theirs = references[name]() if reference and name in references else float("nan")
    extrapolated = "*" if name in ("mig", "elbo_decomposition") else " "
    headline = ", ".join(f"{k} {v:.3f}" for k, v in list(module.scalars(result).items())[:3])
    print(f"{name:<26}{ours:>10.1f}{theirs:>19.1f}{extrapolated}{theirs / ours:>8.1f}   {headline}", flush=True)
  print(f"{'total (one model)':<26}{total:>10.1f}")
  print("* extrapolated linearly from 64 (MIG) or 256 (ELBO decomposition) points of the same brute-force "
        f"computation; ratio = straightforward / ours. load average {os.getloadavg()[0]:.1f}")


def main():
  """Runs every measurement and prints it."""
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num-samples", type=int, default=10_000, help="S, evaluation points of the estimators")
  parser.add_argument("--brute-points", type=int, default=256, help="points for the brute-force slice")
  parser.add_argument("--elbo-samples", type=int, default=10_000)
  parser.add_argument("--quick", action="store_true", help="a 1/16 sub-grid (posX, posY 8 values)")
  parser.add_argument("--collapsed", action="store_true", help="active latents with σ 1e-4-1e-3")
  parser.add_argument("--suite", action="store_true", help="time every registered metric against a "
                      "straightforward sklearn/NumPy version (benchmarks/suite_reference.py)")
  parser.add_argument("--points", type=int, default=10_000, help="--suite: training points of the supervised "
                      "protocols (disentanglement_lib: 10,000)")
  parser.add_argument("--metrics", default="", help="--suite: comma-separated metric names (default: all)")
  parser.add_argument("--ours_only", action="store_true", help="--suite: skip the straightforward versions")
  args = parser.parse_args()

  sizes = (3, 6, 40, 8, 8) if args.quick else DSPRITES_SIZES
  n = int(np.prod(sizes))
  print(f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}); "
        f"numpy {np.__version__}, jax {jax.__version__}")
  print(f"grid {dict(zip(DSPRITES_NAMES, sizes))}: N = {n:,}, K = 10, S = {args.num_samples:,}")
  t = time.perf_counter()
  mean, log_var = synthetic_posteriors(sizes, collapsed=args.collapsed)
  regime = " (collapsed σ)" if args.collapsed else ""
  print(f"synthetic posteriors{regime}: {time.perf_counter() - t:.1f} s, rss {_rss_mib():.0f} MiB")
  key = jax.random.PRNGKey(0)
  if args.suite:
    metric_suite(sizes, args.points, only=tuple(m for m in args.metrics.split(",") if m), reference=not args.ours_only)
    return

  # Warm-up on a small grid: compile the jitted pieces and touch the code paths once.
  small = (3, 2, 4, 2, 3)
  m_small, lv_small = synthetic_posteriors(small)
  evaluation.mig(m_small, lv_small, small, num_samples=30)
  evaluation.mig_brute_force(m_small, lv_small, small, num_samples=30)

  # --- Fast MIG, end to end (sampling z, subset, all entropies), both factor conventions.
  rss_before = _rss_mib()
  tracemalloc.start()
  t = time.perf_counter()
  fast = evaluation.mig(mean, log_var, sizes, num_samples=args.num_samples, factors=CHEN_FACTORS, key=key)
  t_fast = time.perf_counter() - t
  _, traced_peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  rss_after = _rss_mib()
  print(f"\nfast MIG (Chen et al., factors {[DSPRITES_NAMES[f] for f in fast['factors']]}): "
        f"{fast['mig']:.4f} in {t_fast:.2f} s end to end")
  print(f"  best latent per factor {fast['best_latent'].tolist()}, gaps {np.round(fast['gap'], 3).tolist()}")
  print(f"  peak memory: process max RSS {rss_after:.0f} MiB (was {rss_before:.0f} MiB before the call, "
        f"inputs included); tracemalloc peak of the call {traced_peak / 2**20:.0f} MiB")

  # Per-point log-densities, all five factors, on the same evaluation points as above.
  factors = tuple(range(len(sizes)))
  points, indices = draw_points(np.asarray(mean, np.float64), np.asarray(log_var, np.float64),
                                num_samples=args.num_samples, key=key)
  t = time.perf_counter()
  log_q_fast = log_q_at_points(points, indices, mean, log_var, sizes, factors)
  t_fast_all = time.perf_counter() - t
  fast_all = mig_from_log_q(log_q_fast, indices, sizes, factors)
  print(f"fast MIG, all 5 factors (shape included): {fast_all['mig']:.4f}; "
        f"entropies alone {t_fast_all:.2f} s")

  # --- Brute force on a slice of the same points; extrapolate linearly in S.
  rng = np.random.default_rng(1)
  sel = np.sort(rng.choice(points.shape[0], size=min(args.brute_points, points.shape[0]), replace=False))
  t = time.perf_counter()
  log_q_brute = log_q_at_points(points[sel], indices[sel], mean, log_var, sizes, factors, method="exact")
  t_brute = time.perf_counter() - t
  per_point = t_brute / len(sel)
  print(f"\nbrute-force MIG on {len(sel)} of the {points.shape[0]:,} points: {t_brute:.1f} s "
        f"→ {per_point * args.num_samples:.0f} s ({per_point * args.num_samples / 60:.1f} min) extrapolated to "
        f"S = {args.num_samples:,}")
  print("  (linear: each point is an independent logsumexp over all N posteriors per latent, plus its "
        "slice's N/|V_k| per factor; jit compiled beforehand; float64)")
  print(f"  speed-up of the fast path: {per_point * args.num_samples / t_fast_all:.0f}x (entropies, same factors)")

  # --- Agreement on the same points: entropies and MIG from the slice, both ways.
  sub_fast = mig_from_log_q(log_q_fast[:, sel], indices[sel], sizes, factors)
  sub_brute = mig_from_log_q(log_q_brute, indices[sel], sizes, factors)
  sub_fast_chen = mig_from_log_q(log_q_fast[:, sel][[0] + [1 + f for f in CHEN_FACTORS]], indices[sel], sizes,
                                 CHEN_FACTORS)
  sub_brute_chen = mig_from_log_q(log_q_brute[[0] + [1 + f for f in CHEN_FACTORS]], indices[sel], sizes,
                                  CHEN_FACTORS)
  d_h = max(np.abs(sub_fast["entropy_z"] - sub_brute["entropy_z"]).max(),
            np.abs(sub_fast["cond_entropy"] - sub_brute["cond_entropy"]).max())
  d_mig = max(abs(sub_fast["mig"] - sub_brute["mig"]), abs(sub_fast_chen["mig"] - sub_brute_chen["mig"]))
  d_point = np.abs(log_q_fast[:, sel] - log_q_brute)
  print(f"agreement on the same {len(sel)} points (all entropies H(z_j), H(z_j|v_k), K = 10 × 5 factors):")
  print(f"  max |ΔH| = {d_h:.2e} nats; max |ΔMIG| = {d_mig:.2e} (all factors and Chen's); "
        f"MIG on the slice {sub_brute['mig']:.4f} (brute) vs {sub_fast['mig']:.4f} (fast)")
  print(f"  per-point |Δ log q|: mean {d_point.mean():.1e}, max {d_point.max():.1e} nats")

  # --- ELBO decomposition over all N posteriors.
  t = time.perf_counter()
  elbo = evaluation.elbo_decomposition_terms(mean, log_var, num_samples=args.elbo_samples, key=key)
  t_elbo = time.perf_counter() - t
  print(f"\nELBO decomposition (S = {elbo['num_samples']:,} points × N = {n:,} posteriors): {t_elbo:.1f} s")
  print("  index-code MI {index_code_mi:.3f}, TC {total_correlation:.3f}, dim-wise KL {dimwise_kl:.3f}, "
        "sum {kl:.3f} nats; analytic KL {kl_analytic:.3f}".format(**elbo))
  au = evaluation.active_units(mean)
  print(f"  active units (Var[mean] > 0.01): {au['num_active']} of 10")

  # --- Histogram MIG on S posterior means (disentanglement_lib's protocol).
  codes = np.asarray(mean[indices], np.float64)
  t = time.perf_counter()
  hist = evaluation.mig_histogram(codes, index_to_factors(indices, sizes))
  print(f"\nhistogram MIG (disentanglement_lib, 20 bins, all factors, {len(indices):,} means): "
        f"{hist['mig']:.4f} in {time.perf_counter() - t:.3f} s")

  for arch in ("mlp", "conv64"):
    ours = encoder_throughput(arch)
    theirs = torch_encoder_throughput(arch)
    versus = f"; PyTorch baseline forward {theirs:,.0f} images/s (ratio {ours / theirs:.2f})" if theirs else \
        "; PyTorch baseline: torch not installed"
    print(f"encoder pass ({arch}, rendering + encoding + fetch, batches of 2048): {ours:,.0f} images/s → "
          f"{n / ours:.0f} s for the grid{versus}")
  print(f"process max RSS at exit: {_rss_mib():.0f} MiB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
