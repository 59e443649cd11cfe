"""MOTChallenge (MOT15/16/17/20) sequences, ground truth, detections and tracker results.

Layout::

  <root>/<split>/<seq>/seqinfo.ini      [Sequence] name, imDir, frameRate, seqLength, imWidth,
                                        imHeight, imExt
  <root>/<split>/<seq>/img1/000001.jpg  frames (file number = frame number, 1-based)
  <root>/<split>/<seq>/gt/gt.txt        ground truth (train split only)
  <root>/<split>/<seq>/det/det.txt      public detections

Rows (comma separated), by column count:
  7:  frame, id, x, y, w, h, conf                       (MOT17 det.txt)
  8:  ... conf, class
  9:  ... conf, class, visibility                       (MOT16/17/20 gt.txt)
  10: ... conf, wx, wy, wz                              (MOT15 files, MOT16 det.txt; world
                                                         coordinates, usually -1, are dropped)
  6 (results only): frame, id, x, y, w, h
Frames are 1-based in the files and 0-based in `Objects` (frame - 1). Detections carry id -1.
In gt.txt the 7th column is the 'consider' flag (0 = ignore this box in evaluation); it is kept in
``Objects.score``. Class ids are MOTChallenge's (1 pedestrian ... 12 reflection, 13 crowd) and
index `MOT_CLASS_NAMES`; -1 when the file has no class column.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence as Seq

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.images import image_size, list_images, natural_key
from rolo_jax.data.sequence import ImageFiles, MultiSequence, Objects
from rolo_jax.errors import DataError

MOT_CLASS_NAMES: List[str] = [
    "unknown", "pedestrian", "person_on_vehicle", "car", "bicycle", "motorbike",
    "non_motorized_vehicle", "static_person", "distractor", "occluder", "occluder_on_ground",
    "occluder_full", "reflection", "crowd",
]
"""Names of MOTChallenge class ids (index = class id; 0 is not used by the benchmark)."""

_COLUMNS = {"gt": (7, 8, 9, 10), "det": (7, 8, 9, 10), "results": (6, 7, 8, 9, 10)}
_WHAT = "frame,id,x,y,w,h,conf[,class,visibility | ,wx,wy,wz]"


def read_mot_file(path: str | os.PathLike, kind: str = "gt", *, allow_empty: bool = True) -> Objects:
  """Reads a MOTChallenge text file into an `Objects` table.

  Args:
    path: gt.txt, det.txt or a tracker's results file.
    kind: 'gt' (ids must be >= 0 and unique per frame), 'det' (any id, usually -1) or 'results'
      (ids >= 0, unique per frame).
    allow_empty: False: a file without rows is a DataError (a ground truth to score against, the
      detections to track).
  Returns:
    Objects with frame 0-based (file frame - 1), box x,y,w,h, score (conf column; 1 when absent),
    label (class column or -1), visibility (column 9 or 1). An empty file gives empty Objects.
  Raises:
    DataError naming the file and line for: a missing file, a wrong column count, a non-number,
    a frame < 1 or non-integer frame/id, a negative width/height, a duplicate (frame, id) in
    gt/results, a gt box whose x+w, y+h or 2*w*h overflows.
  """
  if kind not in _COLUMNS:
    raise ValueError(f"kind must be one of {sorted(_COLUMNS)}, got {kind!r}")
  path = _common.require_file(path, f"MOT {kind}")
  rows, lines = _common.rows_with_lines(path, _COLUMNS[kind], what=_WHAT, one_row_per_frame=False)
  if len(rows) == 0:
    if not allow_empty:
      why = "there are no detections to track" if kind == "det" else "there is nothing to score against"
      raise DataError(path, f"the {'ground truth' if kind == 'gt' else kind + ' file'} has no rows: "
                            f"{why} (expected frame,id,x,y,w,h,... rows)")
    return Objects.empty()
  frame = _common.check_integer(path, rows[:, 0], lines, "frame")
  bad = np.nonzero(frame < 1)[0]
  if len(bad):
    raise DataError(path, f"frame numbers start at 1, got {frame[bad[0]]}", line=int(lines[bad[0]]))
  tid = _common.check_integer(path, rows[:, 1], lines, "id")
  boxes = rows[:, 2:6]
  _common.check_nonnegative_size(path, boxes, lines)
  if kind == "gt":
    # A gt row that no box can overlap is an error in the file (whatever its consider flag or
    # class); results and detections may hold such a box: it matches nothing.
    _common.check_scorable_size(path, boxes, lines)
  ncol = rows.shape[1]
  score = rows[:, 6] if ncol >= 7 else None
  label = visibility = None
  if ncol in (8, 9):
    label = _common.check_integer(path, rows[:, 7], lines, "class")
  if ncol == 9:
    visibility = rows[:, 8]
  if kind != "det":
    bad = np.nonzero(tid < 0)[0]
    if len(bad):
      raise DataError(path, f"{kind} rows need a track id >= 0, got {tid[bad[0]]}",
                      line=int(lines[bad[0]]))
    key = frame * (int(tid.max()) + 1) + tid
    order = np.argsort(key, kind="stable")
    dup = np.nonzero(np.diff(key[order]) == 0)[0]
    if len(dup):
      i, j = order[dup[0]], order[dup[0] + 1]
      raise DataError(path, f"frame {frame[j]} has id {tid[j]} twice (first on line {lines[i]})",
                      line=int(lines[j]))
  return Objects.from_arrays(frame - 1, tid, boxes, score=score, label=label, visibility=visibility)


def read_seqinfo(path: str | os.PathLike) -> Dict[str, Any]:
  """seqinfo.ini [Sequence] as a dict; frameRate, seqLength, imWidth, imHeight become ints."""
  path = os.fspath(path)
  sections = _common.read_ini(path)
  info: Dict[str, Any] = dict(sections.get("Sequence", next(iter(sections.values()), {})))
  for k in ("frameRate", "seqLength", "imWidth", "imHeight"):
    if k in info:
      try:
        info[k] = int(float(info[k]))
      except ValueError:
        raise DataError(path, f"{k} should be a number, got {info[k]!r}") from None
  return info


def _keep_frames(objs: Objects, n_frames: int) -> tuple:
  keep = objs.frame < n_frames
  return objs.select(keep), int((~keep).sum())


def read_mot_sequence(seq_dir: str | os.PathLike, *, strict: bool = True) -> MultiSequence:
  """Reads one MOTChallenge sequence folder.

  Frames are the images of imDir (img1/), which must be numbered 1..K without gaps. When K is
  less than seqLength (a cut-down copy such as MOT17-mini), gt and detection rows for frames
  beyond K are dropped and the meta says how many ('frames_missing', 'gt_dropped',
  'detections_dropped', 'note').

  Args:
    seq_dir: the sequence folder.
    strict: more images than seqLength, or an image size other than imWidth x imHeight, is a
      DataError (with False, only recorded in meta).
  Returns:
    MultiSequence with gt (None without gt/gt.txt), detections (None without det/det.txt),
    class_names = MOT_CLASS_NAMES, meta = seqinfo fields plus the counts above.
  """
  seq_dir = _common.require_dir(seq_dir, "MOT sequence")
  ini = os.path.join(seq_dir, "seqinfo.ini")
  info = read_seqinfo(ini) if os.path.isfile(ini) else {}
  img_dir = _common.require_dir(os.path.join(seq_dir, info.get("imDir", "img1")), "MOT image")
  images = list_images(img_dir)
  ext = info.get("imExt")
  if ext:
    images = [p for p in images if p.lower().endswith(ext.lower())]
    if not images:
      raise DataError(img_dir, f"no {ext} images (imExt in seqinfo.ini)")
  numbers = _common.frame_numbers_of(images)
  if numbers is None or not np.array_equal(numbers, np.arange(1, len(images) + 1)):
    have = set(numbers.tolist()) if numbers is not None else set()
    gap = next(i for i in range(1, len(images) + 2) if i not in have)
    raise DataError(img_dir, f"frames must be numbered 1..{len(images)} without gaps; frame {gap} "
                    f"is missing (expected a name like {gap:06d}{ext or '.jpg'})")
  K = len(images)
  meta: Dict[str, Any] = dict(info)
  seq_len = info.get("seqLength")
  if seq_len is not None and K > seq_len and strict:
    raise DataError(img_dir, f"has {K} images but seqLength in {ini} is {seq_len}")
  if "imWidth" in info and "imHeight" in info:
    wh = image_size(images[0])
    if wh != (info["imWidth"], info["imHeight"]):
      if strict:
        raise DataError(images[0], f"image is {wh[0]}x{wh[1]} but {ini} says "
                        f"{info['imWidth']}x{info['imHeight']}")
      meta["size_mismatch"] = wh
  meta["frames_missing"] = max(0, (seq_len or K) - K)
  gt = det = None
  gt_path = os.path.join(seq_dir, "gt", "gt.txt")
  if os.path.isfile(gt_path):
    gt, meta["gt_dropped"] = _keep_frames(read_mot_file(gt_path, "gt"), K)
  det_path = os.path.join(seq_dir, "det", "det.txt")
  if os.path.isfile(det_path):
    det, meta["detections_dropped"] = _keep_frames(read_mot_file(det_path, "det"), K)
  if meta["frames_missing"] or meta.get("gt_dropped") or meta.get("detections_dropped"):
    meta["note"] = (f"img1/ holds frames 1..{K} of {seq_len or K}; kept gt/detections of those "
                    f"frames, dropped {meta.get('gt_dropped', 0)} gt rows and "
                    f"{meta.get('detections_dropped', 0)} detections of later frames")
  name = info.get("name") or os.path.basename(os.path.normpath(seq_dir))
  return MultiSequence(name, ImageFiles(images), gt, det, list(MOT_CLASS_NAMES), meta)


def is_mot_sequence_dir(path: str) -> bool:
  return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "seqinfo.ini"))
                                  or os.path.isdir(os.path.join(path, "img1")))


def read_mot_dataset(root: str | os.PathLike, *, split: Optional[str] = None, strict: bool = True,
                     names: Optional[Seq[str]] = None) -> List[MultiSequence]:
  """Reads the MOTChallenge sequences under `root` (sequence folders up to 3 levels down:
  root/<seq>, root/<split>/<seq>, root/<benchmark>/<split>/<seq>; sequence folders are those
  with seqinfo.ini or img1/, other entries are skipped).

  Args:
    root: a benchmark folder (MOT17/), a split folder (MOT17/train/) or a folder of benchmarks.
    split: only root/<split>.
    names: only these sequence folders.
  """
  root = _common.require_dir(root, "MOT dataset")
  if split is not None:
    root = _common.require_dir(os.path.join(root, split), f"MOT {split} split")
  found: List[str] = []

  def walk(d: str, depth: int):
    for e in sorted(os.listdir(d), key=natural_key):
      p = os.path.join(d, e)
      if is_mot_sequence_dir(p):
        found.append(p)
      elif os.path.isdir(p) and depth < 3:
        walk(p, depth + 1)

  walk(root, 1)
  if names is not None:
    by_name = {os.path.basename(p): p for p in found}
    missing = [n for n in names if n not in by_name]
    if missing:
      raise DataError(root, f"no MOT sequence folder {missing[0]!r}")
    found = [by_name[n] for n in names]
  if not found:
    raise DataError(root, "no MOT sequence folders (with seqinfo.ini or img1/)")
  return [read_mot_sequence(p, strict=strict) for p in found]
