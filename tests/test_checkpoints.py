"""Checkpointer: periodic saves, keep-N, restore-latest, partial and corrupt checkpoints."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import checkpoints


def state(value):
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def test_saves_every_n_steps_keeps_the_last_few_and_restores_latest(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), max_to_keep=2, save_every_steps=2)
  for step in range(1, 8):
    ckpt.save(step, state(step))
  ckpt.save(7, state(7), force=True)
  ckpt.close()
  assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [6, 7]
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  restored = ckpt.restore_latest(state(0))
  ckpt.close()
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((3, 2), 7.0))
  assert int(restored["step"]) == 7


def test_no_checkpoint_restores_none(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path / "empty"))
  assert ckpt.restore_latest(state(0)) is None
  ckpt.close()


def test_partial_checkpoint_from_a_killed_run_is_ignored(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(3, state(3))
  ckpt.close()
  # What a save interrupted by kill -9 leaves behind: a temporary directory, never renamed.
  os.makedirs(tmp_path / "5.orbax-checkpoint-tmp-1234" / "default")
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 3
  assert int(ckpt.restore_latest(state(0))["step"]) == 3
  ckpt.close()


def test_corrupt_checkpoint_gives_one_clear_error(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(4, state(4))
  ckpt.close()
  for root, _, files in os.walk(tmp_path / "4" / "default"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError, match=r"(?s)Cannot restore the checkpoint at .*4.*Delete that step"):
    ckpt.restore_latest(state(0))
  ckpt.close()


def test_checkpoint_of_a_different_structure_gives_one_clear_error(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(1, state(1))
  ckpt.close()
  other = {"params": {"w": jnp.zeros((5, 5))}, "step": jnp.asarray(0)}
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError, match="different config"):
    ckpt.restore_latest(other)
  ckpt.close()
