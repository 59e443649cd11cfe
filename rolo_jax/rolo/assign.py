"""Assigning the detector's boxes to the tracked target, as ROLO's paper describes (§2.2).

Spec: ``/work/shared/specs/rolo.md`` ("Assigning a detection to the target"). The only ground truth
used is the target's box in the FIRST frame (the box a tracker is initialised with)::

    frame 0:  reference r_0 = the given initial box
    frame t:  reference r_t = mean of the last ``history`` validated detections (elementwise over
              x, y, w, h, which is also the mean of the corners); r_0 while none has been validated
    cost      C[m, k] = 1 - IoU(r_m, d_k)  (IoU distance; one row per target, here m = 0 only)
    match     Hungarian assignment on C (scipy.optimize.linear_sum_assignment), then every pair with
              IoU(r_m, d_k) < iou_min is rejected
    validated the matched detection joins the history; without a match the frame has no detection

The location vector fed to ROLO's LSTM (paper eq. 3) is B_t = (0, x, y, w, h, 0) with (x, y) the
box centre and (w, h) its size relative to the image width and height (box clipped to the image
first), and all zeros when no detection was assigned.

The authors' code instead picked, at test time too, the detection with the best IoU against the
frame's ground truth — a leak this module does not reproduce: after frame 0 nothing here can see a
ground-truth box.

Defaults: the paper gives neither the history length nor IoU_min; ``history=3`` and ``iou_min=0.3``
(SORT's minimum IoU) are ours.
"""
from __future__ import annotations

from collections import deque
from typing import List, NamedTuple, Sequence as Seq, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from rolo_jax.data import boxes as bx
from rolo_jax.data.sequence import Objects

DEFAULT_HISTORY = 3
DEFAULT_IOU_MIN = 0.3


def location_vector(box_xywh, width: float, height: float) -> np.ndarray:
  """B_t = (0, cx / W, cy / H, w / W, h / H, 0) of a pixel xywh box, clipped to the image first.

  Returns float64 [6]; all zeros when ``box_xywh`` is None or not finite (no detection).
  """
  if box_xywh is None:
    return np.zeros(6)
  b = np.asarray(box_xywh, np.float64).reshape(4)
  if not np.all(np.isfinite(b)):
    return np.zeros(6)
  x, y, w, h = bx.clip_xywh(b, width, height)
  return np.array([0.0, (x + w / 2) / width, (y + h / 2) / height, w / width, h / height, 0.0])


def _as_boxes(dets, what: str) -> np.ndarray:
  d = np.asarray(dets, np.float64)
  if d.size == 0:
    return np.zeros((0, 4))
  if d.ndim != 2 or d.shape[1] < 4:
    raise ValueError(f"{what}: expected [K, >=4] boxes (x, y, w, h, ...), got shape {d.shape}")
  d = d[:, :4]
  if not np.all(np.isfinite(d)):
    raise ValueError(f"{what}: boxes must be finite")
  return d


def match_iou(refs, dets, iou_min: float) -> Tuple[np.ndarray, np.ndarray]:
  """Hungarian matching of reference boxes to detections on the IoU distance, with rejection.

  Args:
    refs: [M, 4] xywh reference boxes.  dets: [K, 4+] xywh detections (extra columns ignored).
    iou_min: pairs with IoU < iou_min are rejected.
  Returns:
    (pairs int64 [P, 2] of (m, k), sorted by m; iou [M, K]).
  """
  refs = _as_boxes(refs, "match_iou refs")
  dets = _as_boxes(dets, "match_iou dets")
  iou = bx.pairwise_iou(refs, dets)
  if iou.size == 0:
    return np.zeros((0, 2), np.int64), iou
  rows, cols = linear_sum_assignment(1.0 - iou)
  ok = iou[rows, cols] >= iou_min
  return np.stack([rows[ok], cols[ok]], axis=1).astype(np.int64), iou


class Assignment(NamedTuple):
  """One frame's result."""
  index: int            # index of the assigned detection, -1 when none
  box: np.ndarray       # [4] xywh of the assigned detection (NaN when none)
  iou: float            # IoU with the reference (0 when there was no detection)
  reference: np.ndarray  # [4] xywh reference box the detections were compared with
  location: np.ndarray  # [6] B_t = (0, x, y, w, h, 0), zeros when none


