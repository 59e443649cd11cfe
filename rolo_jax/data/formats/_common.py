"""Small helpers shared by the benchmark readers (private to `rolo_jax.data.formats`).

Every helper raises `DataError` naming the file (and line, where there is one) for bad input.
"""
from __future__ import annotations

import configparser
import os
import re
from typing import Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from rolo_jax.data.formats.textrows import parse_row, read_rows
from rolo_jax.errors import DataError

_TRAILING_DIGITS = re.compile(r"(\d+)$")


def require_dir(path: str | os.PathLike, what: str) -> str:
  """Returns `path` as str; DataError '<path>: <what> folder does not exist' otherwise."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    if os.path.exists(path):
      raise DataError(path, f"expected a {what} folder, found a file")
    raise DataError(path, f"{what} folder does not exist")
  return path


def require_file(path: str | os.PathLike, what: str) -> str:
  """Returns `path` as str; DataError '<path>: <what> file does not exist' otherwise."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(path, f"{what} file does not exist")
  return path


def content_lines(path: str) -> List[int]:
  """1-based line numbers of the non-blank lines of a text file (the rows `read_rows` returns)."""
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    return [i for i, line in enumerate(f, start=1) if parse_row(line)]


def rows_with_lines(path: str,
                    ncols: int | Seq[int],
                    *,
                    allow_nan: bool = False,
                    what: str = "x,y,w,h",
                    one_row_per_frame: bool = True) -> Tuple[np.ndarray, np.ndarray]:
  """`read_rows` plus the 1-based file line of every row, so later checks can name the line.

  Returns:
    rows: float64 [N, C]; lines: int64 [N].
  """
  rows = read_rows(path, ncols, allow_nan=allow_nan, what=what, one_row_per_frame=one_row_per_frame)
  lines = np.asarray(content_lines(path), np.int64)
  assert len(lines) == len(rows), (path, len(lines), len(rows))
  return rows, lines


def check_integer(path: str, values: np.ndarray, lines: np.ndarray, what: str) -> np.ndarray:
  """int64 copy of `values` ([N] or [N, C]); DataError at the first row with a non-integer value."""
  frac = values != np.round(values)
  if frac.ndim == 2:
    frac = frac.any(axis=1)
  bad = np.nonzero(frac)[0]
  if len(bad):
    i = bad[0]
    shown = values[i].tolist() if values.ndim == 2 else float(values[i])
    raise DataError(path, f"{what} must be a whole number, got {shown!r}", line=int(lines[i]))
  return values.astype(np.int64)


def check_nonnegative_size(path: str, boxes: np.ndarray, lines: np.ndarray) -> None:
  """DataError at the first row whose width or height is negative (NaN rows pass)."""
  with np.errstate(invalid="ignore"):
    bad = np.nonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))[0]
  if len(bad):
    i = bad[0]
    raise DataError(path, f"negative width/height in box x,y,w,h = {boxes[i].tolist()}",
                    line=int(lines[i]))


def check_scorable_size(path: str, boxes: np.ndarray, lines: np.ndarray) -> None:
  """DataError at the first row whose x+w, y+h or 2*w*h is beyond the float range (NaN rows pass).

  A ground-truth box like 1e308 (or 1e154 x 1e154) is finite, so the readers take it, but its
  overlap with a box equal to it overflows (the union adds the two areas): scored, it would count
  as a target that no box, not even itself, can match.
  """
  w, h = boxes[:, 2], boxes[:, 3]
  with np.errstate(over="ignore", invalid="ignore"):
    ends = np.stack([boxes[:, 0] + w, boxes[:, 1] + h, 2.0 * w * h], 1)
  huge = (~np.isfinite(ends)).any(axis=1) & ~np.isnan(boxes[:, :4]).any(axis=1)
  if huge.any():
    i = int(np.argmax(huge))
    raise DataError(path, f"box {boxes[i].tolist()} is too large to score (x+w, y+h or 2*w*h is "
                          "beyond the float range)", line=int(lines[i]))


def numeric_stem(path: str) -> Optional[int]:
  """The number at the end of a file's stem ('img/0300.jpg' -> 300), or None."""
  stem = os.path.splitext(os.path.basename(path))[0]
  m = _TRAILING_DIGITS.search(stem)
  return int(m.group(1)) if m else None


def frame_numbers_of(paths: Seq[str]) -> Optional[np.ndarray]:
  """int64 [N] frame numbers taken from the file names when every name carries a distinct one."""
  nums = [numeric_stem(p) for p in paths]
  if any(n is None for n in nums) or len(set(nums)) != len(nums):
    return None
  return np.asarray(nums, np.int64)


def count_mismatch(strict: bool, gt_path: str, n_boxes: int, frames_desc: str, n_frames: int,
                   hint: str, images: Optional[Seq[str]] = None) -> int:
  """Handles a frame/box count mismatch: DataError when strict, else the common length.

  The message says which side has more and how many, e.g.
  "img/ has 81 images but groundtruth_rect.txt has 74 boxes; <hint>".
  With `images` (the frame files the boxes are paired with in order), a gap in their numbering
  within the paired frames is an error first, strict or not: see `check_no_gaps`.
  """
  if images is not None:
    check_no_gaps(images, min(n_boxes, n_frames), gt_path)
  if n_boxes == n_frames:
    return n_frames
  if strict:
    raise DataError(gt_path, f"{frames_desc} has {n_frames} images but "
                    f"{os.path.basename(gt_path)} has {n_boxes} boxes; {hint}")
  return min(n_boxes, n_frames)


