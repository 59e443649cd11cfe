"""VOT challenge sequences (VOT2013-2019 layout and the VOT2020+ 'color/' layout).

Layout::

  <root>/list.txt                     sequence names, one per line (optional)
  <root>/<seq>/color/00000001.jpg ... frames (VOT2020+), or <root>/<seq>/00000001.jpg (older)
  <root>/<seq>/groundtruth.txt        one region per frame
  <root>/<seq>/<tag>.tag|.label       optional per-frame 0/1 tags (occlusion.tag, camera_motion.tag)

A region row is one of
  * 4 numbers x, y, w, h (rectangle);
  * 2K >= 6 numbers x1, y1, ..., xK, yK (polygon, K = 4 corners in practice; rotated boxes). The box
    is the polygon's axis-aligned bounding box:
      x = min_i x_i, y = min_i y_i, w = max_i x_i - min_i x_i, h = max_i y_i - min_i y_i,
    and the corners are kept in ``meta['polygons'][t]`` ([K, 2]; None for other rows);
  * 'm' + x0, y0, W, H, r1, r2, ... (VOT2020 mask: run lengths over the W x H mask placed at
    (x0, y0), row-major, alternating 0-runs and 1-runs starting with 0s). The box spans the mask's
    pixels: x = x0 + min col, w = max col - min col + 1 (same for y);
  * a single number (VOT special codes: 0 unknown, 1 initialise, 2 failure) -> absent.
Absent targets (rows of NaN, all-zero rectangles or polygons, special codes, empty masks) get a
NaN box; ``meta['region_type']`` says per frame which kind the row was.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.formats.textrows import parse_row
from rolo_jax.data.images import list_images
from rolo_jax.data.sequence import ImageFiles, Sequence
from rolo_jax.errors import DataError

_NAN4 = np.full(4, np.nan)


def _floats(path: str, toks: List[str], line: int, what: str) -> np.ndarray:
  vals = []
  for t in toks:
    try:
      v = float(t)
    except ValueError:
      raise DataError(path, f"not a number: {t!r} (expected {what})", line=line) from None
    if math.isinf(v):
      raise DataError(path, f"infinite value {t!r} (expected {what})", line=line)
    vals.append(v)
  return np.asarray(vals, np.float64)


def mask_region_box(tokens: Seq[str], path: str = "<region>", line: Optional[int] = None) -> np.ndarray:
  """x, y, w, h of a VOT2020 RLE mask region given its fields after 'm' (NaN for an empty mask)."""
  vals = _floats(path, list(tokens), line, "m x0,y0,W,H,run lengths")
  if len(vals) < 4 or np.any(vals < 0) or np.any(vals != np.round(vals)):
    raise DataError(path, "mask region needs whole non-negative numbers x0,y0,W,H,runs...", line=line)
  x0, y0, w, h = (int(v) for v in vals[:4])
  runs = vals[4:].astype(np.int64)
  if runs.sum() > w * h:
    raise DataError(path, f"mask run lengths add up to {runs.sum()} > W*H = {w * h}", line=line)
  starts = np.concatenate([[0], np.cumsum(runs)[:-1]]) if len(runs) else np.zeros(0, np.int64)
  ones = [(s, r) for i, (s, r) in enumerate(zip(starts, runs)) if i % 2 == 1 and r > 0]
  if not ones:
    return _NAN4.copy()
  idx = np.concatenate([np.arange(s, s + r) for s, r in ones])
  rows, cols = idx // w, idx % w
  return np.array([x0 + cols.min(), y0 + rows.min(), cols.max() - cols.min() + 1,
                   rows.max() - rows.min() + 1], np.float64)


def parse_vot_region(text: str, path: str = "<region>", line: Optional[int] = None
                     ) -> Tuple[np.ndarray, str, Optional[np.ndarray]]:
  """Parses one groundtruth.txt row.

  Returns:
    (box float64 [4] x,y,w,h (NaN when absent), kind in {'rect', 'polygon', 'mask', 'special'},
    polygon corners [K, 2] or None).
  """
  text = text.strip()
  if text.startswith("m"):
    return mask_region_box(parse_row(text[1:]), path, line), "mask", None
  toks = parse_row(text)
  what = "x,y,w,h or polygon x1,y1,...,x4,y4"
  vals = _floats(path, toks, line, what)
  if len(vals) == 1:
    return _NAN4.copy(), "special", None
  if len(vals) == 4:
    if np.any(np.isnan(vals)) or not np.any(vals):
      return _NAN4.copy(), "rect", None
    if vals[2] < 0 or vals[3] < 0:
      raise DataError(path, f"negative width/height in {text!r}", line=line)
    return vals, "rect", None
  if len(vals) >= 6 and len(vals) % 2 == 0:
    poly = vals.reshape(-1, 2)
    if np.any(np.isnan(vals)) or not np.any(vals):
      return _NAN4.copy(), "polygon", poly
    lo, hi = poly.min(0), poly.max(0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]), "polygon", poly
  raise DataError(path, f"expected 4 numbers (x,y,w,h) or an even number >= 6 (polygon corners), "
                  f"got {len(vals)}: {text!r}", line=line)


def read_vot_groundtruth(path: str | os.PathLike):
  """Reads a VOT groundtruth.txt.

  Returns:
    boxes float64 [T, 4] (NaN = absent), kinds list[str] [T], polygons list[[K, 2] | None] [T].
  """
  path = _common.require_file(path, "VOT ground-truth")
  boxes, kinds, polys = [], [], []
  with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      b, k, p = parse_vot_region(line, path, lineno)
      boxes.append(b)
      kinds.append(k)
      polys.append(p)
  return np.asarray(boxes, np.float64).reshape(-1, 4), kinds, polys


def _frames_dir(seq_dir: str) -> str:
  color = os.path.join(seq_dir, "color")
  return color if os.path.isdir(color) else seq_dir


def read_vot_sequence(seq_dir: str | os.PathLike, *, strict: bool = True) -> Sequence:
  """Reads one VOT sequence folder.

  Args:
    seq_dir: folder with groundtruth.txt and frames in color/ (or in the folder itself).
    strict: a frame/region count mismatch is a DataError; with False both are cut to the shorter.
  Returns:
    Sequence with meta 'region_type' [T], 'polygons' [T] (None or [K, 2]), 'tags' {name: bool [T]}
    from *.tag / *.label files (shorter tag files are padded with False, as the toolkit does).
  """
  seq_dir = _common.require_dir(seq_dir, "VOT sequence")
  gt_path = os.path.join(seq_dir, "groundtruth.txt")
  boxes, kinds, polys = read_vot_groundtruth(gt_path)
  fdir = _frames_dir(seq_dir)
  images = list_images(fdir)
  n = _common.count_mismatch(strict, gt_path, len(boxes),
                             "color/" if fdir != seq_dir else "the sequence folder", len(images),
                             f"pass strict=False to use the first {min(len(boxes), len(images))} frames",
                             images)
  meta: Dict[str, Any] = {"region_type": kinds[:n], "polygons": polys[:n], "gt_file": gt_path}
  tags = {}
  for fname in sorted(os.listdir(seq_dir)):
    stem, ext = os.path.splitext(fname)
    if ext not in (".tag", ".label"):
      continue
    tpath = os.path.join(seq_dir, fname)
    flags, lines = _common.read_flag_file(tpath, "0/1 per frame")
    flags = _common.check_binary(tpath, flags, lines, "0/1 per frame")
    if len(flags) > len(images):
      raise DataError(tpath, f"has {len(flags)} values but the sequence has {len(images)} frames")
    tags[stem] = np.pad(flags, (0, len(images) - len(flags)))[:n]
  meta["tags"] = tags
  numbers = _common.frame_numbers_of(images)
  if numbers is None:
    numbers = np.arange(1, len(images) + 1)
  name = os.path.basename(os.path.normpath(seq_dir))
  return Sequence(name, ImageFiles(images[:n]), boxes[:n], numbers[:n], meta)


def read_vot_dataset(root: str | os.PathLike, *, strict: bool = True,
                     names: Optional[Seq[str]] = None) -> List[Sequence]:
  """Reads a VOT dataset folder: the sequences of list.txt, else every folder with groundtruth.txt."""
  root = _common.require_dir(root, "VOT dataset")
  if names is None:
    names = _common.dataset_names(root, "VOT")
  elif not names:
    raise DataError(root, "no VOT sequences asked for (names is empty)")
  return [read_vot_sequence(os.path.join(root, n), strict=strict) for n in names]
