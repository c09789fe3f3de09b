"""Command-line entry point.

    python -m vae_jax.main --config=configs/default.py --workdir=runs/demo \
        [--config.key=value ...] [--mode=train]

Re-running the same command resumes from the workdir's latest checkpoint.
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and metrics.json.")
flags.DEFINE_enum("mode", "train", ["train"], "What to run.")
config_flags.DEFINE_config_file("config", None, "An ml_collections config file, e.g. configs/default.py.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Keep TensorFlow (used only for tf.data) off any accelerator JAX uses.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.set_verbosity(logging.INFO)

  from vae_jax import train  # Imported after flags parse: jax and TF start up slowly.

  config = FLAGS.config
  if FLAGS.mode == "train":
    train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
