"""Datasets TFDS lacks: TFDS builders over files a user places in the TFDS manual directory.

The manual directory is <data_dir>/downloads/manual, data_dir being data.data_dir
(default $TFDS_DATA_DIR or ~/tensorflow_datasets). Each builder checks that its files
are there and complete before it writes anything, and raises one DatasetFileError
naming the file, the directory and the command that builds the dataset otherwise.
Building writes the TFDS dataset (TFDS writes into a temporary folder that it renames
only on success); vae_jax then reads it once into its factor-grid cache, like the
TFDS-backed datasets (tfds_datasets.load_grid).

  cars3d     Reed et al. (NeurIPS 2015), as disentanglement_lib uses it: 183 car
             models x 24 azimuths (15 degree steps) x 4 elevations = 17,568 RGB
             images, from 128x128 to 64x64 by 2x2 averaging. File:
             nips2015-analogy-data.tar.gz, or its data/cars/car_*_mesh.mat files
             extracted into the manual directory (cars/ or data/cars/). Grid order
             here is (model, azimuth, elevation), the file's own layout;
             disentanglement_lib orders the same factors (elevation, azimuth, model).
  faces3d    Basel-face renders as Chen et al. (β-TCVAE) use them: 50 identities x
             21 azimuths x 11 elevations x 11 lighting conditions = 127,050 grey
             64x64 images. File: basel_face_renders.pth (the uint8 torch tensor
             [50, 21, 11, 11, 64, 64] their code loads from data/3dfaces/; reading
             it needs PyTorch), or the same array as basel_face_renders.npy or as
             key "images" of basel_face_renders.npz (no PyTorch needed).
  mpi3d      Gondal et al. (NeurIPS 2019), variants toy, realistic and real (TFDS
             configs mpi3d/toy etc., data.name mpi3d_toy etc.): object_color 6 x
             object_shape 6 x object_size 2 x camera_height 3 x background_color 3
             x horizontal_axis 40 x vertical_axis 40 = 1,036,800 RGB 64x64 images
             (12.7 GB). File: mpi3d_<variant>.npz (key "images", uint8
             [1036800, 64, 64, 3], already in grid order). The 460,800-image
             mpi3d_complex (4 colours x 4 shapes) is a different grid, not built here.

The factor values of these grids are their indices (azimuths of cars3d in degrees):
the files do not record the angles.

Importing this module registers the builders with TFDS, so `tfds build` works too:
    tfds build --imports=vae_jax.data.manual_datasets cars3d --manual_dir=DIR
"""

from __future__ import annotations

import io
import os
import re
import struct
import tarfile
import zipfile
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds

from vae_jax.data.arrays import ArrayGrid, DatasetFileError
from vae_jax.data.grid import GridSpec
from vae_jax.data.tfds_datasets import GridSource, build_command, load_grid

_CARS3D_URL = "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz"
_MPI3D_URL = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_{variant}.npz"


def _file_error(data_name: str, problem: str, manual: str, origin: str, data_dir: str, put: str = "") -> DatasetFileError:
  """The one error for a missing or incomplete manual file."""
  put = put or f"Put it in {manual}"
  return DatasetFileError(
      f"{data_name}: {problem}\n"
      f"{put} (the TFDS manual directory of the data dir {data_dir}; set data.data_dir to use another).\n"
      f"It comes from {origin}.\n"
      f"Then build the dataset with\n    {build_command(data_name, data_dir)}\n"
      f"(a training run with --config.data.name={data_name} --config.data.data_dir={data_dir} also builds it on "
      "first use).")


