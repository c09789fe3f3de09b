"""The command line end to end: train, kill -9 and resume exactly, evaluate, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO

ENV = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_main(*args, check=True, timeout=300):
  cmd = [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", *args]
  proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
  return proc


def latest_params(workdir):
  from vae_jax import checkpoints, models, train
  from vae_jax.data import get_dataset
  import importlib.util

  spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / "test.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  dataset = get_dataset(config.data)
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(train.create_ensemble_state(config, model, dataset.image_shape))
  ckpt.close()
  return int(state.step[0]), [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_train_writes_checkpoints_events_and_metrics(tmp_path):
  proc = run_main(f"--workdir={tmp_path}")
  files = os.listdir(tmp_path)
  assert {"config.json", "metrics.json", "checkpoints"} <= set(files)
  assert any(f.startswith("events.out.tfevents") for f in files)
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["checkpoint_step"] == 6 and metrics["dataset"] == "dsprites_procedural"
  member = metrics["members"][0]
  assert 0.0 <= member["mig"]["value"] <= 1.0
  assert member["mig"]["factors"] == ["scale", "orientation", "posX", "posY"]  # Chen et al.: shape left out.
  assert member["mig_histogram"]["factors"][0] == "shape"
  assert np.isfinite(member["likelihood"]["log_px_iw"])
  assert member["likelihood"]["log_px_iw"] >= member["likelihood"]["elbo"] - 1.0
  assert "steps/s" in proc.stderr and "ETA" in proc.stderr  # Progress is shown.
  figures = set(os.listdir(tmp_path / "figures"))
  assert {"traversal_grid.png", "reconstructions.png", "latent_vs_factor.png", "mi_heatmap.png",
          "prior_samples.png", "traversal_latent0.gif"} <= figures


def test_kill_9_then_rerun_resumes_exactly(tmp_path):
  args = ["--config.num_train_steps=40", "--config.checkpoint_every_steps=10", "--config.eval.final=none",
          "--config.eval.figures=False"]
  run_main(f"--workdir={tmp_path / 'straight'}", *args)
  cmd = [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={tmp_path / 'killed'}", *args,
         "--config.data.prefetch=1"]
  proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = tmp_path / "killed" / "checkpoints"
  for _ in range(4800):  # Poll for up to about 4 minutes.
    if ckpt_dir.exists() and any(d.isdigit() for d in os.listdir(ckpt_dir)):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)  # Mid-run: after the first checkpoint started, before the end.
  proc.wait()
  step_before, _ = latest_params(tmp_path / "killed") if any(
      d.isdigit() for d in os.listdir(ckpt_dir)) else (0, None)
  assert step_before < 40
  run_main(f"--workdir={tmp_path / 'killed'}", *args)
  step_a, straight = latest_params(tmp_path / "straight")
  step_b, resumed = latest_params(tmp_path / "killed")
  assert step_a == step_b == 40
  for a, b in zip(straight, resumed):
    np.testing.assert_array_equal(a, b)


def test_evaluate_mode_writes_metrics(tmp_path):
  run_main(f"--workdir={tmp_path}", "--config.eval.final=none", "--config.eval.figures=False")
  assert json.loads((tmp_path / "metrics.json").read_text())["members"][0].get("mig") is None
  # The test config evaluates a sub-grid (the default, eval.final="full", takes the whole grid).
  run_main(f"--workdir={tmp_path}", "--mode=evaluate", "--config.eval.final=subset")
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["checkpoint_step"] == 6
  member = metrics["members"][0]
  assert member["images"] == int(np.prod(member["subgrid_sizes"])) <= 600
  assert 0.0 <= member["mig"]["value"] <= 1.0


def test_missing_checkpoint_for_evaluate_is_a_clear_error(tmp_path):
  proc = run_main(f"--workdir={tmp_path}", "--mode=evaluate", check=False)
  assert proc.returncode != 0 and "No checkpoint under" in proc.stderr


@pytest.mark.parametrize("flag,message", [
    ("--config.loss.betta=3", "unknown config key(s) 'loss.betta'"),
    ("--config.batch_size=abc", "--config.batch_size"),
    ("--config.loss.objective=tcvae", "loss.objective"),
])
def test_bad_config_is_one_clear_error(tmp_path, flag, message):
  proc = run_main(f"--workdir={tmp_path}", flag, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr or "Invalid config" in proc.stderr
