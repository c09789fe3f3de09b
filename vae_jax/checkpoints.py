"""Checkpoints of the whole train state with an orbax CheckpointManager (args API), verified on restore.

Saves go to <directory>/<step>; orbax writes each one under a temporary name and
renames it when complete, so a run killed at any moment (even kill -9) leaves only
complete checkpoints behind, and `restore_latest` ignores partial ones.

Each checkpoint holds two items, written together (so atomically):

  <step>/state   the train state (StandardSave);
  <step>/digest  a JSON digest of it: per leaf, its dtype, shape and the BLAKE2b-256
                 hash of its bytes (`tree_digest`), computed from a host copy of the
                 state before `save` returns, so it describes exactly the values the
                 caller handed over (even if the caller donates the state to the
                 next step while orbax is still writing).

`restore_latest` restores the newest checkpoint and recomputes the digest from the
restored arrays. A checkpoint that cannot be read, or whose digest does not match,
is corrupt: one warning line says so, its directory is moved aside (never deleted)
to <directory>/corrupt/<step>-<time>, where the manager does not look, and the next
older checkpoint is tried. A checkpoint whose tree structure, shapes or dtypes
differ from the target's was written by a different config: that is one
CheckpointError, and nothing is moved. Checkpoints written before digests existed
(a single <step>/default item) are restored unverified, with a warning.

The digest costs one pass over the state on the host per save and per restore
(leaves hashed in parallel threads; about 0.5 s for the 160 MiB MLP state on one
busy core, far less for the 8.7 MiB conv state). Arrays are saved and restored with
their shardings: a state split over the mesh's 'members' axis is written shard by
shard, and restores onto any mesh the target's shardings describe (another device
count included). In a multi-process job the digest gathers the leaves split across
processes to every host (one host copy of the state per save and restore).
"""

from __future__ import annotations

import concurrent.futures
import gc
import hashlib
import os
import sys
import time
from typing import Any, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

State = TypeVar("State")

STATE_ITEM = "state"
DIGEST_ITEM = "digest"
LEGACY_ITEM = "default"  # The single item of checkpoints written before digests.
CORRUPT_DIR = "corrupt"  # Under the checkpoint directory: corrupt checkpoints moved aside.
DIGEST_FORMAT = "vae_jax-checkpoint-digest-v1"
DIGEST_ALGORITHM = "blake2b-256"


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into the expected train state."""


class _Corrupt(Exception):
  """A checkpoint step is unreadable or fails its digest (internal)."""


class _ConfigMismatch(Exception):
  """A checkpoint step's tree does not fit the target's (internal)."""


# Digests.


def _leaf_name(keypath) -> str:
  """A leaf's name as orbax names it in checkpoint metadata: "opt_state.0.mu.dense.kernel"."""
  return ".".join(ocp.tree.str_keypath(keypath)) or "<root>"


def _host_array(leaf: Any) -> np.ndarray:
  """A leaf as a host numpy array (typed PRNG keys as their key data)."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if not leaf.is_fully_addressable:
      # Replicated: any local copy. Split across processes (members on other hosts):
      # gathered, a collective every process takes part in (all of them save and restore).
      leaf = (leaf.addressable_data(0) if leaf.is_fully_replicated
              else multihost_utils.process_allgather(leaf, tiled=True))
  return np.asarray(leaf)


def _hash_array(array: np.ndarray) -> str:
  h = hashlib.blake2b(digest_size=32)
  h.update(f"{array.dtype.name}{array.shape}".encode())
  # A uint8 view of the contiguous bytes: hashlib reads it without a copy and
  # without the GIL, so several leaves hash in parallel.
  h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
  return h.hexdigest()


def tree_digest(tree: Any) -> dict[str, Any]:
  """The digest of a pytree of arrays: per leaf (named as orbax names it) its dtype, shape and hash.

  The hash is BLAKE2b-256 of the leaf's dtype, shape and bytes (taken on the host), so
  two trees have equal digests exactly when their leaves are bit-identical. Returns a
  JSON-serialisable dict {"format", "algorithm", "leaves": {name: {"dtype", "shape",
  "hash"}}}.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  names = [_leaf_name(kp) for kp, _ in leaves]
  arrays = [_host_array(leaf) for _, leaf in leaves]
  workers = max(1, min(8, os.cpu_count() or 1, len(arrays)))
  if workers > 1 and sum(a.nbytes for a in arrays) >= 8 * 2**20:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      hashes = list(pool.map(_hash_array, arrays))
  else:
    hashes = [_hash_array(a) for a in arrays]
  return {
      "format": DIGEST_FORMAT,
      "algorithm": DIGEST_ALGORITHM,
      "leaves": {n: {"dtype": a.dtype.name, "shape": list(a.shape), "hash": h}
                 for n, a, h in zip(names, arrays, hashes)},
  }


