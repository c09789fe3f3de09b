"""Test set-up: four CPU devices, so data parallelism is exercised on one machine."""

import os

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def test_config():
  """configs/test.py's config (tiny MLP β-TCVAE on procedural dSprites), unlocked for edits."""
  import importlib.util

  spec = importlib.util.spec_from_file_location("test_config_module", REPO / "configs" / "test.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
