"""One vae_jax process per workdir: an exclusive OS lock on <workdir>/.lock.

Two runs writing the same workdir would interleave checkpoints, events and
metrics.json. `hold(workdir)` takes an exclusive, non-blocking `fcntl.flock` on
<workdir>/.lock for as long as the context is open, and writes the holder's PID
into the file so that a second process can say who holds it. The kernel releases
the lock when its file is closed or the process ends in any way (kill -9
included), so a dead run never leaves a stale lock behind: the file may remain,
but nothing holds it, and the next `hold` takes it.

    with workdir_lock.hold(workdir):
      train.train_and_evaluate(config, workdir)

flock locks are advisory and local to one machine (on NFS they may not be
enforced between machines).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Iterator

LOCK_NAME = ".lock"


class WorkdirLockedError(RuntimeError):
  """Another process holds the workdir's lock."""


def lock_path(workdir: str) -> str:
  """The lock file of `workdir`: <workdir>/.lock."""
  return os.path.join(workdir, LOCK_NAME)


def _read_pid(fd: int) -> int | None:
  """The PID written in an open lock file, or None if it holds none (yet)."""
  try:
    text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
  except OSError:
    return None
  return int(text) if text.isdigit() else None


def _locked_error(workdir: str, pid: int | None) -> WorkdirLockedError:
  holder = f"PID {pid}" if pid is not None else "PID unknown"
  return WorkdirLockedError(f"{workdir} is in use by another vae_jax process ({holder}); wait for it to finish or use "
                            "another --workdir.")


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
  """Holds the exclusive lock of `workdir` (created if missing) for the life of the context.

  Yields the lock file's path. The lock file keeps this process's PID while held.
  Locking the same workdir again from inside the context (in this process or any
  other) raises too.

  Raises:
    WorkdirLockedError: another process (or another `hold` in this one) holds it;
      the message names the holder's PID.
  """
  os.makedirs(workdir, exist_ok=True)
  path = lock_path(workdir)
  # O_CLOEXEC: a child process (a data worker, say) does not inherit the lock's file.
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise _locked_error(workdir, _read_pid(fd)) from None
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
      yield path
    finally:
      # Empty the PID before letting go, so a reader never sees a stale one. The file
      # itself stays: removing it would race with a process that just opened it.
      try:
        os.ftruncate(fd, 0)
      except OSError:
        pass
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
