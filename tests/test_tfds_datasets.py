"""TFDS-backed datasets (vae_jax/data/tfds_datasets.py) on tfds.testing.mock_data; nothing is downloaded.

The grid tests read a small complete grid (the real factor names, fewer values)
that a mocked TFDS serves in shuffled order, with pixels that encode each image's
grid index, so they show that images(i) is the image of grid index i.
"""

import dataclasses
import glob
import importlib.util
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from vae_jax import configlib  # noqa: E402
from vae_jax.data import DATASETS, FACTORLESS_DATASETS, DatasetFileError, FactorDataset, get_dataset  # noqa: E402
from vae_jax.data import arrays, tfds_datasets  # noqa: E402
from vae_jax.data.grid import GridSpec, dataset_note, default_mig_factors, index_to_factors  # noqa: E402

import ml_collections  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID_NAMES = ("dsprites", "shapes3d", "smallnorb")
# Factor sizes of the small test grids (at least 2 values per factor).
SMALL_SIZES = {"dsprites": (3, 2, 2, 2, 2), "shapes3d": (2, 2, 2, 2, 2, 2), "smallnorb": (2, 2, 2, 3, 2)}
TFDS_IMAGE_SHAPES = {"dsprites": (64, 64, 1), "shapes3d": (64, 64, 3), "smallnorb": (96, 96, 1)}


def small_source(name):
  source = tfds_datasets.SOURCES[name]
  sizes = SMALL_SIZES[name]
  spec = GridSpec(source.spec.factor_names, sizes, tuple(v[:s] for v, s in zip(source.spec.factor_values, sizes)))
  return dataclasses.replace(source, spec=spec)


def grid_images(name, indices):
  """The TFDS images of grid indices [n]: uint8 [n, *tfds shape], encoding each index."""
  h, w, c = TFDS_IMAGE_SHAPES[name]
  indices = np.asarray(indices)
  if name == "dsprites":  # Binary: the index's bits in the first row.
    bits = (indices[:, None] >> np.arange(w)[None, :]) & 1
    out = np.zeros((len(indices), h, w, c), np.uint8)
    out[:, 0, :, 0] = bits
    return out
  # Grey or RGB levels that differ per index (constant images survive a resize unchanged).
  levels = (indices[:, None] * 37 + np.arange(c)[None, :] * 101) % 256
  return np.broadcast_to(levels[:, None, None, :], (len(indices), h, w, c)).astype(np.uint8)


def expected_images(name, indices):
  """What the dataset must return, float32 [n, 64, 64, C], for grid indices [n]."""
  raw = grid_images(name, indices).astype(np.float32)
  if name == "smallnorb":
    raw = raw[:, :64, :64]  # Constant images: the resize keeps the level.
  return raw if name == "dsprites" else raw / 255.0


def serve_grid(name, source, *, duplicate=False):
  """An `as_dataset_fn` for mock_data: the whole small grid, shuffled, split across the source's splits."""

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, decoders, read_config, shuffle_files
    n = source.spec.num_images
    order = np.random.default_rng(0).permutation(n)
    parts = np.array_split(order, len(source.splits))
    indices = parts[source.splits.index(split)]
    if duplicate:
      indices = np.concatenate([indices, indices[:1]])
    factors = index_to_factors(indices, source.spec.factor_sizes)
    example = {"image": grid_images(name, indices)}
    for k, key in enumerate(source.label_keys):
      example[key] = factors[:, k]
    return tf.data.Dataset.from_tensor_slices(example)

  return as_dataset


def fail_as_dataset(*args, **kwargs):
  raise AssertionError("TFDS was read although the cache exists")


