"""Sweeps: several training programs run one after another, each an ensemble over seeds and β.

    python -m vae_jax.sweep --sweep=experiments/figure5_dsprites/sweep.py --protocol=cpu \
        --workdir=runs/figure5_cpu [--results=DIR] [--only=NAME,...] [--shard=I/N]

A sweep file defines `PROTOCOLS` (names) and `get_sweep(protocol)`, which returns an
ordered {run name: config}; each config is a normal experiment config, usually an
ensemble over seeds and β. Every run trains in WORKDIR/<name> through
`train.train_and_evaluate`, so a sweep that is interrupted and started again resumes
each unfinished run from its latest checkpoint; each run holds its workdir's lock
while it trains (a second sweep on the same workdir stops at that run with one line).
When a run has been evaluated, its record goes to RESULTS/<name>/results.json
(default RESULTS: the sweep file's folder /results/<protocol>), and a later start
skips it. A record is metrics.json plus what a reader of a results table needs: the
run's full config, images seen per member, wall time and the machine.

With --shard=I/N (or, without the flag, VAE_JAX_SWEEP_SHARD=I/N, or a SLURM array's
SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) a process runs only shard I of N: the
runs at positions I, I + N, I + 2N, ... of the protocol's ordered run names
(`shard_runs`), so N machines together run every run exactly once and their
results.json files together are the unsharded sweep's.

`python -m vae_jax.report RESULTS [RESULTS ...]` then draws the MIG figure and table
(from one results folder, or from each machine's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from typing import Any, Sequence

import jax
import ml_collections
from absl import app, flags, logging

from vae_jax import configlib

RESULTS_NAME = "results.json"
SHARD_ENV = "VAE_JAX_SWEEP_SHARD"


class SweepError(ValueError):
  """A sweep file or protocol that cannot be used; the message says how to fix it."""


def load_sweep(path: str, protocol: str) -> dict[str, ml_collections.ConfigDict]:
  """{run name: validated config} of `protocol` in the sweep file at `path`."""
  if not os.path.isfile(path):
    raise SweepError(f"Sweep file {path!r} does not exist; pass --sweep=path/to/sweep.py.")
  spec = importlib.util.spec_from_file_location("_vae_jax_sweep", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  protocols = tuple(getattr(module, "PROTOCOLS", ()))
  if not hasattr(module, "get_sweep") or not protocols:
    raise SweepError(f"{path} must define PROTOCOLS and get_sweep(protocol).")
  if protocol not in protocols:
    raise SweepError(f"{path} has no protocol {protocol!r}; use one of {protocols}.")
  runs = dict(module.get_sweep(protocol))
  for name, config in runs.items():
    if not name or os.sep in name:
      raise SweepError(f"{path}: run name {name!r} must be a plain folder name.")
    try:
      configlib.validate_config(config)
    except ValueError as e:
      raise SweepError(f"{path}, protocol {protocol!r}, run {name!r}: {e}") from e
  return runs


def parse_shard(spec: str) -> tuple[int, int]:
  """(index I, count N) of a shard spec "I/N" with 0 <= I < N; SweepError otherwise."""
  index, sep, count = str(spec).strip().partition("/")
  try:
    i, n = int(index), int(count)
  except ValueError:
    i = n = -1
  if not sep or n < 1 or not 0 <= i < n:
    raise SweepError(f"Shard {spec!r} is not I/N with 0 <= I < N (e.g. --shard=0/4 ... --shard=3/4 for four "
                     "machines).")
  return i, n


def shard_from_environment(environ=None) -> tuple[int, int] | None:
  """The shard from VAE_JAX_SWEEP_SHARD ("I/N"), else from a SLURM array job, else None.

  SLURM: I = SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN (0 if unset), N = SLURM_ARRAY_TASK_COUNT
  (submit with --array=0-<N−1>).
  """
  env = os.environ if environ is None else environ
  if env.get(SHARD_ENV):
    return parse_shard(env[SHARD_ENV])
  if env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
    try:
      index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    except ValueError:
      index = -1
    return parse_shard(f"{index}/{env['SLURM_ARRAY_TASK_COUNT']}")
  return None


def shard_runs(names: Sequence[str], index: int, count: int) -> list[str]:
  """Shard `index` of `count` of the ordered run names: names[index::count].

  Every name is in exactly one shard; the shards differ in size by at most one run.
  """
  index, count = parse_shard(f"{index}/{count}")
  return list(names)[index::count]


def default_results_dir(sweep_path: str, protocol: str) -> str:
  """<folder of the sweep file>/results/<protocol>."""
  return os.path.join(os.path.dirname(os.path.abspath(sweep_path)), "results", protocol)


def machine_description() -> dict[str, Any]:
  """Where a run ran: CPU model and cores, JAX backend, devices and versions."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  except OSError:
    pass
  devices = jax.devices()
  return {
      "cpu": cpu,
      "cpu_cores": os.cpu_count(),
      "backend": jax.default_backend(),
      "devices": f"{len(devices)} × {devices[0].device_kind}",
      "processes": jax.process_count(),
      "jax": jax.__version__,
      "python": platform.python_version(),
  }


