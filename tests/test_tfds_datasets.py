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
from vae_jax.data.grid import GridSpec, index_to_factors  # noqa: E402

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


@pytest.mark.parametrize("name", GRID_NAMES)
def test_grid_from_mocked_tfds_is_in_grid_order_and_cached(name, tmp_path):
  source = small_source(name)
  with tfds.testing.mock_data(as_dataset_fn=serve_grid(name, source)):
    ds = tfds_datasets.load_grid(source, str(tmp_path), cache="memory")
  assert ds.name == name and ds.image_shape == tuple(source.image_shape) and ds.in_memory
  assert ds.nuisance_factors == source.nuisance_factors
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
