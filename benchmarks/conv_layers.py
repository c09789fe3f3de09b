"""Forward+backward speed of the conv64 encoder/decoder, impl="xla" vs impl="fast".

Times jitted `value_and_grad` steps on random data and prints a Markdown table:

  encoder     4 × Conv4x4Stride2 (1→32→32→64→64) → dense 256, loss Σ out².
  decoder     dense 256 → 4·4·64 → 4 × ConvTranspose4x4Stride2 (64→64→32→32→1), loss Σ out².
  train_step  the whole conv64 β-TCVAE step of shared/bench/torch_reference.py
              (Bernoulli likelihood, 10 latents, MWS with N = 737280, β = 6,
              Adam 1e-4), so its images/s compare with that script's.

Each cell is the best of --repeats timings of ≥ --min-time seconds (and ≥ 2
steps; fewer timings once a cell has taken 30 s): the machine is shared, so the
best is the least disturbed. CPU ms/step is this process's user + system time
per step (all threads); compile is the seconds to lower and compile the step.

  python benchmarks/conv_layers.py                       # the table
  python benchmarks/conv_layers.py --xla-flag-sweep      # + fast train step under XLA flags
  python benchmarks/conv_layers.py --torch-python PY     # + torch_reference.py run by PY

--xla-flag-sweep reruns the fast train step in subprocesses with XLA_FLAGS and
thread limits set (the library never sets flags itself) and reports each.
--torch-python runs ../shared/bench/torch_reference.py (PyTorch, same network
and objective) with an interpreter that has torch, right after the JAX train
step at each batch size, and prints the ratio.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vae_jax import layers  # noqa: E402

DATASET_SIZE = 737280
LATENTS = 10


class Encoder(nn.Module):
  """x [B, 64, 64, 1] -> h [B, out] (conv64 encoder trunk, then one dense layer)."""

  impl: str
  out: int = 256

  @nn.compact
  def __call__(self, x):
    for features in (32, 32, 64, 64):
      x = nn.relu(layers.Conv4x4Stride2(features, impl=self.impl)(x))
    return nn.Dense(self.out)(x.reshape(x.shape[0], -1))


class Decoder(nn.Module):
  """h [B, 256] -> logits [B, 64, 64, 1] (dense 4·4·64, then four transposed convolutions)."""

  impl: str

  @nn.compact
  def __call__(self, h):
    x = nn.relu(nn.Dense(4 * 4 * 64)(h)).reshape(h.shape[0], 4, 4, 64)
    for features in (64, 32, 32):
      x = nn.relu(layers.ConvTranspose4x4Stride2(features, impl=self.impl)(x))
    return layers.ConvTranspose4x4Stride2(1, impl=self.impl)(x)


class ConvVAE(nn.Module):
  """torch_reference.py's ConvVAE: x [B, 64, 64, 1] -> (logits, mean, log_var, z)."""

  impl: str

  @nn.compact
  def __call__(self, x, rng):
    h = nn.relu(Encoder(self.impl)(x))
    mean, log_var = jnp.split(nn.Dense(2 * LATENTS)(h), 2, axis=-1)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mean.shape)
    h = nn.relu(nn.Dense(256)(z))
    return Decoder(self.impl)(h), mean, log_var, z


def _log_normal(x, mean, log_var):
  return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * jnp.exp(-log_var))


def beta_tcvae_loss(params, model, x, rng, beta=6.0):
  """torch_reference.py's objective: mean over the batch of −ELBO with β·TC (MWS)."""
  logits, mean, log_var, z = model.apply(params, x, rng)
  b = x.shape[0]
  rec = optax.sigmoid_binary_cross_entropy(logits, x).reshape(b, -1).sum(1)
  log_qz_x = _log_normal(z, mean, log_var).sum(1)
  log_pz = _log_normal(z, 0.0, 0.0).sum(1)
  mat = _log_normal(z[:, None], mean[None], log_var[None])
  c = math.log(b * DATASET_SIZE)
  log_qz = jax.nn.logsumexp(mat.sum(2), 1) - c
  log_prod = (jax.nn.logsumexp(mat, 1) - c).sum(1)
  return jnp.mean(rec + (log_qz_x - log_qz) + beta * (log_qz - log_prod) + (log_prod - log_pz))


def make_step(part, impl, batch):
  """(jitted step, its args, a function args -> next args) for one table cell."""
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  if part in ("encoder", "decoder"):
    model = Encoder(impl) if part == "encoder" else Decoder(impl)
    shape = (batch, 64, 64, 1) if part == "encoder" else (batch, 256)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    params = model.init(key, x)

    def loss(p, x):
      return jnp.sum(jnp.square(model.apply(p, x)))

    step = jax.jit(jax.value_and_grad(loss))
    return step, (params, x), None
  model = ConvVAE(impl)
  x = jnp.asarray(rng.random((batch, 64, 64, 1)) > 0.9, jnp.float32)
  params = model.init(key, x, key)
  tx = optax.adam(1e-4)

  def train_step(params, opt_state, x, rng):
    rng, sub = jax.random.split(rng)
    loss, grads = jax.value_and_grad(beta_tcvae_loss)(params, model, x, sub)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, x, rng, loss

  step = jax.jit(train_step, donate_argnums=(0, 1))
  return step, (params, tx.init(params), x, key), lambda out: out[:4]


