"""The manual-file TFDS builders (vae_jax/data/manual_datasets.py) on tiny fake files the tests write.

The builders are subclassed with small grids (the real factor names, fewer values,
4x4 images); the fake files are laid out exactly like the real ones, with pixels
that encode each image's grid index. The missing/incomplete-file errors are checked
on the real builders, which look at the files before anything else.
"""

import glob
import io
import os
import sys
import tarfile

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import ml_collections  # noqa: E402

from vae_jax.data import DatasetFileError, FactorDataset, get_dataset  # noqa: E402
from vae_jax.data import manual_datasets as md  # noqa: E402
from vae_jax.data.grid import GridSpec  # noqa: E402
from vae_jax.data.tfds_datasets import load_grid, manual_dir  # noqa: E402


def _spec(base: GridSpec, sizes) -> GridSpec:
  return GridSpec(base.factor_names, tuple(sizes), tuple(np.arange(s, dtype=np.float64) for s in sizes))


class TinyCars3d(md.Cars3d, skip_registration=True):
  NUM_MODELS, NUM_AZIMUTHS, NUM_ELEVATIONS = 3, 4, 2
  SOURCE_SIZE = 8
  IMAGE_SHAPE = (4, 4, 3)
  GRID = _spec(md.Cars3d.GRID, (3, 4, 2))


class TinyFaces3d(md.Faces3d, skip_registration=True):
  IMAGE_SHAPE = (4, 4, 1)
  GRID = _spec(md.Faces3d.GRID, (2, 3, 2, 2))


class TinyMpi3d(md.Mpi3d, skip_registration=True):
  IMAGE_SHAPE = (4, 4, 3)
  GRID = _spec(md.Mpi3d.GRID, (2, 2, 2, 1, 1, 3, 2))


def levels(indices, channels):
  """uint8 [n, C]: the pixel level of grid index i in channel c (distinct for every index here)."""
  indices = np.asarray(indices)
  return ((indices[:, None] * 3 + np.arange(channels)[None, :] * 97) % 256).astype(np.uint8)


def expected(builder_cls, indices):
  """float32 [n, H, W, C]: the constant images the fake files hold, as the dataset returns them."""
  h, w, c = builder_cls.IMAGE_SHAPE
  return np.broadcast_to(levels(indices, c)[:, None, None, :] / np.float32(255), (len(indices), h, w, c))


def manual(tmp_path):
  path = manual_dir(str(tmp_path))
  os.makedirs(path, exist_ok=True)
  return path


def car_mats(cls=TinyCars3d):
  """{file name: .mat bytes}: cls.NUM_MODELS files with "im" [S, S, 3, azimuths, elevations] like Reed et al.'s."""
  from scipy import io as sio

  out = {}
  for model in range(cls.NUM_MODELS):
    im = np.zeros((cls.SOURCE_SIZE, cls.SOURCE_SIZE, 3, cls.NUM_AZIMUTHS, cls.NUM_ELEVATIONS), np.uint8)
    for a in range(cls.NUM_AZIMUTHS):
      for e in range(cls.NUM_ELEVATIONS):
        index = (model * cls.NUM_AZIMUTHS + a) * cls.NUM_ELEVATIONS + e
        im[:, :, :, a, e] = levels([index], 3)[0]
    buffer = io.BytesIO()
    sio.savemat(buffer, {"im": im})
    out[f"car_{model + 1:03d}_mesh.mat"] = buffer.getvalue()
  return out


def write_cars_tar(path, mats):
  with tarfile.open(path, "w:gz") as tar:
    for name in ["README"] + sorted(mats, reverse=True):  # Archive order differs from name order.
      content = b"readme" if name == "README" else mats[name]
      info = tarfile.TarInfo(f"data/{name}" if name == "README" else f"data/cars/{name}")
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))


def assert_grid(ds, builder_cls):
  assert isinstance(ds, FactorDataset)
  assert ds.factor_names == builder_cls.GRID.factor_names and ds.factor_sizes == builder_cls.GRID.factor_sizes
  assert len(ds) == builder_cls.GRID.num_images and ds.image_shape == builder_cls.IMAGE_SHAPE
  # No labelled values, nothing left out of the MIG, read from a file (not procedural).
  assert ds.factor_value_labels == (None,) * len(ds.factor_names) and ds.mig_excluded_factors == ()
  assert ds.nuisance_factors == () and ds.procedural is False
  all_indices = np.arange(len(ds))
  images = ds.images(all_indices)
  assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
  np.testing.assert_allclose(images, expected(builder_cls, all_indices), atol=1e-6)
  factors = ds.index_to_factors(all_indices)
  np.testing.assert_array_equal(ds.factors_to_index(factors), all_indices)
  np.testing.assert_array_equal(factors[-1], np.array(ds.factor_sizes) - 1)
  np.testing.assert_array_equal(ds.images_of_factors(factors[::-1]), images[::-1])
  np.testing.assert_array_equal(ds.image_range(2, 5), images[2:5])