class DetectionAssigner:
  """Online assignment for one target; call it once per frame, starting with frame 0.

      assigner = DetectionAssigner(init_box, (width, height))
      for dets in detections_per_frame:
        a = assigner(dets)     # Assignment
  """

  def __init__(self, init_box, image_size: Tuple[float, float], *, history: int = DEFAULT_HISTORY,
               iou_min: float = DEFAULT_IOU_MIN):
    """
    Args:
      init_box: [4] xywh ground truth of frame 0 (the only ground truth used).
      image_size: (width, height) in pixels.
      history: number of last validated detections averaged into the reference.
      iou_min: minimum IoU between reference and detection.
    """
    if history < 1:
      raise ValueError(f"history must be >= 1, got {history}")
    self.init_box = _as_boxes(np.reshape(init_box, (1, -1)), "init_box")[0]
    self.width, self.height = float(image_size[0]), float(image_size[1])
    self.iou_min = float(iou_min)
    self.history: deque = deque(maxlen=int(history))

  def reference(self) -> np.ndarray:
    """Mean of the validated detections in the history; the initial box while it is empty."""
    if not self.history:
      return self.init_box.copy()
    return np.mean(np.stack(self.history), axis=0)

  def __call__(self, dets) -> Assignment:
    """Assigns one frame's detections ([K, 4+] pixel xywh, K may be 0)."""
    dets = _as_boxes(dets, "DetectionAssigner")
    ref = self.reference()
    pairs, iou = match_iou(ref[None], dets, self.iou_min)
    if len(pairs) == 0:
      best = float(iou.max()) if iou.size else 0.0
      return Assignment(-1, np.full(4, np.nan), best, ref, np.zeros(6))
    k = int(pairs[0, 1])
    self.history.append(dets[k].copy())
    return Assignment(k, dets[k].copy(), float(iou[0, k]), ref,
                      location_vector(dets[k], self.width, self.height))


class SequenceAssignment(NamedTuple):
  indices: np.ndarray    # int64 [T], -1 where no detection was assigned
  boxes: np.ndarray      # float64 [T, 4] xywh, NaN where none
  ious: np.ndarray       # float64 [T] IoU with the reference (best rejected one where none)
  locations: np.ndarray  # float64 [T, 6] B_t, zeros where none


def assign_sequence(detections: Seq, init_box, image_size: Tuple[float, float], *,
                    history: int = DEFAULT_HISTORY, iou_min: float = DEFAULT_IOU_MIN) -> SequenceAssignment:
  """Runs ``DetectionAssigner`` over a sequence.

  Args:
    detections: per frame, [K_t, 4+] pixel xywh detections (K_t may be 0).
    init_box: [4] xywh ground truth of frame 0.
    image_size: (width, height).
  Returns:
    SequenceAssignment with [T] / [T, 4] / [T, 6] arrays.
  """
  a = DetectionAssigner(init_box, image_size, history=history, iou_min=iou_min)
  out = [a(d) for d in detections]
  T = len(out)
  return SequenceAssignment(
      indices=np.asarray([o.index for o in out], np.int64).reshape(T),
      boxes=np.asarray([o.box for o in out], np.float64).reshape(T, 4),
      ious=np.asarray([o.iou for o in out], np.float64).reshape(T),
      locations=np.asarray([o.location for o in out], np.float64).reshape(T, 6))


def detections_by_frame(objects: Objects, num_frames: int, *, min_score: float = -np.inf) -> List[np.ndarray]:
  """Splits a detection table into per-frame [K_t, 4] xywh arrays (rows with score < min_score
  dropped), in the table's row order."""
  keep = objects.score >= min_score
  frames = objects.frame[keep]
  boxes = objects.box[keep]
  return [boxes[frames == t] for t in range(num_frames)]


__all__ = ["DEFAULT_HISTORY", "DEFAULT_IOU_MIN", "location_vector", "match_iou", "Assignment",
           "DetectionAssigner", "SequenceAssignment", "assign_sequence", "detections_by_frame"]
