"""Checkpoints of the whole train state with an orbax CheckpointManager (args API).

Saves go to workdir/checkpoints/<step>; orbax writes each one under a temporary name
and renames it when complete, so a run killed at any moment (even kill -9) leaves
only complete checkpoints behind, and `restore_latest` ignores partial ones.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import orbax.checkpoint as ocp
from absl import logging

State = TypeVar("State")


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into the expected train state."""


class Checkpointer:
  """Periodic and final saves, keep-the-last-few, restore-latest."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_every_steps: int = 1000):
    self.directory = os.path.abspath(directory)
    self.save_every_steps = save_every_steps
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def restore_latest(self, target: State) -> State | None:
    """The newest checkpoint restored with `target`'s structure, shapes and shardings.

    Returns None when there is no checkpoint. Raises CheckpointError, naming the
    directory and what to do, when the newest checkpoint cannot be read (corrupt, or
    written by a different config).
    """
    step = self.latest_step()
    if step is None:
      return None
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax raises several types for unreadable data.
      raise CheckpointError(
          f"Cannot restore the checkpoint at {os.path.join(self.directory, str(step))}: "
          f"{type(e).__name__}: {e}\nIt is corrupt or was written by a different config "
          "(model, optimiser or ensemble size). Delete that step's directory to resume from "
          "an older checkpoint, or train into a new --workdir."
      ) from e
    logging.info("Restored the checkpoint of step %d from %s.", step, self.directory)
    return restored

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves `state` as `step` every `save_every_steps` steps, or now if `force`."""
    if not force and step % self.save_every_steps:
      return False
    if self._manager.latest_step() == step:
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def close(self) -> None:
    """Waits for pending saves to finish and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
