"""Writing tracker output in the MOTChallenge results format.

One row per box, comma separated, sorted by frame then id:

  frame, id, x, y, w, h, conf, -1, -1, -1

frame is 1-based (`Objects.frame` + 1), x, y, w, h in pixels (top-left corner), conf the box score.
Numbers are written in the shortest form that reads back to the same value at 6 decimals
(e.g. 12.5, not 12.500000).  Read results back with
``rolo_jax.data.formats.mot.read_mot_file(path, 'results')``.
"""
from __future__ import annotations

import os

import numpy as np

from rolo_jax.data.sequence import Objects


def _num(v: float) -> str:
  return np.format_float_positional(float(v), precision=6, unique=True, trim="-")


def format_mot_rows(objects: Objects) -> str:
  """The file content for `objects` (empty string for no rows)."""
  if len(objects) and not np.all(np.isfinite(objects.box)):
    bad = int(np.nonzero(~np.all(np.isfinite(objects.box), axis=1))[0][0])
    raise ValueError(f"box of row {bad} (frame {objects.frame[bad]}, id {objects.track_id[bad]}) "
                     f"is not finite: {objects.box[bad].tolist()}")
  order = np.lexsort((objects.track_id, objects.frame))
  lines = []
  for i in order.tolist():
    x, y, w, h = objects.box[i]
    lines.append(f"{int(objects.frame[i]) + 1},{int(objects.track_id[i])},{_num(x)},{_num(y)},"
                 f"{_num(w)},{_num(h)},{_num(objects.score[i])},-1,-1,-1\n")
  return "".join(lines)


def write_mot_results(path: str | os.PathLike, objects: Objects) -> str:
  """Writes `objects` (frame 0-based, track_id, box, score) as a MOTChallenge results file.

  Args:
    path: output file; parent folders are created.
    objects: hypotheses, e.g. from `rolo_jax.mot.run_mot`.  No rows gives an empty file.
  Returns:
    path as str.
  Raises:
    ValueError: a box that is not finite.
  """
  path = os.fspath(path)
  text = format_mot_rows(objects)
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return path


__all__ = ["format_mot_rows", "write_mot_results"]
