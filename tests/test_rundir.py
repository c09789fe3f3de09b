"""A run on disk: the workdir's lock, its config check, and restoring without creating anything."""

import os

import pytest

from vae_jax import checkpoints, rundir, workdir_lock
from vae_jax.data.dsprites import ProceduralDSprites


def test_a_workdir_trained_with_another_config_is_refused_naming_the_keys(tmp_path, test_config):
  rundir.check_workdir_config(str(tmp_path), test_config)  # No config.json yet: a new run.
  rundir.write_config(str(tmp_path), test_config)
  test_config.num_train_steps = 60
  test_config.eval.final = "none"
  rundir.check_workdir_config(str(tmp_path), test_config)  # Resumable keys may change.
  test_config.loss.beta = 2.0
  test_config.model.latent_dim = 3
  with pytest.raises(rundir.WorkdirConfigError, match=r"loss\.beta=2\.0 \(config\.json: 6\.0\), "
                                                      r"model\.latent_dim=3 \(config\.json: 4\)") as e:
    rundir.check_workdir_config(str(tmp_path), test_config)
  assert isinstance(e.value, ValueError) and len(str(e.value).splitlines()) == 2


def test_an_unreadable_config_json_is_one_clear_error(tmp_path, test_config):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(rundir.WorkdirConfigError, match="Cannot read .*config.json"):
    rundir.check_workdir_config(str(tmp_path), test_config)


def test_restore_run_checks_the_config_before_loading_anything(tmp_path, test_config):
  *_, state = rundir.build(test_config, ProceduralDSprites(), 100)
  ckpt = checkpoints.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, state, force=True)
  ckpt.close()
  rundir.write_config(str(tmp_path), test_config)
  assert rundir.restore_run(test_config, str(tmp_path)).step == 0
  test_config.seed = 5
  with pytest.raises(rundir.WorkdirConfigError, match="seed=5"):
    rundir.restore_run(test_config, str(tmp_path))


def test_reading_a_mistyped_workdir_creates_nothing(tmp_path, test_config):
  missing = tmp_path / "typo"
  with pytest.raises(FileNotFoundError, match="No checkpoint under"):
    with rundir.hold_workdir(str(missing), existing=True):
      pass
  with pytest.raises(FileNotFoundError, match="No checkpoint under"):
    rundir.restore_run(test_config, str(missing))
  assert not missing.exists()


def test_hold_workdir_holds_the_lock(tmp_path):
  with rundir.hold_workdir(str(tmp_path)):
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"PID {os.getpid()}"):
      with workdir_lock.hold(str(tmp_path)):
        pass
  with workdir_lock.hold(str(tmp_path)):  # Released.
    pass


def test_learning_curve_and_training_seconds_survive_resumption(tmp_path):
  """eval_history.jsonl keeps every point across invocations (latest per step, a torn last line
  ignored), and the training seconds are read back only for the checkpoint they were written at."""
  workdir = str(tmp_path)
  for step, value in ((2, 0.1), (4, 0.2), (4, 0.25), (6, 0.3)):
    rundir.append_history(workdir, {"step": step, "mig": [value]})
  with open(tmp_path / rundir.HISTORY_NAME, "a") as f:
    f.write('{"step": 8, "mi')  # A write cut short by a kill.
  assert [(p["step"], p["mig"]) for p in rundir.read_history(workdir, 6)] == [(2, [0.1]), (4, [0.25]), (6, [0.3])]
  assert [p["step"] for p in rundir.read_history(workdir, 5)] == [2, 4]
  assert rundir.read_history(str(tmp_path / "none"), 10) == []
  rundir.write_train_seconds(workdir, 6, 12.5)
  assert rundir.train_seconds_at(workdir, 6) == 12.5
  assert rundir.train_seconds_at(workdir, 4) == 0.0 and rundir.train_seconds_at(workdir, 0) == 0.0