def time_cell(part, impl, batch, repeats, min_time, max_cell_time=30.0):
  """{'compile_s', 'ms', 'cpu_ms', 'images_per_s'} for one (part, impl, batch)."""
  step, args, advance = make_step(part, impl, batch)
  t = time.perf_counter()
  compiled = step.lower(*args).compile()
  compile_s = time.perf_counter() - t
  out = compiled(*args)
  jax.block_until_ready(out)
  if advance:
    args = advance(out)
  best, best_cpu = math.inf, math.inf
  cell_start = time.perf_counter()
  for repeat in range(repeats):
    if repeat >= 2 and time.perf_counter() - cell_start > max_cell_time:
      break  # a slow cell (the xla decoder at batch 256): two timings are enough
    steps, t, cpu = 0, time.perf_counter(), time.process_time()
    while True:
      out = compiled(*args)
      if advance:
        args = advance(out)
      steps += 1
      if steps >= 2 and time.perf_counter() - t >= min_time:
        jax.block_until_ready(out)
        if time.perf_counter() - t >= min_time:
          break
    best = min(best, (time.perf_counter() - t) / steps)
    best_cpu = min(best_cpu, (time.process_time() - cpu) / steps)
  return {"compile_s": compile_s, "ms": 1e3 * best, "cpu_ms": 1e3 * best_cpu, "images_per_s": batch / best}


FLAG_SETTINGS = (
    ("default", {}),
    ("--xla_cpu_multi_thread_eigen=false", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}),
    ("--xla_cpu_use_thunk_runtime=false", {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}),
    ("--xla_cpu_use_onednn=true", {"XLA_FLAGS": "--xla_cpu_use_onednn=true"}),
    ("--xla_cpu_use_xnnpack=true", {"XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}),
    ("--xla_cpu_enable_fast_math=true", {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}),
    ("taskset -c 0 (1 core)", {"__taskset__": "0"}),
)


def flag_sweep(batches, repeats, min_time, impl="fast", part="train_step"):
  """Reruns one cell per XLA flag setting in a subprocess; returns table rows."""
  rows = []
  for name, env_update in FLAG_SETTINGS:
    for batch in batches:
      env = dict(os.environ)
      cmd = [sys.executable, os.path.abspath(__file__), "--single", f"{part},{impl},{batch}",
             "--repeats", str(repeats), "--min-time", str(min_time)]
      for key, value in env_update.items():
        if key == "__taskset__":
          cmd = ["taskset", "-c", value] + cmd
        else:
          env[key] = (env.get(key, "") + " " + value).strip()
      proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
      if proc.returncode or not lines:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1][:80]
        rows.append(f"| {name} | {part} | {impl} | {batch} | failed: {err} | | | |")
      else:
        r = json.loads(lines[-1])
        rows.append(f"| {name} | {part} | {impl} | {batch} | {r['ms']:.1f} | {r['cpu_ms']:.0f} | "
                    f"{r['images_per_s']:.0f} | {r['compile_s']:.1f} |")
      print(rows[-1], flush=True)
  return rows


def torch_reference(python, script, batch, threads):
  """images/s of torch_reference.py --arch conv at this batch size (None if it fails)."""
  cmd = [python, script, "--arch", "conv", "--batch", str(batch), "--steps", "10"]
  if threads:
    cmd += ["--threads", str(threads)]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    print(f"torch_reference.py failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return None
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batches", default="64,256")
  parser.add_argument("--impls", default="xla,fast")
  parser.add_argument("--parts", default="encoder,decoder,train_step")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--min-time", type=float, default=1.0, help="seconds per timing")
  parser.add_argument("--xla-flag-sweep", action="store_true")
  parser.add_argument("--torch-python", help="a Python with torch, to run torch_reference.py too")
  parser.add_argument("--torch-reference", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "torch_reference.py"))
  parser.add_argument("--single", help=argparse.SUPPRESS)
  a = parser.parse_args()
  if a.single:
    part, impl, batch = a.single.split(",")
    print(json.dumps(time_cell(part, impl, int(batch), a.repeats, a.min_time)))
    return
  batches = [int(b) for b in a.batches.split(",")]
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; best of {a.repeats} × ≥{a.min_time} s\n", flush=True)
  parts = [p for p in a.parts.split(",") if p]
  if parts:
    print("| part | batch | impl | ms/step | CPU ms/step | images/s | compile s | fast speed-up |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
  for part in parts:
    for batch in batches:
      results = {}
      for impl in a.impls.split(","):
        r = results[impl] = time_cell(part, impl, batch, a.repeats, a.min_time)
        speedup = f"{results['xla']['ms'] / r['ms']:.1f}×" if impl != "xla" and "xla" in results else ""
        print(f"| {part} | {batch} | {impl} | {r['ms']:.1f} | {r['cpu_ms']:.0f} | {r['images_per_s']:.0f} | "
              f"{r['compile_s']:.1f} | {speedup} |",
              flush=True)
  if a.torch_python:
    print("\n| batch | JAX fast train_step images/s | PyTorch images/s (threads) | ratio |")
    print("|---|---|---|---|", flush=True)
    for batch in batches:
      # Interleaved (JAX, torch, JAX, torch) and best of two, as the machine is shared.
      ours, theirs = 0.0, None
      for _ in range(2):
        ours = max(ours, time_cell("train_step", "fast", batch, a.repeats, a.min_time)["images_per_s"])
        for threads in (0, 1):
          r = torch_reference(a.torch_python, a.torch_reference, batch, threads)
          if r and (theirs is None or r["images_per_s"] > theirs["images_per_s"]):
            theirs = r
      if theirs:
        print(f"| {batch} | {ours:.0f} | {theirs['images_per_s']:.0f} ({theirs['threads']}) | "
              f"{ours / theirs['images_per_s']:.2f}× |", flush=True)
  if a.xla_flag_sweep:
    print("\n| setting | part | impl | batch | ms/step | CPU ms/step | images/s | compile s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    flag_sweep(batches, a.repeats, a.min_time)


if __name__ == "__main__":
  main()
