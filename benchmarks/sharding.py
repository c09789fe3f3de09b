"""What an ensemble member costs, and what sharding members over devices buys.

    python benchmarks/sharding.py [--part all|memory|throughput] [--steps 5] [--throughput-batch 64]
        [--archs mlp,conv64] [--json FILE]

memory (one process, one CPU device): for the MLP and conv64 β-TCVAE at batch 64 and
256, the compiled train step of 1 and of 2 members (vmapped, as on accelerators):
  * the compiled memory (jitted.lower(...).compile().memory_analysis()): arguments
    (the train state and batch), temporaries, outputs not aliased to arguments;
    per member = the 2-member program's total − the 1-member program's;
  * the train state's bytes per member (parameters and Adam moments, float32);
  * the step's FLOPs per member (compile().cost_analysis()["flops"] of one member);
  * the host RSS after building and running the 1- and 2-member steps (VmRSS of this
    process, which also holds the runtime, the compiled programs and freed memory
    that malloc keeps: context, not a per-member figure).
throughput (a subprocess with 8 forced CPU devices): a 16-member MLP ensemble (width
--throughput-mlp-width) on the
meshes 1×8 (state replicated, batch split: plain data parallelism) and 8×1 (members
split over devices), steps/s and the compiled memory per device.

Then the derived numbers of docs/scaling.md: members per chip and study durations
(printed separately, with their assumptions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GiB = 2**30
MiB = 2**20
# Derived-number assumptions (vendor peak figures, not measured here).
CHIPS = {  # name: (memory bytes, peak FLOP/s for float32 matrix work as the compiler runs it)
    "TPU v4/v5e chip, 16 GiB": (16 * GiB, 197e12),  # v5e bf16 peak (XLA:TPU's default f32 matmul precision).
    "GPU, 80 GiB (A100/H100 class)": (80 * GiB, 156e12),  # A100 TF32 dense peak.
}
UTILISATION = 0.30
USABLE_MEMORY = 0.90
STUDIES = {  # name: (models, steps, batch, architecture)
    "Figure 5, accelerator protocol": (65, 30_000, 256, "conv64"),
    "Locatello-sized study": (12_800, 300_000, 64, "conv64"),
}


def _rss() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _build(architecture: str, batch: int, members: int, mlp_width: int = 1200):
  from vae_jax import configlib, rundir, train
  from vae_jax.data import get_dataset

  config = configlib.base_config()
  config.model.architecture = architecture
  config.batch_size = batch
  config.ensemble.num_members = members
  config.model.mlp_width = mlp_width
  dataset = get_dataset(config.data)
  model, objective, optimizers, state = rundir.build(config, dataset, len(dataset))
  return config, dataset, train.StepSpec(objective, model.apply, optimizers), state


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  return dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes, aliased=m.alias_size_in_bytes,
              temporaries=m.temp_size_in_bytes, total=total)


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def measure_member(architecture: str, batch: int, steps: int) -> dict:
  """Compiled memory of 1 and 2 members, state bytes, FLOPs and host RSS per member (one CPU device)."""
  import jax
  import numpy as np

  from vae_jax import parallel, train
  from vae_jax.data import pipeline

  parallel.MAX_UNROLLED_MEMBERS = 0  # Members vmapped, as on accelerators.
  train.donates_state = lambda state: True  # The state updated in place, as on accelerators.
  out = {}
  for members in (1, 2):
    config, dataset, spec, state = _build(architecture, batch, members)
    mesh = parallel.create_mesh(num_devices=1)
    state = jax.device_put(state, parallel.state_sharding(mesh))
    step = train.jit_ensemble_step(spec, mesh, state)
    local = pipeline.ensemble_batch(dataset, list(range(members)), 0, batch)
    batch_array = parallel.global_batch(local, mesh)
    compiled = step.lower(state, batch_array).compile()
    for _ in range(steps):
      state, metrics = step(state, batch_array)
    jax.block_until_ready(state)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    out[members] = dict(memory=_memory(compiled), flops=_flops(compiled), state_bytes=state_bytes,
                        rss=_rss())
    del state, metrics, step, compiled, batch_array
  one, two = out[1], out[2]
  return dict(
      architecture=architecture, batch=batch, compiled_one=one["memory"], compiled_two=two["memory"],
      per_member_bytes=two["memory"]["total"] - one["memory"]["total"], state_bytes_per_member=one["state_bytes"],
      flops_per_member_step=one["flops"], flops_two_members=two["flops"], rss_one=one["rss"], rss_two=two["rss"])


def measure_throughput(steps: int, batch: int, mlp_width: int) -> list[dict]:
  """(in a process with 8 CPU devices) 16 MLP members: steps/s and compiled bytes per device, per mesh."""
  import jax

  from bench_model import seconds_per_step
  from vae_jax import parallel, train
  from vae_jax.data import pipeline

  config, dataset, spec, initial = _build("mlp", batch, 16, mlp_width)
  local = pipeline.ensemble_batch(dataset, list(range(16)), 0, batch)
  rows = []
  for member_devices in (8, 1):
    mesh = parallel.create_mesh(member_devices=member_devices)
    state = jax.device_put(initial, parallel.state_sharding(mesh))
    batch_array = parallel.global_batch(local, mesh)
    step = train.jit_ensemble_step(spec, mesh, state)
    compiled = step.lower(state, batch_array).compile()
    seconds, state, _ = seconds_per_step(step, state, batch_array, steps, warmup=1)
    shard_bytes = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(state))
    rows.append(dict(mesh=dict(mesh.shape), steps_per_s=1 / seconds, state_bytes_per_device=shard_bytes,
                     compiled_per_device=_memory(compiled)))
  return rows


def derived(members: list[dict]) -> dict:
  """Members per chip and study hours from the measured per-member bytes and FLOPs."""
  per = {(m["architecture"], m["batch"]): m for m in members}
  fit = {chip: {f"{a} b{b}": int(memory * USABLE_MEMORY // m["per_member_bytes"]) for (a, b), m in per.items()}
         for chip, (memory, _) in CHIPS.items()}
  studies = {}
  for name, (models, steps, batch, arch) in STUDIES.items():
    flops = models * steps * per[(arch, batch)]["flops_per_member_step"]
    studies[name] = dict(models=models, steps=steps, batch=batch, architecture=arch, total_flops=flops,
                         chip_hours={chip: flops / (peak * UTILISATION) / 3600 for chip, (_, peak) in CHIPS.items()})
  return dict(members_per_chip=fit, studies=studies, utilisation=UTILISATION, usable_memory=USABLE_MEMORY)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--part", default="all", choices=("all", "memory", "throughput", "throughput-child"))
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--throughput-batch", type=int, default=64)
  parser.add_argument("--throughput-mlp-width", type=int, default=400,
                      help="MLP width of the throughput part (1200, the default model's, replicated 8 times needs "
                           "over 16 GiB of host memory)")
  parser.add_argument("--archs", default="mlp,conv64", help="architectures of the memory part")
  parser.add_argument("--json", default="", help="also write everything measured to this file")
  args = parser.parse_args()
  if args.part == "throughput-child":
    print(json.dumps(measure_throughput(args.steps, args.throughput_batch, args.throughput_mlp_width)))
    return
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  result = {}
  if args.part in ("all", "memory"):
    import jax

    print(f"Machine: {os.cpu_count()} CPU cores, JAX {jax.__version__}, backend {jax.default_backend()}; "
          f"compiled XLA:CPU programs, one device (measured).")
    print(f"{'model':<14}{'state/member':>14}{'compiled/member':>17}{'1-member total':>16}{'GFLOP/member-step':>19}"
          f"{'RSS after 1 / 2 members':>25}")
    members = []
    for a, b in [(a, b) for a in args.archs.split(",") for b in (64, 256)]:
      m = measure_member(a, b, args.steps)
      members.append(m)
      print(f"{m['architecture'] + ' b' + str(m['batch']):<14}{m['state_bytes_per_member'] / MiB:>10.1f} MiB"
            f"{m['per_member_bytes'] / MiB:>13.1f} MiB{m['compiled_one']['total'] / MiB:>12.1f} MiB"
            f"{m['flops_per_member_step'] / 1e9:>19.2f}"
            f"{m['rss_one'] / MiB:>14.0f} / {m['rss_two'] / MiB:.0f} MiB", flush=True)
    result["members"] = members
    d = derived(members) if {m["architecture"] for m in members} >= {"conv64"} else {"members_per_chip": {}, "studies": {}}
    result["derived"] = d
    print(f"\nDerived (not measured): members per chip = {USABLE_MEMORY:.0%} of its memory / compiled bytes per member")
    for chip, fits in d["members_per_chip"].items():
      print(f"  {chip}: " + ", ".join(f"{k}: {v}" for k, v in fits.items()))
    print(f"Derived: study time = models × steps × FLOPs per member-step / (peak × {UTILISATION:.0%} utilisation)")
    for name, s in d["studies"].items():
      hours = ", ".join(f"{chip}: {h:,.1f} chip-hours" for chip, h in s["chip_hours"].items())
      print(f"  {name} ({s['models']:,} {s['architecture']} × {s['steps']:,} steps × batch {s['batch']}; "
            f"{s['total_flops']:.3g} FLOP): {hours}")
  if args.part in ("all", "throughput"):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, __file__, "--part=throughput-child", f"--steps={args.steps}",
                           f"--throughput-batch={args.throughput_batch}",
                           f"--throughput-mlp-width={args.throughput_mlp_width}"], env=env, capture_output=True, text=True)
    if proc.returncode:
      sys.exit(f"The throughput subprocess failed (exit status {proc.returncode}; -9: killed, e.g. out of memory):\n"
               + proc.stderr[-3000:])
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    result["throughput"] = rows
    print(f"\n16 MLP members (width {args.throughput_mlp_width}), batch {args.throughput_batch} per member, "
          "8 forced CPU devices (measured):")
    for r in rows:
      c = r["compiled_per_device"]
      print(f"  mesh {r['mesh']}: {r['steps_per_s']:.2f} steps/s; state per device {r['state_bytes_per_device'] / MiB:.0f}"
            f" MiB; compiled per device {c['total'] / MiB:.0f} MiB (arguments {c['arguments'] / MiB:.0f}, "
            f"temporaries {c['temporaries'] / MiB:.0f})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
