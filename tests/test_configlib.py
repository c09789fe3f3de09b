"""Configs: every shipped config validates; bad values and unknown keys are clear errors."""

import importlib.util
import pathlib

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