def leftovers(tmp_path):
  """Everything written outside the manual directory."""
  found = []
  for root, dirs, files in os.walk(tmp_path):
    if os.path.abspath(root).startswith(os.path.abspath(manual_dir(str(tmp_path)))):
      continue
    found += [os.path.join(root, f) for f in files]
  return found


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_cars3d_from_the_archive_or_its_extracted_files(layout, tmp_path):
  pytest.importorskip("scipy")
  mats = car_mats()
  if layout == "tar":
    write_cars_tar(os.path.join(manual(tmp_path), TinyCars3d.ARCHIVE), mats)
  else:
    os.makedirs(os.path.join(manual(tmp_path), "cars"))
    for name, content in mats.items():
      with open(os.path.join(manual(tmp_path), "cars", name), "wb") as f:
        f.write(content)
  ds = load_grid(md.grid_source(TinyCars3d), str(tmp_path))
  assert ds.factor_names == ("model", "azimuth", "elevation")
  assert_grid(ds, TinyCars3d)


@pytest.mark.parametrize("form", ["npz", "npz_compressed", "npy", "npy_flat"])
def test_faces3d_from_numpy_files(form, tmp_path):
  n = TinyFaces3d.GRID.num_images
  images = np.broadcast_to(levels(np.arange(n), 1)[:, None, None, 0], (n, 4, 4))
  grid = images.reshape(TinyFaces3d.GRID.factor_sizes + (4, 4))  # As Chen et al.'s tensor.
  path = os.path.join(manual(tmp_path), "basel_face_renders")
  if form == "npz":
    np.savez(path + ".npz", images=grid)
  elif form == "npz_compressed":
    np.savez_compressed(path + ".npz", images=grid)
  elif form == "npy":
    np.save(path + ".npy", grid)
  else:
    np.save(path + ".npy", images[:, :, :, None])
  ds = load_grid(md.grid_source(TinyFaces3d), str(tmp_path))
  assert ds.factor_names == ("identity", "azimuth", "elevation", "lighting")
  assert_grid(ds, TinyFaces3d)


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_variant_from_its_npz(compressed, tmp_path):
  n = TinyMpi3d.GRID.num_images
  images = np.ascontiguousarray(np.broadcast_to(levels(np.arange(n), 3)[:, None, None, :], (n, 4, 4, 3)))
  (np.savez_compressed if compressed else np.savez)(os.path.join(manual(tmp_path), "mpi3d_real.npz"), images=images)
  ds = load_grid(md.grid_source(TinyMpi3d, "real"), str(tmp_path), cache="mmap")
  assert ds.name == "tiny_mpi3d_real" and not ds.in_memory
  assert_grid(ds, TinyMpi3d)
  # Built once: the TFDS data and the cache are reused, the manual file is no longer needed.
  os.remove(os.path.join(manual(tmp_path), "mpi3d_real.npz"))
  again = load_grid(md.grid_source(TinyMpi3d, "real"), str(tmp_path), cache="memory")
  np.testing.assert_array_equal(again.images(np.arange(n)), ds.images(np.arange(n)))


def test_real_grids_and_builder_registration():
  assert md.Cars3d.GRID.factor_sizes == (183, 24, 4) and md.Cars3d.GRID.num_images == 17_568
  assert md.Faces3d.GRID.factor_sizes == (50, 21, 11, 11) and md.Faces3d.GRID.num_images == 127_050
  assert md.Mpi3d.GRID.factor_sizes == (6, 6, 2, 3, 3, 40, 40) and md.Mpi3d.GRID.num_images == 1_036_800
  assert md.Mpi3d.GRID.factor_names == ("object_color", "object_shape", "object_size", "camera_height",
                                        "background_color", "horizontal_axis", "vertical_axis")
  for name in ("cars3d", "faces3d", "mpi3d"):
    assert name in tfds.list_builders()
  assert set(md.SOURCES) == {"cars3d", "faces3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real"}
  for builder_cls in (md.Cars3d, md.Faces3d, md.Mpi3d):
    assert builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()


