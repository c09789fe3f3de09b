"""Command-line entry point.

    python -m vae_jax.main --config=configs/default.py --workdir=runs/demo \
        [--config.key=value ...] [--mode=train|evaluate|visualize|anomaly|export|generate]

Re-running the same training command resumes from the workdir's latest checkpoint.
The other modes work on the workdir's latest checkpoint:
  evaluate   the full-dataset evaluation → workdir/metrics.json and TensorBoard;
  visualize  traversals, GIFs, reconstructions, latent-vs-factor, MI heat map → figures/;
  anomaly    AUROC of held-out (data.holdout) vs training images → anomaly.json;
  export     posterior mean/log-variance and factor indices of --split → .npz;
  generate   decode the codes given in --latents.

Every mode that writes into the workdir holds its lock: a second process on the same
workdir stops at once. An error you can fix (a bad config or flag, a workdir trained
with another config, a missing checkpoint or dataset file, a NaN loss, ...) prints one
or two lines and exits with status 1; --verbose adds the traceback, and --log_dir=DIR
logs to a file there (tracebacks included) instead of the console.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads (tf.data only).

import difflib
import importlib.util
import logging as py_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and metrics.json.")
flags.DEFINE_enum("mode", "train", ["train", "evaluate", "visualize", "anomaly", "export", "generate"],
                  "train (then evaluate); or, on the latest checkpoint: evaluate; visualize (figures into "
                  "workdir/figures); anomaly (AUROC of data.holdout's images → workdir/anomaly.json); "
                  "export (embeddings of --split → --output .npz); generate (decode --latents → --output .png).")
flags.DEFINE_string("split", "subgrid", "--mode=export: all, train, holdout, subgrid (eval's sub-grid) or subgrid:N.")
flags.DEFINE_string("output", "", "--mode=export/generate: the file to write (default: in the workdir).")
flags.DEFINE_string("latents", "", "--mode=generate: codes to decode; values split by ',', codes by ';'.")
flags.DEFINE_integer("member", 0, "--mode=export/generate: which ensemble member.")
flags.DEFINE_bool("verbose", False, "On an error, print the full traceback too (not just what is wrong and what to do).")
config_flags.DEFINE_config_file("config", None, "An ml_collections config file, e.g. configs/default.py.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _flatten_keys(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _flatten_keys(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def _config_path(argv: list[str]) -> str | None:
  """The config file named by --config=FILE or --config FILE (as absl accepts both, with - or --)."""
  path = None
  for i, arg in enumerate(argv[1:], start=1):
    name, eq, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "config":
      path = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    elif arg == "--":
      break
  if path and not os.path.isfile(path) and ":" in path:  # config_flags' FILE:ARGUMENT form.
    path = path.rsplit(":", 1)[0]
  return path


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with one clear message for a bad config file or config key."""
  config_path = _config_path(argv)
  if config_path is not None and not os.path.isfile(config_path):
    sys.exit(f"Error: config file {config_path!r} does not exist; see configs/ for the shipped ones.")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"Error: {' '.join(str(e).split())}\nPass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError):
    if config_path is None:
      raise
    spec = importlib.util.spec_from_file_location("_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keys = list(_flatten_keys(module.get_config()))
    overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    unknown = [k for k in overrides if k not in keys]
    if not unknown:
      raise
    hints = [f"--config.{k}: did you mean {difflib.get_close_matches(k, keys, n=1, cutoff=0.6)[0]!r}?"
             for k in unknown if difflib.get_close_matches(k, keys, n=1, cutoff=0.6)]
    sys.exit(f"Error: unknown config key(s) {', '.join(repr(k) for k in unknown)} in {config_path}. "
             + " ".join(hints) + f"\nThe keys of {config_path} are: {', '.join(keys)}")


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's per-save INFO chatter from the console; warnings still show."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def run_mode(config, workdir: str) -> None:
  """Checks the config and the flags of --mode, then runs it."""
  from vae_jax import configlib, evaluate, train  # Imported after flags parse: jax and TF start up slowly.

  configlib.validate_config(config)
  if FLAGS.mode in ("export", "generate") and not 0 <= FLAGS.member < config.ensemble.num_members:
    raise ValueError(f"--member={FLAGS.member} does not exist; the run has ensemble.num_members="
                     f"{config.ensemble.num_members} (members 0 to {config.ensemble.num_members - 1}).")
  if FLAGS.mode == "train":
    train.train_and_evaluate(config, workdir)
  elif FLAGS.mode == "evaluate":
    evaluate.evaluate_workdir(config, workdir)
  elif FLAGS.mode == "visualize":
    from vae_jax import visualize
    visualize.visualize_workdir(config, workdir)
  else:
    from vae_jax import downstream
    if FLAGS.mode == "anomaly":
      downstream.anomaly_report(config, workdir)
    elif FLAGS.mode == "export":
      output = FLAGS.output or os.path.join(workdir, f"embeddings_{FLAGS.split.replace(':', '')}.npz")
      downstream.export_embeddings(config, workdir, FLAGS.split, output, member=FLAGS.member)
    else:
      downstream.generate_to_file(config, workdir, FLAGS.latents, FLAGS.output, member=FLAGS.member)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  if FLAGS.log_dir:
    logging.get_absl_handler().use_absl_log_file()

  from vae_jax import cli, host_memory

  host_memory.retain_freed_memory()
  try:
    run_mode(FLAGS.config, FLAGS.workdir)
  except cli.USER_ERRORS as e:
    cli.fail(e, verbose=FLAGS.verbose)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
