"""glibc allocator settings that stop XLA:CPU training from handing its memory back to the kernel.

XLA:CPU allocates each step's temporaries with ``malloc`` and frees them when the step ends; the
training loop's prefetch thread builds the next batch at the same time. With glibc's defaults,
large blocks are ``mmap``-ed and ``munmap``-ed one by one, a freed heap top is trimmed, and the
second thread gets its own arena whose heaps are unmapped whenever they empty, so every step
touches fresh pages again. A Re3 training run on a 2-core CPU took ~160,000 minor page faults per
second and spent a quarter to a third of its CPU time in the kernel (session 13, /proc/PID/stat).
Four `mallopt` settings keep the memory mapped:

* ``M_MMAP_THRESHOLD`` 32 MiB (glibc's maximum): blocks below it come from the heap (this also
  turns off glibc's sliding threshold);
* ``M_TRIM_THRESHOLD`` 1 GiB: a freed heap top is kept up to this size instead of being trimmed;
* ``M_TOP_PAD`` 256 MiB: the heap grows in steps of this much address space (pages are only
  backed when touched);
* ``M_ARENA_MAX`` 1: every thread allocates from the main heap, which the two settings above
  govern (a thread arena's heap is unmapped when it empties, whatever the trim threshold).

Measured on the default Re3 training (`python -m experiments.re3_curriculum --stop_after 150
--noprogress --noeval --workdir W`, stage 0, 83-px tiny, quiet 2-core machine, back to back):
360 frames/s, 18.6 s system CPU and 6.0 M minor faults with glibc's defaults; 384 frames/s and
5.8 M faults with the first three settings only; 510 frames/s, 4.2 s and 0.74 M faults with all
four. The price is resident memory that glibc no longer returns (up to 1 GiB of freed heap per
process) and one allocator lock shared by all threads, which a program with many allocating
threads may feel: OpenCV's CSRT, run in the same process by the Re3 experiment's evaluation, tracked
the synthetic test videos at 63–66 frames/s with these settings against 70–80 without (4 sequences,
two runs each).

`tune()` is called by ``import rolo_jax`` (so every command and test gets it), before the package
starts any thread. It does nothing on a C library other than glibc or when ``ROLO_JAX_MALLOC=default``
is set in the environment.
"""
from __future__ import annotations

import ctypes
import os
import platform
import warnings
from typing import Dict, Optional

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

SETTINGS = {"M_MMAP_THRESHOLD": (M_MMAP_THRESHOLD, 32 << 20),
            "M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, 1 << 30),
            "M_TOP_PAD": (M_TOP_PAD, 256 << 20),
            "M_ARENA_MAX": (M_ARENA_MAX, 1)}
ENV = "ROLO_JAX_MALLOC"

_applied: Optional[Dict[str, int]] = None


def wanted(env: str, own: str, whose: str) -> bool:
  """Whether the environment switch ``env`` asks for a setting: unset, '' or 'tuned' yes, 'default'
  no; any other value warns (RuntimeWarning naming the variable and its two values; ``own``
  describes what 'default' keeps, ``whose`` whose settings stay) and is a no. Shared by this
  module and `rolo_jax._xla`."""
  choice = os.environ.get(env, "tuned").strip().lower()
  if choice not in ("", "tuned", "default"):
    warnings.warn(f"environment variable {env}={os.environ[env]!r} is not 'tuned' (the default) or 'default' "
                  f"({own}); keeping {whose} settings", RuntimeWarning, stacklevel=3)
    return False
  return choice != "default"


def tune() -> Optional[Dict[str, int]]:
  """Apply SETTINGS with glibc's mallopt once per process.

  Returns {name: value} of the settings glibc accepted, or None where nothing was applied (not
  glibc, ``ROLO_JAX_MALLOC=default``, or libc not loadable). Any other value of ``ROLO_JAX_MALLOC``
  than '', 'tuned' (apply) and 'default' warns (RuntimeWarning, naming the variable and the values
  it takes) and applies nothing: this runs inside ``import rolo_jax``, where an exception would be
  a bare traceback.
  """
  global _applied
  if not wanted(ENV, "glibc's own allocator settings", "glibc's") or platform.libc_ver()[0] != "glibc":
    return None
  if _applied is not None:
    return dict(_applied)
  try:   # the process's own symbols: libc is loaded already (find_library would run ldconfig)
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return None
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  _applied = {k: v for k, (param, v) in SETTINGS.items() if mallopt(param, v) == 1}
  return dict(_applied)
