"""Baseline trackers: a static box, and OpenCV's KCF and CSRT correlation-filter trackers.

* `StaticTracker` returns the initial box in every frame: the floor any tracker must beat (it
  scores well only on sequences where the target barely moves).
* `OpenCVTracker('kcf')` — kernelised correlation filter (Henriques et al., TPAMI 2015);
  `OpenCVTracker('csrt')` — discriminative correlation filter with channel and spatial reliability
  (Lukezic et al., CVPR 2017); both from opencv-contrib.

OpenCV conventions handled here: frames are converted RGB -> BGR; the initial box's corners are
rounded to integer pixels and clipped to the image (``x0 = round(x)``, ``x1 = round(x + w)``,
``w' = max(1, x1 - x0)``, likewise y; see `opencv_rect`), because the current (non-legacy) OpenCV tracking API takes an integer
``cv::Rect`` and CSRT rejects boxes reaching outside the image. When OpenCV reports a tracking failure
(``ok == False``) or returns an empty box, the tracker keeps its last box, so the output is never
NaN and always has ``w, h >= 1``; `failures` counts those frames.

`OpenCVTracker(kind)` uses OpenCV's default parameters; the registered 'kcf' / 'csrt'
(`make_kcf`, `make_csrt`) turn OpenCV's failure thresholds off, as the papers' trackers have none
(measurements below, at `KCF_DEFAULTS`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from rolo_jax.trackers.base import Tracker, TrackerInitError, as_box, check_frame, valid_boxes

OPENCV_KINDS = ("kcf", "csrt")


class StaticTracker(Tracker):
  """Returns the box it was initialised with, forever."""

  name = "static"

  def __init__(self):
    self.box = None

  def init(self, frame: np.ndarray, box) -> None:
    self.box = as_box(box).copy()

  def update(self, frame: np.ndarray) -> np.ndarray:
    if self.box is None:
      raise RuntimeError("static: update() called before init()")
    return self.box.copy()


def _opencv_factory(kind: str, params: Optional[Dict[str, Any]] = None):
  """A zero-argument constructor for `kind`: cv2.TrackerX_create, else cv2.legacy.TrackerX_create,
  with the fields of cv2.TrackerX_Params in `params` set (ValueError naming an unknown field)."""
  import cv2

  cls = {"kcf": "TrackerKCF", "csrt": "TrackerCSRT"}[kind]
  for ns in (cv2, getattr(cv2, "legacy", None)):
    create = getattr(ns, cls + "_create", None) if ns is not None else None
    if create is not None:
      break
  else:
    raise RuntimeError(f"this OpenCV ({cv2.__version__}) has no {cls}: install "
                       "opencv-contrib-python-headless")
  if not params:
    return create
  make_params = getattr(cv2, cls + "_Params", None) or getattr(ns, cls + "_Params")
  p = make_params()
  for k, v in params.items():
    if not hasattr(p, k):
      fields = sorted(a for a in dir(p) if not a.startswith("_"))
      raise ValueError(f"{kind}: OpenCV {cls}_Params has no field {k!r}; fields: {', '.join(fields)}")
    setattr(p, k, type(getattr(p, k))(v))
  return lambda: create(p)


def opencv_rect(box, frame_w: int, frame_h: int) -> tuple:
  """Integer (x, y, w, h) inside a frame_w x frame_h image, w, h >= 1, as OpenCV needs.

  x, y are rounded and clipped to the image; the far corner (round(x + w), round(y + h)) is clipped
  too, and w, h are at least 1.
  """
  x, y, w, h = (float(v) for v in as_box(box))
  x0 = min(max(int(round(x)), 0), frame_w - 1)
  y0 = min(max(int(round(y)), 0), frame_h - 1)
  x1 = min(max(int(round(x + w)), x0 + 1), frame_w)
  y1 = min(max(int(round(y + h)), y0 + 1), frame_h)
  return x0, y0, x1 - x0, y1 - y0


class OpenCVTracker(Tracker):
  """OpenCV's KCF or CSRT tracker behind the `Tracker` interface.

  Args:
    kind: 'kcf' or 'csrt'.
    **params: fields of OpenCV's TrackerKCF_Params / TrackerCSRT_Params to override (e.g.
      ``detect_thresh=0.0`` for KCF, ``psr_threshold=...`` for CSRT).
  Attributes:
    failures: number of update calls in which OpenCV reported a failure (the last box was kept).
  """

  def __init__(self, kind: str = "kcf", **params):
    kind = kind.lower()
    if kind not in OPENCV_KINDS:
      raise ValueError(f"unknown OpenCV tracker kind {kind!r}; expected one of {OPENCV_KINDS}")
    self.kind = kind
    self.name = kind
    self.params = dict(params)
    self._create = _opencv_factory(kind, self.params)
    self._tracker = None
    self.box = None
    self.failures = 0

  @staticmethod
  def _bgr(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(check_frame(frame)[..., ::-1])

  def init(self, frame: np.ndarray, box) -> None:
    frame = self._bgr(frame)
    h, w = frame.shape[:2]
    rect = opencv_rect(box, w, h)
    import cv2

    self._tracker = self._create()
    try:
      ok = self._tracker.init(frame, rect)
    except cv2.error:  # CSRT asserts on boxes under 2 px (after clipping to the frame)
      raise TrackerInitError(
          f"{self.name}: OpenCV cannot start on the box {as_box(box).tolist()} (as an integer box "
          f"inside the {w}x{h} frame: x,y,w,h = {rect}); it needs a box at least 2 px wide and high "
          "inside the frame") from None
    if ok is False:  # the legacy API returns a bool, the current one None
      raise TrackerInitError(f"{self.name}: OpenCV could not initialise on box {rect}")
    self.box = np.asarray(rect, np.float64)
    self.failures = 0

  def update(self, frame: np.ndarray) -> np.ndarray:
    if self._tracker is None:
      raise RuntimeError(f"{self.name}: update() called before init()")
    ok, rect = self._tracker.update(self._bgr(frame))
    new = np.asarray(rect, np.float64).reshape(-1) if ok else None
    if new is not None and new.shape == (4,) and valid_boxes(new) and new[2] >= 1 and new[3] >= 1:
      self.box = new
    else:
      self.failures += 1
    return self.box.copy()


# The registered 'kcf' and 'csrt' switch off OpenCV's failure detection (KCF: response peak below
# detect_thresh = 0.5; CSRT: peak-to-sidelobe ratio below psr_threshold = 0.035). Neither paper has
# it, and OpenCV's trackers then stay frozen (no model update at the old position), so a single
# low-confidence frame ends tracking. On the 8 OTB targets of ../shared/data (OPE AUC, mean):
# OpenCV KCF with detect_thresh 0.5 scores 0.179, with 0 0.302 (the toolkit's own KCF: 0.372);
# CSRT on Basketball / DragonBaby: 0.329 / 0.256 with the default, 0.365 / 0.366 with 0.
# Pass detect_thresh= / psr_threshold= to make_tracker for OpenCV's behaviour.
KCF_DEFAULTS = {"detect_thresh": 0.0}
CSRT_DEFAULTS = {"psr_threshold": 0.0}


def make_static(checkpoint: Optional[str] = None) -> StaticTracker:
  _no_checkpoint("static", checkpoint)
  return StaticTracker()


def make_kcf(checkpoint: Optional[str] = None, **params) -> OpenCVTracker:
  """KCF without OpenCV's failure threshold (see KCF_DEFAULTS); **params: TrackerKCF_Params fields."""
  _no_checkpoint("kcf", checkpoint)
  return OpenCVTracker("kcf", **{**KCF_DEFAULTS, **params})


def make_csrt(checkpoint: Optional[str] = None, **params) -> OpenCVTracker:
  """CSRT without OpenCV's failure threshold (see CSRT_DEFAULTS); **params: TrackerCSRT_Params."""
  _no_checkpoint("csrt", checkpoint)
  return OpenCVTracker("csrt", **{**CSRT_DEFAULTS, **params})


def _no_checkpoint(name: str, checkpoint: Optional[str]) -> None:
  if checkpoint is not None:
    raise ValueError(f"tracker {name!r} has no learned parameters; it takes no checkpoint "
                     f"(got {checkpoint!r})")
