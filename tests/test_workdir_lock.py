"""workdir_lock.hold: one process per workdir, no stale lock after the holder dies (even by SIGKILL)."""

import os
import signal
import subprocess
import sys

import pytest

from vae_jax import workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tries to take the lock once; prints OK or the error's message.
TRY_LOCK = """
import sys
from vae_jax import workdir_lock
try:
  with workdir_lock.hold(sys.argv[1]):
    print("OK")
except workdir_lock.WorkdirLockedError as e:
  print("LOCKED", e)
"""

# Takes the lock, says so, and sleeps until killed.
HOLD_LOCK = """
import sys, time
from vae_jax import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("HELD", flush=True)
  time.sleep(600)
"""


def run_python(code, *args, **kwargs):
  return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                        **kwargs)


def start_holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir)], stdout=subprocess.PIPE, text=True, cwd=REPO)
  assert proc.stdout.readline().strip() == "HELD"
  return proc


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.hold(workdir) as path:
    assert path == os.path.join(workdir, ".lock")
    with open(path) as f:
      assert f.read().strip() == str(os.getpid())
    out = run_python(TRY_LOCK, workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"LOCKED {workdir} is in use by another vae_jax process (PID {os.getpid()}); wait "
                                  "for it to finish or use another --workdir.")
    # A second hold in the same process is refused too.
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"PID {os.getpid()}"):
      with workdir_lock.hold(workdir):
        pass
  # Released with the context: another process takes it.
  assert run_python(TRY_LOCK, workdir).stdout.strip() == "OK"


def test_locked_error_is_a_runtime_error():
  assert issubclass(workdir_lock.WorkdirLockedError, RuntimeError)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_lock_is_free_again_after_the_holder_is_killed(tmp_path, sig):
  workdir = tmp_path / "run"
  proc = start_holder(workdir)
  try:
    out = run_python(TRY_LOCK, str(workdir))
    assert out.stdout.startswith("LOCKED") and f"(PID {proc.pid})" in out.stdout, out
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"PID {proc.pid}"):
      with workdir_lock.hold(str(workdir)):
        pass
  finally:
    proc.send_signal(sig)
    proc.wait(timeout=30)
  assert (workdir / ".lock").exists()  # The file stays; nothing holds it.
  with workdir_lock.hold(str(workdir)):
    assert (workdir / ".lock").read_text().strip() == str(os.getpid())
  assert run_python(TRY_LOCK, str(workdir)).stdout.strip() == "OK"


def test_lock_is_released_when_the_body_raises(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(KeyError):
    with workdir_lock.hold(workdir):
      raise KeyError("boom")
  with workdir_lock.hold(workdir):
    pass
  assert (tmp_path / ".lock").read_text() == ""  # No PID left behind by a released lock.
