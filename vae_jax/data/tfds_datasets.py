"""Real datasets through TensorFlow Datasets: dsprites, shapes3d, smallnorb and celeb_a.

A TFDS dataset stores one example per image with its factor labels, in no useful
order. `load_grid` reads a prepared TFDS dataset once, puts every image at its
factor-grid index (row-major over the factors, last factor fastest) in one uint8
array, checks that every grid cell was filled exactly once, and caches the array as
<data_dir>/vae_jax_cache/<name>-<tfds version>-<format>.npy (written to a temporary
file and renamed, so no half-written cache is ever left). Later runs load the cache
(into RAM where it fits, see data.cache) and never touch TFDS again.

The grids:

  dsprites   shape 3 x scale 6 x orientation 40 x posX 32 x posY 32 = 737,280
             binary 64x64x1 images, cached as packed bits (377 MB).
  shapes3d   floor_hue 10 x wall_hue 10 x object_hue 10 x scale 8 x shape 4 x
             orientation 15 = 480,000 RGB 64x64 images (5.9 GB).
  smallnorb  category 5 x instance 10 x elevation 9 x azimuth 18 x lighting 6 =
             48,600 grey 64x64 images: TFDS's train and test splits together (each
             holds 5 of the 10 instances of every category), the left camera image
             of each stereo pair, resized from 96x96 with an antialiasing filter,
             as in disentanglement_lib. `instance` is a grid factor so that every
             index has exactly one image, but it is a nuisance factor, not one to
             disentangle: `nuisance_factors` names it and the config leaves it out
             of the MIG (eval.mig_factors).
  celeb_a    no factor grid: the 162,770 images of TFDS's train split in TFDS's
             order, centre-cropped from 218x178 to 148x148 (rows 35-182, columns
             15-162) and resized to 64x64 with an antialiasing filter, the
             crop-and-resize common in VAE work on CelebA since the β-VAE papers
             (the papers say only "cropped and resized to 64x64"); plus the 40
             binary attributes of each image for downstream use (`attributes`).

Where TFDS has not prepared a dataset yet, `load_grid` asks TFDS to download and
prepare it (the only network access in vae_jax, and only for a real dataset that a
config asks for); if that fails (no network, say) it raises one DatasetFileError
that says where the prepared data must go and which command builds it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vae_jax.data import dsprites as dsprites_lib
from vae_jax.data import shapes3d as shapes3d_lib
from vae_jax.data.arrays import ArrayGrid, ArrayImages, DatasetFileError, atomic_npy, load_npy, save_npy_atomically
from vae_jax.data.grid import GridSpec, factors_to_index, index_to_factors

_READ_BATCH = 1024  # Examples per batch while filling a cache.
_CACHE_FORMAT = "v1"  # Part of every cache file name; bump it when a crop, resize or layout changes.
_CACHE_DIR = "vae_jax_cache"


# Data directories and the messages that point at them.


def resolve_data_dir(data_dir: str = "") -> str:
  """The TFDS data directory: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets"))


def manual_dir(data_dir: str) -> str:
  """Where TFDS expects manually downloaded files: <data_dir>/downloads/manual."""
  return os.path.join(data_dir, "downloads", "manual")


def cache_dir(data_dir: str) -> str:
  """Where the decoded grids are cached: <data_dir>/vae_jax_cache (a local dir for remote data dirs)."""
  if "://" in data_dir:  # gs://... : np.memmap needs a local file.
    return os.path.join(os.path.expanduser("~"), ".cache", "vae_jax")
  return os.path.join(data_dir, _CACHE_DIR)


def build_command(name: str, data_dir: str) -> str:
  """The shell command that downloads/builds dataset `name` into `data_dir` and caches its grid."""
  return f"python -m vae_jax.data.build {name} --data_dir={data_dir}"


# Grid sources.