def assert_dataset_invariants(ds, rng, expected=None):
  """Interface invariants: names/sizes/values, round trip, shapes, dtypes, ranges, the three accessors agree."""
  assert isinstance(ds, FactorDataset)
  sizes = tuple(ds.factor_sizes)
  assert len(ds.factor_names) == len(sizes) == len(ds.factor_values)
  assert [len(v) for v in ds.factor_values] == list(sizes)
  assert len(ds) == int(np.prod(sizes))
  indices = np.concatenate([[0, len(ds) - 1], rng.integers(0, len(ds), 20)])
  factors = ds.index_to_factors(indices)
  assert factors.shape == (len(indices), len(sizes))
  assert np.all(factors >= 0) and np.all(factors < np.array(sizes))
  np.testing.assert_array_equal(ds.factors_to_index(factors), indices)
  np.testing.assert_array_equal(factors[0], 0)
  np.testing.assert_array_equal(factors[1], np.array(sizes) - 1)  # Index N - 1: every factor at its last value.
  images = ds.images(indices)
  assert images.shape == (len(indices), *ds.image_shape) and images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0
  np.testing.assert_array_equal(ds.images_of_factors(factors), images)
  np.testing.assert_array_equal(ds.image_range(0, 3), ds.images(np.arange(3)))
  if expected is not None:
    np.testing.assert_allclose(images, expected(indices), atol=1e-6)
  with pytest.raises(IndexError):
    ds.images(np.array([len(ds)]))
  with pytest.raises(ValueError):
    ds.images(np.zeros((2, 2), np.int64))


def test_registry_names():
  for name in ("dsprites_procedural", "shapes3d_procedural", "dsprites", "shapes3d", "smallnorb", "celeb_a", "cars3d",
               "faces3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real"):
    assert name in DATASETS
  assert FACTORLESS_DATASETS == ("celeb_a",)
  with pytest.raises(ValueError, match="Unknown data.name"):
    get_dataset(ml_collections.ConfigDict({"name": "mnist"}))


@pytest.mark.parametrize("name", GRID_NAMES)
def test_sources_match_the_tfds_feature_specs(name, tmp_path):
  source = tfds_datasets.SOURCES[name]
  features = source.make_builder(str(tmp_path)).info.features  # No download: the builder's code only.
  assert len(source.label_keys) == len(source.spec.factor_sizes)
  for key, size in zip(source.label_keys, source.spec.factor_sizes):
    assert features[key].num_classes == size, key
  assert tuple(features["image"].shape) == TFDS_IMAGE_SHAPES[name]
  assert not list(tmp_path.iterdir())  # Looking at the spec wrote nothing.


def test_real_grid_sizes():
  assert tfds_datasets.SOURCES["dsprites"].spec.num_images == 737_280
  assert tfds_datasets.SOURCES["shapes3d"].spec.num_images == 480_000
  norb = tfds_datasets.SOURCES["smallnorb"]
  assert norb.spec.factor_names == ("category", "instance", "elevation", "azimuth", "lighting")
  assert norb.spec.factor_sizes == (5, 10, 9, 18, 6) and norb.spec.num_images == 48_600
  assert norb.nuisance_factors == ("instance",) and norb.image_shape == (64, 64, 1)
  # Facts of the real grids: dSprites shares the procedural grid's labels and MIG exclusion.
  dsprites = tfds_datasets.SOURCES["dsprites"].spec
  assert dsprites.factor_value_labels[0] == ("square", "ellipse", "heart") and dsprites.mig_excluded_factors == ("shape",)
  shapes3d = tfds_datasets.SOURCES["shapes3d"].spec
  assert shapes3d.factor_value_labels[4] == ("cube", "cylinder", "sphere", "capsule")
  assert shapes3d.mig_excluded_factors == () and norb.spec.factor_value_labels == (None,) * 5