def check_no_gaps(images: Seq[str], n: int, gt_path: str) -> None:
  """DataError when the numbers in the names of images[:n] skip one (0049.jpg, then 0051.jpg).

  Boxes are paired with frame files by position, so a missing image would pair every later box with
  the wrong frame. Names without numbers are not checked (nothing to check them against)."""
  nums = frame_numbers_of(images[:n])
  if nums is None or len(nums) < 2:
    return
  jumps = np.nonzero(np.diff(nums) != 1)[0]
  if len(jumps):
    i = int(jumps[0])
    a, b = os.path.basename(images[i]), os.path.basename(images[i + 1])
    raise DataError(os.path.dirname(os.fspath(images[i + 1])),
                    f"frame numbers jump from {nums[i]} ({a}) to {nums[i + 1]} ({b}): is an image "
                    f"missing? {os.path.basename(gt_path)} holds one box per frame in order, so every "
                    f"box after the gap would be paired with the wrong image")


def read_ini(path: str) -> Dict[str, Dict[str, str]]:
  """Parses an ini file ('key=value' or 'key: value'); keys without a section go to ''.

  Returns:
    {section: {key: value}} with keys as written (case kept).
  """
  require_file(path, "ini")
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    text = f.read()
  parser = configparser.ConfigParser(delimiters=("=", ":"), interpolation=None, strict=False)
  parser.optionxform = str  # keep key case (seqinfo.ini uses camelCase)
  has_header = text.lstrip().startswith("[")
  if not has_header:
    text = "[__root__]\n" + text
  try:
    parser.read_string(text, source=path)
  except configparser.Error as e:
    line, text_at = getattr(e, "lineno", None), getattr(e, "line", None)
    if line is None and getattr(e, "errors", None):
      line, text_at = e.errors[0]
    if line is not None and not has_header:
      line -= 1
    if text_at is not None:
      shown = str(text_at).strip().strip("'\"").replace("\\n", "").strip()  # configparser gives a repr
      what = (f"cannot parse {shown!r}: expected 'key=value', 'key: value' or a [section] header")
    else:
      what = f"cannot parse ini file ({type(e).__name__}: {str(e).splitlines()[0]})"
    raise DataError(path, what, line=line) from None
  return {("" if s == "__root__" else s): dict(parser.items(s)) for s in parser.sections()}


def read_flag_file(path: str, what: str) -> Tuple[np.ndarray, List[int]]:
  """Reads 0/1 flags written comma-separated on one line or one per line (LaSOT, GOT-10k).

  Returns:
    flags: int64 [N]; lines: the 1-based line of each flag.
  """
  require_file(path, what)
  vals, lines = [], []
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    for lineno, line in enumerate(f, start=1):
      for tok in parse_row(line):
        try:
          v = float(tok)
        except ValueError:
          raise DataError(path, f"not a number: {tok!r} (expected {what})", line=lineno) from None
        if v != int(v):
          raise DataError(path, f"expected whole numbers ({what}), got {tok!r}", line=lineno)
        vals.append(int(v))
        lines.append(lineno)
  return np.asarray(vals, np.int64), lines


def check_binary(path: str, flags: np.ndarray, lines: List[int], what: str) -> np.ndarray:
  """bool [N]; DataError at the first value that is not 0 or 1."""
  bad = np.nonzero((flags != 0) & (flags != 1))[0]
  if len(bad):
    i = bad[0]
    raise DataError(path, f"expected 0 or 1 ({what}), got {flags[i]}", line=lines[i])
  return flags.astype(bool)


def check_flag_count(path: str, n_flags: int, n_frames: int, frames_desc: str, what: str) -> None:
  if n_flags != n_frames:
    raise DataError(path, f"has {n_flags} {what} values but {frames_desc} has {n_frames} frames")


def read_name_list(path: str) -> List[str]:
  """Non-blank stripped lines of a list file (list.txt, testing_set.txt)."""
  require_file(path, "sequence list")
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    return [ln.strip() for ln in f if ln.strip()]


def dataset_names(root: str, what: str) -> List[str]:
  """Sequence folders of a GOT-10k / VOT style dataset root: the names in ``list.txt`` (each must
  be a folder under root), else every folder holding a ``groundtruth.txt``, in natural order.

  Raises DataError naming list.txt and the line of a listed folder that does not exist, or the
  root when it holds no sequence at all.
  """
  from rolo_jax.data.images import natural_key

  list_path = os.path.join(root, "list.txt")
  if os.path.isfile(list_path):
    names = read_name_list(list_path)
    for i, n in enumerate(names):
      if not os.path.isdir(os.path.join(root, n)):
        raise DataError(list_path, f"lists sequence {n!r} but {os.path.join(root, n)} does not exist",
                        line=i + 1)
  else:
    names = [d for d in sorted(os.listdir(root), key=natural_key)
             if os.path.isfile(os.path.join(root, d, "groundtruth.txt"))]
  if not names:
    raise DataError(root, f"no {what} sequences (no list.txt and no folder with groundtruth.txt)")
  return names