def results_record(name: str, config: ml_collections.ConfigDict, payload: dict[str, Any],
                   wall_seconds: float) -> dict[str, Any]:
  """The results.json record of run `name`: its metrics.json payload plus provenance."""
  return {
      "run": name,
      **payload,
      "images_per_member": config.num_train_steps * config.batch_size,
      "wall_seconds": wall_seconds,
      "machine": machine_description(),
      "config": json.loads(config.to_json_best_effort()),
  }


def run_sweep(runs: dict[str, ml_collections.ConfigDict], workdir: str, results_dir: str,
              only: Sequence[str] = (), shard: tuple[int, int] = (0, 1)) -> list[str]:
  """Trains and evaluates every run (of `shard` (I, N), and of `only` if given) without a
  results.json yet; returns the results paths of all the runs it covers."""
  from vae_jax import rundir, train  # Loaded here so that reading a sweep stays cheap.

  unknown = sorted(set(only) - set(runs))
  if unknown:
    raise SweepError(f"--only names unknown runs {unknown}; the protocol has {sorted(runs)}.")
  mine = set(shard_runs(list(runs), *shard))
  if shard[1] > 1:
    logging.info("Shard %d/%d: runs %s.", shard[0], shard[1], [n for n in runs if n in mine])
  paths = []
  for name, config in runs.items():
    if (only and name not in only) or name not in mine:
      continue
    path = os.path.join(results_dir, name, RESULTS_NAME)
    paths.append(path)
    if os.path.isfile(path):
      logging.info("Run %s is done (%s); skipping it.", name, path)
      continue
    logging.info("Run %s: %d member(s), %d steps of %d images → %s.", name, config.ensemble.num_members,
                 config.num_train_steps, config.batch_size, os.path.join(workdir, name))
    start = time.time()
    payload = train.train_and_evaluate(config, os.path.join(workdir, name))
    if jax.process_index() == 0:
      rundir.write_json_atomic(path, results_record(name, config, payload, time.time() - start))
  return paths


FLAGS = flags.FLAGS
flags.DEFINE_string("sweep", None, "Path of the sweep file (defines PROTOCOLS and get_sweep).")
flags.DEFINE_string("protocol", None, "Which of the sweep file's PROTOCOLS to run.")
flags.DEFINE_string("workdir", None, "Parent of the runs' workdirs (checkpoints, TensorBoard, figures).")
flags.DEFINE_string("results", "", "Where results.json files go (default: <sweep folder>/results/<protocol>).")
flags.DEFINE_list("only", [], "Run only these runs of the protocol.")
flags.DEFINE_string("shard", "", "I/N: run only shard I of N of the runs (default: $VAE_JAX_SWEEP_SHARD, else a SLURM "
                    "array's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else all runs).")
flags.DEFINE_bool("verbose", False, "On an error, print the full traceback too (not just what is wrong and what to do).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("sweep", "protocol", "workdir"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required.")
  try:
    shard = parse_shard(FLAGS.shard) if FLAGS.shard else (shard_from_environment() or (0, 1))
    runs = load_sweep(FLAGS.sweep, FLAGS.protocol)
  except SweepError as e:
    raise app.UsageError(str(e)) from e
  results_dir = FLAGS.results or default_results_dir(FLAGS.sweep, FLAGS.protocol)
  from vae_jax import cli, host_memory  # Loaded here, as run_sweep loads training.

  host_memory.retain_freed_memory()  # Before JAX starts its threads (see host_memory).

  try:
    paths = run_sweep(runs, FLAGS.workdir, results_dir, FLAGS.only, shard)
  except cli.USER_ERRORS as e:  # A run's workdir in use or trained with another config, a NaN loss, ...
    cli.fail(e, verbose=FLAGS.verbose)
  logging.info("Sweep done: %d run(s) in %s. Report: python -m vae_jax.report %s", len(paths), results_dir, results_dir)


if __name__ == "__main__":
  app.run(main)