@pytest.mark.parametrize("name", GRID_NAMES)
def test_grid_from_mocked_tfds_is_in_grid_order_and_cached(name, tmp_path):
  source = small_source(name)
  with tfds.testing.mock_data(as_dataset_fn=serve_grid(name, source)):
    ds = tfds_datasets.load_grid(source, str(tmp_path), cache="memory")
  assert ds.name == name and ds.image_shape == tuple(source.image_shape) and ds.in_memory
  assert ds.nuisance_factors == source.nuisance_factors
  assert ds.procedural is False and dataset_note(ds) == ""
  assert_dataset_invariants(ds, np.random.default_rng(0), lambda i: expected_images(name, i))
  np.testing.assert_allclose(ds.images(np.arange(len(ds))), expected_images(name, np.arange(len(ds))), atol=1e-6)
  caches = glob.glob(str(tmp_path / "vae_jax_cache" / "*"))
  assert len(caches) == 1 and caches[0].endswith(".npy"), caches  # No temporary file left.
  if source.packed:
    assert np.load(caches[0]).shape == (len(ds), 64 * 64 // 8)

  with tfds.testing.mock_data(as_dataset_fn=fail_as_dataset):  # Second use: the cache alone.
    again = tfds_datasets.load_grid(source, str(tmp_path), cache="mmap")
  assert not again.in_memory
  np.testing.assert_array_equal(again.images(np.arange(len(ds))), ds.images(np.arange(len(ds))))


@pytest.mark.parametrize("name", GRID_NAMES)
def test_incomplete_tfds_data_gives_one_error_and_no_cache(name, tmp_path):
  # mock_data's default examples carry random labels: most grid cells stay empty.
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(DatasetFileError, match="incomplete") as info:
      get_dataset(ml_collections.ConfigDict({"name": name, "data_dir": str(tmp_path), "cache": "auto"}))
  message = str(info.value)
  assert f"python -m vae_jax.data.build {name} --data_dir={tmp_path}" in message
  # Mocked splits repeat the same examples, so smallnorb's second split repeats cells.
  assert "grid cells have no image" in message or "a grid cell appears twice" in message
  assert not glob.glob(str(tmp_path / "vae_jax_cache" / "*"))


def test_duplicate_grid_cell_is_an_error(tmp_path):
  source = small_source("shapes3d")
  with tfds.testing.mock_data(as_dataset_fn=serve_grid("shapes3d", source, duplicate=True)):
    with pytest.raises(DatasetFileError, match="appears twice"):
      tfds_datasets.load_grid(source, str(tmp_path))
  assert not glob.glob(str(tmp_path / "vae_jax_cache" / "*"))


@pytest.mark.parametrize("name", ["dsprites", "celeb_a"])
def test_failed_download_says_where_the_data_goes_and_what_to_run(name, tmp_path, monkeypatch):
  def offline(self, *args, **kwargs):
    raise ConnectionError("Network is unreachable")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
  with pytest.raises(DatasetFileError) as info:
    get_dataset(ml_collections.ConfigDict({"name": name, "data_dir": str(tmp_path), "cache": "auto"}))
  message = str(info.value)
  assert message.startswith(f"{name}: the prepared TFDS dataset {tmp_path}/{name}/")
  assert "ConnectionError: Network is unreachable" in message
  assert "On a machine with network access run" in message
  assert f"python -m vae_jax.data.build {name} --data_dir={tmp_path}" in message
  assert "--config.data.data_dir=DIR" in message
  assert info.value.__cause__ is None and info.value.__suppress_context__  # One error, not a chain.
  assert not glob.glob(str(tmp_path / "vae_jax_cache" / "*"))


def test_celeba_images_and_attributes(tmp_path):
  with tfds.testing.mock_data(num_examples=5):
    ds = get_dataset(ml_collections.ConfigDict({"name": "celeb_a", "data_dir": str(tmp_path), "cache": "auto"}))
  assert ds.name == "celeb_a" and len(ds) == 5 and ds.image_shape == (64, 64, 3)
  assert ds.factor_names == () and ds.factor_sizes == () and ds.factor_values == () and not ds.has_factors
  images = ds.images(np.array([4, 0, 2]))
  assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.05
  np.testing.assert_array_equal(ds.image_range(0, 5)[[4, 0, 2]], images)
  attributes = ds.attributes(np.array([4, 0, 2]))
  assert attributes.shape == (3, 40) and attributes.dtype == bool
  assert ds.attribute_names == tuple(tfds_datasets.CELEBA_ATTRIBUTES) and len(ds.attribute_names) == 40
  with tfds.testing.mock_data(as_dataset_fn=fail_as_dataset):
    again = get_dataset(ml_collections.ConfigDict({"name": "celeb_a", "data_dir": str(tmp_path), "cache": "mmap"}))
  np.testing.assert_array_equal(again.images(np.array([4, 0, 2])), images)
  np.testing.assert_array_equal(again.attributes(np.array([4, 0, 2])), attributes)


def test_celeba_crop_is_the_centre_148_square_resized_to_64():
  image = np.zeros((218, 178, 3), np.uint8)
  image[35:183, 15:163] = 200  # The crop: rows 35-182, columns 15-162.
  out = tfds_datasets.celeba_crop_and_resize(tf.constant(image)).numpy()
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, 200)
  image[35:183, 15:89] = 0  # Left half of the crop dark: the left half of the output dark.
  out = tfds_datasets.celeba_crop_and_resize(tf.constant(image)).numpy()
  assert np.all(out[:, :31] == 0) and np.all(out[:, 33:] == 200)


