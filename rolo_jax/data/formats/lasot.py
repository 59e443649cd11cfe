"""LaSOT sequences.

Layout::

  <root>/<class>/<class>-<N>/img/00000001.jpg ...
  <root>/<class>/<class>-<N>/groundtruth.txt      x,y,w,h per frame (comma separated)
  <root>/<class>/<class>-<N>/full_occlusion.txt   0/1 per frame, comma separated on one line
  <root>/<class>/<class>-<N>/out_of_view.txt      0/1 per frame, comma separated on one line
  <root>/<class>/<class>-<N>/nlp.txt              optional one-sentence description
  <root>/testing_set.txt                          optional list of the test sequences

Choice: a frame where the target is fully occluded or out of view is a frame without a visible
target, so its box is NaN (Sequence convention: NaN = absent), exactly as LaSOT's protocol leaves
such frames out of the success/precision scores. The box as written stays in
``meta['boxes_original']`` and the flags in ``meta['full_occlusion']`` / ``meta['out_of_view']``
(bool [T]), so a user who wants the annotated box (for instance to train through an occlusion)
still has it.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence as Seq

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.images import list_images, natural_key
from rolo_jax.data.sequence import ImageFiles, Sequence
from rolo_jax.errors import DataError

_SEQ_NAME = re.compile(r"^(.+)-(\d+)$")


def _read_flags(path: str, T: int, what: str) -> np.ndarray:
  flags, lines = _common.read_flag_file(path, what)
  flags = _common.check_binary(path, flags, lines, what)
  _common.check_flag_count(path, len(flags), T, "groundtruth.txt", what)
  return flags


def read_lasot_sequence(seq_dir: str | os.PathLike, *, strict: bool = True) -> Sequence:
  """Reads one LaSOT sequence folder (<class>-<N>).

  Returns:
    Sequence with NaN boxes where fully occluded or out of view; meta 'class', 'full_occlusion',
    'out_of_view' (bool [T]), 'boxes_original' [T, 4], 'nlp' (when nlp.txt exists).
  Raises:
    DataError for a missing folder or file, malformed rows (file and line), flag files whose
    length differs from groundtruth.txt or with values other than 0/1, or a frame/box count
    mismatch (strict).
  """
  seq_dir = _common.require_dir(seq_dir, "LaSOT sequence")
  gt_path = os.path.join(seq_dir, "groundtruth.txt")
  rows, lines = _common.rows_with_lines(_common.require_file(gt_path, "LaSOT ground-truth"), 4)
  _common.check_nonnegative_size(gt_path, rows, lines)
  images = list_images(_common.require_dir(os.path.join(seq_dir, "img"), "LaSOT image (img/)"))
  T = len(rows)
  occ = _read_flags(os.path.join(seq_dir, "full_occlusion.txt"), T, "full occlusion flag")
  oov = _read_flags(os.path.join(seq_dir, "out_of_view.txt"), T, "out-of-view flag")
  n = _common.count_mismatch(strict, gt_path, T, "img/", len(images),
                             f"pass strict=False to use the first {min(T, len(images))} frames",
                             images)
  boxes = rows[:n].copy()
  boxes[(occ | oov)[:n]] = np.nan
  name = os.path.basename(os.path.normpath(seq_dir))
  m = _SEQ_NAME.match(name)
  meta: Dict[str, Any] = {
      "gt_file": gt_path,
      "class": m.group(1) if m else os.path.basename(os.path.dirname(os.path.normpath(seq_dir))),
      "full_occlusion": occ[:n],
      "out_of_view": oov[:n],
      "boxes_original": rows[:n],
  }
  nlp = os.path.join(seq_dir, "nlp.txt")
  if os.path.isfile(nlp):
    with open(nlp, "r", encoding="utf-8-sig", errors="replace") as f:
      meta["nlp"] = f.read().strip()
  numbers = _common.frame_numbers_of(images)
  if numbers is None:
    numbers = np.arange(1, len(images) + 1)
  return Sequence(name, ImageFiles(images[:n]), boxes, numbers[:n], meta)


def read_lasot_dataset(root: str | os.PathLike,
                       *,
                       split: Optional[str] = None,
                       classes: Optional[Seq[str]] = None,
                       names: Optional[Seq[str]] = None,
                       strict: bool = True) -> List[Sequence]:
  """Reads LaSOT sequences under <root>/<class>/<class>-<N>.

  Args:
    root: the LaSOT folder of class folders.
    split: 'test' reads the sequences of <root>/testing_set.txt, 'train' all others; None all.
    classes: only these class folders.
    names: only these sequences ('airplane-1').
  """
  root = _common.require_dir(root, "LaSOT dataset")
  found = []
  for cls in sorted(os.listdir(root), key=natural_key):
    cdir = os.path.join(root, cls)
    if not os.path.isdir(cdir) or (classes is not None and cls not in classes):
      continue
    for s in sorted(os.listdir(cdir), key=natural_key):
      if os.path.isdir(os.path.join(cdir, s)) and _SEQ_NAME.match(s):
        found.append((s, os.path.join(cdir, s)))
  if split is not None:
    if split not in ("train", "test"):
      raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    test = set(_common.read_name_list(os.path.join(root, "testing_set.txt")))
    found = [(s, p) for s, p in found if (s in test) == (split == "test")]
  if names is not None:
    have = dict(found)
    missing = [n for n in names if n not in have]
    if missing:
      raise DataError(root, f"no LaSOT sequence folder {missing[0]!r} (expected <class>/{missing[0]})")
    found = [(n, have[n]) for n in names]
  if not found:
    raise DataError(root, "no LaSOT sequences (<class>/<class>-<N>/ folders)")
  return [read_lasot_sequence(p, strict=strict) for _, p in found]
