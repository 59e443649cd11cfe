"""Parsing numeric text rows (ground-truth and result files) with errors that name file and line."""
from __future__ import annotations

import math
import os
import re
from typing import Optional, Sequence as Seq

import numpy as np

from rolo_jax.errors import DataError

_SPLIT = re.compile(r"[,\t ;]+")


def parse_row(text: str) -> list[str]:
  """Splits one row on commas, tabs, spaces (mixed, as the OTB files are)."""
  return [t for t in _SPLIT.split(text.strip()) if t]


def read_rows(path: str | os.PathLike,
              ncols: int | Seq[int],
              *,
              allow_nan: bool = False,
              what: str = "x,y,w,h",
              skip_blank: bool = True,
              min_rows: int = 0) -> np.ndarray:
  """Reads a text file of numeric rows into float64 [N, C].

  Args:
    path: the file.
    ncols: accepted column count(s); a row with another count is an error. With several accepted
      counts, all rows must have the same count (the first row decides).
    allow_nan: accept 'nan'/'NaN' fields (UAV123 absent-target rows). Otherwise NaN is an error.
    what: what a row should hold, for the error message.
    skip_blank: ignore blank lines (trailing newlines are common).
    min_rows: fewer rows than this is an error.
  Returns:
    float64 array [N, C].
  Raises:
    DataError naming the file and line for a missing file, wrong column count, or non-number.
  """
  path = os.fspath(path)
  accepted = (ncols,) if isinstance(ncols, int) else tuple(ncols)
  if not os.path.isfile(path):
    raise DataError(path, "file does not exist")
  rows: list[list[float]] = []
  width: Optional[int] = None
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    for lineno, line in enumerate(f, start=1):
      toks = parse_row(line)
      if not toks:
        if skip_blank:
          continue
        raise DataError(path, f"blank line, expected {what}", line=lineno)
      if len(toks) not in accepted or (width is not None and len(toks) != width):
        want = width if width is not None else " or ".join(map(str, accepted))
        raise DataError(path, f"expected {want} numbers ({what}), got {len(toks)}: {line.strip()!r}",
                        line=lineno)
      width = len(toks)
      vals = []
      for t in toks:
        try:
          v = float(t)
        except ValueError:
          raise DataError(path, f"not a number: {t!r} in {line.strip()!r} (expected {what})",
                          line=lineno) from None
        if math.isnan(v) and not allow_nan:
          raise DataError(path, f"NaN value in {line.strip()!r} (expected {what})", line=lineno)
        if math.isinf(v):
          raise DataError(path, f"infinite value in {line.strip()!r} (expected {what})", line=lineno)
        vals.append(v)
      rows.append(vals)
  if len(rows) < min_rows:
    raise DataError(path, f"expected at least {min_rows} rows of {what}, found {len(rows)}")
  if not rows:
    return np.zeros((0, accepted[0]), np.float64)
  return np.asarray(rows, np.float64)
