"""Keeping freed host memory for reuse, so that CPU train steps do not page-fault.

XLA:CPU allocates each step's buffers with malloc and frees them when the step
ends. glibc serves an allocation above its mmap threshold (128 KiB, rising with
use up to 32 MiB) with fresh pages from mmap and hands them back to the kernel on
free, and it also trims the top of its heap once 128 KiB of it are free. Either
way the next step touches new pages, and the kernel zeroes every one of them on
the first write. On this project's 2-core machine that was a quarter of the conv64
step at batch 64: 72 against 54 ms per step (benchmarks/step_breakdown.py
--malloc default / retain), and an 8 MB bias-and-ReLU pass took 5.9 ms against 2.1
in a trace (benchmarks/profile_step.py --malloc default / retain).

`retain_freed_memory` tells glibc to serve every allocation from its heap and
never to trim it, which is what `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...
MALLOC_ARENA_MAX=1` would do if set before the process started. The last matters
for threads: a thread that first allocates after the call shares the main heap
instead of getting an arena of its own, whose heaps are at most 64 MiB, so that a
larger block (a 5-member ensemble's stacked parameters or Adam moments) would be
mapped and unmapped on every step whatever M_MMAP_MAX says. 5 MLP members at batch
256: 1,542 and 1,631 ms per step and about 835 MiB of fresh pages with an arena per
thread, 1,115 and 1,297 ms and 129 MiB with one; one member 189-219 ms either way
(benchmarks/ensemble_memory.py, 2026-12-02, the 2-core AMD EPYC host). Call it before
JAX starts its threads. The heap grows to the step's working
set once; peak RSS grew by 40-270 MiB in benchmarks/train_throughput.py. Memory
freed by a step is not returned to the OS until the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from absl import logging

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_INT_MAX = 2**31 - 1

# Set by the user before the process started; then their choice stands.
MALLOC_ENVIRONMENT = ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                      "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def retain_freed_memory() -> bool:
  """Makes glibc malloc keep freed memory for reuse: no mmap'd chunks, no heap trimming.

  A process-wide setting, made by `train.train_and_evaluate` and the `vae_jax.main`
  entry point. It is skipped (returns False) where the C library is not glibc, or
  where any of MALLOC_ENVIRONMENT is set: set one of them (for example
  `MALLOC_TRIM_THRESHOLD_=131072`, glibc's default) to keep glibc's behaviour or
  your own settings. (With another allocator preloaded, this changes nothing.)

  Returns:
    Whether the settings were applied.
  """
  if platform.libc_ver()[0] != "glibc":
    return False
  if any(name in os.environ for name in MALLOC_ENVIRONMENT):
    return False
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  applied = (libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
             and libc.mallopt(_M_ARENA_MAX, 1) == 1)
  if applied:
    logging.log_first_n(logging.DEBUG, "glibc malloc keeps freed memory for reuse (vae_jax.host_memory).", 1)
  return applied
