"""Where a train step's time goes on this machine, and what the step's set-up choices cost.

    python benchmarks/step_breakdown.py [--arch mlp] [--batch 256] [--repeats 10] [--rounds 3] [--malloc retain]

Prints milliseconds per call (best of 3 timings of `--repeats` calls; for the
one-member step variants, the median of `--rounds` alternating rounds of that) for:
  * the ensemble step of one member as train.jit_ensemble_step builds it (no vmap,
    the update vmapped over the stacked state, the state donated where
    train.donates_state says), against the same step donated or not (the other
    way), under plain `jax.vmap`, and with the update re-stacked from the squeezed
    state (each member's whole step stacked, as for several members);
  * the step of 3 members as training runs it (member by member on CPU, not
    donated) against the same step donated and under plain `jax.vmap`;
  * the pieces of one model's step: network forward, forward + backward, the loss
    alone, the Adam update into new buffers and in place (donated);
  * an elementwise pass reading 4 and writing 3 parameter-sized arrays (Adam's memory
    traffic), and float32 / bfloat16 2048² matrix products (GFLOP/s).
Everything runs with training's malloc settings (vae_jax/host_memory.py);
`--malloc default` keeps glibc's own, to show what they change.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench_model import add_malloc_flag, apply_malloc_flag, bench_model
from vae_jax import models, parallel, train


def best_ms(fn, *args, repeats: int) -> float:
  """Milliseconds per call of jitted `fn`, best of 3 timings of `repeats` calls."""
  out = fn(*args)
  jax.block_until_ready(out)
  best = float("inf")
  for _ in range(3):
    t = time.perf_counter()
    for _ in range(repeats):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t) / repeats)
  return 1e3 * best


def best_step_ms(step, state, batch, *, repeats: int) -> float:
  """Milliseconds per call of train step `step`, each call fed the state the last one returned
  (as training does, and as a donated state requires)."""
  holder = [state]

  def call(batch):
    holder[0], metrics = step(holder[0], batch)
    return metrics

  return best_ms(call, batch, repeats=repeats)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", default="mlp", choices=models.ARCHITECTURES)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the one-member step variants")
  parser.add_argument("--repeats", type=int, default=10)
  add_malloc_flag(parser)
  a = parser.parse_args()
  r = a.repeats
  apply_malloc_flag(a.malloc)

  bench = bench_model(a.arch, a.batch)
  dataset, mesh, spec = bench.dataset, bench.mesh, bench.spec()
  images = dataset.images(np.random.default_rng(0).choice(len(dataset), 3 * a.batch, replace=False))
  state_mib = sum(leaf.nbytes for leaf in jax.tree.leaves(bench.state(1))) / 2**20
  print(f"{a.arch}, batch {a.batch}, β-TCVAE (MWS), one member's train state {state_mib:.1f} MiB, "
        f"{jax.device_count()} {jax.default_backend()} device(s), malloc {a.malloc}")

  def row(name: str, ms: float, images_per_call: int | None = None) -> None:
    rate = f"{images_per_call / ms * 1e3:8.0f} img/s" if images_per_call else ""
    print(f"  {name:58s} {ms:8.1f} ms {rate}", flush=True)

  x1 = parallel.global_batch(images[None, :a.batch], mesh)
  x3 = parallel.global_batch(images.reshape(3, a.batch, *images.shape[1:]), mesh)
  shardings = dict(in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                   out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)))
  step = functools.partial(train.train_step, spec=spec)

  def vmapped(state, batch):
    return jax.vmap(step)(state, batch, jax.vmap(jax.random.fold_in)(state.rng, state.step))

  def restacked(state, batch):  # Each member's whole step, stacked: the update is not vmapped.
    return parallel.vmap_members(step)(state, batch, jax.vmap(jax.random.fold_in)(state.rng, state.step))

  def variants(state):
    donated = train.donates_state(state)
    ensemble_step = train.ensemble_step_fn(spec)
    return [
        (f"train.jit_ensemble_step ({'state donated' if donated else 'not donated'})", bench.step(state)),
        (f"the same step, {'not donated' if donated else 'state donated'}",
         jax.jit(ensemble_step, donate_argnums=() if donated else (0,), **shardings)),
        ("the same step under jax.vmap", jax.jit(vmapped, **shardings)),
    ] + ([("update re-stacked from the squeezed state, not donated", jax.jit(restacked, **shardings))]
         if state.step.shape[0] == 1 else [])

  for members, batch, rounds in ((1, x1, a.rounds), (3, x3, 1)):
    print("One member (median of rounds):" if members == 1 else "Three members (one model per member on CPU):")
    steps = variants(bench.state(members))
    times = {name: [] for name, _ in steps}
    for _ in range(rounds):  # The variants alternate, so that the machine's drift hits them alike.
      for name, fn in steps:
        times[name].append(best_step_ms(fn, bench.state(members), batch, repeats=r))
    for name, ms in times.items():
      row(name, float(np.median(ms)), members * a.batch)

  print("Pieces of one model's step:")
  key = jax.random.PRNGKey(0)
  apply = spec.apply_fn
  params = jax.tree.map(lambda v: v[0], bench.state(1).params["vae"])
  x = jnp.asarray(images[:a.batch])
  hp = {k: jnp.float32(v) for k, v in spec.objective.HPARAMS.items()}

  def objective(outputs, x):
    return spec.objective.vae_loss(outputs, x, hp, 0)[0]

  def loss(p, x, k):
    return objective(apply({"params": p}, x, k), x)

  outputs = jax.jit(lambda p, x, k: apply({"params": p}, x, k))(params, x, key)
  tx = spec.optimizers["vae"]
  opt_state = tx.init(params)

  def adam(p, g, o):
    updates, o = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o

  row("network forward", best_ms(jax.jit(lambda p, x, k: apply({"params": p}, x, k)["decoded"]),
                                 params, x, key, repeats=r))
  row("forward + backward (with the loss)", best_ms(jax.jit(jax.grad(loss)), params, x, key, repeats=r))
  row("loss alone, forward + backward",
      best_ms(jax.jit(jax.grad(objective)), outputs, x, repeats=r))
  row("Adam update (the VAE's optimiser)", best_ms(jax.jit(adam), params, params, opt_state, repeats=r))

  def adam_in_place(params_and_state, g):  # (state, something to wait on), as best_step_ms expects
    p, o = adam(params_and_state[0], g, params_and_state[1])
    return (p, o), jax.tree.leaves(o)[0]

  in_place = jax.jit(adam_in_place, donate_argnums=(0,))
  row("Adam update, in place (donated)",
      best_step_ms(in_place, (jax.tree.map(jnp.copy, params), opt_state), params, repeats=r))
  n = sum(v.size for v in jax.tree.leaves(params))
  row(f"elementwise pass, 4 reads + 3 writes of {n / 1e6:.1f}M floats",
      best_ms(jax.jit(lambda p, g, m, v: jax.tree.map(lambda a, b, c, d: (a + b + c + d, c * 0.9 + b, d + b * b),
                                                      p, g, m, v)), params, params, params, params, repeats=r))

  print("Matrix products, 2048²:")
  for dtype in (jnp.float32, jnp.bfloat16):
    m = jax.random.normal(key, (2048, 2048)).astype(dtype)
    ms = best_ms(jax.jit(lambda v: jnp.dot(v, v, preferred_element_type=jnp.float32)), m, repeats=r)
    print(f"  {jnp.dtype(dtype).name:9s} {2 * 2048**3 / ms / 1e6:8.0f} GFLOP/s", flush=True)


if __name__ == "__main__":
  main()