def test_array_grid_packed_bits_round_trip():
  spec = GridSpec(("a", "b"), (2, 3), (np.arange(2.0), np.arange(3.0)))
  images = (np.random.default_rng(0).random((6, 4, 4, 1)) > 0.5).astype(np.uint8)
  ds = arrays.ArrayGrid("toy", spec, np.packbits(images.reshape(6, -1), axis=1), (4, 4, 1), packed=True)
  np.testing.assert_array_equal(ds.images(np.arange(6)), images.astype(np.float32))
  np.testing.assert_array_equal(ds.uint8_images(np.array([5, 1])), images[[5, 1]])
  assert_dataset_invariants(ds, np.random.default_rng(1))


def test_array_datasets_carry_the_facts():
  spec = GridSpec(("a", "b", "c"), (2, 3, 2), (np.arange(2.0), np.arange(3.0), np.arange(2.0)),
                  factor_value_labels=(None, ("x", "y", "z"), None), mig_excluded_factors=("b",),
                  nuisance_factors=("c",))
  ds = arrays.ArrayGrid("toy", spec, np.zeros((12, 2, 2, 1), np.uint8), (2, 2, 1), nuisance_factors=("a", "c"))
  assert isinstance(ds, FactorDataset) and ds.procedural is False and dataset_note(ds) == ""
  assert ds.factor_value_labels == (None, ("x", "y", "z"), None) and ds.mig_excluded_factors == ("b",)
  assert ds.nuisance_factors == ("c", "a")  # The spec's, then the constructor's.
  assert default_mig_factors(ds) == ()
  norb_like = arrays.ArrayGrid("norb", tfds_datasets.SMALLNORB_SPEC, np.zeros((48_600, 1, 1, 1), np.uint8),
                               (1, 1, 1), nuisance_factors=("instance",))
  assert default_mig_factors(norb_like) == (0, 2, 3, 4)
  images = arrays.ArrayImages("faces", np.zeros((3, 2, 2, 3), np.uint8), np.zeros((3, 1), bool), ("x",))
  assert isinstance(images, FactorDataset)
  assert (images.factor_value_labels, images.mig_excluded_factors, images.nuisance_factors, images.procedural) == (
      (), (), (), False)


