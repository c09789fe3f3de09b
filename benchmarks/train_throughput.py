"""Training throughput: the vae_jax train step against the PyTorch baseline, in one run.

    python benchmarks/train_throughput.py [--rounds 3] [--steps 20] [--archs conv64,mlp] [--batches 64,256]
                                         [--torch-retain-memory] [--objectives all] [--no-torch]

For each (architecture, batch) the vae_jax β-TCVAE train step (MWS, Bernoulli,
10 latents, Adam) and ../shared/bench/torch_reference.py (the same networks and
objective in PyTorch) are timed alternately, `--rounds` times each, every
measurement in a fresh process (so peak memory is per measurement); the best round
of each is reported ("ratio": best over best), with the ratio of each round (the two
timed back to back) and its median. Also printed: a float32 matrix product's rate measured in the
same run (the machine's practical peak), the share of it each step reaches (from
XLA's FLOP count of the step), the step's compile time, peak RSS, and the share of
the training loop's time spent waiting for input (real procedural dSprites stream).

The vae_jax worker makes the malloc settings train_and_evaluate makes
(vae_jax/host_memory.py). --torch-retain-memory also times PyTorch with the same
settings (as environment variables) and prints a second table, so that the
comparison can be read both ways.

A second table times every objective's step (--objectives; the same architectures and
batches, each in a fresh process, all objectives back to back in each round) and its
ratio to the step it extends: FactorVAE (VAE + discriminator) to β-TCVAE's, DIP-VAE
and AnnealedVAE to β-VAE's. --no-torch prints only that table.

The first table needs torch (CPU build): `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_REFERENCE = REPO.parent / "shared" / "bench" / "torch_reference.py"
TORCH_ARCH = {"conv64": "conv", "mlp": "mlp"}


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_matmul(size: int = 2048, repeats: int = 20) -> dict:
  """GFLOP/s of a jitted float32 [size, size] matrix product (best of `repeats`)."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return {"gflops": 2 * size**3 / best / 1e9}


def time_step(arch: str, batch: int, steps: int, conv_impl: str, objective: str = "betatcvae"):
  """(bench model, compiled step, state, batch, images/s, compile s, FLOPs per image) of
  `objective`'s train step, timed over `steps` steps after 3 warm-up steps."""
  import jax
  import numpy as np

  from bench_model import bench_model, seconds_per_step
  from vae_jax import parallel

  bench = bench_model(arch, batch, conv_impl, objective)
  dataset, mesh = bench.dataset, bench.mesh
  state = bench.state()
  step_fn = bench.step(state)  # Exactly the step train_and_evaluate runs.
  images = dataset.images(np.random.default_rng(0).choice(len(dataset), batch, replace=False))
  x = parallel.global_batch(images[None], mesh)
  t = time.perf_counter()
  compiled = step_fn.lower(state, x).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  seconds, state, _ = seconds_per_step(compiled, state, x, steps)
  return bench, compiled, state, batch / seconds, compile_s, flops / batch


def worker_objective(arch: str, batch: int, steps: int, conv_impl: str, objective: str) -> dict:
  """images/s, compile time and FLOPs per image of `objective`'s train step."""
  from vae_jax import host_memory

  host_memory.retain_freed_memory()  # As train_and_evaluate does.
  *_, images_per_s, compile_s, flops = time_step(arch, batch, steps, conv_impl, objective)
  return {"images_per_s": images_per_s, "compile_s": compile_s, "flops_per_image": flops,
          "peak_rss_mib": peak_rss_mib()}


def worker_jax(arch: str, batch: int, steps: int, conv_impl: str) -> dict:
  """images/s, compile time, FLOPs per image and peak RSS of the vae_jax train step."""
  import jax

  from vae_jax import host_memory, parallel

  retained = host_memory.retain_freed_memory()  # As train_and_evaluate does.
  bench, compiled, state, images_per_s, compile_s, flops = time_step(arch, batch, steps, conv_impl)
  dataset, mesh = bench.dataset, bench.mesh

  # The real loop: procedural dSprites through tf.data, metrics never fetched per step.
  from vae_jax.data import pipeline

  loop_steps = max(steps, 10)
  stream = pipeline.train_stream(dataset, [0], batch, 0, loop_steps + 2, pipeline="tf")
  state, metrics = compiled(state, parallel.global_batch(next(stream), mesh))
  state, metrics = compiled(state, parallel.global_batch(next(stream), mesh))
  jax.block_until_ready(metrics)
  wait = 0.0
  t = time.perf_counter()
  for _ in range(loop_steps):
    t0 = time.perf_counter()
    local = next(stream)
    wait += time.perf_counter() - t0
    state, metrics = compiled(state, parallel.global_batch(local, mesh))
  jax.block_until_ready(metrics)
  loop_dt = time.perf_counter() - t
  return {"images_per_s": images_per_s, "compile_s": compile_s, "flops_per_image": flops,
          "loop_images_per_s": loop_steps * batch / loop_dt, "input_wait_share": wait / loop_dt,
          "peak_rss_mib": peak_rss_mib(), "retain_freed_memory": retained}


