"""Detection-only baselines of the ROLO paper: YOLO alone, and YOLO + SORT.

Both use exactly the detections ROLO sees: the detector's boxes of frame t, assigned to the target
by ``rolo_jax.rolo.assign.DetectionAssigner`` (paper §2.2: the initial box only in frame 0, then
the mean of the short history of validated detections, IoU >= IoU_min), so the three trackers of
a comparison share their detections.

* ``'yolo'`` — the assigned detection of frame t. Without one (missed detection, or every
  detection rejected by IoU_min) the previous output box is kept (the OTB toolkit's rule for a
  missing result), starting from the initial box::

      y_0 = b_0,   y_t = d_t if frame t has an assigned detection d_t else y_{t-1}

* ``'yolo_sort'`` — a single-target constant-velocity Kalman filter (SORT's,
  ``rolo_jax.mot.kalman``: state (u, v, s, r, u', v', s'), s = area, r = aspect ratio) over the
  assigned detections::

      x_0 = kalman.init(b_0)
      t >= 1:  x = predict(x);  x = update(x, d_t) if frame t has an assigned detection
      y_t = box(x)  (the corrected state; the prediction when there was no detection)

  Unlike multi-target SORT the single track is never deleted (max_age is about identities, and
  there is one target), so frames without a detection get the filter's prediction. A state
  that is no valid box (area <= 0) gives the previous output box.

``hold_boxes`` and ``kalman_boxes`` compute the same outputs from a whole sequence of assigned
boxes at once (the experiments run the detector once per frame and cache it); the ``Tracker``
classes are the online form, for ``make_tracker('yolo' | 'yolo_sort', checkpoint=DETECTOR)``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from rolo_jax.mot import kalman
from rolo_jax.rolo import assign
from rolo_jax.trackers.base import Tracker, as_box, check_frame, valid_boxes


def hold_boxes(assigned, init_box) -> np.ndarray:
  """YOLO alone over a sequence.

  Args:
    assigned: [T, 4] assigned detections (x, y, w, h px), NaN rows where none; row 0 is ignored.
    init_box: [4] the initial box (frame 0).
  Returns:
    float64 [T, 4]: y_0 = init_box, y_t = assigned[t] if valid else y_{t-1}.
  """
  a = np.asarray(assigned, np.float64).reshape(-1, 4)
  out = np.empty_like(a)
  out[0] = as_box(init_box, "init_box")
  ok = valid_boxes(a)
  for t in range(1, len(a)):
    out[t] = a[t] if ok[t] else out[t - 1]
  return out


class KalmanBoxFilter:
  """One target's SORT Kalman filter; ``step(det_or_None) -> box``."""

  def __init__(self, init_box):
    self.box = as_box(init_box, "init_box").copy()
    self.state = kalman.init(self.box)

  def step(self, det: Optional[np.ndarray]) -> np.ndarray:
    self.state = kalman.predict(self.state)
    if det is not None and valid_boxes(np.asarray(det, np.float64)):
      self.state = kalman.update(self.state, np.asarray(det, np.float64))
    b = kalman.x_to_box(self.state.x)
    if valid_boxes(b):
      self.box = b
    return self.box.copy()


def kalman_boxes(assigned, init_box) -> np.ndarray:
  """YOLO + SORT over a sequence (module docstring); [T, 4] -> [T, 4], row 0 = init_box."""
  a = np.asarray(assigned, np.float64).reshape(-1, 4)
  f = KalmanBoxFilter(init_box)
  out = np.empty_like(a)
  out[0] = f.box
  for t in range(1, len(a)):
    out[t] = f.step(a[t])
  return out


class _DetectionTracker(Tracker):
  """Runs the detector on each frame and assigns its boxes to the target."""

  def __init__(self, detector, *, history: int = assign.DEFAULT_HISTORY,
               iou_min: float = assign.DEFAULT_IOU_MIN):
    self.detector = detector
    self.history, self.iou_min = int(history), float(iou_min)
    self.assigner = None

  def _assign(self, frame) -> Optional[np.ndarray]:
    _, dets = self.detector(check_frame(frame)[None])
    a = self.assigner(dets[0])
    return None if a.index < 0 else a.box

  def init(self, frame, box) -> None:
    frame = check_frame(frame)
    box = as_box(box)
    h, w = frame.shape[:2]
    self.assigner = assign.DetectionAssigner(box, (w, h), history=self.history, iou_min=self.iou_min)
    self._assign(frame)   # frame 0: the detection nearest the initial box starts the history
    self._start(box)


class YoloTracker(_DetectionTracker):
  """YOLO alone: the assigned detection, else the previous box."""

  name = "yolo"

  def _start(self, box):
    self.box = box.copy()

  def update(self, frame) -> np.ndarray:
    det = self._assign(frame)
    if det is not None and valid_boxes(det):
      self.box = np.asarray(det, np.float64).copy()
    return self.box.copy()


class YoloSortTracker(_DetectionTracker):
  """YOLO + SORT's Kalman filter over the assigned detections."""

  name = "yolo_sort"

  def _start(self, box):
    self.filter = KalmanBoxFilter(box)

  def update(self, frame) -> np.ndarray:
    return self.filter.step(self._assign(frame))


def _detector(checkpoint, detector, conf_thresh, nms_iou):
  from rolo_jax.train import yolo_task

  if detector is not None:
    return detector
  if checkpoint is None:
    raise ValueError("the 'yolo' / 'yolo_sort' trackers need a detector: checkpoint=<detector "
                     "workdir> (python -m experiments.yolo_pretrain) or detector=Detector(...)")
  return yolo_task.Detector.load(checkpoint, conf_thresh=conf_thresh, nms_iou=nms_iou)


def make_yolo(checkpoint: Optional[str] = None, *, detector=None, conf_thresh: float = 0.05,
              nms_iou: Optional[float] = 0.5, **kw) -> YoloTracker:
  """Factory for ``make_tracker('yolo', checkpoint=DETECTOR_WORKDIR)``."""
  return YoloTracker(_detector(checkpoint, detector, conf_thresh, nms_iou), **kw)


def make_yolo_sort(checkpoint: Optional[str] = None, *, detector=None, conf_thresh: float = 0.05,
                   nms_iou: Optional[float] = 0.5, **kw) -> YoloSortTracker:
  """Factory for ``make_tracker('yolo_sort', checkpoint=DETECTOR_WORKDIR)``."""
  return YoloSortTracker(_detector(checkpoint, detector, conf_thresh, nms_iou), **kw)


__all__ = ["hold_boxes", "KalmanBoxFilter", "kalman_boxes", "YoloTracker", "YoloSortTracker",
           "make_yolo", "make_yolo_sort"]
