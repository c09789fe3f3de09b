"""Sweeps: several training programs run one after another, each an ensemble over seeds and β.

    python -m vae_jax.sweep --sweep=experiments/figure5_dsprites/sweep.py --protocol=cpu \
        --workdir=runs/figure5_cpu [--results=DIR] [--only=NAME,...]

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

`python -m vae_jax.report RESULTS` then draws the MIG figure and table.
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
              only: Sequence[str] = ()) -> list[str]:
  """Trains and evaluates every run without a results.json yet; returns all the runs' results paths."""
  from vae_jax import rundir, train  # Loaded here so that reading a sweep stays cheap.

  unknown = sorted(set(only) - set(runs))
  if unknown:
    raise SweepError(f"--only names unknown runs {unknown}; the protocol has {sorted(runs)}.")
  paths = []
  for name, config in runs.items():
    if only and name not in only:
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
flags.DEFINE_bool("verbose", False, "On an error, print the full traceback too (not just what is wrong and what to do).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("sweep", "protocol", "workdir"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required.")
  try:
    runs = load_sweep(FLAGS.sweep, FLAGS.protocol)
  except SweepError as e:
    raise app.UsageError(str(e)) from e
  results_dir = FLAGS.results or default_results_dir(FLAGS.sweep, FLAGS.protocol)
  from vae_jax import cli  # Loaded here, as run_sweep loads training.

  try:
    paths = run_sweep(runs, FLAGS.workdir, results_dir, FLAGS.only)
  except cli.USER_ERRORS as e:  # A run's workdir in use or trained with another config, a NaN loss, ...
    cli.fail(e, verbose=FLAGS.verbose)
  logging.info("Sweep done: %d run(s) in %s. Report: python -m vae_jax.report %s", len(paths), results_dir, results_dir)


if __name__ == "__main__":
  app.run(main)