def run_worker(args: list[str]) -> dict:
  out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  if out.returncode:
    raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


# glibc settings equivalent to host_memory.retain_freed_memory, for --torch-retain-memory.
RETAIN_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def run_torch(arch: str, batch: int, steps: int, torch_reference: pathlib.Path, retain_memory: bool = False) -> dict:
  cmd = [sys.executable, str(torch_reference), "--arch", TORCH_ARCH[arch], "--batch", str(batch), "--steps", str(steps)]
  env = {**os.environ, **RETAIN_MEMORY_ENV} if retain_memory else None
  out = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--archs", default="conv64,mlp")
  parser.add_argument("--batches", default="64,256")
  parser.add_argument("--conv-impl", default="fast", choices=["fast", "xla"])
  parser.add_argument("--torch-reference", type=pathlib.Path, default=TORCH_REFERENCE)
  parser.add_argument("--torch-retain-memory", action="store_true",
                      help="also time PyTorch with the malloc settings vae_jax makes (RETAIN_MEMORY_ENV)")
  parser.add_argument("--objectives", default="all",
                      help="objectives whose steps the second table times, comma-separated ('all', or '' for none)")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison (the first table)")
  parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
  a = parser.parse_args()

  if a.worker:
    kind = a.worker[0]
    if kind == "matmul":
      result = worker_matmul()
    elif kind == "objective":
      result = worker_objective(a.worker[1], int(a.worker[2]), int(a.worker[3]), a.worker[4], a.worker[5])
    else:
      result = worker_jax(a.worker[1], int(a.worker[2]), int(a.worker[3]), a.worker[4])
    print(json.dumps(result))
    return

  import jax

  configs = [(arch, int(b)) for arch in a.archs.split(",") for b in a.batches.split(",")]
  if a.no_torch:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}; "
          f"jax {jax.__version__}; load average {os.getloadavg()[0]:.1f}")
  else:
    compare_with_torch(a, configs)
  if a.objectives:
    from vae_jax import objectives

    names = objectives.available() if a.objectives == "all" else a.objectives.split(",")
    compare_objectives(a, configs, names)
  print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


# Each objective's step against the step it extends, with the target ratio.
REFERENCES = {"factorvae": ("betatcvae", 1.5), "dipvae_i": ("betavae", 1.1), "dipvae_ii": ("betavae", 1.1),
              "annealedvae": ("betavae", 1.1)}


def compare_objectives(a, configs, names) -> None:
  """Prints every objective's step time; each round times all of them back to back."""
  needed = list(dict.fromkeys([*names, *(REFERENCES[n][0] for n in names if n in REFERENCES)]))
  best: dict = {}
  seconds: dict = {}  # (arch, batch, objective) -> seconds per image, per round
  for r in range(a.rounds):
    for arch, batch in configs:
      for name in needed:
        result = run_worker(["objective", arch, str(batch), str(a.steps), a.conv_impl, name])
        key = (arch, batch, name)
        seconds.setdefault(key, []).append(1 / result["images_per_s"])
        if key not in best or result["images_per_s"] > best[key]["images_per_s"]:
          best[key] = result
      print(f"  round {r + 1}: {arch:6s} batch {batch:3d}: " + ", ".join(
          f"{n} {1 / seconds[(arch, batch, n)][-1]:.0f}" for n in needed) + " img/s", flush=True)
  print(f"\nEvery objective's train step (best of {a.rounds} rounds, {a.steps} timed steps each); "
        "× reference: the step's time over the reference's, per round (median)\n")
  print("| arch | batch | objective | img/s | GFLOP/img | compile s | reference | × reference per round (median) "
        "| target |")
  print("|---|---|---|---|---|---|---|---|---|")
  for arch, batch in configs:
    for name in needed:
      b = best[(arch, batch, name)]
      ref, target = REFERENCES.get(name, ("", None))
      if ref:
        ratios = [t / u for t, u in zip(seconds[(arch, batch, name)], seconds[(arch, batch, ref)])]
        median = statistics.median(ratios)
        cells = (f"{ref} | " + " / ".join(f"{v:.2f}" for v in ratios) + f" ({median:.2f}) | "
                 f"≤ {target} {'✓' if median <= target else '✗'}")
      else:
        cells = "| |"
      print(f"| {arch} | {batch} | {name} | {b['images_per_s']:.0f} | {b['flops_per_image'] / 1e9:.3f} | "
            f"{b['compile_s']:.1f} | {cells} |")