def test_atomic_npy_leaves_nothing_on_error(tmp_path):
  path = str(tmp_path / "x.npy")
  with pytest.raises(RuntimeError):
    with arrays.atomic_npy(path, (4, 3), np.uint8) as out:
      out[:2] = 1
      raise RuntimeError("interrupted")
  assert not list(tmp_path.iterdir())
  with arrays.atomic_npy(path, (4, 3), np.uint8) as out:
    out[:] = 7
  np.testing.assert_array_equal(np.load(path), 7)
  assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def _load_config(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(), module.__doc__


@pytest.mark.parametrize("name", ["betatcvae_shapes3d", "betavae_celeba", "betavae_3dfaces", "betavae_cars3d",
                                  "betavae_smallnorb", "betavae_mpi3d"])
def test_dataset_configs_validate_and_document_their_command(name):
  config, doc = _load_config(name)
  configlib.validate_config(config)
  assert f"python -m vae_jax.main --config=configs/{name}.py" in doc
  assert config.data.name in DATASETS


def test_factorless_dataset_needs_factor_metrics_off():
  config = configlib.base_config()
  config.data.name = "celeb_a"
  with pytest.raises(ValueError, match="no ground-truth factors"):
    configlib.validate_config(config)
  config.eval.final = "none"
  configlib.validate_config(config)
  config.data.cache = "ram"
  with pytest.raises(ValueError, match="data.cache"):
    configlib.validate_config(config)


def test_celeba_trains_end_to_end_without_factor_metrics(tmp_path, test_config):
  from vae_jax import train

  config = test_config
  config.data.name = "celeb_a"
  config.data.data_dir = str(tmp_path / "tfds")
  config.eval.final = "none"
  config.batch_size = 8
  config.num_train_steps = 2
  configlib.validate_config(config)
  with tfds.testing.mock_data(num_examples=12):
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["dataset"] == "celeb_a" and results["checkpoint_step"] == 2
  assert np.isfinite(results["train"]["loss"]).all()


# TFDS's download-and-prepare path, run for real on a faked web.
#
# `python -m vae_jax.data.build NAME` (and a first training run) has TFDS download
# the source files and prepare the dataset. These tests run exactly that path --
# TFDS's downloader (requests, Google Drive's confirmation page), checksumming,
# extraction, the dataset's own generator, encoding and writing -- with the web
# served from memory: tiny source files laid out like the real ones, holding a small
# complete grid. Sockets are blocked, so nothing can reach the network. A module that
# TFDS imports on this path but that vae_jax's dependencies do not bring in (as with
# importlib_resources and bs4, which TFDS does not declare) fails the test: either the
# import fails, or the module does not belong to vae_jax's declared dependencies.


class FakeWeb:
  """The source URLs of the TFDS datasets, served from memory by requests' HTTPAdapter.send."""

  DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download"

  def __init__(self):
    self.files = {}  # Prepared URL -> (body, file name).
    self.drive_confirmation = set()  # Drive URLs answered first by the confirmation page of large files.
    self.requested = []

  @staticmethod
  def _key(url):
    import requests

    return requests.Request("GET", url).prepare().url

  def serve(self, url, body, filename, *, drive_confirmation=False):
    self.files[self._key(url)] = (body, filename)
    if drive_confirmation:
      self.drive_confirmation.add(self._key(url))

  def respond(self, url):
    """(status, headers, body) for a GET of `url`."""
    import urllib.parse

    self.requested.append(url)
    if url.startswith(self.DRIVE_DOWNLOAD):  # The confirmed download of a large Drive file.
      query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
      url = self._key(f"https://drive.google.com/uc?export=download&id={query['id'][0]}")
      assert query.get("confirm") == ["t"], url
    elif url in self.drive_confirmation:
      file_id = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["id"][0]
      page = (f'<html><body>Google Drive can\'t scan this file for viruses.<form id="download-form" '
              f'action="{self.DRIVE_DOWNLOAD}" method="get"><input type="hidden" name="id" value="{file_id}">'
              '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
              '<input type="hidden" name="uuid" value="0123"></form></body></html>')
      return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
    if url not in self.files:
      return 404, {"Content-Type": "text/plain"}, b"not found"
    body, filename = self.files[url]
    return 200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(body)),
                 "Content-Disposition": f'attachment; filename="{filename}"'}, body


