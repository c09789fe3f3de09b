"""Configs: every shipped config validates; bad values and unknown keys are clear errors."""

import importlib.util
import json
import pathlib
import re

import pytest

from vae_jax import configlib

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


def load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_validate_and_document_their_command(path):
  config = load(path)
  configlib.validate_config(config)
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert f"--config=configs/{path.name}" in module.__doc__


@pytest.mark.parametrize("dataset", ["dsprites", "shapes3d", "smallnorb", "cars3d", "faces3d", "mpi3d_real"])
def test_conv64_betavae_config_is_a_valid_run_of_that_dataset(dataset):
  config = configlib.conv64_betavae_config(dataset, beta=8.0, latent_dim=16)
  configlib.validate_config(config)
  changed = configlib.config_differences(configlib.flatten(configlib.base_config().to_dict()), config)
  assert changed["data.name"][1] == dataset and changed["loss.beta"][1] == 8.0
  assert changed["model.latent_dim"][1] == 16 and changed["model.architecture"][1] == "conv64"
  assert config.loss.objective == "betavae" and configlib.member_betas(config) == (8.0,)


def test_unknown_key_is_rejected():
  config = configlib.base_config()
  with pytest.raises(AttributeError):
    config.loss.betta = 4.0
  with pytest.raises(KeyError):
    config.update_from_flattened_dict({"model.latent_dims": 3})


@pytest.mark.parametrize("key,value,message", [
    ("loss.objective", "tcvae", "loss.objective"),
    ("loss.estimator", "xyz", "loss.estimator"),
    ("model.architecture", "resnet", "model.architecture"),
    ("data.name", "mnist", "data.name"),
    ("batch_size", 1, "batch_size"),
])
def test_bad_values_name_the_key(key, value, message):
  config = configlib.base_config()
  config.update_from_flattened_dict({key: value})
  with pytest.raises(ValueError, match=message):
    configlib.validate_config(config)


def test_member_betas():
  config = configlib.base_config()
  config.ensemble.num_members = 3
  assert configlib.member_betas(config) == (6.0, 6.0, 6.0)
  config.ensemble.betas = (1.0, 2.0, 4.0)
  assert configlib.member_betas(config) == (1.0, 2.0, 4.0)
  config.ensemble.betas = (1.0, 2.0)
  with pytest.raises(ValueError, match="one value per member"):
    configlib.validate_config(config)


def test_shrink_to_test_size_keeps_a_valid_config_and_the_experiment():
  config = configlib.base_config()
  config.loss.objective = "betavae"
  config.num_train_steps = 1234
  small = configlib.shrink_to_test_size(config)
  configlib.validate_config(small)
  assert small.loss.objective == "betavae" and small.num_train_steps == 1234  # The experiment is untouched.
  assert small.model.mlp_width * small.model.latent_dim < 1200 * 10 / 20 and small.eval.final == "subset"
  assert max(small.eval.mig_samples, small.eval.histogram_points, small.eval.subset_images) <= 1000


@pytest.mark.parametrize("key,value,message", [
    ("data.holdout", "foo=1", "unknown factor 'foo'"),
    ("data.holdout", "shape", "not of the form factor=value"),
    ("data.holdout", "shape=7", "shape='7' is not a value index"),
    ("data.holdout", "shape=0:3", "holds out every image"),
    ("eval.mig_factors", ("scale", "colour"), "eval.mig_factors names ['colour']"),
])
def test_settings_naming_the_dataset_are_checked_up_front(key, value, message):
  config = configlib.base_config()
  config.update_from_flattened_dict({key: value})
  with pytest.raises(ValueError, match=re.escape(message)):
    configlib.validate_config(config)


def test_a_real_dataset_s_names_are_checked_against_the_loaded_dataset():
  from vae_jax.data.dsprites import ProceduralDSprites

  config = configlib.base_config()
  config.data.name = "dsprites"  # Not loaded by validate_config: checked once loaded.
  config.data.holdout = "colour=1"
  configlib.validate_config(config)
  with pytest.raises(ValueError, match="unknown factor 'colour'"):
    configlib.validate_config(config, ProceduralDSprites())
  config.data.holdout = "shape=heart"
  configlib.validate_dataset(config, ProceduralDSprites())


def test_config_differences_ignore_only_the_resumable_keys():
  config = configlib.base_config()
  saved = json.loads(config.to_json())
  for key, value in [("num_train_steps", 9), ("eval.final", "none"), ("eval.metrics", ("mig",)),
                     ("log_every_steps", 7), ("checkpoint_every_steps", 7), ("max_checkpoints_to_keep", 9),
                     ("data.prefetch", 1), ("data.workers", 1), ("data.pipeline", "numpy"), ("data.data_dir", "/x"),
                     ("data.cache", "mmap"), ("multi_host", True)]:
    config.update_from_flattened_dict({key: value})
  assert configlib.config_differences(saved, config) == {}
  config.update_from_flattened_dict({"loss.beta": 2.0, "ensemble.betas": (1.0,), "data.holdout": "shape=2",
                                     "seed": 4})
  assert configlib.config_differences(saved, config) == {
      "data.holdout": ("", "shape=2"), "ensemble.betas": ([], [1.0]), "loss.beta": (6.0, 2.0), "seed": (0, 4)}
  del saved["loss"]["beta"]  # A key the saved config lacks (written before it existed) is not compared.
  assert "loss.beta" not in configlib.config_differences(saved, config)