def _digest_mismatch(stored: Any, actual: dict[str, Any]) -> str | None:
  """None if `stored` (a checkpoint's digest item) matches `actual`, else what differs."""
  if (not isinstance(stored, dict) or stored.get("format") != DIGEST_FORMAT
      or not isinstance(stored.get("leaves"), dict)):
    return "its digest is unreadable"
  want, got = stored["leaves"], actual["leaves"]
  if set(want) != set(got):
    return f"its digest lists other leaves ({sorted(set(want) ^ set(got))[:3]})"
  bad = [name for name in want if want[name] != got[name]]
  if bad:
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"the restored values of {', '.join(bad[:3])}{more} do not match its digest"
  return None


# Structure checks (config mismatch vs corruption).


def _target_signature(target: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{leaf name: (shape, dtype)} of the tree a restore must fill."""
  out = {}
  for kp, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
      dtype = np.asarray(leaf).dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
      dtype = leaf.dtype
    out[_leaf_name(kp)] = (tuple(np.shape(leaf)), np.dtype(dtype).name)
  return out


def _saved_signature(metadata: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{leaf name: (shape, dtype)} of a checkpoint item's orbax metadata tree."""
  tree = getattr(metadata, "tree", metadata)
  out = {}
  for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
      raise _Corrupt(f"its metadata has no shape or dtype for {_leaf_name(kp)}")
    out[_leaf_name(kp)] = (tuple(shape), np.dtype(dtype).name)
  return out


def _signature_difference(saved: dict, expected: dict) -> str | None:
  """None if the signatures agree, else a short description of the first differences."""
  problems = []
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  if missing:
    problems.append(f"it lacks {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
  if extra:
    problems.append(f"it has {', '.join(extra[:3])}, which this config lacks"
                    + (f" (+{len(extra) - 3})" if len(extra) > 3 else ""))
  for name in sorted(set(saved) & set(expected)):
    if saved[name] != expected[name]:
      (s_shape, s_dtype), (e_shape, e_dtype) = saved[name], expected[name]
      problems.append(f"{name} is {s_dtype}{list(s_shape)} there, {e_dtype}{list(e_shape)} in this config")
      if len(problems) >= 3:
        break
  return "; ".join(problems) or None


def _is_resource_error(e: BaseException) -> bool:
  """Errors that say nothing about the checkpoint's bytes (out of memory): never a reason to move it aside."""
  if isinstance(e, MemoryError):
    return True
  return isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)


def _write_replicated_arrays_whole() -> None:
  """In a single-process run, orbax writes each array from one device, whole.

  Orbax's default off GPU (replica-parallel writing) splits an array replicated over
  several devices (the state on a data-parallel mesh) into one slice per replica, which
  compiles a slicing program per array shape at a process's first save (48 for the
  tests' FactorVAE on 4 forced CPU devices: run with JAX_EXPLAIN_CACHE_MISSES=1 to see
  them) and gains nothing when one process writes every slice anyway. The files are the
  same either way; multi-process runs keep the default.
  """
  global _WHOLE_ARRAY_HANDLER
  if jax.process_count() > 1 or _WHOLE_ARRAY_HANDLER is not None:
    return
  _WHOLE_ARRAY_HANDLER = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # Orbax warns about the override; a bad-input error stays its own line.
  try:
    ocp.type_handlers.register_type_handler(jax.Array, _WHOLE_ARRAY_HANDLER, override=True)
  finally:
    logging.set_verbosity(verbosity)


_WHOLE_ARRAY_HANDLER = None


class Checkpointer:
  """Periodic and final saves with a content digest, keep-the-last-few, verified restore-latest."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_every_steps: int = 1000):
    """Manages checkpoints in `directory` (created if missing).

    Args:
      directory: the checkpoint directory (workdir/checkpoints).
      max_to_keep: how many of the newest checkpoints to keep; at least 2 lets
        `restore_latest` fall back to an older one when the newest is corrupt.
      save_every_steps: `save` saves only steps that are multiples of this, unless forced.
    """
    self.directory = os.path.abspath(directory)
    self.save_every_steps = save_every_steps
    _write_replicated_arrays_whole()
    self._manager = ocp.CheckpointManager(
        self.directory,
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(), DIGEST_ITEM: ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of all complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    """The directory of checkpoint `step`."""
    return os.path.join(self.directory, str(step))

  def read_digest(self, step: int) -> dict[str, Any]:
    """The digest stored with checkpoint `step` (see `tree_digest`); raises for a checkpoint without one."""
    return self._manager.restore(step, args=ocp.args.Composite(**{DIGEST_ITEM: ocp.args.JsonRestore()}))[DIGEST_ITEM]

  def restore_latest(self, target: State) -> State | None:
    """The newest intact checkpoint, restored with `target`'s structure, shapes and shardings.

    Tries the newest checkpoint first. One that cannot be read or fails its digest is
    corrupt: a warning says so, its directory is moved to <directory>/corrupt/ (not
    deleted) and the next older one is tried. Returns None when there is no
    checkpoint at all.

    Raises:
      CheckpointError: a checkpoint was written by a different config (its tree,
        shapes or dtypes differ from `target`'s; nothing is moved), or every
        checkpoint was corrupt (all moved aside).
    """
    moved = []
    while True:
      step = self.latest_step()
      if step is None:
        break
      reason = None
      try:
        restored, verified = self._restore_step(step, target)
      except _ConfigMismatch as e:
        raise CheckpointError(
            f"The checkpoint at {self.step_dir(step)} was written by a different config (model, optimiser or "
            f"ensemble size): {e}.\nThis workdir was trained with another config: run with that config to resume "
            "it, or train this config into a new --workdir.") from None
      except _Corrupt as e:
        reason = str(e)
      if reason is not None:
        _collect_abandoned_reads()
        if not os.path.isdir(self.step_dir(step)):  # Deleted meanwhile (another process's keep-N): not corrupt.
          self._manager.reload()
          continue
        destination = self._move_aside(step)
        older = [s for s in self.all_steps() if s < step]
        then = f"trying step {older[-1]}" if older else "no older checkpoint is left"
        logging.warning("Checkpoint %s is corrupt (%s); moved it to %s; %s.", self.step_dir(step), reason,
                        destination, then)
        moved.append((step, destination))
        continue
      if moved:
        logging.warning("Resumed from the checkpoint of step %d in %s (the newest intact one; corrupt: step %s).",
                        step, self.directory, ", ".join(str(s) for s, _ in moved))
      else:
        logging.info("Restored the checkpoint of step %d from %s%s.", step, self.directory,
                     "" if verified else " (unverified)")
      return restored
    if moved:
      raise CheckpointError(
          f"No checkpoint in {self.directory} could be restored: step(s) "
          f"{', '.join(str(s) for s, _ in moved)} were corrupt and were moved to "
          f"{os.path.join(self.directory, CORRUPT_DIR)} (kept, not deleted). Running again trains this workdir from "
          "step 0; to keep this run's other files apart, train into a new --workdir instead.")
    return None

  def _restore_step(self, step: int, target: State) -> tuple[State, bool]:
    """Checkpoint `step` restored into `target` and verified; (state, whether a digest was checked).

    Raises _ConfigMismatch when the saved tree does not fit `target`, _Corrupt when the
    checkpoint cannot be read or fails its digest.
    """
    path = self.step_dir(step)
    if not os.path.isdir(os.path.join(path, STATE_ITEM)) and os.path.isdir(os.path.join(path, LEGACY_ITEM)):
      return self._restore_legacy(step, target), False
    try:
      metadata = self._manager.item_metadata(step)[STATE_ITEM]
      if metadata is None:
        raise _Corrupt(f"it has no readable {STATE_ITEM} item")
      saved = _saved_signature(metadata)
    except _Corrupt:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(f"its metadata cannot be read: {type(e).__name__}: {_first_line(e)}") from None
    expected = _target_signature(target)
    difference = _signature_difference(saved, expected)
    if difference:
      # The digest records every leaf's shape and dtype too: if it fits the target, the
      # orbax metadata is what is damaged, and the checkpoint is corrupt.
      if self._digest_signature(step) == expected:
        raise _Corrupt(f"its metadata disagrees with its digest ({difference})")
      raise _ConfigMismatch(difference)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          STATE_ITEM: ocp.args.StandardRestore(target), DIGEST_ITEM: ocp.args.JsonRestore()}))
    except Exception as e:  # pylint: disable=broad-except  # orbax raises several types for unreadable data.
      if _is_resource_error(e):
        raise CheckpointError(f"Cannot restore the checkpoint at {path}: {type(e).__name__}: {e}") from e
      raise _Corrupt(f"it cannot be read: {type(e).__name__}: {_first_line(e)}") from None
    problem = _digest_mismatch(restored[DIGEST_ITEM], tree_digest(restored[STATE_ITEM]))
    if problem:
      raise _Corrupt(problem)
    return restored[STATE_ITEM], True

  def _digest_signature(self, step: int) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """{leaf name: (shape, dtype)} as checkpoint `step`'s digest records them, or None if unreadable."""
    try:
      leaves = self.read_digest(step)["leaves"]
      return {name: (tuple(leaf["shape"]), leaf["dtype"]) for name, leaf in leaves.items()}
    except Exception:  # pylint: disable=broad-except
      return None

  def _restore_legacy(self, step: int, target: State) -> State:
    """A checkpoint from before digests (one `default` item), restored unverified."""
    path = epath.Path(self.step_dir(step)) / LEGACY_ITEM
    handler = ocp.StandardCheckpointHandler()
    try:
      try:
        saved = _saved_signature(handler.metadata(path))
      except _Corrupt:
        raise
      except Exception as e:  # pylint: disable=broad-except
        raise _Corrupt(f"its metadata cannot be read: {type(e).__name__}: {_first_line(e)}") from None
      difference = _signature_difference(saved, _target_signature(target))
      if difference:
        raise _ConfigMismatch(difference)
      try:
        restored = handler.restore(path, args=ocp.args.StandardRestore(target))
      except Exception as e:  # pylint: disable=broad-except
        if _is_resource_error(e):
          raise CheckpointError(f"Cannot restore the checkpoint at {path}: {type(e).__name__}: {e}") from e
        raise _Corrupt(f"it cannot be read: {type(e).__name__}: {_first_line(e)}") from None
    finally:
      handler.close()
    logging.warning("The checkpoint at %s predates checkpoint digests: restored it unverified.", self.step_dir(step))
    return restored

  def _move_aside(self, step: int) -> str:
    """Moves checkpoint `step` to <directory>/corrupt/<step>-<time> (process 0 only) and rescans."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    destination = os.path.join(self.directory, CORRUPT_DIR, f"{step}-{stamp}")
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      n = 1
      while os.path.exists(destination):
        n += 1
        destination = os.path.join(self.directory, CORRUPT_DIR, f"{step}-{stamp}-{n}")
      try:
        os.rename(self.step_dir(step), destination)
      except OSError as e:
        raise CheckpointError(
            f"The checkpoint at {self.step_dir(step)} is corrupt and could not be moved aside to {destination} "
            f"({e}). Move or remove it by hand to resume from an older checkpoint.") from e
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"vae_jax_checkpoint_moved_aside_{step}")
    self._manager.reload()
    return destination

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves `state` and its digest as `step` every `save_every_steps` steps, or now if `force`.

    The digest is computed from a host copy of `state` before this returns, so the
    caller may donate or overwrite `state` right after (orbax finishes writing in the
    background). Returns whether a save was started.
    """
    if not force and step % self.save_every_steps:
      return False
    if self._manager.latest_step() == step:
      return False
    digest = tree_digest(state)
    return self._manager.save(step, args=ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardSave(state), DIGEST_ITEM: ocp.args.JsonSave(digest)}), force=True)

  def close(self) -> None:
    """Waits for pending saves to finish and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def _collect_abandoned_reads() -> None:
  """Collects the reads orbax abandons when one array of a checkpoint fails to load.

  Their coroutines die with an exception that Python would print as "Exception
  ignored in ..." whenever the garbage collector happens to reach them; collected
  here, right after the failure that was already reported, they stay quiet.
  """
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    gc.collect()
  finally:
    sys.unraisablehook = hook


def _first_line(e: BaseException) -> str:
  """The first line of an exception's message, shortened (TensorStore messages run to pages)."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return text if len(text) <= 200 else text[:197] + "..."