@pytest.fixture
def fake_web(monkeypatch):
  """A FakeWeb that TFDS downloads from; sockets blocked; no registered checksums (the files are fakes)."""
  import io
  import socket

  import requests
  from requests.structures import CaseInsensitiveDict

  web = FakeWeb()

  def no_network(*args, **kwargs):
    raise OSError("a test tried to reach the network")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)

  def send(adapter, request, **kwargs):
    status, headers, body = web.respond(request.url)
    response = requests.models.Response()
    response.status_code, response.reason = status, "OK" if status == 200 else "Not Found"
    response.headers = CaseInsensitiveDict(headers)
    response.raw = io.BytesIO(body)
    response.url, response.request, response.connection = request.url, request, adapter
    return response

  monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
  init = tfds.download.DownloadManager.__init__

  def init_without_checksums(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self._url_infos = {}  # pylint: disable=protected-access

  monkeypatch.setattr(tfds.download.DownloadManager, "__init__", init_without_checksums)
  return web


def norb_file(array):
  """The NORB binary matrix format of smallnorb's .mat files (uint8 or int32), gzipped."""
  import gzip

  array = np.asarray(array)
  magic = 507333717 if array.dtype == np.uint8 else 507333716
  dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
  header = np.array([magic, array.ndim, *dims], "<i4").tobytes()
  data = array.astype(np.uint8 if magic == 507333717 else "<i4").tobytes()
  return gzip.compress(header + data)


def h5_file(path, arrays):
  """An HDF5 file of `arrays` ({"a/b": array}), as bytes."""
  import h5py

  with h5py.File(path, "w") as f:
    for key, value in arrays.items():
      f[key] = value
  with open(path, "rb") as f:
    return f.read()


def serve_grid_sources(web, name, source, tmp_path):
  """Serves the source files of TFDS dataset `name` holding `source`'s small grid, in shuffled order."""
  n = source.spec.num_images
  order = np.random.default_rng(0).permutation(n)
  factors = index_to_factors(order, source.spec.factor_sizes)
  if name == "dsprites":  # latents: (color, shape, scale, orientation, posX, posY).
    classes = np.concatenate([np.zeros((n, 1), np.int64), factors], axis=1)
    body = h5_file(tmp_path / "dsprites.hdf5", {"imgs": grid_images(name, order)[..., 0],
                                                 "latents/classes": classes, "latents/values": classes * 1.0})
    web.serve("https://github.com/deepmind/dsprites-dataset/blob/master/"
              "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5?raw=true", body,
              "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5")
  elif name == "shapes3d":  # TFDS ranks each label column's values: values 0..k-1 give labels 0..k-1.
    body = h5_file(tmp_path / "3dshapes.h5", {"images": grid_images(name, order), "labels": factors * 1.0})
    web.serve("https://storage.googleapis.com/3d-shapes/3dshapes.h5", body, "3dshapes.h5")
  elif name == "smallnorb":  # Half the cells in "training", half in "testing", like serve_grid.
    for part, (kind, prefix) in zip(np.array_split(np.arange(n), 2),
                                    [("training", "5x46789"), ("testing", "5x01235")]):
      f = factors[part]
      images = grid_images(name, order[part])[..., 0]
      info = np.stack([f[:, 1], f[:, 2], f[:, 3] * 2, f[:, 4]], axis=1)  # Azimuths are stored doubled.
      for suffix, array in [("dat", np.stack([images, images], axis=1).astype(np.uint8)),
                            ("cat", f[:, 0].astype(np.int32)), ("info", info.astype(np.int32))]:
        filename = f"smallnorb-{prefix}x9x18x6x2x96x96-{kind}-{suffix}.mat.gz"
        web.serve(f"https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/{filename}", norb_file(array), filename)
  else:
    raise ValueError(name)


CELEBA_FILES = 5  # 000001.jpg ... 000005.jpg: three in train, one each in validation and test.


def celeba_level(i):
  return np.array([(40 * i + 20) % 256, (90 * i + 60) % 256, (150 * i + 30) % 256], np.uint8)


def serve_celeba_sources(web):
  """Serves CelebA's five Google Drive files; returns (the train split's files, attributes bool [5, 40])."""
  import io
  import zipfile

  from PIL import Image

  drive = "https://drive.google.com/uc?export=download&id="
  names = [f"{i + 1:06d}.jpg" for i in range(CELEBA_FILES)]
  archive = io.BytesIO()
  with zipfile.ZipFile(archive, "w") as zf:
    for i, name in enumerate(names):  # Constant colours: JPEG keeps them within a level or two.
      jpeg = io.BytesIO()
      Image.fromarray(np.broadcast_to(celeba_level(i), (218, 178, 3)).copy()).save(jpeg, "JPEG", quality=95)
      zf.writestr(f"img_align_celeba/{name}", jpeg.getvalue())
  attributes = np.random.default_rng(0).random((CELEBA_FILES, 40)) > 0.5
  attr_rows = [f"{name} " + " ".join("1" if a else "-1" for a in row) for name, row in zip(names, attributes)]
  landmark_names = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x " \
                   "rightmouth_y"
  files = {
      # The 1.4 GB image archive: Drive answers with its "can't scan for viruses" page first.
      "0B7EVK8r0v71pZjFTYXZWM3FlRnM": (archive.getvalue(), "img_align_celeba.zip"),
      "0B7EVK8r0v71pY0NSMzRuSXJEVkk": ("".join(f"{name} {p}\n" for name, p in zip(names, [0, 0, 1, 0, 2])),
                                       "list_eval_partition.txt"),
      "0B7EVK8r0v71pblRyaVFSWGxPY0U": (f"{CELEBA_FILES}\n{' '.join(tfds_datasets.CELEBA_ATTRIBUTES)}\n"
                                       + "\n".join(attr_rows) + "\n", "list_attr_celeba.txt"),
      "0B7EVK8r0v71pd0FJY3Blby1HUTQ": (f"{CELEBA_FILES}\n{landmark_names}\n"
                                       + "".join(f"{name} {' '.join(['50'] * 10)}\n" for name in names),
                                       "list_landmarks_align_celeba.txt"),
      "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS": ("".join(f"{name} {i + 1}\n" for i, name in enumerate(names)),
                                            "identity_CelebA.txt"),
  }
  for file_id, (body, filename) in files.items():
    web.serve(drive + file_id, body.encode() if isinstance(body, str) else body, filename,
              drive_confirmation=filename.endswith(".zip"))
  return [i for i, p in enumerate([0, 0, 1, 0, 2]) if p == 0], attributes


def _requirement_closure():
  """Normalised names of the distributions vae_jax's declared dependencies bring in (all markers evaluated)."""
  import importlib.metadata
  import re

  from packaging.markers import default_environment
  from packaging.requirements import Requirement

  seen, todo = {}, [("vae_jax", frozenset())]
  while todo:
    name, extras = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen and extras <= seen[key]:
      continue
    seen[key] = seen.get(key, frozenset()) | extras
    try:
      requirements = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
      continue  # Declared but not installed here: the import itself would fail.
    for text in requirements:
      requirement = Requirement(text)
      if requirement.marker is not None and not any(
          requirement.marker.evaluate(dict(default_environment(), extra=e)) for e in (extras or {""})):
        continue
      todo.append((requirement.name, frozenset(requirement.extras)))
  return set(seen)


# Modules TFDS imports on its download-and-prepare path without declaring them (checked even if an
# earlier test imported them already).
TFDS_UNDECLARED_IMPORTS = ("importlib_resources", "bs4")


def assert_imports_are_declared(modules):
  """Every non-standard-library module in `modules` comes from a distribution vae_jax depends on."""
  import importlib.metadata
  import re
  import sys

  owners = importlib.metadata.packages_distributions()
  closure = _requirement_closure()
  undeclared = {}
  for module in sorted(set(modules) | set(TFDS_UNDECLARED_IMPORTS)):
    if module in sys.stdlib_module_names or module in sys.builtin_module_names or module in ("vae_jax", "__main__"):
      continue
    dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(module, [])}
    if dists and not dists & closure:
      undeclared[module] = sorted(dists)
  assert not undeclared, (f"TFDS's download-and-prepare path imports modules that vae_jax does not declare "
                          f"(add their distributions to pyproject.toml dependencies): {undeclared}")


