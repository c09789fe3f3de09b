"""Tests for vae_jax.host_memory: glibc keeps freed memory instead of unmapping it.

Each case runs in a fresh interpreter, since the settings are process-wide and a
test process has already shaped its heap.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from vae_jax import host_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Allocates and frees a 64 MiB block before and after retain_freed_memory() and
# reports glibc's own accounting (mallinfo2) at each point.
_PROBE = r"""
import ctypes, json
from vae_jax import host_memory

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in
              ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
               "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20

def allocate_and_free():
  block = libc.malloc(SIZE)
  ctypes.memset(block, 1, SIZE)
  held = libc.mallinfo2()
  libc.free(block)
  freed = libc.mallinfo2()
  return {"mmapped_while_held": held.hblkhd, "heap_free_after": freed.fordblks}

before = allocate_and_free()
applied = host_memory.retain_freed_memory()
after = allocate_and_free()
print(json.dumps({"applied": applied, "before": before, "after": after}))
"""

SIZE = 64 << 20


def _probe(**env):
  return _run(_PROBE, **env)


def _run(program, **env):
  environment = {k: v for k, v in os.environ.items() if k not in host_memory.MALLOC_ENVIRONMENT}
  out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                       env={**environment, **env})
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_retained_memory_is_served_from_the_heap_and_kept_after_free():
  result = _probe()
  assert result["applied"]
  # glibc's defaults: a 64 MiB block is its own mapping, unmapped again on free.
  assert result["before"]["mmapped_while_held"] >= SIZE
  assert result["before"]["heap_free_after"] < SIZE
  # Retained: the block comes from the heap, and the heap keeps it once freed.
  assert result["after"]["mmapped_while_held"] < SIZE
  assert result["after"]["heap_free_after"] >= SIZE


def test_users_malloc_environment_is_left_alone():
  result = _probe(MALLOC_TRIM_THRESHOLD_="131072")
  assert not result["applied"]
  assert result["after"]["mmapped_while_held"] >= SIZE
  assert result["after"]["heap_free_after"] < SIZE


# A thread started after retain_freed_memory() allocates and frees a 64 MiB block.
_THREAD_PROBE = _PROBE.split("before = ")[0] + r"""
import threading
applied = host_memory.retain_freed_memory()
out = {}
def worker():
  out.update(allocate_and_free())
thread = threading.Thread(target=worker)
thread.start()
thread.join()
print(json.dumps({"applied": applied, **out}))
"""


def test_a_new_threads_large_blocks_come_from_the_kept_heap_too():
  """Without M_ARENA_MAX = 1 the thread gets an arena of its own, whose heaps hold at most
  64 MiB, and glibc maps such a block (and unmaps it on free) despite M_MMAP_MAX = 0."""
  result = _run(_THREAD_PROBE)
  assert result["applied"]
  assert result["mmapped_while_held"] < SIZE
  assert result["heap_free_after"] >= SIZE
  # The same thread without the settings: its block is a mapping of its own, gone after free.
  default = _run(_THREAD_PROBE.replace("applied = host_memory.retain_freed_memory()", "applied = False"))
  assert default["mmapped_while_held"] >= SIZE