@dataclasses.dataclass(frozen=True)
class GridSource:
  """How a factor grid is read out of a TFDS dataset.

  Attributes:
    name: the data.name, e.g. "shapes3d".
    make_builder: data_dir -> the TFDS DatasetBuilder holding the examples.
    splits: the TFDS splits that together hold every grid cell once.
    spec: the grid's factor names, sizes and values, and its facts (value labels,
      MIG-excluded factors; see grid.FactorDataset), which the ArrayGrid carries.
    label_keys: per factor, the TFDS feature holding its index (a ClassLabel).
    image_shape: (H, W, C) of a grid image.
    transform: a TensorFlow function from one decoded TFDS image to a uint8 image of
      `image_shape`; None if the TFDS image already has that shape.
    packed: cache binary images as bits (dSprites).
    nuisance_factors: grid factors that are not to be disentangled (the ArrayGrid's
      nuisance_factors are the spec's and these).
    origin: a line on where the data comes from, for error messages.
    check_manual_files: for datasets built from manually placed files, a function
      (manual_dir, data_dir) that raises DatasetFileError unless they are all there.
  """

  name: str
  make_builder: Callable[[str], Any]
  splits: tuple[str, ...]
  spec: GridSpec
  label_keys: tuple[str, ...]
  image_shape: tuple[int, int, int]
  transform: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
  packed: bool = False
  nuisance_factors: tuple[str, ...] = ()
  origin: str = ""
  check_manual_files: Optional[Callable[[str, str], None]] = None


def resize_image(size: int) -> Callable[[tf.Tensor], tf.Tensor]:
  """A function from a uint8 image [h, w, c] to uint8 [size, size, c], antialiased bilinear."""

  def resize(image):
    # antialias=True widens the bilinear kernel by the downscaling factor, like PIL's
    # resize, so that no input pixel is skipped.
    out = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

  return resize


CELEBA_CROP = (35, 15, 148, 148)  # (top, left, height, width) in the 218x178 aligned images.


def celeba_crop_and_resize(image: tf.Tensor, size: int = 64) -> tf.Tensor:
  """The 148x148 centre crop of an aligned 218x178 CelebA image, resized to uint8 [size, size, 3]."""
  top, left, height, width = CELEBA_CROP
  return resize_image(size)(image[top:top + height, left:left + width])


def _tfds_builder(tfds_name: str) -> Callable[[str], Any]:
  return lambda data_dir: tfds.builder(tfds_name, data_dir=data_dir)


SMALLNORB_SPEC = GridSpec(
    factor_names=("category", "instance", "elevation", "azimuth", "lighting"),
    factor_sizes=(5, 10, 9, 18, 6),
    factor_values=(
        np.arange(5, dtype=np.float64),  # four-legged animals, human figures, airplanes, trucks, cars
        np.arange(10, dtype=np.float64),
        np.linspace(30.0, 70.0, 9),  # Camera elevation, degrees above the horizontal.
        np.arange(18, dtype=np.float64) * 20.0,  # Azimuth, degrees.
        np.arange(6, dtype=np.float64),  # Lighting condition.
    ),
)

SOURCES = {
    "dsprites": GridSource(
        name="dsprites",
        make_builder=_tfds_builder("dsprites"),
        splits=("train",),
        spec=dsprites_lib.grid_spec(),
        label_keys=("label_shape", "label_scale", "label_orientation", "label_x_position", "label_y_position"),
        image_shape=(64, 64, 1),
        packed=True,
        origin="DeepMind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5 (github.com/deepmind/dsprites-dataset)",
    ),
    "shapes3d": GridSource(
        name="shapes3d",
        make_builder=_tfds_builder("shapes3d"),
        splits=("train",),
        spec=shapes3d_lib.grid_spec(),
        label_keys=("label_floor_hue", "label_wall_hue", "label_object_hue", "label_scale", "label_shape",
                    "label_orientation"),
        image_shape=(64, 64, 3),
        origin="DeepMind's 3dshapes.h5 (storage.googleapis.com/3d-shapes/3dshapes.h5)",
    ),
    "smallnorb": GridSource(
        name="smallnorb",
        make_builder=_tfds_builder("smallnorb"),
        splits=("train", "test"),
        spec=SMALLNORB_SPEC,
        label_keys=("label_category", "instance", "label_elevation", "label_azimuth", "label_lighting"),
        image_shape=(64, 64, 1),
        transform=resize_image(64),
        nuisance_factors=("instance",),
        origin="NYU's smallnorb-5x46789x9x18x6x2x96x96-*.mat.gz (cs.nyu.edu/~ylclab/data/norb-v1.0-small)",
    ),
}

