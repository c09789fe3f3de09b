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
  from vae_jax import checkpoints, rundir
  from vae_jax.data import get_dataset
  import importlib.util

  spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / "test.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  dataset = get_dataset(config.data)
  *_, target = rundir.build(config, dataset, len(dataset))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  return int(state.step[0]), [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_train_writes_checkpoints_events_and_metrics(tmp_path):
  proc = run_main(f"--workdir={tmp_path}", "--config.tensorboard=True")
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
  # configs/test.py logs to metrics.jsonl (config.tensorboard False): every step's scalars, no event file.
  assert not any(f.startswith("events.out") for f in os.listdir(tmp_path / "straight"))
  with open(tmp_path / "straight" / "metrics.jsonl") as f:
    logged = [json.loads(line) for line in f]
  assert [r["step"] for r in logged if "loss" in r] == list(range(2, 41, 2))
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


QUICK = ["--config.num_train_steps=2", "--config.eval.final=none", "--config.eval.figures=False"]


def run_cli(*args, timeout=300):
  """`python -m vae_jax.main ARGS` (no default --config); the finished process."""
  return subprocess.run([sys.executable, "-m", "vae_jax.main", *args], cwd=REPO, env=ENV, capture_output=True,
                        text=True, timeout=timeout)


def error_lines(proc):
  """stderr's non-empty lines, after asserting the command failed."""
  assert proc.returncode != 0, proc.stderr[-3000:]
  return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("args,message", [
    (["--config", "configs/test.py", "--config.loss.betta=3"], "unknown config key(s) 'loss.betta'"),
    (["--config", "configs/missing.py"], "config file 'configs/missing.py' does not exist"),
    (["--config=configs/test.py", "--config.data.holdout=foo=1"], "unknown factor 'foo'"),
    (["--config=configs/test.py", "--config.eval.mig_factors=('colour',)"], "eval.mig_factors names ['colour']"),
    (["--config=configs/test.py", "--mode=generate", "--member=2", "--latents=0,0,0,0"], "--member=2 does not exist"),
    (["--config=configs/test.py", "--mode=evaluate"], "No checkpoint under"),
], ids=["config_space_unknown_key", "config_space_missing_file", "holdout", "mig_factors", "member", "no_checkpoint"])
def test_bad_input_is_at_most_two_lines_and_writes_nothing(tmp_path, args, message):
  workdir = tmp_path / "typo"
  lines = error_lines(run_cli(f"--workdir={workdir}", *args, *QUICK))
  assert len(lines) <= 2, lines
  assert message in lines[0]
  assert not workdir.exists()  # Not even for the read-only modes' checkpoints/ or the lock.


def test_verbose_adds_the_traceback_and_the_message_comes_last(tmp_path):
  lines = error_lines(run_cli("--config=configs/test.py", f"--workdir={tmp_path / 'typo'}", "--mode=visualize",
                              "--verbose"))
  assert lines[0].startswith("Traceback") and "FileNotFoundError" in "\n".join(lines)
  assert lines[-1].startswith("Error: No checkpoint under")


def test_a_trained_workdir_refuses_another_config_and_fewer_steps(tmp_path):
  run_main(f"--workdir={tmp_path}", *QUICK)
  config_json = (tmp_path / "config.json").read_bytes()
  metrics_json = (tmp_path / "metrics.json").read_bytes()
  proc = run_main(f"--workdir={tmp_path}", *QUICK, "--config.loss.beta=2", "--config.model.latent_dim=3", check=False)
  lines = error_lines(proc)
  assert len(lines) <= 2 and "trained with another config" in lines[0]
  assert "loss.beta=2.0 (config.json: 6.0)" in lines[0] and "model.latent_dim=3" in lines[0]
  proc = run_main(f"--workdir={tmp_path}", *QUICK, "--config.num_train_steps=1", check=False)
  lines = error_lines(proc)
  assert len(lines) <= 2 and "is at step 2" in lines[0] and "--config.num_train_steps>=2" in lines[0]
  assert (tmp_path / "config.json").read_bytes() == config_json
  assert (tmp_path / "metrics.json").read_bytes() == metrics_json
  # Keys that may change on resume do not count.
  run_main(f"--workdir={tmp_path}", *QUICK, "--config.num_train_steps=3", "--config.log_every_steps=1",
           "--config.data.prefetch=1")
  assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint_step"] == 3


def test_a_second_process_on_a_workdir_stops_at_once_naming_the_first(tmp_path):
  first = subprocess.Popen(
      [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={tmp_path}",
       "--config.num_train_steps=1000000", "--config.eval.final=none", "--config.eval.figures=False"],
      cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    lock = tmp_path / ".lock"
    for _ in range(2400):  # Up to about 2 minutes for the first to start.
      if lock.exists() and lock.read_text().strip():
        break
      time.sleep(0.05)
    assert lock.read_text().strip() == str(first.pid)
    for mode in ("train", "evaluate"):
      while mode == "evaluate" and not (tmp_path / "checkpoints").is_dir() and first.poll() is None:
        time.sleep(0.05)
      lines = error_lines(run_main(f"--workdir={tmp_path}", f"--mode={mode}", "--config.eval.final=none",
                                   "--config.eval.figures=False", check=False))
      assert len(lines) == 1 and f"in use by another vae_jax process (PID {first.pid})" in lines[0], lines
    assert first.poll() is None
  finally:
    first.kill()
    first.wait()


def test_a_nan_loss_is_the_last_line_and_says_there_is_no_checkpoint(tmp_path):
  proc = run_main(f"--workdir={tmp_path}", "--config.optimizer.learning_rate=1e30", "--config.num_train_steps=1000",
                  "--config.checkpoint_every_steps=500", "--config.eval.final=none", check=False)
  lines = error_lines(proc)
  assert lines[-1].startswith("Error: The loss became NaN or Inf at step ")
  assert "no checkpoint was written" in lines[-1]
  assert "Traceback" not in proc.stderr
