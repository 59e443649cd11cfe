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
              min_rows: int = 0,
              one_row_per_frame: bool = True) -> np.ndarray:
  """Reads a text file of numeric rows into float64 [N, C].

  Args:
    path: the file.
    ncols: accepted column count(s); a row with another count is an error. With several accepted
      counts, all rows must have the same count (the first row decides).
    allow_nan: accept 'nan'/'NaN' fields (UAV123 absent-target rows). Otherwise NaN is an error.
    what: what a row should hold, for the error message.
    skip_blank: ignore blank lines (trailing newlines are common). With `one_row_per_frame`, only
      those at the end of the file.
    one_row_per_frame: row i belongs to frame i (ground-truth and result files): a blank line with
      rows after it is an error, since skipping it would pair every later row with the wrong
      frame. False for files whose rows name their frame (MOTChallenge) or hold ranges.
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
  blank: Optional[int] = None    # the first blank line not yet followed by a row
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    for lineno, line in enumerate(f, start=1):
      toks = parse_row(line)
      if not toks:
        if not skip_blank:
          raise DataError(path, f"blank line, expected {what}", line=lineno)
        blank = lineno if blank is None else blank
        continue
      if blank is not None and one_row_per_frame:
        raise DataError(path, f"blank line with more rows after it (line {lineno}); each line "
                              f"holds one frame's {what}, so a skipped line would pair every later "
                              f"row with the wrong frame", line=blank)
      if len(toks) not in accepted or (width is not None and len(toks) != width):
        want = width if width is not None else " or ".join(map(str, accepted))
        raise DataError(path, f"expected {want} numbers ({what}), got {len(toks)}: {line.strip()!r}",
                        line=lineno)
      width = len(toks)
      vals = []
      for t in toks:
        try:
          if "_" in t:   # float() reads '2_5' as 25
            raise ValueError(t)
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
