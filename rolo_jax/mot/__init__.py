"""Online multi-object tracking by detection: the interface, the loop that runs it, SORT.

A `MultiObjectTracker` sees one frame's detections at a time and returns the boxes and identities
of the targets it reports in that frame:

    tracker.reset()
    boxes [M, 4], ids [M] = tracker.update(detections of frame t)      for t = 0, 1, ...

Detections are an `Objects` table holding one frame's rows, or a pair (boxes [N, 4] x, y, w, h,
scores [N]).  Identities are ints >= 1, stable over frames for the same target.
`run_mot(tracker, detections, num_frames)` runs a tracker over a whole video and returns its
hypotheses as `Objects` (the table `rolo_jax.eval.mot` scores and `rolo_jax.mot.io` writes).

Trackers: `rolo_jax.mot.sort.Sort` (Kalman filter + Hungarian on IoU).
"""
from __future__ import annotations

import abc
from typing import Optional, Tuple, Union

import numpy as np

from rolo_jax.data.sequence import Objects

Detections = Union[Objects, Tuple[np.ndarray, np.ndarray]]


def as_detections(dets: Detections) -> Tuple[np.ndarray, np.ndarray]:
  """(boxes float64 [N, 4], scores float64 [N]) of `dets` (an `Objects` or a (boxes, scores) pair).

  Raises:
    ValueError: shapes that do not fit.
  """
  if isinstance(dets, Objects):
    return np.asarray(dets.box, np.float64).reshape(-1, 4), np.asarray(dets.score, np.float64)
  try:
    boxes, scores = dets
  except (TypeError, ValueError):
    raise ValueError("detections: expected Objects or a pair (boxes [N, 4], scores [N])") from None
  boxes = np.asarray(boxes, np.float64)
  if boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"detections: boxes must be [N, 4] x,y,w,h, got shape {boxes.shape}")
  scores = np.asarray(scores, np.float64).reshape(-1)
  if len(scores) != len(boxes):
    raise ValueError(f"detections: {len(boxes)} boxes but {len(scores)} scores")
  return boxes, scores


class MultiObjectTracker(abc.ABC):
  """An online multi-object tracker (tracking by detection)."""

  name: str = "mot"

  @abc.abstractmethod
  def reset(self) -> None:
    """Forgets all tracks (a new video); identities start again at 1."""

  @abc.abstractmethod
  def update(self, detections: Detections) -> Tuple[np.ndarray, np.ndarray]:
    """Consumes one frame's detections (possibly none).

    Args:
      detections: `Objects` of one frame, or (boxes [N, 4] x, y, w, h, scores [N]).
    Returns:
      boxes: float64 [M, 4] x, y, w, h of the targets reported in this frame.
      ids: int64 [M], their identities (>= 1, unique within the frame).
    """

  def __repr__(self):
    return f"{type(self).__name__}(name={self.name!r})"


def run_mot(tracker: MultiObjectTracker, detections: Objects,
            num_frames: Optional[int] = None) -> Objects:
  """Runs `tracker` over frames 0 .. num_frames - 1 of a video (after `tracker.reset()`).

  Args:
    tracker: a `MultiObjectTracker`.
    detections: all detections of the video (frame 0-based, box, score; ids are ignored).
    num_frames: number of frames; default: last detection frame + 1 (0 without detections).
      Frames without detections still call `update` (tracks age and may die).
  Returns:
    Objects of the hypotheses: frame, track_id (the tracker's ids), box; score 1, label -1.
  """
  if num_frames is None:
    num_frames = int(detections.frame.max()) + 1 if len(detections) else 0
  order = np.argsort(detections.frame, kind="stable")
  frames = detections.frame[order]
  bounds = np.searchsorted(frames, np.arange(num_frames + 1))
  tracker.reset()
  out_f, out_id, out_box = [], [], []
  for t in range(num_frames):
    rows = order[bounds[t]:bounds[t + 1]]
    boxes, ids = tracker.update((detections.box[rows], detections.score[rows]))
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ids = np.asarray(ids, np.int64).reshape(-1)
    if len(ids) != len(boxes):
      raise ValueError(f"{tracker!r}: update returned {len(boxes)} boxes but {len(ids)} ids")
    out_f.append(np.full(len(ids), t, np.int64))
    out_id.append(ids)
    out_box.append(boxes)
  if not out_f:
    return Objects.empty()
  return Objects.from_arrays(np.concatenate(out_f), np.concatenate(out_id),
                             np.concatenate(out_box).reshape(-1, 4))


__all__ = ["Detections", "as_detections", "MultiObjectTracker", "run_mot"]
