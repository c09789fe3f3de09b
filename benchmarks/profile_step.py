"""Which compiled operations the train step spends its time in, from a JAX profiler trace.

    python benchmarks/profile_step.py [--arch conv64] [--batch 64] [--steps 5] [--top 25] [--malloc retain]

Traces `--steps` calls of the single-member step that train_and_evaluate runs, with
its malloc settings (`--malloc default` keeps glibc's), and prints per step: the time
in each kind of XLA operation (ynn_fusion: convolutions and matrix products run by
YNNPACK; transpose_copy_fusion: layout changes; other *_fusion: elementwise work),
then the `--top` operations with the JAX operation each came from. Durations are the trace's: operations that XLA
runs concurrently overlap, so the rows can add up to more than the step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import numpy as np

from bench_model import add_malloc_flag, apply_malloc_flag, bench_model
from vae_jax import models, parallel

_RUNTIME_EVENTS = ("ThunkExecutor", "$", "PjitFunction", "Wait ", "CommonPjRt", "ParseArguments", "end: ",
                   "SlinkyThreadPool", "ThreadpoolListener", "PythonRefManager", "Handle ", "Allocate")


def op_sources(hlo_text: str) -> dict[str, str]:
  """Maps each instruction name in compiled HLO text to the JAX op_name in its metadata."""
  sources = {}
  for match in re.finditer(r'^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"', hlo_text, re.MULTILINE):
    sources[match.group(1)] = match.group(2).removeprefix("jit(ensemble_step)/")
  return sources


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", default="conv64", choices=models.ARCHITECTURES)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--top", type=int, default=25)
  add_malloc_flag(parser)
  a = parser.parse_args()
  apply_malloc_flag(a.malloc)
  bench = bench_model(a.arch, a.batch)
  state = bench.state()
  step = bench.step(state)
  x = parallel.global_batch(bench.dataset.images(np.arange(a.batch))[None], bench.mesh)
  sources = op_sources(step.lower(state, x).compile().as_text())
  for _ in range(3):
    state, metrics = step(state, x)
  jax.block_until_ready(metrics)

  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      for _ in range(a.steps):
        state, metrics = step(state, x)
      jax.block_until_ready(metrics)
    (path,) = glob.glob(os.path.join(logdir, "**", "*perfetto_trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events

  per_op: collections.Counter = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(_RUNTIME_EVENTS):
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / a.steps  # µs -> ms per step
  per_kind: collections.Counter = collections.Counter()
  for name, ms in per_op.items():
    per_kind[re.sub(r"\.\d+$", "", name)] += ms

  print(f"{a.arch}, batch {a.batch}: ms per step by kind of operation (sum {sum(per_kind.values()):.1f} ms)")
  for kind, ms in per_kind.most_common(12):
    print(f"  {ms:7.2f}  {kind}")
  print(f"\nthe {a.top} slowest operations")
  for name, ms in per_op.most_common(a.top):
    print(f"  {ms:7.2f}  {name:28s} {sources.get(name, '')[:90]}")


if __name__ == "__main__":
  main()