CELEBA_ORIGIN = "CelebA's img_align_celeba.zip and annotation files (mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"


# Building.


def _download_failed(name: str, builder, data_dir: str, error: BaseException, origin: str) -> DatasetFileError:
  version_dir = os.path.join(data_dir, builder.name, str(builder.version))
  if builder.builder_config is not None:
    version_dir = os.path.join(data_dir, builder.name, builder.builder_config.name, str(builder.version))
  return DatasetFileError(
      f"{name}: the prepared TFDS dataset {version_dir} does not exist, and TFDS could not download and prepare "
      f"it ({type(error).__name__}: {error}).\n"
      f"On a machine with network access run\n    {build_command(name, data_dir)}\n"
      f"and copy the folder it writes, {version_dir}, to the same place here (or point data.data_dir at a TFDS "
      f"data directory that holds it: --config.data.data_dir=DIR). TFDS downloads it from {origin}.")


# Pip names of modules whose distribution is named differently.
_PIP_NAMES = {"bs4": "beautifulsoup4", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml",
              "sklearn": "scikit-learn", "skimage": "scikit-image", "google": "protobuf"}


def missing_module(error: BaseException) -> Optional[str]:
  """The top-level module whose absence caused `error` (searching its cause/context chain), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, ModuleNotFoundError):
      name = error.name
      if not name:
        match = re.search(r"No module named '([^']+)'", str(error))
        name = match.group(1) if match else None
      if name:
        return name.split(".")[0]
    error = error.__cause__ or error.__context__
  return None


def _missing_package(name: str, module: str, data_dir: str) -> DatasetFileError:
  package = _PIP_NAMES.get(module, module)
  return DatasetFileError(
      f"{name}: TFDS cannot download and prepare the dataset: it needs the Python package {package} (module "
      f"{module}), which is not installed. Install it\n    pip install {package}\n(or reinstall vae_jax with its "
      f"dependencies: pip install -e .), then run\n    {build_command(name, data_dir)}")


def prepare(builder, name: str, data_dir: str, origin: str,
            check_manual_files: Optional[Callable[[str, str], None]] = None) -> None:
  """Makes sure TFDS has prepared `builder`'s dataset in `data_dir`, downloading if needed.

  Raises:
    DatasetFileError: a manual file is missing or incomplete, a Python package that TFDS
      imports while preparing is not installed (the error names it), or the download
      failed.
  """
  if builder.is_prepared():
    return
  manual = manual_dir(data_dir)
  if check_manual_files is not None:
    check_manual_files(manual, data_dir)
  logging.info("Preparing TFDS dataset %s in %s (once).", builder.name, data_dir)
  config = tfds.download.DownloadConfig(manual_dir=manual)
  try:
    builder.download_and_prepare(download_config=config)
  except DatasetFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # TFDS builds into a temporary folder that it removes on failure; nothing is left behind.
    module = missing_module(e)
    if module is not None:  # A missing package, not a network problem.
      raise _missing_package(name, module, data_dir) from None
    if check_manual_files is not None:
      raise
    raise _download_failed(name, builder, data_dir, e, origin) from None


def _examples(builder, split: str, image_key: str, label_keys, transform):
  """tf.data batches (images uint8 [b, H, W, C], labels int64 [b, F]) of one TFDS split."""
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=tfds.ReadConfig(try_autocache=False))

  def extract(example):
    image = example[image_key]
    if transform is not None:
      image = transform(image)
    labels = tf.stack([tf.cast(example[k], tf.int64) for k in label_keys], axis=-1)
    return image, labels

  ds = ds.map(extract, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(_READ_BATCH).prefetch(2)


def _cardinality(builder, split: str) -> int:
  """Number of examples of a split, or -1 where TFDS does not know it."""
  try:
    n = int(builder.info.splits[split].num_examples)
    if n > 0:
      return n
  except (KeyError, ValueError, TypeError):
    pass
  return -1


def _incomplete(source: GridSource, builder, data_dir: str, detail: str) -> DatasetFileError:
  return DatasetFileError(
      f"{source.name}: the TFDS data of {builder.name} {builder.version} is incomplete: {detail}. Delete "
      f"{os.path.join(data_dir, builder.name)} and rebuild it:\n    {build_command(source.name, data_dir)}")


def _fill_grid(source: GridSource, builder, data_dir: str, out: np.ndarray) -> None:
  """Writes every example of `source`'s splits into `out` [N, ...] at its grid index."""
  sizes = np.asarray(source.spec.factor_sizes)
  n = source.spec.num_images
  seen = np.zeros(n, dtype=bool)
  counts = [_cardinality(builder, s) for s in source.splits]
  if all(c >= 0 for c in counts) and sum(counts) != n:
    raise _incomplete(source, builder, data_dir, f"its splits {source.splits} hold {sum(counts):,} examples, the "
                                                 f"grid {source.spec.factor_sizes} has {n:,} cells")
  for split in source.splits:
    for images, labels in _examples(builder, split, "image", source.label_keys, source.transform).as_numpy_iterator():
      bad = np.any((labels < 0) | (labels >= sizes), axis=1)
      if np.any(bad):
        raise _incomplete(source, builder, data_dir, f"labels {labels[bad][0].tolist()} fall outside the grid "
                                                     f"{source.spec.factor_sizes}")
      idx = factors_to_index(labels, source.spec.factor_sizes)
      if np.any(seen[idx]) or len(np.unique(idx)) != len(idx):
        raise _incomplete(source, builder, data_dir, "a grid cell appears twice")
      seen[idx] = True
      if images.shape[1:] != tuple(source.image_shape):
        raise _incomplete(source, builder, data_dir, f"images have shape {images.shape[1:]}, expected "
                                                     f"{source.image_shape}")
      if source.packed:
        out[idx] = np.packbits(images.reshape(len(images), -1) > 0, axis=1)
      else:
        out[idx] = images
  if not seen.all():
    missing = np.flatnonzero(~seen)
    example = dict(zip(source.spec.factor_names, index_to_factors(missing[:1], source.spec.factor_sizes)[0].tolist()))
    raise _incomplete(source, builder, data_dir, f"{len(missing):,} of the {n:,} grid cells have no image "
                                                 f"(e.g. {example})")


