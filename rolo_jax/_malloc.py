"""glibc allocator settings that stop XLA:CPU from handing its buffers back to the kernel every step.

XLA:CPU allocates each step's temporaries with ``malloc`` and frees them when the step ends. With
glibc's defaults, large blocks are ``mmap``-ed and ``munmap``-ed one by one and a freed heap top is
trimmed, so the next step touches fresh pages again. In a Re3 training step on a 2-core CPU that
costs ~180,000 minor page faults per second and a third of the process's CPU time in the kernel
(session 13, /proc/PID/stat of a training run). Three `mallopt` settings keep the memory mapped:

* ``M_MMAP_THRESHOLD`` 32 MiB (glibc's maximum): blocks below it come from the heap (this also
  turns off glibc's sliding threshold);
* ``M_TRIM_THRESHOLD`` 1 GiB: a freed heap top is kept up to this size instead of being trimmed;
* ``M_TOP_PAD`` 256 MiB: the heap grows in steps of this much address space (pages are only
  backed when touched).

Measured with ``python -m experiments.benchmark --only re3_train --repeats 3 --re3_train_steps 20``
(tiny, 67-px crops, quiet 2-core machine, minutes apart): 618 / 617 / 625 / 664 / 559 frames/s per
stage without, 997 / 1,034 / 932 / 853 / 747 with these settings (given as glibc's ``MALLOC_*_``
environment variables); 32 s against 12 s of system CPU time and 9.8 M against 2.8 M minor faults
for the whole command. The price is resident memory that glibc no longer returns: up to 1 GiB of
freed heap per process.

`tune()` is called by ``import rolo_jax`` (so every command and test gets it). It does nothing on
a C library other than glibc or when ``ROLO_JAX_MALLOC=default`` is set in the environment.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import warnings
from typing import Dict, Optional

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

SETTINGS = {"M_MMAP_THRESHOLD": (M_MMAP_THRESHOLD, 32 << 20),
            "M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, 1 << 30),
            "M_TOP_PAD": (M_TOP_PAD, 256 << 20)}
ENV = "ROLO_JAX_MALLOC"

_applied: Optional[Dict[str, int]] = None


def tune() -> Optional[Dict[str, int]]:
  """Apply SETTINGS with glibc's mallopt once per process.

  Returns {name: value} of the settings glibc accepted, or None where nothing was applied (not
  glibc, ``ROLO_JAX_MALLOC=default``, or libc not loadable). Any other value of ``ROLO_JAX_MALLOC``
  than '', 'tuned' (apply) and 'default' warns (RuntimeWarning, naming the variable and the values
  it takes) and applies nothing: this runs inside ``import rolo_jax``, where an exception would be
  a bare traceback.
  """
  global _applied
  choice = os.environ.get(ENV, "tuned").strip().lower()
  if choice not in ("", "tuned", "default"):
    warnings.warn(f"environment variable {ENV}={os.environ[ENV]!r} is not 'tuned' (the default) or 'default' "
                  f"(glibc's own allocator settings); keeping glibc's settings", RuntimeWarning, stacklevel=2)
    return None
  if choice == "default" or platform.libc_ver()[0] != "glibc":
    return None
  if _applied is not None:
    return dict(_applied)
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return None
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  _applied = {k: v for k, (param, v) in SETTINGS.items() if mallopt(param, v) == 1}
  return dict(_applied)
