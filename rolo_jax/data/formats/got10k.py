"""GOT-10k sequences.

Layout::

  <root>/<split>/list.txt                  sequence names (optional)
  <root>/<split>/<seq>/00000001.jpg ...    frames
  <root>/<split>/<seq>/groundtruth.txt     x,y,w,h per frame (test split: the first frame only)
  <root>/<split>/<seq>/absence.label       1 = target absent in that frame (train/val)
  <root>/<split>/<seq>/cover.label         0..8, visible fraction of the target in eighths
  <root>/<split>/<seq>/cut_by_image.label  1 = target cut by the image border
  <root>/<split>/<seq>/meta_info.ini       [METAINFO] url, object_class, motion_class, resolution...

Absent frames (absence.label = 1) get a NaN box; the rows as written stay in
``meta['boxes_original']``. A ground truth with a single row for a multi-frame sequence (the test
split) gives the first box and NaN for the rest, with ``meta['first_box_only'] = True``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence as Seq

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.images import list_images
from rolo_jax.data.sequence import ImageFiles, Sequence
from rolo_jax.errors import DataError


def read_got10k_meta(path: str | os.PathLike) -> Dict[str, Any]:
  """Parses meta_info.ini into a flat {key: value} dict (all sections merged).

  'resolution' ('(1280, 720)') becomes a (width, height) tuple of ints; other values stay strings.
  """
  path = os.fspath(path)
  info: Dict[str, Any] = {}
  for section in _common.read_ini(path).values():
    info.update(section)
  res = info.get("resolution")
  if isinstance(res, str):
    toks = [t for t in res.strip("()[] ").replace(",", " ").split() if t]
    try:
      info["resolution"] = tuple(int(float(t)) for t in toks)
    except ValueError:
      raise DataError(path, f"resolution should be '(width, height)', got {res!r}") from None
  return info


def _labels(path: str, n: int, what: str, lo: int, hi: int) -> np.ndarray:
  vals, lines = _common.read_flag_file(path, what)
  bad = np.nonzero((vals < lo) | (vals > hi))[0]
  if len(bad):
    raise DataError(path, f"expected {what} in {lo}..{hi}, got {vals[bad[0]]}", line=lines[bad[0]])
  if len(vals) != n:
    raise DataError(path, f"has {len(vals)} values but the sequence has {n} frames")
  return vals


def read_got10k_sequence(seq_dir: str | os.PathLike, *, strict: bool = True) -> Sequence:
  """Reads one GOT-10k sequence folder.

  Returns:
    Sequence; meta: 'absent' bool [T], 'cover' int [T], 'cut_by_image' bool [T] (each when its
    file exists), 'boxes_original' [T, 4], 'info' (meta_info.ini), 'class' (object_class),
    'first_box_only'.
  Raises:
    DataError for a missing folder/groundtruth.txt, malformed rows (file and line), label files
    with another length than the frames, or a frame/box count mismatch (strict).
  """
  seq_dir = _common.require_dir(seq_dir, "GOT-10k sequence")
  gt_path = os.path.join(seq_dir, "groundtruth.txt")
  rows, lines = _common.rows_with_lines(_common.require_file(gt_path, "GOT-10k ground-truth"), 4)
  _common.check_nonnegative_size(gt_path, rows, lines)
  images = list_images(seq_dir)
  T = len(images)
  meta: Dict[str, Any] = {"gt_file": gt_path, "first_box_only": False}
  if len(rows) == 1 and T > 1:
    boxes = np.full((T, 4), np.nan)
    boxes[0] = rows[0]
    meta["first_box_only"] = True
    n = T
  else:
    n = _common.count_mismatch(strict, gt_path, len(rows), "the sequence folder", T,
                               f"pass strict=False to use the first {min(len(rows), T)} frames",
                               images)
    boxes = rows[:n].copy()
  meta["boxes_original"] = boxes.copy()
  for fname, key, lo, hi in (("absence.label", "absent", 0, 1), ("cover.label", "cover", 0, 8),
                             ("cut_by_image.label", "cut_by_image", 0, 1)):
    path = os.path.join(seq_dir, fname)
    if os.path.isfile(path):
      vals = _labels(path, T, f"{fname} value", lo, hi)[:n]
      meta[key] = vals.astype(bool) if hi == 1 else vals
  if "absent" in meta:
    boxes[meta["absent"]] = np.nan
  info_path = os.path.join(seq_dir, "meta_info.ini")
  if os.path.isfile(info_path):
    meta["info"] = read_got10k_meta(info_path)
    if "object_class" in meta["info"]:
      meta["class"] = meta["info"]["object_class"]
  numbers = _common.frame_numbers_of(images)
  if numbers is None:
    numbers = np.arange(1, T + 1)
  name = os.path.basename(os.path.normpath(seq_dir))
  return Sequence(name, ImageFiles(images[:n]), boxes, numbers[:n], meta)


def read_got10k_dataset(root: str | os.PathLike, *, split: Optional[str] = None,
                        strict: bool = True, names: Optional[Seq[str]] = None) -> List[Sequence]:
  """Reads a GOT-10k split.

  Args:
    root: the GOT-10k folder (with train/ val/ test/) when `split` is given, else the split folder.
    split: 'train', 'val' or 'test'.
    names: read only these sequences; default list.txt, else every folder with groundtruth.txt.
  """
  root = _common.require_dir(root, "GOT-10k dataset")
  if split is not None:
    root = _common.require_dir(os.path.join(root, split), f"GOT-10k {split} split")
  if names is None:
    names = _common.dataset_names(root, "GOT-10k")
  elif not names:
    raise DataError(root, "no GOT-10k sequences asked for (names is empty)")
  return [read_got10k_sequence(os.path.join(root, n), strict=strict) for n in names]