def top_level_modules():
  import sys

  return {name.split(".")[0] for name in list(sys.modules)}


@pytest.mark.parametrize("name", GRID_NAMES)
def test_tfds_downloads_and_prepares_each_grid_from_the_web(name, tmp_path, fake_web):
  source = small_source(name)
  serve_grid_sources(fake_web, name, source, tmp_path)
  before = top_level_modules()
  ds = tfds_datasets.load_grid(source, str(tmp_path / "tfds"), cache="memory")  # TFDS prepares it: nothing exists.
  assert_imports_are_declared(top_level_modules() - before)
  assert fake_web.requested and all(url.startswith("https://") for url in fake_web.requested)
  assert (tmp_path / "tfds" / name).is_dir()  # TFDS's prepared dataset, in the data dir.
  np.testing.assert_allclose(ds.images(np.arange(len(ds))), expected_images(name, np.arange(len(ds))), atol=1e-6)


def test_tfds_downloads_and_prepares_celeba_from_google_drive(tmp_path, fake_web):
  train, attributes = serve_celeba_sources(fake_web)
  before = top_level_modules()
  ds = tfds_datasets.load_celeba(str(tmp_path / "tfds"), cache="memory")
  assert_imports_are_declared(top_level_modules() - before)
  assert any(url.startswith(FakeWeb.DRIVE_DOWNLOAD) for url in fake_web.requested)  # Went through the confirmation.
  assert len(ds) == len(train) and ds.image_shape == (64, 64, 3)
  # TFDS orders a split by a hash of the file names; each image's colour says which file it is.
  images = ds.images(np.arange(len(ds)))
  levels = np.stack([celeba_level(i) for i in range(CELEBA_FILES)]) / 255.0
  which = [int(np.argmin(np.abs(levels - image.mean(axis=(0, 1))).sum(axis=1))) for image in images]
  assert sorted(which) == train
  np.testing.assert_allclose(images, np.broadcast_to(levels[which][:, None, None, :], images.shape), atol=3 / 255)
  np.testing.assert_array_equal(ds.attributes(np.arange(len(ds))), attributes[which])


