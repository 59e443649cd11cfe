"""The online ROLO tracker: detector + assignment + the tracking LSTM, one frame at a time.

    tracker = make_tracker("rolo", checkpoint="runs/rolo/tracker")   # written by experiments.rolo

Per frame t (spec ``/work/shared/specs/rolo.md``; the same computation as
``rolo_jax.train.rolo_task`` runs on cached vectors, so both give the same boxes)::

    X_t, D_t = Detector(frame_t)                           visual features, detections
    d_t      = DetectionAssigner(D_t)                      initial box only in frame 0 (§2.2)
    x_t      = [X_t · feature_scale, B_t or mask(B_t)]     models.rolo.frame_inputs
    zero-state mode (paper): window = x_{t-N+1} .. x_t (x_0 repeated before the start), one
        jitted LSTM pass from a zero state, prediction read at its last step
    carried-state mode:      one jitted LSTM step from the previous state
    box_t = decode(prediction)                              relative (cx, cy, w, h) or heatmap -> px

``init(frame_0, box_0)`` runs frame 0 through the same path (it fills the window / the state) and
reports box_0. The last prediction (``last_output``: the 4 values or the 32×32 heatmap) and the
frame's assignment (``last_assignment``) are kept for pictures.
"""
from __future__ import annotations

import functools
from collections import deque
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.models import rolo
from rolo_jax.rolo import assign
from rolo_jax.trackers.base import Tracker, as_box, check_frame


@functools.partial(jax.jit, static_argnames=("cfg",))
def _window_pred(params, window, *, cfg):
  pred, _ = rolo.apply(params, window, cfg=cfg)
  return pred


@functools.partial(jax.jit, static_argnames=("cfg",))
def _carry_step(params, state, x, *, cfg):
  pred, aux = rolo.apply(params, x, cfg=cfg, state0=state)
  return pred, aux["state"]


class RoloTracker(Tracker):
  """ROLO over live frames (module docstring).

  Args:
    params, cfg: the tracking LSTM (models.rolo).
    detector: a ``rolo_jax.train.yolo_task.Detector`` (its feature_dim must be cfg.feature_dim).
    feature_scale: the factor the LSTM was trained with.
    history, iou_min: the assignment's settings.
  """

  name = "rolo"

  def __init__(self, params, cfg: rolo.RoloConfig, detector, *, feature_scale: float = 1.0,
               history: int = assign.DEFAULT_HISTORY, iou_min: float = assign.DEFAULT_IOU_MIN):
    if detector.cfg.feature_dim != cfg.feature_dim:
      raise ValueError(f"detector features are {detector.cfg.feature_dim}-d, ROLO config {cfg.name!r} "
                       f"wants {cfg.feature_dim}")
    self.params = jax.device_put(params)
    self.cfg = cfg
    self.detector = detector
    self.feature_scale = float(feature_scale)
    self.history, self.iou_min = int(history), float(iou_min)
    self.last_output = None
    self.last_assignment = None

  def _input(self, frame) -> jnp.ndarray:
    feats, dets = self.detector(frame[None])
    a = self.assigner(dets[0])
    self.last_assignment = a
    loc = np.asarray(a.location, np.float32).reshape(1, -1)
    if self.cfg.hold_detection:   # models.rolo.hold_locations, one frame at a time
      loc = rolo.hold_locations(np.concatenate([self.held, loc]))[1:]
      self.held = loc
    return rolo.frame_inputs(feats * np.float32(self.feature_scale), loc, cfg=self.cfg)[0]

  def _predict(self, x) -> np.ndarray:
    if self.cfg.carry_state:
      pred, self.state = _carry_step(self.params, self.state, x[None, None], cfg=self.cfg)
    else:
      self.window.append(x)
      pad = [self.first] * (self.cfg.window - len(self.window))
      pred = _window_pred(self.params, jnp.stack(pad + list(self.window))[None], cfg=self.cfg)
    return np.asarray(jax.device_get(pred))[0]

  def init(self, frame, box) -> None:
    from rolo_jax.train import rolo_task

    frame = check_frame(frame)
    box = as_box(box)
    h, w = frame.shape[:2]
    self.size = (w, h)
    self.assigner = assign.DetectionAssigner(box, (w, h), history=self.history, iou_min=self.iou_min)
    self._decode = functools.partial(rolo_task.decode_predictions, cfg=self.cfg, size=self.size)
    self.window = deque(maxlen=self.cfg.window)
    self.state = rolo.initial_state(self.cfg, 1)
    self.held = np.zeros((1, rolo.LOCATION_DIM), np.float32)   # hold_detection: the last held B_t
    x = self._input(frame)
    self.first = x
    self.last_output = self._predict(x)
    self.box = box.copy()

  def update(self, frame) -> np.ndarray:
    frame = check_frame(frame)
    if frame.shape[1::-1] != self.size:
      raise ValueError(f"rolo: frame size {frame.shape[1::-1]} differs from the first frame's {self.size}")
    self.last_output = self._predict(self._input(frame))
    self.box = self._decode(self.last_output[None])[0]
    return self.box.copy()


def load_tracker_checkpoint(path: str):
  """(rolo params, RoloConfig, Detector, meta) from ``rolo_task.export_tracker``'s folder."""
  from rolo_jax.train import checkpoint as ckpt_lib
  from rolo_jax.train import rolo_task, yolo_task

  params, meta = ckpt_lib.load_params(path)
  if meta.get("model") != "rolo_tracker" or "rolo" not in params or "detector" not in params:
    raise ValueError(f"{path}: not a ROLO tracker checkpoint (model {meta.get('model')!r}); use the "
                     "'tracker' folder an experiments.rolo run writes")
  cfg = rolo_task.rolo_config_from_json(meta["config"])
  det = yolo_task.Detector(params["detector"], yolo_task.yolo_config_from_json(meta["detector_config"]),
                           conf_thresh=meta.get("conf_thresh", 0.05), nms_iou=meta.get("nms_iou", 0.5),
                           class_agnostic=meta.get("class_agnostic", True))
  return params["rolo"], cfg, det, meta


def make_rolo(checkpoint: Optional[str] = None, **kw) -> RoloTracker:
  """Factory for ``make_tracker('rolo', checkpoint=<experiments.rolo workdir>/tracker)``."""
  if checkpoint is None:
    raise ValueError("the 'rolo' tracker needs checkpoint=<folder written by experiments.rolo "
                     "(<workdir>/tracker)>")
  params, cfg, det, meta = load_tracker_checkpoint(checkpoint)
  opts = {"feature_scale": meta.get("feature_scale", 1.0), "history": meta.get("history", assign.DEFAULT_HISTORY),
          "iou_min": meta.get("iou_min", assign.DEFAULT_IOU_MIN)}
  opts.update(kw)
  return RoloTracker(params, cfg, det, **opts)


__all__ = ["RoloTracker", "load_tracker_checkpoint", "make_rolo"]
