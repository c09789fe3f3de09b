"""How the command-line entry points (vae_jax.main, vae_jax.sweep) end on an error the user can fix.

Such an error (USER_ERRORS: a bad config, flag or holdout spec, a workdir trained
with another config or in use by another process, a missing dataset file or
checkpoint, an unreadable checkpoint, a NaN loss) ends the command with its message,
one or two lines saying what is wrong and what to do, on stderr, and exit status 1.
The traceback goes to stderr only with --verbose, and always to the absl log file
if one is configured (--log_dir). Without --verbose the message is the last thing
printed: stderr is closed behind it, so that background threads (orbax, TensorStore)
shutting down with the interpreter cannot bury it under their own tracebacks.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys
import traceback
from typing import NoReturn

from absl import logging

from vae_jax import checkpoints, train, workdir_lock
from vae_jax.data import DatasetFileError

USER_ERRORS = (ValueError, FileNotFoundError, DatasetFileError, checkpoints.CheckpointError,
               train.NonFiniteLossError, workdir_lock.WorkdirLockedError)


def message(error: BaseException) -> str:
  """'Error: ' and the error's message in at most two lines."""
  text = str(error).strip()
  if isinstance(error, OSError) and error.filename and error.strerror:
    text = f"{error.strerror}: {error.filename}"
  lines = [line.strip() for line in (text or type(error).__name__).splitlines() if line.strip()]
  if len(lines) > 2:
    lines = [lines[0], " ".join(lines[1:])]
  return "Error: " + "\n".join(lines)


def _log_file_stream():
  """The stream of absl's log file, or None when absl logs to stderr only."""
  stream = getattr(logging.get_absl_handler().python_handler, "stream", None)
  return None if stream in (None, sys.stderr, sys.__stderr__) else stream


def fail(error: BaseException, *, verbose: bool = False, code: int = 1) -> NoReturn:
  """Prints `error` as `message` (with its traceback if `verbose`) to stderr and exits with `code`."""
  trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
  stream = _log_file_stream()
  if stream is not None:
    try:
      stream.write(trace)
    except (OSError, ValueError):
      pass
  for handler in [logging.get_absl_handler(), *py_logging.getLogger().handlers]:
    handler.flush()
  sys.stdout.flush()
  if verbose:
    sys.stderr.write(trace)
  sys.stderr.write(message(error) + "\n")
  sys.stderr.flush()
  if not verbose:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.close(devnull)
  sys.exit(code)


__all__ = ["USER_ERRORS", "fail", "message"]
