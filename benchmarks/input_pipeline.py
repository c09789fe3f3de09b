"""Input-pipeline throughput per dataset: images/s that vae_jax.data.pipeline.train_stream delivers.

    python benchmarks/input_pipeline.py [--steps=200] [--batch_size=256] [--datasets=a,b] [--pipelines=tf,numpy]

For every dataset, times `steps` batches of the training stream (one ensemble
member, batch_size images, the configs' prefetch 4 and 2 workers) with both
pipelines, after one warm-up batch, and prints images/s next to the target: 5x what
the train step consumes on a 2-core CPU at batch 256, taking the top of the
measured range (MLP ~1,300-2,000 images/s -> 10,000; conv64 ~400-600 -> 3,000), with
the architecture each dataset's config uses.

Procedural datasets are timed as they are. The real datasets are not available
offline (and TFDS's mock data says nothing about speed), so they are timed on what a
run actually reads from: an ArrayGrid (ArrayImages for CelebA) over a synthetic uint8
array with the real dataset's row size and number of images, held in RAM, exactly
as data.cache='auto' holds a cache that fits. Arrays larger than --max_gb keep the
row size and use fewer rows (the gather cost per image does not depend on the
number of rows once the array is far larger than the CPU caches); the "array" column
says so. A cache that does not fit in RAM is memory-mapped by data.cache='auto';
its first epoch then reads from disk, which this benchmark does not time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vae_jax.data import arrays, pipeline  # noqa: E402
from vae_jax.data.grid import GridSpec  # noqa: E402

# Images/s the train step consumes at batch 256 on a 2-core CPU (top of the measured range).
CONSUMPTION = {"mlp": 2000, "conv64": 600}
TARGET_FACTOR = 5

# name -> architecture of its config (configs/*.py; dSprites' configs use the MLP).
ARCHITECTURE = {
    "dsprites_procedural": "mlp", "shapes3d_procedural": "conv64", "dsprites": "mlp", "shapes3d": "conv64",
    "smallnorb": "conv64", "celeb_a": "conv64", "cars3d": "conv64", "faces3d": "conv64", "mpi3d_toy": "conv64",
}
CELEBA_IMAGES = 162_770


def _synthetic_uint8(shape, rng) -> np.ndarray:
  """Random uint8 array of `shape`, filled in chunks (every page is touched, as a real cache's are)."""
  out = np.empty(shape, np.uint8)
  flat = out.reshape(shape[0], -1)
  step = max(1, (64 << 20) // flat.shape[1])
  for start in range(0, shape[0], step):
    flat[start:start + step] = rng.integers(0, 256, flat[start:start + step].shape, dtype=np.uint8)
  return out


def _thin_spec(spec: GridSpec, max_images: int) -> GridSpec:
  """The spec with its first factor cut so that the grid has at most max_images images."""
  sizes = list(spec.factor_sizes)
  while int(np.prod(sizes)) > max_images and sizes[0] > 1:
    sizes[0] = max(1, sizes[0] // 2)
  if int(np.prod(sizes)) > max_images:
    raise ValueError(f"cannot thin {spec.factor_sizes} below {max_images} images by its first factor")
  values = tuple(v[:s] for v, s in zip(spec.factor_values, sizes))
  return GridSpec(spec.factor_names, tuple(sizes), values)


def real_dataset(name: str, max_bytes: int, rng):
  """(dataset over a synthetic in-RAM array shaped like `name`'s cache, description of the array)."""
  if name == "celeb_a":
    row = 64 * 64 * 3
    n = min(CELEBA_IMAGES, max_bytes // row)
    ds = arrays.ArrayImages(name, _synthetic_uint8((n, 64, 64, 3), rng), np.zeros((n, 40), bool),
                            [f"a{i}" for i in range(40)])
    return ds, f"{n * row / 2**30:.1f} of {CELEBA_IMAGES * row / 2**30:.1f} GiB"
  from vae_jax.data import manual_datasets, tfds_datasets  # pylint: disable=g-import-not-at-top

  source = {**tfds_datasets.SOURCES, **manual_datasets.SOURCES}[name]
  row = int(np.ceil(np.prod(source.image_shape) / 8)) if source.packed else int(np.prod(source.image_shape))
  full = source.spec.num_images * row
  spec = _thin_spec(source.spec, max_bytes // row) if full > max_bytes else source.spec
  shape = (spec.num_images, row) if source.packed else (spec.num_images, *source.image_shape)
  ds = arrays.ArrayGrid(name, spec, _synthetic_uint8(shape, rng), source.image_shape, packed=source.packed)
  return ds, f"{spec.num_images * row / 2**30:.1f} of {full / 2**30:.1f} GiB"


def procedural_dataset(name: str):
  if name == "dsprites_procedural":
    from vae_jax.data.dsprites import ProceduralDSprites  # pylint: disable=g-import-not-at-top
    return ProceduralDSprites(), "rendered per batch"
  from vae_jax.data.shapes3d import ProceduralShapes3D  # pylint: disable=g-import-not-at-top
  return ProceduralShapes3D(), "rendered per batch"


def time_stream(dataset, kind: str, steps: int, batch_size: int) -> float:
  """Images/s of `steps` batches of the stream (after one warm-up batch)."""
  stream = pipeline.train_stream(dataset, [0], batch_size, 0, steps + 1, pipeline=kind, prefetch=4, workers=2)
  first = next(stream)
  assert first.shape == (1, batch_size, *dataset.image_shape) and first.dtype == np.float32
  start = time.perf_counter()
  count = 0
  for batch in stream:
    count += batch.shape[1]
  return count / (time.perf_counter() - start)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--datasets", default=",".join(ARCHITECTURE))
  parser.add_argument("--pipelines", default="tf,numpy")
  parser.add_argument("--max_gb", type=float, default=4.0, help="Largest synthetic array held in RAM.")
  args = parser.parse_args(argv)
  rng = np.random.default_rng(0)
  max_bytes = int(min(args.max_gb * 2**30, 0.4 * arrays.available_memory_bytes()))
  print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; batch {args.batch_size}, "
        f"{args.steps} timed steps per row; target = {TARGET_FACTOR}x train-step consumption "
        f"(mlp {CONSUMPTION['mlp']:,}, conv64 {CONSUMPTION['conv64']:,} images/s).")
  header = f"{'dataset':<20} {'array':<26} {'pipeline':<8} {'images/s':>10} {'target':>8} {'arch':<7} ok"
  print(header)
  print("-" * len(header))
  failures = 0
  for name in args.datasets.split(","):
    if name.endswith("_procedural"):
      dataset, what = procedural_dataset(name)
    else:
      dataset, what = real_dataset(name, max_bytes, rng)
      what = f"synthetic {what}"
    arch = ARCHITECTURE.get(name, "conv64")
    target = TARGET_FACTOR * CONSUMPTION[arch]
    for kind in args.pipelines.split(","):
      rate = time_stream(dataset, kind, args.steps, args.batch_size)
      ok = rate >= target
      failures += not ok
      print(f"{name:<20} {what:<26} {kind:<8} {rate:>10,.0f} {target:>8,} {arch:<7} {'yes' if ok else 'NO'}",
            flush=True)
    del dataset
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