def compare_with_torch(a, configs) -> None:
  """The first table: the β-TCVAE step against the PyTorch baseline, alternating rounds."""
  import jax
  import torch  # noqa: F401  (fail early if the bench extra is missing)

  print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}; "
        f"jax {jax.__version__}, torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")
  best_jax: dict = {}
  best_torch: dict = {}
  best_torch_retained: dict = {}
  round_ratios: dict = {}  # Per round: vae_jax / PyTorch timed back to back, a paired comparison.
  peak = 0.0

  def keep_best(best: dict, key, result: dict) -> None:
    if key not in best or result["images_per_s"] > best[key]["images_per_s"]:
      best[key] = result

  for r in range(a.rounds):
    peak = max(peak, run_worker(["matmul"])["gflops"])
    for arch, batch in configs:
      j = run_worker(["jax", arch, str(batch), str(a.steps), a.conv_impl])
      t = run_torch(arch, batch, a.steps, a.torch_reference)
      keep_best(best_jax, (arch, batch), j)
      keep_best(best_torch, (arch, batch), t)
      round_ratios.setdefault((arch, batch), []).append(j["images_per_s"] / t["images_per_s"])
      line = (f"  round {r + 1}: {arch:6s} batch {batch:3d}: vae_jax {j['images_per_s']:7.1f} img/s, "
              f"pytorch {t['images_per_s']:7.1f} img/s")
      if a.torch_retain_memory:
        tr = run_torch(arch, batch, a.steps, a.torch_reference, retain_memory=True)
        keep_best(best_torch_retained, (arch, batch), tr)
        line += f", pytorch with vae_jax's malloc settings {tr['images_per_s']:7.1f} img/s"
      print(line, flush=True)

  print(f"\nfloat32 matmul peak (2048², jitted, best of {a.rounds} rounds): {peak:.1f} GFLOP/s")
  print(f"best of {a.rounds} alternating rounds, {a.steps} timed steps each; conv_impl={a.conv_impl}\n")
  header = ("| arch | batch | vae_jax img/s | PyTorch img/s | ratio | ratio per round (median) "
            "| vae_jax % of matmul peak | PyTorch % of peak | GFLOP/img | compile s | peak RSS MiB | loop img/s "
            "| input wait |")
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for arch, batch in configs:
    j, t = best_jax[(arch, batch)], best_torch[(arch, batch)]
    gflop = j["flops_per_image"] / 1e9
    ratios = round_ratios[(arch, batch)]
    per_round = " / ".join(f"{v:.2f}" for v in ratios) + f" ({statistics.median(ratios):.2f})"
    print(f"| {arch} | {batch} | {j['images_per_s']:.0f} | {t['images_per_s']:.0f} | "
          f"{j['images_per_s'] / t['images_per_s']:.2f} | {per_round} | {100 * gflop * j['images_per_s'] / peak:.0f}% | "
          f"{100 * gflop * t['images_per_s'] / peak:.0f}% | {gflop:.3f} | {j['compile_s']:.1f} | "
          f"{j['peak_rss_mib']:.0f} | {j['loop_images_per_s']:.0f} | {100 * j['input_wait_share']:.1f}% |")
  if a.torch_retain_memory:
    print("\nPyTorch with the same malloc settings as vae_jax (" +
          " ".join(f"{k}={v}" for k, v in RETAIN_MEMORY_ENV.items()) + "):\n")
    print("| arch | batch | vae_jax img/s | PyTorch img/s | ratio |")
    print("|---|---|---|---|---|")
    for arch, batch in configs:
      j, t = best_jax[(arch, batch)], best_torch_retained[(arch, batch)]
      print(f"| {arch} | {batch} | {j['images_per_s']:.0f} | {t['images_per_s']:.0f} | "
            f"{j['images_per_s'] / t['images_per_s']:.2f} |")


if __name__ == "__main__":
  main()