def _npz_member(path: str, key: str) -> np.ndarray:
  """Array `key` of the .npz at `path`: memory-mapped if stored uncompressed, else read.

  Raises zipfile.BadZipFile, KeyError or ValueError for a truncated or foreign file.
  """
  with zipfile.ZipFile(path) as zf:
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
      else:  # Format 3.0 (rare): read the whole array below.
        shape, fortran, dtype = None, True, np.dtype(np.uint8)
      header_size = f.tell()
    if info.compress_type != zipfile.ZIP_STORED or fortran or dtype.hasobject:
      with zf.open(info) as f:
        return np.lib.format.read_array(f)
  with open(path, "rb") as raw:
    raw.seek(info.header_offset)
    local = raw.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
  offset = info.header_offset + 30 + name_len + extra_len + header_size
  if offset + int(np.prod(shape)) * dtype.itemsize > os.path.getsize(path):
    raise ValueError(f"{path} is shorter than its array {key} {shape}")
  return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _box_downsample(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [size, size, C] of uint8 [S, S, C] by averaging factor x factor blocks (S = factor * size)."""
  factor = image.shape[0] // size
  if factor * size != image.shape[0] or image.shape[0] != image.shape[1]:
    raise ValueError(f"cannot box-downsample {image.shape} to {size}x{size}")
  if factor == 1:
    return image.astype(np.uint8)
  blocks = image.astype(np.float32).reshape(size, factor, size, factor, -1).mean(axis=(1, 3))
  return np.clip(np.round(blocks), 0, 255).astype(np.uint8)


def _as_uint8(array: np.ndarray) -> np.ndarray:
  """uint8 pixels of uint8 or [0, 1]-float images."""
  if array.dtype == np.uint8:
    return array
  array = np.asarray(array, dtype=np.float32)
  if array.size and array.max() <= 1.0:
    array = array * 255.0
  return np.clip(np.round(array), 0, 255).astype(np.uint8)


class _ManualGridBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder of a factor grid read from manually placed files.

  Subclasses set GRID, IMAGE_SHAPE, the citation and homepage, and implement
  `check_files` (raise DatasetFileError or return what `_generate_grid` needs) and
  `_generate_grid` (yield (flat grid index, uint8 image)).
  """

  VERSION = tfds.core.Version("1.0.0")
  GRID: GridSpec
  IMAGE_SHAPE: tuple[int, int, int]
  HOMEPAGE = ""
  CITATION = ""

  @classmethod
  def data_name(cls, config: Optional[str] = None) -> str:
    """The data.name that selects this builder (and config)."""
    return cls.name if config is None else f"{cls.name}_{config}"

  @classmethod
  def label_keys(cls) -> tuple[str, ...]:
    """The TFDS feature of each factor's index, in grid order."""
    return tuple(f"label_{name}" for name in cls.GRID.factor_names)

  @classmethod
  def check_files(cls, manual: str, data_dir: str, config: Optional[str] = None):
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    features = {"image": tfds.features.Image(shape=self.IMAGE_SHAPE)}
    for key, size in zip(self.label_keys(), self.GRID.factor_sizes):
      features[key] = tfds.features.ClassLabel(num_classes=size)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(self.__doc__ or "").strip(),
        features=tfds.features.FeaturesDict(features),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
    )

  def _split_generators(self, dl_manager):
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except AssertionError:  # Missing or empty: check_files says which file is missing and what to do.
      manual = os.fspath(dl_manager._manual_dir)  # pylint: disable=protected-access
    config = self.builder_config.name if self.builder_config is not None else None
    files = self.check_files(manual, os.fspath(self.data_dir_root), config)
    return {"train": self._generate_examples(files)}

  def _generate_examples(self, files):
    names = self.GRID.factor_names
    for index, image in self._generate_grid(files):
      factors = np.unravel_index(index, self.GRID.factor_sizes)
      record = {"image": image}
      record.update({f"label_{n}": int(f) for n, f in zip(names, factors)})
      yield int(index), record

  def _generate_grid(self, files) -> Iterator[tuple[int, np.ndarray]]:
    raise NotImplementedError


# Cars3D.


