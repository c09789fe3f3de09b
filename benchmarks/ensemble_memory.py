"""What one malloc arena does for an ensemble's train step on CPU.

    python benchmarks/ensemble_memory.py [--members 1,5] [--rounds 2] [--steps 8] [--arch mlp] [--batch 256]

For each member count, alternating rounds, each in a fresh process: the train step as
training runs it (train.jit_ensemble_step), timed over `--steps` calls after two warm-up
calls, with the fresh pages it touches per step (minor page faults × 4 KiB), under
  * training's malloc settings (vae_jax/host_memory.py: no mmap, no trim, one arena), and
  * the same without the one-arena setting (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2³¹−1
    set in the environment), where each XLA thread allocates from an arena of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

SETTINGS = {
    "one arena (training's settings)": {},
    "an arena per thread": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)},
}


def worker(arch: str, batch: int, members: int, steps: int) -> dict:
  """{"ms", "img_per_s", "mib_faulted"} per step of `members` members, in this process."""
  import time

  import jax
  import numpy as np

  from bench_model import bench_model
  from vae_jax import host_memory, parallel

  host_memory.retain_freed_memory()  # Skipped (as in training) where the environment sets malloc.
  bench = bench_model(arch, batch)
  images = bench.dataset.images(np.random.default_rng(0).choice(len(bench.dataset), members * batch, replace=False))
  x = parallel.global_batch(images.reshape(members, batch, *images.shape[1:]), bench.mesh)
  state = bench.state(members)
  step = bench.step(state)
  for _ in range(2):
    state, metrics = step(state, x)
  jax.block_until_ready(metrics)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, x)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  faulted = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
  return {"ms": 1e3 * seconds, "img_per_s": members * batch / seconds,
          "mib_faulted": faulted * resource.getpagesize() / 2**20}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--members", default="1,5")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--arch", default="mlp")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
  a = parser.parse_args()
  if a.worker is not None:
    print(json.dumps(worker(a.arch, a.batch, a.worker, a.steps)))
    return
  here = os.path.dirname(os.path.abspath(__file__))
  base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
  print(f"{a.arch}, batch {a.batch}, β-TCVAE (MWS); ms per step, images/s, MiB of fresh pages per step")
  for members in (int(m) for m in a.members.split(",")):
    for r in range(a.rounds):
      for name, env in SETTINGS.items():
        out = subprocess.run([sys.executable, __file__, "--worker", str(members), "--steps", str(a.steps),
                              "--arch", a.arch, "--batch", str(a.batch)],
                             capture_output=True, text=True, check=True, cwd=here, env={**base, **env})
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {members} member(s), round {r + 1}, {name:32s} {m['ms']:8.1f} ms {m['img_per_s']:7.0f} img/s "
              f"{m['mib_faulted']:7.0f} MiB", flush=True)


if __name__ == "__main__":
  main()
