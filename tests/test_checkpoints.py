"""Checkpointer: periodic saves, keep-N, restore-latest, partial, corrupt and mismatched checkpoints."""

import glob
import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vae_jax import checkpoints


def state(value):
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def big_state(value):
  """A state whose largest data file is mostly array bytes (random, so compression does not hide them)."""
  w = np.random.default_rng(int(value)).normal(size=(128, 128)).astype(np.float32)
  return {"params": {"w": jnp.asarray(w), "b": jnp.full((7,), value, jnp.bfloat16)},
          "step": jnp.asarray(int(value), jnp.int32)}


def assert_trees_equal(a, b):
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[k]), np.asarray(flat_b[k]), err_msg=str(k))
    assert np.asarray(flat_a[k]).dtype == np.asarray(flat_b[k]).dtype


def step_dirs(directory):
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def largest_file(directory):
  files = [f for f in glob.glob(os.path.join(directory, "**"), recursive=True) if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def flip_byte(path, fraction=0.5):
  size = os.path.getsize(path)
  pos = min(int(size * fraction), size - 1)
  with open(path, "r+b") as f:
    f.seek(pos)
    byte = f.read(1)
    f.seek(pos)
    f.write(bytes([byte[0] ^ 0xFF]))


def test_saves_every_n_steps_keeps_the_last_few_and_restores_latest(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), max_to_keep=2, save_every_steps=2)
  for step in range(1, 8):
    ckpt.save(step, state(step))
  ckpt.save(7, state(7), force=True)
  ckpt.close()
  assert step_dirs(tmp_path) == [6, 7]
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  restored = ckpt.restore_latest(state(0))
  ckpt.close()
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((3, 2), 7.0))
  assert int(restored["step"]) == 7


def test_default_keeps_enough_checkpoints_to_fall_back():
  assert checkpoints.Checkpointer.__init__.__kwdefaults__["max_to_keep"] >= 2


def test_no_checkpoint_restores_none(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path / "empty"))
  assert ckpt.restore_latest(state(0)) is None
  ckpt.close()


