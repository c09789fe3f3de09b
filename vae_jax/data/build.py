"""Builds a real dataset once: TFDS download/preparation, then vae_jax's factor-grid cache.

    python -m vae_jax.data.build NAME [--data_dir=DIR] [--cache=mmap]

NAME is one of vae_jax.data.DATASETS other than the procedural ones. DIR is the
TFDS data directory (default $TFDS_DATA_DIR or ~/tensorflow_datasets); datasets
built from manual files (cars3d, faces3d, mpi3d_*) read them from
DIR/downloads/manual. A training run builds the same thing on first use; this
command does it ahead of time (on a machine with network access, say). Exits with
status 1 and the DatasetFileError's message when a file is missing or incomplete.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import ml_collections

from vae_jax.data import DATASETS, PROCEDURAL_DATASETS, DatasetFileError, get_dataset


def main(argv: list[str] | None = None) -> int:
  """Builds the dataset named on the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m vae_jax.data.build", description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=[d for d in DATASETS if d not in PROCEDURAL_DATASETS])
  parser.add_argument("--data_dir", default="", help="TFDS data directory (default $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets).")
  parser.add_argument("--cache", default="mmap", choices=("auto", "memory", "mmap"),
                      help="How to open the cache once built (mmap: do not read it into RAM).")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  config = ml_collections.ConfigDict({"name": args.name, "data_dir": args.data_dir, "cache": args.cache})
  start = time.time()
  try:
    dataset = get_dataset(config)
  except DatasetFileError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  sizes = " x ".join(f"{n} {s}" for n, s in zip(dataset.factor_names, dataset.factor_sizes)) or "no factor grid"
  print(f"{dataset.name}: {len(dataset):,} images {dataset.image_shape} ({sizes}); ready in {time.time() - start:.0f} s.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