@pytest.mark.parametrize("name", ["cars3d", "faces3d", "mpi3d/toy"])
def test_manual_builders_reach_their_files_through_tfds(name, tmp_path, fake_web):
  # The real registered builders: TFDS's download-and-prepare imports what it needs, then
  # the builder looks for its manual files and says which one is missing.
  from vae_jax.data import manual_datasets  # noqa: F401  # Registers the builders.

  before = top_level_modules()
  builder = tfds.builder(name, data_dir=str(tmp_path))
  config = tfds.download.DownloadConfig(manual_dir=tfds_datasets.manual_dir(str(tmp_path)))
  with pytest.raises(DatasetFileError, match="missing file"):
    builder.download_and_prepare(download_config=config)
  assert_imports_are_declared(top_level_modules() - before)
  assert not fake_web.requested


def test_a_missing_package_is_named_not_blamed_on_the_network(tmp_path, fake_web, monkeypatch):
  import sys

  serve_celeba_sources(fake_web)
  monkeypatch.setitem(sys.modules, "bs4", None)  # As if beautifulsoup4 were not installed.
  with pytest.raises(DatasetFileError) as info:
    get_dataset(ml_collections.ConfigDict({"name": "celeb_a", "data_dir": str(tmp_path), "cache": "auto"}))
  message = str(info.value)
  assert message.startswith("celeb_a: TFDS cannot download and prepare the dataset: it needs the Python package "
                            "beautifulsoup4 (module bs4), which is not installed.")
  assert "pip install beautifulsoup4" in message
  assert f"python -m vae_jax.data.build celeb_a --data_dir={tmp_path}" in message
  assert "network" not in message
  assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_module_finds_the_module_in_the_exception_chain():
  try:
    try:
      import vae_jax_no_such_module  # noqa: F401
    except ImportError as e:
      raise RuntimeError("wrapped") from e
  except RuntimeError as e:
    assert tfds_datasets.missing_module(e) == "vae_jax_no_such_module"
  assert tfds_datasets.missing_module(ModuleNotFoundError("No module named 'bs4.builder'")) == "bs4"
  assert tfds_datasets.missing_module(ConnectionError("Network is unreachable")) is None