def test_partial_checkpoint_from_a_killed_run_is_ignored(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(3, state(3))
  ckpt.close()
  # What a save interrupted by kill -9 leaves behind: a temporary directory, never renamed.
  os.makedirs(tmp_path / "5.orbax-checkpoint-tmp-1234" / "state")
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 3
  assert int(ckpt.restore_latest(state(0))["step"]) == 3
  ckpt.close()


def test_digest_of_an_untouched_checkpoint_matches_the_saved_state(tmp_path):
  saved = big_state(5)
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(5, saved)
  ckpt.close()
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  stored = ckpt.read_digest(5)
  assert stored == checkpoints.tree_digest(saved)
  assert set(stored["leaves"]) == {"params.w", "params.b", "step"}
  assert stored["leaves"]["params.b"]["dtype"] == "bfloat16" and stored["leaves"]["params.w"]["shape"] == [128, 128]
  assert_trees_equal(ckpt.restore_latest(big_state(0)), saved)
  ckpt.close()
  assert not os.path.exists(tmp_path / "corrupt")
  # The digest lies in the same step directory as the state, written with it.
  assert {"state", "digest"} <= set(os.listdir(tmp_path / "5"))


def test_digest_changes_with_any_bit_dtype_or_shape():
  base = checkpoints.tree_digest(big_state(1))
  w = np.asarray(big_state(1)["params"]["w"]).copy()
  w.view(np.uint32)[7, 9] ^= 1  # One bit.
  flipped = big_state(1)
  flipped["params"]["w"] = jnp.asarray(w)
  assert checkpoints.tree_digest(flipped)["leaves"]["params.w"] != base["leaves"]["params.w"]
  assert checkpoints.tree_digest(flipped)["leaves"]["step"] == base["leaves"]["step"]
  zeros = checkpoints.tree_digest({"a": jnp.zeros((2, 3), jnp.float32)})["leaves"]["a"]
  assert zeros != checkpoints.tree_digest({"a": jnp.zeros((3, 2), jnp.float32)})["leaves"]["a"]
  assert zeros != checkpoints.tree_digest({"a": jnp.zeros((2, 3), jnp.int32)})["leaves"]["a"]


def test_digest_is_of_the_values_passed_to_save_even_if_the_caller_reuses_the_buffer(tmp_path):
  # A numpy leaf overwritten right after save returns stands in for a donated state.
  w = np.ones((64, 64), np.float32)
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(1, {"w": w})
  expected = checkpoints.tree_digest({"w": np.ones((64, 64), np.float32)})
  w[:] = 2.0
  ckpt.close()
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert ckpt.read_digest(1) == expected
  ckpt.close()


@pytest.mark.parametrize("fraction", [0.5, 0.0])
def test_corrupt_newest_checkpoint_is_moved_aside_and_the_previous_one_restored(tmp_path, fraction, caplog):
  ckpt = checkpoints.Checkpointer(str(tmp_path), max_to_keep=3, save_every_steps=1)
  for step in (2, 4, 6):
    ckpt.save(step, big_state(step))
  ckpt.close()
  # One byte of the newest checkpoint's largest data file: in the middle the data
  # still decodes to different values (caught by the digest), at the start it does not
  # decode at all (caught as unreadable); either way the checkpoint is corrupt.
  flip_byte(largest_file(tmp_path / "6"), fraction)

  ckpt = checkpoints.Checkpointer(str(tmp_path), max_to_keep=3, save_every_steps=1)
  restored = ckpt.restore_latest(big_state(0))
  assert_trees_equal(restored, big_state(4))
  assert ckpt.latest_step() == 4 and step_dirs(tmp_path) == [2, 4]
  moved = os.listdir(tmp_path / "corrupt")
  assert len(moved) == 1 and moved[0].startswith("6-")
  assert os.listdir(tmp_path / "corrupt" / moved[0])  # Moved, not deleted.
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  corrupt_lines = [m for m in warnings if "is corrupt" in m]
  assert len(corrupt_lines) == 1 and "\n" not in corrupt_lines[0], warnings
  assert str(tmp_path / "6") in corrupt_lines[0] and "trying step 4" in corrupt_lines[0]
  assert any("Resumed from the checkpoint of step 4" in m for m in warnings), warnings

  # Training goes on: new saves and keep-N ignore the moved-aside directory.
  for step in (8, 10, 12):
    ckpt.save(step, big_state(step))
  ckpt.close()
  assert step_dirs(tmp_path) == [8, 10, 12] and len(os.listdir(tmp_path / "corrupt")) == 1
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert_trees_equal(ckpt.restore_latest(big_state(0)), big_state(12))
  ckpt.close()


def test_tampered_digest_counts_as_corrupt(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(1, state(1))
  ckpt.save(2, state(2))
  ckpt.close()
  digest_file = tmp_path / "2" / "digest" / "metadata"
  stored = json.loads(digest_file.read_text())
  stored["leaves"]["params.w"]["hash"] = "0" * 64
  digest_file.write_text(json.dumps(stored))
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert int(ckpt.restore_latest(state(0))["step"]) == 1
  ckpt.close()
  assert step_dirs(tmp_path) == [1] and len(os.listdir(tmp_path / "corrupt")) == 1


def test_every_checkpoint_corrupt_gives_one_clear_error(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(2, state(2))
  ckpt.save(4, state(4))
  ckpt.close()
  for step in ("2", "4"):
    for root, _, files in os.walk(tmp_path / step / "state"):
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError, match=r"(?s)No checkpoint in .* could be restored: step\(s\) 4, 2 "
                     r"were corrupt and were moved to .*corrupt"):
    ckpt.restore_latest(state(0))
  ckpt.close()
  assert step_dirs(tmp_path) == [] and len(os.listdir(tmp_path / "corrupt")) == 2


def test_checkpoint_of_a_different_structure_gives_one_clear_error_and_moves_nothing(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(1, state(1))
  ckpt.save(2, state(2))
  ckpt.close()
  before = sorted(os.listdir(tmp_path))
  for other, detail in [
      ({"params": {"w": jnp.zeros((5, 5))}, "step": jnp.asarray(0, jnp.int32)}, r"params\.w is float32\[3, 2\] there"),
      ({"params": {"w": jnp.zeros((3, 2)), "v": jnp.zeros(2)}, "step": jnp.asarray(0, jnp.int32)}, r"lacks params\.v"),
      ({"params": {"w": jnp.zeros((3, 2), jnp.bfloat16)}, "step": jnp.asarray(0, jnp.int32)}, "bfloat16"),
  ]:
    ckpt = checkpoints.Checkpointer(str(tmp_path))
    with pytest.raises(checkpoints.CheckpointError, match="different config") as info:
      ckpt.restore_latest(other)
    ckpt.close()
    message = str(info.value)
    assert str(tmp_path / "2") in message and "new --workdir" in message
    assert "orrupt" not in message and "elete" not in message
    assert __import__("re").search(detail, message), message
    assert sorted(os.listdir(tmp_path)) == before  # Nothing moved.


def test_checkpoint_from_before_digests_is_restored_unverified_with_a_warning(tmp_path, caplog):
  # The layout of checkpoints written before digests: one StandardSave item, "default".
  manager = ocp.CheckpointManager(str(tmp_path), options=ocp.CheckpointManagerOptions(create=True))
  manager.save(3, args=ocp.args.StandardSave(state(3)))
  manager.wait_until_finished()
  manager.close()
  assert (tmp_path / "3" / "default").is_dir()
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  assert_trees_equal(ckpt.restore_latest(state(0)), state(3))
  assert any("predates checkpoint digests" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
  with pytest.raises(checkpoints.CheckpointError, match="different config"):
    ckpt.restore_latest({"params": {"w": jnp.zeros((5, 5))}, "step": jnp.asarray(0, jnp.int32)})
  ckpt.save(4, state(4))  # New checkpoints in the same directory carry digests.
  ckpt.close()
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert_trees_equal(ckpt.restore_latest(state(0)), state(4))
  assert ckpt.read_digest(4) == checkpoints.tree_digest(state(4))
  ckpt.close()


def test_damaged_metadata_that_disagrees_with_the_digest_counts_as_corrupt_not_as_another_config(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), save_every_steps=1)
  ckpt.save(1, state(1))
  ckpt.save(2, state(2))
  ckpt.close()
  metadata = tmp_path / "2" / "state" / "_METADATA"
  text = metadata.read_text()
  damaged = text.replace("'w')", "'v')").replace('{"key": "w"', '{"key": "v"')  # A leaf's name garbled.
  assert damaged != text
  metadata.write_text(damaged)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  assert_trees_equal(ckpt.restore_latest(state(0)), state(1))
  ckpt.close()
  assert step_dirs(tmp_path) == [1] and len(os.listdir(tmp_path / "corrupt")) == 1