class Cars3d(_ManualGridBuilder):
  """Cars3D (Reed et al., 2015): 183 car models x 24 azimuths x 4 elevations, RGB 64x64."""

  NUM_MODELS, NUM_AZIMUTHS, NUM_ELEVATIONS = 183, 24, 4
  SOURCE_SIZE = 128
  IMAGE_SHAPE = (64, 64, 3)
  ARCHIVE = "nips2015-analogy-data.tar.gz"
  GRID = GridSpec(
      factor_names=("model", "azimuth", "elevation"),
      factor_sizes=(NUM_MODELS, NUM_AZIMUTHS, NUM_ELEVATIONS),
      factor_values=(np.arange(183, dtype=np.float64), np.arange(24) * 15.0, np.arange(4, dtype=np.float64)),
  )
  HOMEPAGE = "http://www.scottreed.info/"
  CITATION = "Reed, Zhang, Zhang, Lee. Deep Visual Analogy-Making. NeurIPS 2015."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download {ARCHIVE} from {_CARS3D_URL} and place it in the manual directory
  (default ~/tensorflow_datasets/downloads/manual/), or extract its data/cars/*.mat
  files into <manual_dir>/cars/.
  """
  _MAT = re.compile(r"(^|/)cars/[^/]*\.mat$")

  @classmethod
  def _origin(cls) -> str:
    return f"{_CARS3D_URL} (Reed et al., Deep Visual Analogy-Making, NeurIPS 2015)"

  @classmethod
  def check_files(cls, manual: str, data_dir: str, config: Optional[str] = None):
    """('dir', [paths of the .mat files]) or ('tar', archive path); DatasetFileError if missing or incomplete."""
    name = cls.data_name(config)
    for sub in ("cars", os.path.join("data", "cars")):
      folder = os.path.join(manual, sub)
      if os.path.isdir(folder):
        mats = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".mat"))
        if len(mats) != cls.NUM_MODELS:
          raise _file_error(name, f"{folder} holds {len(mats)} .mat files; Cars3D has {cls.NUM_MODELS} "
                                  f"(data/cars/car_*_mesh.mat of {cls.ARCHIVE}).", manual, cls._origin(), data_dir,
                            put=f"Extract all of them into {folder}, or put {cls.ARCHIVE} itself in {manual}")
        return "dir", mats
    archive = os.path.join(manual, cls.ARCHIVE)
    if not os.path.exists(archive):
      raise _file_error(name, f"missing file {cls.ARCHIVE} (looked for {archive}, and for its extracted "
                              f"cars/*.mat files in {os.path.join(manual, 'cars')}).", manual, cls._origin(), data_dir)
    try:
      with tarfile.open(archive, "r:*") as tar:
        count = sum(1 for m in tar.getmembers() if m.isfile() and cls._MAT.search(m.name))
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as e:
      raise _file_error(name, f"{archive} is incomplete or corrupt ({type(e).__name__}: {e}); download it again.",
                        manual, cls._origin(), data_dir) from None
    if count != cls.NUM_MODELS:
      raise _file_error(name, f"{archive} holds {count} cars/*.mat files; Cars3D has {cls.NUM_MODELS}. Download it "
                              "again.", manual, cls._origin(), data_dir)
    return "tar", archive

  @classmethod
  def _mats(cls, files) -> Iterator[tuple[str, bytes]]:
    kind, where = files
    if kind == "dir":
      for path in where:
        with open(path, "rb") as f:
          yield os.path.basename(path), f.read()
      return
    with tarfile.open(where, "r:*") as tar:
      for member in tar:  # Archive order: one forward pass through the gzip stream.
        if member.isfile() and cls._MAT.search(member.name):
          yield os.path.basename(member.name), tar.extractfile(member).read()

  def _generate_grid(self, files):
    try:
      from scipy import io as sio  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError("Reading Cars3D's .mat files needs SciPy: pip install scipy") from None
    kind, where = files
    names = sorted(os.path.basename(p) for p in where) if kind == "dir" else None
    if names is None:
      with tarfile.open(where, "r:*") as tar:
        names = sorted(os.path.basename(m.name) for m in tar.getmembers() if m.isfile() and self._MAT.search(m.name))
    model_of = {n: i for i, n in enumerate(names)}  # Models are numbered in file-name order.
    size = self.IMAGE_SHAPE[0]
    expected = (self.SOURCE_SIZE, self.SOURCE_SIZE, 3, self.NUM_AZIMUTHS, self.NUM_ELEVATIONS)
    for file_name, content in self._mats(files):
      im = sio.loadmat(io.BytesIO(content))["im"]
      if im.shape != expected:
        raise DatasetFileError(f"{self.name}: {file_name} holds images {im.shape}, expected {expected}; the file is "
                               f"not one of Cars3D's. Replace it with the one from {_CARS3D_URL}.")
      im = _as_uint8(im)
      model = model_of[file_name]
      for azimuth in range(self.NUM_AZIMUTHS):
        for elevation in range(self.NUM_ELEVATIONS):
          index = (model * self.NUM_AZIMUTHS + azimuth) * self.NUM_ELEVATIONS + elevation
          yield index, _box_downsample(im[:, :, :, azimuth, elevation], size)


# 3D faces.


class Faces3d(_ManualGridBuilder):
  """Basel-face renders as in Chen et al. (β-TCVAE): 50 identities x 21 azimuths x 11 elevations x 11 lightings."""

  IMAGE_SHAPE = (64, 64, 1)
  GRID = GridSpec(
      factor_names=("identity", "azimuth", "elevation", "lighting"),
      factor_sizes=(50, 21, 11, 11),
      factor_values=tuple(np.arange(s, dtype=np.float64) for s in (50, 21, 11, 11)),
  )
  STEM = "basel_face_renders"
  HOMEPAGE = "https://github.com/rtqichen/beta-tcvae"
  CITATION = ("Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in Variational Autoencoders. "
              "NeurIPS 2018. Paysan et al. A 3D Face Model for Pose and Illumination Invariant Face Recognition. "
              "AVSS 2009.")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Place basel_face_renders.pth (Chen et al.'s uint8 tensor [50, 21, 11, 11, 64, 64];
  reading it needs PyTorch), or the same array as basel_face_renders.npy or as key
  "images" of basel_face_renders.npz, in the manual directory (default
  ~/tensorflow_datasets/downloads/manual/).
  """

  @classmethod
  def _origin(cls) -> str:
    return ("Chen et al.'s β-TCVAE setup (github.com/rtqichen/beta-tcvae loads data/3dfaces/basel_face_renders.pth): "
            "renders of the Basel Face Model (Paysan et al., 2009), which are not distributed publicly; ask the "
            "authors, or render the grid from the Basel Face Model under its licence. Without PyTorch, convert the "
            ".pth once where it is installed: python -c \"import numpy, torch; numpy.save('basel_face_renders.npy', "
            "torch.load('basel_face_renders.pth').numpy())\"")

  @classmethod
  def _accepted_shapes(cls) -> tuple[tuple[int, ...], ...]:
    n = cls.GRID.num_images
    h, w, _ = cls.IMAGE_SHAPE
    return (tuple(cls.GRID.factor_sizes) + (h, w), (n, h, w), (n, h, w, 1), (n, 1, h, w))

  @classmethod
  def _load(cls, path: str) -> np.ndarray:
    """The array in `path` (memory-mapped where possible); raises on a broken file."""
    if path.endswith(".npy"):
      return np.load(path, mmap_mode="r")
    if path.endswith(".npz"):
      with zipfile.ZipFile(path) as zf:
        keys = [n[:-len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
      return _npz_member(path, "images" if "images" in keys or len(keys) != 1 else keys[0])
    import torch  # pylint: disable=g-import-not-at-top
    return torch.load(path, map_location="cpu").numpy()

  @classmethod
  def check_files(cls, manual: str, data_dir: str, config: Optional[str] = None):
    """The array of images (any accepted shape); DatasetFileError if missing or incomplete."""
    name = cls.data_name(config)
    candidates = [os.path.join(manual, cls.STEM + ext) for ext in (".npy", ".npz", ".pth")]
    present = [p for p in candidates if os.path.exists(p)]
    if not present:
      raise _file_error(name, f"missing file {cls.STEM}.pth (or its NumPy form {cls.STEM}.npy / {cls.STEM}.npz; "
                              f"looked for {', '.join(candidates)}).", manual, cls._origin(), data_dir)
    path = present[0]
    if path.endswith(".pth"):
      try:
        import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
      except ImportError:
        raise _file_error(name, f"found {path}, but reading a .pth file needs PyTorch, which is not installed. "
                                f"Convert it once where PyTorch is installed (command below) and put "
                                f"{cls.STEM}.npy in its place.", manual, cls._origin(), data_dir) from None
    try:
      array = cls._load(path)
    except Exception as e:  # pylint: disable=broad-except
      raise _file_error(name, f"{path} is incomplete or corrupt ({type(e).__name__}: {e}).", manual, cls._origin(),
                        data_dir) from None
    if tuple(array.shape) not in cls._accepted_shapes():
      raise _file_error(name, f"{path} holds an array of shape {tuple(array.shape)}; expected "
                              f"{cls._accepted_shapes()[0]} (identity, azimuth, elevation, lighting, H, W) or "
                              f"{cls._accepted_shapes()[1]}.", manual, cls._origin(), data_dir)
    return array

  def _generate_grid(self, array):
    flat = array.reshape((self.GRID.num_images,) + self.IMAGE_SHAPE)
    for index in range(self.GRID.num_images):
      yield index, _as_uint8(np.asarray(flat[index]))


# MPI3D.


class Mpi3d(_ManualGridBuilder):
  """MPI3D (Gondal et al., 2019): a robot arm's object over 7 factors, 1,036,800 RGB 64x64 images per variant."""

  IMAGE_SHAPE = (64, 64, 3)
  GRID = GridSpec(
      factor_names=("object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis"),
      factor_sizes=(6, 6, 2, 3, 3, 40, 40),
      factor_values=tuple(np.arange(s, dtype=np.float64) for s in (6, 6, 2, 3, 3, 40, 40)),
  )
  VARIANTS = ("toy", "realistic", "real")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=v, description=f"mpi3d_{v}.npz") for v in VARIANTS]
  HOMEPAGE = "https://github.com/rr-learning/disentanglement_dataset"
  CITATION = ("Gondal et al. On the Transfer of Inductive Bias from Simulation to the Real World: a New "
              "Disentanglement Dataset. NeurIPS 2019.")
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download mpi3d_<variant>.npz (variant toy, realistic or real) from
  {_MPI3D_URL.format(variant="<variant>")} and place it in the manual directory
  (default ~/tensorflow_datasets/downloads/manual/).
  """

  @classmethod
  def file_name(cls, variant: str) -> str:
    return f"mpi3d_{variant}.npz"

  @classmethod
  def check_files(cls, manual: str, data_dir: str, config: Optional[str] = None):
    """The images array [N, H, W, C] (memory-mapped where possible); DatasetFileError if missing or incomplete."""
    variant = config or cls.VARIANTS[0]
    name = cls.data_name(variant)
    file_name = cls.file_name(variant)
    path = os.path.join(manual, file_name)
    origin = f"{_MPI3D_URL.format(variant=variant)} (Gondal et al., NeurIPS 2019)"
    if not os.path.exists(path):
      raise _file_error(name, f"missing file {file_name} (looked for {path}).", manual, origin, data_dir)
    expected = (cls.GRID.num_images,) + tuple(cls.IMAGE_SHAPE)
    try:
      images = _npz_member(path, "images")
    except Exception as e:  # pylint: disable=broad-except
      raise _file_error(name, f"{path} is incomplete or corrupt ({type(e).__name__}: {e}); download it again.",
                        manual, origin, data_dir) from None
    if tuple(images.shape) != expected or images.dtype != np.uint8:
      raise _file_error(name, f"{path} holds images {images.dtype} {tuple(images.shape)}; expected uint8 {expected}. "
                              "Download it again.", manual, origin, data_dir)
    return images

  def _generate_grid(self, images):
    for index in range(self.GRID.num_images):
      yield index, np.asarray(images[index])


# Grid sources (see tfds_datasets.GridSource), one per data.name.


def grid_source(builder_cls: type, config: Optional[str] = None) -> GridSource:
  """The GridSource reading `builder_cls` (with TFDS config `config`) into a factor grid."""
  data_name = builder_cls.data_name(config)

  def check(manual: str, data_dir: str) -> None:
    builder_cls.check_files(manual, data_dir, config)

  return GridSource(
      name=data_name,
      make_builder=lambda data_dir: builder_cls(data_dir=data_dir, config=config),
      splits=("train",),
      spec=builder_cls.GRID,
      label_keys=builder_cls.label_keys(),
      image_shape=tuple(builder_cls.IMAGE_SHAPE),
      origin=builder_cls.HOMEPAGE,
      check_manual_files=check,
  )


SOURCES = {
    "cars3d": grid_source(Cars3d),
    "faces3d": grid_source(Faces3d),
    **{f"mpi3d_{v}": grid_source(Mpi3d, v) for v in Mpi3d.VARIANTS},
}


def load(name: str, data_dir: str = "", cache: str = "auto") -> ArrayGrid:
  """The ArrayGrid of manual dataset `name` (a key of SOURCES), built on first use.

  Raises:
    DatasetFileError: a file is missing or incomplete; the message says what to do.
  """
  return load_grid(SOURCES[name], data_dir, cache)
