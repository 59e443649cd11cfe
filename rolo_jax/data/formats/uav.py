"""UAV123 / UAV20L (aerial tracking benchmark) sequences.

Layout::

  <root>/data_seq/UAV123/<folder>/000001.jpg ...   frames (image number = frame number)
  <root>/anno/UAV123/<seq>.txt                     one x,y,w,h row per frame; 'NaN,NaN,NaN,NaN'
                                                   where the target is absent
  <root>/anno/UAV20L/<seq>.txt                     the 20 long sequences (frames in data_seq/UAV123)

Some UAV123 annotation files cover part of a longer frame folder ('bird1_1', 'bird1_2', ... all
use data_seq/UAV123/bird1, with frame ranges defined by the benchmark's configSeqs). For those,
pass the range: ``ranges={'bird1_1': (1, 253), ...}``; without it the reader stops with a
DataError instead of guessing. Frames of a sequence are the images numbered start..end; without a
range, all images of the folder.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Optional, Sequence as Seq, Tuple

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.formats.textrows import read_rows
from rolo_jax.data.images import list_images, natural_key
from rolo_jax.data.sequence import ImageFiles, Sequence
from rolo_jax.errors import DataError

_PART = re.compile(r"^(.+)_(\d+)$")


def read_uav_annotation(path: str | os.PathLike) -> np.ndarray:
  """float64 [T, 4] x,y,w,h; rows with any NaN become all-NaN (absent target)."""
  rows, lines = _common.rows_with_lines(os.fspath(path), 4, allow_nan=True, what="x,y,w,h or NaN")
  rows[np.any(np.isnan(rows), axis=1)] = np.nan
  _common.check_nonnegative_size(os.fspath(path), rows, lines)
  return rows


def read_uav_sequence(anno_file: str | os.PathLike,
                      frames_dir: str | os.PathLike,
                      *,
                      start_frame: Optional[int] = None,
                      end_frame: Optional[int] = None,
                      strict: bool = True,
                      name: Optional[str] = None) -> Sequence:
  """Reads one UAV sequence.

  Args:
    anno_file: anno/UAV123/<seq>.txt.
    frames_dir: the frame folder (data_seq/UAV123/<folder>).
    start_frame, end_frame: 1-based frame numbers (image numbers) the annotation covers; default
      the first and last image. end_frame defaults to start_frame + rows - 1 when only start is set.
    strict: a frame/box count mismatch is a DataError; with False both are cut to the shorter.
    name: sequence name (default: the annotation file's stem).
  Returns:
    Sequence; NaN boxes where the target is absent; meta 'gt_file', 'start_frame', 'end_frame'.
  """
  anno_file = _common.require_file(anno_file, "UAV annotation")
  frames_dir = _common.require_dir(frames_dir, "UAV frame")
  boxes = read_uav_annotation(anno_file)
  images = list_images(frames_dir)
  numbers = _common.frame_numbers_of(images)
  if numbers is None:
    numbers = np.arange(1, len(images) + 1)
  if start_frame is not None or end_frame is not None:
    start = 1 if start_frame is None else int(start_frame)
    end = start + len(boxes) - 1 if end_frame is None else int(end_frame)
    by_num = dict(zip(numbers.tolist(), images))
    missing = [k for k in range(start, end + 1) if k not in by_num]
    if missing:
      raise DataError(frames_dir, f"frames {start}..{end} requested for {os.path.basename(anno_file)} "
                      f"but there is no image numbered {missing[0]} ({len(missing)} missing)")
    images = [by_num[k] for k in range(start, end + 1)]
    numbers = np.arange(start, end + 1)
    desc = f"frames {start}..{end} of {os.path.basename(frames_dir)}/"
  else:
    desc = f"{os.path.basename(frames_dir)}/"
  n = _common.count_mismatch(strict, anno_file, len(boxes), desc, len(images),
                             f"pass the benchmark's frame range (start_frame/end_frame), or "
                             f"strict=False to use the first {min(len(boxes), len(images))} frames")
  name = name or os.path.splitext(os.path.basename(anno_file))[0]
  meta = {"gt_file": anno_file, "start_frame": int(numbers[0]), "end_frame": int(numbers[n - 1])}
  return Sequence(name, ImageFiles(images[:n]), boxes[:n], numbers[:n], meta)


def read_uav_dataset(root: str | os.PathLike,
                     *,
                     subset: str = "UAV123",
                     ranges: Optional[Mapping[str, Tuple[int, int]]] = None,
                     strict: bool = True,
                     names: Optional[Seq[str]] = None) -> List[Sequence]:
  """Reads every annotated sequence of a UAV123-layout folder.

  Args:
    root: folder holding data_seq/ and anno/.
    subset: 'UAV123' or 'UAV20L' (the anno/ subfolder; frames always come from data_seq/UAV123
      unless data_seq/<subset> exists).
    ranges: {sequence name: (start_frame, end_frame)} for annotation files covering part of a
      frame folder.
    names: read only these sequences.
  """
  root = _common.require_dir(root, "UAV dataset")
  anno_dir = _common.require_dir(os.path.join(root, "anno", subset), "UAV annotation")
  data_dir = os.path.join(root, "data_seq", subset)
  if not os.path.isdir(data_dir):
    data_dir = os.path.join(root, "data_seq", "UAV123")
  data_dir = _common.require_dir(data_dir, "UAV frame (data_seq)")
  ranges = dict(ranges or {})
  stems = sorted((os.path.splitext(f)[0] for f in os.listdir(anno_dir)
                  if f.endswith(".txt") and os.path.isfile(os.path.join(anno_dir, f))), key=natural_key)
  if names is not None:
    missing = [n for n in names if n not in stems]
    if missing:
      raise DataError(anno_dir, f"no annotation file {missing[0]}.txt")
    stems = list(names)
  if not stems:
    raise DataError(anno_dir, "no annotation files (*.txt)")
  out = []
  for stem in stems:
    anno = os.path.join(anno_dir, stem + ".txt")
    folder = os.path.join(data_dir, stem)
    rng = ranges.get(stem)
    if not os.path.isdir(folder):
      m = _PART.match(stem)
      if m and os.path.isdir(os.path.join(data_dir, m.group(1))):
        folder = os.path.join(data_dir, m.group(1))
        if rng is None:
          raise DataError(anno, f"covers part of {folder} (sequence {stem!r} is a part of "
                          f"{m.group(1)!r}); pass ranges={{{stem!r}: (start_frame, end_frame)}} with "
                          "the benchmark's frame range")
      else:
        raise DataError(folder, f"frame folder for annotation {stem}.txt does not exist")
    start, end = rng if rng is not None else (None, None)
    out.append(read_uav_sequence(anno, folder, start_frame=start, end_frame=end, strict=strict,
                                 name=stem))
  return out
