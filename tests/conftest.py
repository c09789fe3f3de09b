"""Test set-up: four CPU devices, so data parallelism is exercised on one machine, and one
persistent XLA compilation cache for the whole test run.

The cache (a temporary directory, removed at exit) is shared through the environment with
every subprocess the tests start: the many runs of `vae_jax.main` on configs/test.py
(kill and resume, sharded and multi-process runs, sweeps) compile the same programs, and
compile once. Its key covers the program, the XLA flags (device count) and the compile
options, so runs on other device counts get their own entries.
"""

import atexit
import os
import shutil
import tempfile

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="vae_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

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