MISSING = {
    "cars3d": "missing file nips2015-analogy-data.tar.gz",
    "faces3d": "missing file basel_face_renders.pth",
    "mpi3d_toy": "missing file mpi3d_toy.npz",
    "mpi3d_realistic": "missing file mpi3d_realistic.npz",
    "mpi3d_real": "missing file mpi3d_real.npz",
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_file_error_names_file_place_and_command(name, tmp_path):
  with pytest.raises(DatasetFileError) as info:
    get_dataset(ml_collections.ConfigDict({"name": name, "data_dir": str(tmp_path), "cache": "auto"}))
  message = str(info.value)
  assert message.startswith(f"{name}: {MISSING[name]}")
  assert f"Put it in {tmp_path}/downloads/manual " in message
  assert "It comes from http" in message or "It comes from Chen et al." in message
  assert f"python -m vae_jax.data.build {name} --data_dir={tmp_path}" in message
  assert info.value.__cause__ is None
  assert os.listdir(tmp_path) == []  # Nothing written anywhere.


def test_truncated_or_wrong_files_give_one_error_and_leave_nothing(tmp_path):
  path = os.path.join(manual(tmp_path), "mpi3d_toy.npz")
  np.savez(path, images=np.zeros((10, 64, 64, 3), np.uint8))
  with pytest.raises(DatasetFileError, match=r"holds images uint8 \(10, 64, 64, 3\); expected uint8 "
                                             r"\(1036800, 64, 64, 3\)"):
    md.load("mpi3d_toy", str(tmp_path))
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[: len(content) // 2])  # An interrupted download.
  with pytest.raises(DatasetFileError, match="mpi3d_toy.npz is incomplete or corrupt"):
    md.load("mpi3d_toy", str(tmp_path))

  archive = os.path.join(manual(tmp_path), md.Cars3d.ARCHIVE)
  with open(archive, "wb") as f:
    f.write(b"\x1f\x8b\x08\x00" + b"\x00" * 100)  # A gzip header and nothing else.
  with pytest.raises(DatasetFileError, match="nips2015-analogy-data.tar.gz is incomplete or corrupt"):
    md.load("cars3d", str(tmp_path))

  np.save(os.path.join(manual(tmp_path), "basel_face_renders.npy"), np.zeros((5, 64, 64), np.uint8))
  with pytest.raises(DatasetFileError, match=r"shape \(5, 64, 64\); expected \(50, 21, 11, 11, 64, 64\)"):
    md.load("faces3d", str(tmp_path))
  assert leftovers(tmp_path) == []


def test_cars3d_counts_models(tmp_path):
  pytest.importorskip("scipy")
  mats = car_mats()
  del mats[sorted(mats)[0]]
  write_cars_tar(os.path.join(manual(tmp_path), TinyCars3d.ARCHIVE), mats)
  with pytest.raises(DatasetFileError, match="holds 2 cars/\\*.mat files; Cars3D has 3"):
    load_grid(md.grid_source(TinyCars3d), str(tmp_path))
  assert leftovers(tmp_path) == []


def test_a_bad_file_found_while_building_leaves_nothing_half_written(tmp_path):
  pytest.importorskip("scipy")
  from scipy import io as sio

  mats = car_mats()
  buffer = io.BytesIO()
  sio.savemat(buffer, {"im": np.zeros((8, 8, 3, 4, 1), np.uint8)})  # One elevation short.
  mats[sorted(mats)[-1]] = buffer.getvalue()
  write_cars_tar(os.path.join(manual(tmp_path), TinyCars3d.ARCHIVE), mats)
  with pytest.raises(DatasetFileError, match="car_003_mesh.mat holds images"):
    load_grid(md.grid_source(TinyCars3d), str(tmp_path))
  assert leftovers(tmp_path) == []
  assert not glob.glob(str(tmp_path / "tiny_cars3d" / "*" / "*"))  # TFDS removed its temporary folder.


def test_faces3d_from_chen_et_al_pth(tmp_path):
  torch = pytest.importorskip("torch")
  n = TinyFaces3d.GRID.num_images
  images = np.broadcast_to(levels(np.arange(n), 1)[:, None, None, 0], (n, 4, 4))
  torch.save(torch.from_numpy(images.reshape(TinyFaces3d.GRID.factor_sizes + (4, 4)).copy()),
             os.path.join(manual(tmp_path), "basel_face_renders.pth"))
  assert_grid(load_grid(md.grid_source(TinyFaces3d), str(tmp_path)), TinyFaces3d)


def test_faces3d_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError.
  with open(os.path.join(manual(tmp_path), "basel_face_renders.pth"), "wb") as f:
    f.write(b"not read")
  with pytest.raises(DatasetFileError) as info:
    md.load("faces3d", str(tmp_path))
  message = str(info.value)
  assert "reading a .pth file needs PyTorch" in message
  assert "numpy.save('basel_face_renders.npy', torch.load('basel_face_renders.pth').numpy())" in message
  assert f"python -m vae_jax.data.build faces3d --data_dir={tmp_path}" in message


def test_build_command_reports_the_error(tmp_path, capsys):
  from vae_jax.data import build

  assert build.main(["cars3d", f"--data_dir={tmp_path}"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("ERROR: cars3d: missing file nips2015-analogy-data.tar.gz")