def cache_path(name: str, builder, data_dir: str, tag: str) -> str:
  """The cache file of dataset `name` (a data.name, so it names the TFDS config too) built from `builder`."""
  return os.path.join(cache_dir(data_dir), f"{name}-{builder.version}-{tag}-{_CACHE_FORMAT}.npy")


def load_grid(source: GridSource, data_dir: str = "", cache: str = "auto") -> ArrayGrid:
  """The ArrayGrid of `source`, building (and caching) it from TFDS on first use.

  Args:
    source: which TFDS dataset and how to read its grid.
    data_dir: TFDS data directory ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets).
    cache: "auto", "memory" or "mmap" (see arrays.load_npy).

  Raises:
    DatasetFileError: the data is missing (and cannot be downloaded) or incomplete.
  """
  data_dir = resolve_data_dir(data_dir)
  builder = source.make_builder(data_dir)
  tag = "bits" if source.packed else "x".join(map(str, source.image_shape))
  path = cache_path(source.name, builder, data_dir, tag)
  if not os.path.exists(path):
    prepare(builder, source.name, data_dir, source.origin, source.check_manual_files)
    n = source.spec.num_images
    row = (int(np.ceil(np.prod(source.image_shape) / 8)),) if source.packed else tuple(source.image_shape)
    logging.info("Caching the %s grid (%d images) at %s (once).", source.name, n, path)
    with atomic_npy(path, (n, *row), np.uint8) as out:
      _fill_grid(source, builder, data_dir, out)
  return ArrayGrid(source.name, source.spec, load_npy(path, cache), source.image_shape, packed=source.packed,
                   nuisance_factors=source.nuisance_factors, source=f"TFDS {builder.name} {builder.version}")


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def load_celeba(data_dir: str = "", cache: str = "auto", split: str = "train") -> ArrayImages:
  """CelebA's `split` as ArrayImages: 64x64 RGB crops and their 40 attributes (no factor grid).

  Built from TFDS's celeb_a on first use and cached as two .npy files (images, and
  attributes bool [N, 40] in CELEBA_ATTRIBUTES order).

  Raises:
    DatasetFileError: the data is missing and cannot be downloaded.
  """
  data_dir = resolve_data_dir(data_dir)
  builder = tfds.builder("celeb_a", data_dir=data_dir)
  path = cache_path(f"celeb_a-{split}", builder, data_dir, "64x64x3")
  attr_path = path[:-len(".npy")] + "-attributes.npy"
  if not (os.path.exists(path) and os.path.exists(attr_path)):
    prepare(builder, "celeb_a", data_dir, CELEBA_ORIGIN)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=tfds.ReadConfig(try_autocache=False))
    n = _cardinality(builder, split)
    if n < 0:
      n = int(ds.cardinality())
    if n < 0:
      n = int(ds.reduce(np.int64(0), lambda count, _: count + 1))

    def extract(example):
      attrs = tf.stack([example["attributes"][k] for k in CELEBA_ATTRIBUTES], axis=-1)
      return celeba_crop_and_resize(example["image"]), attrs

    ds = ds.map(extract, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(_READ_BATCH).prefetch(2)
    attributes = np.zeros((n, len(CELEBA_ATTRIBUTES)), dtype=bool)
    logging.info("Caching CelebA %s (%d images) at %s (once).", split, n, path)
    with atomic_npy(path, (n, 64, 64, 3), np.uint8) as out:
      filled = 0
      for images, attrs in ds.as_numpy_iterator():
        if filled + len(images) > n:
          raise DatasetFileError(f"celeb_a: the {split} split holds more than the {n:,} examples TFDS lists; delete "
                                 f"{os.path.join(data_dir, 'celeb_a')} and rebuild it:\n    "
                                 f"{build_command('celeb_a', data_dir)}")
        out[filled:filled + len(images)] = images
        attributes[filled:filled + len(images)] = attrs
        filled += len(images)
      if filled != n:
        raise DatasetFileError(f"celeb_a: the {split} split holds {filled:,} of its {n:,} examples; delete "
                               f"{os.path.join(data_dir, 'celeb_a')} and rebuild it:\n    "
                               f"{build_command('celeb_a', data_dir)}")
      save_npy_atomically(attr_path, attributes)
  return ArrayImages("celeb_a", load_npy(path, cache), np.load(attr_path), CELEBA_ATTRIBUTES,
                     source=f"TFDS celeb_a {builder.version} {split}")


def load_by_name(name: str, data_dir: str = "", cache: str = "auto"):
  """The TFDS dataset `name` (data.name loader): CelebA's images, or a factor grid of SOURCES."""
  if name == "celeb_a":
    return load_celeba(data_dir, cache)
  return load_grid(SOURCES[name], data_dir, cache)
