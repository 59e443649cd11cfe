"""XLA:CPU setting that keeps convolutions off YNNPACK, applied by ``import rolo_jax``.

jaxlib 0.10's CPU backend hands dot products and convolutions to YNNPACK ("ynn_fusion" in a
profile). For the Re3 encoder's convolution gradients that is the slow choice: the weight gradient of
the tiny config's conv1 (11×11, stride 4, 3 → 16 channels, 128 crops of 83 px) took 66–76 ms with
YNNPACK and 20–21 ms with XLA's own (Eigen) convolution (jitted alone, medians of 30 runs;
WORKSPACE.md, Re3, "Session 22"), and 23 to 100 ms of an update inside the training step. Keeping YNNPACK for dot products only,

    --xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT

made the default Re3 training 1.1–1.8x faster per stage on a 2-core AMD EPYC, on top of the
session's other two changes (`python -m experiments.benchmark --only re3_train --repeats 5`;
figures in WORKSPACE.md, "Session 22"); in short training runs YNNPACK off altogether was a little
slower than this, and jaxlib's default (YNNPACK for convolutions too) slower still.

``tune()`` adds the flag to ``XLA_FLAGS`` before JAX builds its backend (XLA reads the variable
once, at that point; a process that ran a JAX computation before importing rolo_jax keeps what it
had). It does nothing when:

* ``ROLO_JAX_XLA=default`` is set (jaxlib's own choice);
* ``XLA_FLAGS`` already names ``xla_cpu_experimental_ynn_fusion_type`` (the user's value wins);
* the installed jaxlib is not 0.10.2 or a later 0.10 release (it was measured on 0.10.2, whose
  library holds the flag and its value): XLA aborts the process on a flag or value it does not
  know, so the flag is only passed to a jaxlib expected to have it.

The flag concerns XLA:CPU only; a GPU backend ignores it. It is set in the process's environment,
so child processes inherit it (a child that runs another jaxlib or XLA gets it too; set
``ROLO_JAX_XLA=default`` there).

What it costs: on the same machine one-target tracking with the tiny config ran ~20% slower
(340–375 against 430–465 frames/s); 8 targets and the paper config tracked 5–30% faster.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from rolo_jax._malloc import wanted

FLAG = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
ENV = "ROLO_JAX_XLA"
JAXLIB_RANGE = ((0, 10, 2), (0, 11, 0))   # [from, to): jaxlib releases expected to accept FLAG

_applied: Optional[str] = None


def _jaxlib_version() -> Optional[tuple]:
  """(major, minor, patch) of the installed jaxlib, or None (not installed, or unreadable)."""
  try:
    from importlib.metadata import version
    v = version("jaxlib")
  except Exception:   # PackageNotFoundError or a broken install: pass nothing
    return None
  m = re.match(r"(\d+)\.(\d+)\.(\d+)", v)   # '0.10.2', '0.10.2.dev20260101', '0.10.3rc1'
  return tuple(int(g) for g in m.groups()) if m else None


def known_jaxlib() -> bool:
  """Whether the installed jaxlib is in JAXLIB_RANGE (and so gets FLAG)."""
  v = _jaxlib_version()
  return v is not None and JAXLIB_RANGE[0] <= v < JAXLIB_RANGE[1]


def tune() -> Optional[str]:
  """Add FLAG to XLA_FLAGS once per process; returns the flag added, or None where nothing was.

  Any value of ``ROLO_JAX_XLA`` other than '', 'tuned' (apply) and 'default' warns
  (RuntimeWarning, naming the variable and the values it takes) and applies nothing.
  """
  global _applied
  if not wanted(ENV, "jaxlib's own XLA:CPU settings", "jaxlib's"):
    return None
  if _applied is not None:
    return _applied
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in current or not known_jaxlib():
    return None
  os.environ["XLA_FLAGS"] = (current + " " + FLAG).strip()
  _applied = FLAG
  return _applied
