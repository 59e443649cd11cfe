"""Online multi-object tracking with the Association LSTM (`rolo_jax.models.association`).

Per frame t, with the frame's detections (boxes, scores and D-vectors; `rolo_jax.mot.detections`):

  0. Detections that are not finite, have no positive size or score below `min_score` are dropped.
  1. Predict: every track's Kalman filter (`rolo_jax.mot.kalman`, SORT's constant-velocity model)
     steps once; time_since_update (tsu) += 1; a track missed in the previous frame has its hit
     streak reset.
  2. Model step: the detections are the current slots, the live tracks the previous slots (their
     LSTM states and phi, kept from the frame they were last matched); one `association.step`
     gives every detection its phi_j, class probabilities (background last), refined box and the
     LSTM state it continues.
  3. Associate: one Hungarian assignment maximising  cos(phi_k, phi_j) + iou_weight * IoU(pred_k, det_j)
     over the allowed pairs (phi unit vectors, so cos = phi_k . phi_j):
        cos(phi_k, phi_j) >= sim_threshold and IoU(pred_k, det_j) >= iou_gate, or, for a track
        missed in the previous frame (tsu > 1, its prediction may have drifted) also
          cos >= sim_threshold and |c_k - c_j| <= reid_distance * sqrt(w_k h_k)   (near), or
          cos >= reid_sim_threshold                                              (re-identified
                                                                                  anywhere)
     (`cascade=True`: tracks seen in the previous frame are assigned first, then the lost ones
     get the remaining detections, as DeepSORT's matching cascade; off by default, it scored worse
     on validation videos.)
  4. Matched tracks take the detection's LSTM state and phi; their Kalman filter is corrected with
     the box; tsu = 0, hits and hit streak += 1.
  5. Birth: every unmatched detection starts a tentative track (new id 1, 2, ... in order of birth),
     unless `background_threshold` is set and the model's background probability is above it.
  6. Confirmation: a track is confirmed when its hit streak reaches `min_hits` (matched in min_hits
     consecutive frames after its birth frame) or while the video's first min_hits frames run (as
     SORT); confirmed tracks stay confirmed.
  7. Report: confirmed tracks matched or born in this frame; box = the detection ('detection'),
     the model's refined box ('refined') or the corrected Kalman state ('kalman').
  8. Death: a tentative track missed once, or a confirmed track with tsu > max_age, is deleted.

With `use_phi=False` the similarity term is dropped (cos replaced by 1, no re-identification
anywhere): an IoU / distance tracker with the same life-cycle rules (an ablation).

Defaults (sim_threshold 0.3, reid_sim_threshold 0.7, iou_gate 0.1, reid_distance 1.5, iou_weight 1,
max_age 30, min_hits 3, no cascade) were chosen on validation videos of the synthetic train split
(seeds 5000..5011, never the test split).

Inputs to `update`: a `FrameDetections` (boxes, scores, dvec), or, for the boxes-only model
(D-vector mode 'boxes'), an `Objects` or (boxes, scores) pair like every `MultiObjectTracker` — so
`run_mot` and a MOTChallenge det.txt work without images:

    python -m experiments.association_lstm --track_det ../shared/data/mot/TUD-Campus/det.txt \\
        --checkpoint WORKDIR --out /tmp/assoc.txt
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from rolo_jax.cells import lstm
from rolo_jax.data.boxes import pairwise_iou
from rolo_jax.data.sequence import Objects
from rolo_jax.errors import DataError
from rolo_jax.models import association as model
from rolo_jax.mot import Detections, MultiObjectTracker, as_detections, kalman
from rolo_jax.mot import detections as det_lib

OUTPUTS = ("detection", "refined", "kalman")


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
  """Association and life-cycle settings (see the module docstring)."""
  sim_threshold: float = 0.3
  iou_gate: float = 0.1
  reid_distance: float = 1.5
  reid_sim_threshold: Optional[float] = 0.7
  iou_weight: float = 1.0
  max_age: int = 30
  min_hits: int = 3
  min_score: Optional[float] = None
  background_threshold: Optional[float] = None
  output: str = "detection"
  use_phi: bool = True
  cascade: bool = False

  def __post_init__(self):
    if self.max_age < 0 or self.min_hits < 0:
      raise ValueError(f"max_age and min_hits must be >= 0: {self}")
    if self.output not in OUTPUTS:
      raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")


def _bucket(n: int, lo: int = 8) -> int:
  """Slot capacity: the next power of two >= max(n, lo) (few shapes, few compilations)."""
  c = lo
  while c < n:
    c *= 2
  return c


@functools.partial(jax.jit, static_argnames="cfg")
def _step(params, prev: model.SlotState, x, mask, cfg):
  new, out = model.step(params, prev, (x, mask), cfg=cfg)
  return new, {"phi": out["phi"], "prob": jax.nn.softmax(out["cls_logits"], -1), "box": out["box"]}


class AssociationTracker(MultiObjectTracker):
  """The Association LSTM as an online tracker.

  Args:
    params: `association.init` params (numpy or jax).
    cfg: the model's `AssociationConfig`.
    dvec: the D-vector layout the model was trained with (its dim must be cfg.input_dim).
    tracker: `TrackerConfig`.
    frame_size: (W, H) in pixels; needed to build D-vectors from boxes and for 'refined' output.
  """

  name = "association_lstm"

  def __init__(self, params, cfg: model.AssociationConfig, dvec: det_lib.DVectorConfig,
               tracker: TrackerConfig = TrackerConfig(), frame_size: Optional[Tuple[float, float]] = None):
    if dvec.dim != cfg.input_dim:
      raise ValueError(f"D-vector layout {dvec} has {dvec.dim} values; the model expects "
                       f"{cfg.input_dim}")
    self.params = jax.tree_util.tree_map(jnp.asarray, params)
    self.cfg, self.dvec, self.tc = cfg, dvec, tracker
    self.frame_size = frame_size
    self.reset()

  # ------------------------------------------------------------------------------------ state
  def reset(self) -> None:
    L, Hd, P = self.cfg.num_layers, self.cfg.hidden, self.cfg.phi_dim
    n = kalman.DIM_X
    self.kf = kalman.KalmanState(np.zeros((0, n)), np.zeros((0, n, n)))
    self.h = np.zeros((0, L, 2, Hd), np.float32)   # per track, per layer: (h, c)
    self.phi = np.zeros((0, P), np.float32)
    self.ids = np.zeros(0, np.int64)
    self.hits = np.zeros(0, np.int64)
    self.hit_streak = np.zeros(0, np.int64)
    self.tsu = np.zeros(0, np.int64)
    self.confirmed = np.zeros(0, bool)
    self.frame_count = 0
    self.next_id = 1

  def num_tracks(self) -> int:
    return len(self.ids)

  def _keep(self, keep: np.ndarray) -> None:
    self.kf = kalman.KalmanState(self.kf.x[keep], self.kf.P[keep])
    for f in ("h", "phi", "ids", "hits", "hit_streak", "tsu", "confirmed"):
      setattr(self, f, getattr(self, f)[keep])

  def _append(self, kf, h, phi, n):
    self.kf = kalman.KalmanState(np.concatenate([self.kf.x, kf.x]), np.concatenate([self.kf.P, kf.P]))
    self.h = np.concatenate([self.h, h])
    self.phi = np.concatenate([self.phi, phi])
    self.ids = np.concatenate([self.ids, np.arange(self.next_id, self.next_id + n)])
    self.next_id += n
    z = np.zeros(n, np.int64)
    self.hits = np.concatenate([self.hits, z])
    self.hit_streak = np.concatenate([self.hit_streak, z])
    self.tsu = np.concatenate([self.tsu, z])
    self.confirmed = np.concatenate([self.confirmed, np.zeros(n, bool)])

  # ------------------------------------------------------------------------------------ input
  def _parse(self, detections) -> det_lib.FrameDetections:
    if isinstance(detections, det_lib.FrameDetections):
      boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
      scores = np.asarray(detections.scores, np.float64).reshape(-1)
      dvec = np.asarray(detections.dvec, np.float32).reshape(len(boxes), -1) if len(boxes) else \
          np.zeros((0, self.cfg.input_dim), np.float32)
      if len(scores) != len(boxes) or dvec.shape[1] != self.cfg.input_dim:
        raise ValueError(f"FrameDetections: {len(boxes)} boxes, {len(scores)} scores, D-vectors "
                         f"{dvec.shape} (the model expects D = {self.cfg.input_dim})")
      return det_lib.FrameDetections(boxes, scores, dvec)
    if self.dvec.mode != "boxes":
      raise ValueError(f"this model needs D-vectors with appearance (mode {self.dvec.mode!r}): "
                       "pass FrameDetections (rolo_jax.mot.detections.encode_video)")
    if self.frame_size is None:
      raise ValueError("building D-vectors from boxes needs the frame size (frame_size=(W, H))")
    labels = detections.label if isinstance(detections, Objects) else None
    boxes, scores = as_detections(detections)
    ok = det_lib.valid_boxes(boxes)
    boxes, scores = boxes[ok], scores[ok]
    labels = None if labels is None or self.dvec.num_classes == 1 else np.asarray(labels)[ok]
    return det_lib.FrameDetections(boxes, scores, det_lib.build_dvectors(
        boxes, scores, labels, self.frame_size, self.dvec))

  # ------------------------------------------------------------------------------------ update
  def update(self, detections: Detections | det_lib.FrameDetections) -> Tuple[np.ndarray, np.ndarray]:
    fd = self._parse(detections)
    ok = det_lib.valid_boxes(fd.boxes)
    if self.tc.min_score is not None:
      ok &= fd.scores >= self.tc.min_score
    boxes, dvec = fd.boxes[ok], fd.dvec[ok]
    n = len(boxes)
    self.frame_count += 1

    # 1. Predict.
    if len(self.ids):
      self.kf = kalman.predict(self.kf)
      self.hit_streak[self.tsu > 0] = 0
      self.tsu += 1
      self._keep(np.all(np.isfinite(kalman.x_to_box(self.kf.x)), axis=1))
    K = len(self.ids)
    pred = kalman.x_to_box(self.kf.x)

    # 2. Model step (tracks = previous slots, detections = current slots).
    phi_d = np.zeros((0, self.cfg.phi_dim), np.float32)
    h_d = np.zeros((0,) + self.h.shape[1:], np.float32)
    prob = np.zeros((0, self.cfg.num_classes + 1), np.float32)
    refined = np.zeros((0, 4))
    if n:
      kc, nc = _bucket(K), _bucket(n)
      Lh = np.zeros((kc,) + self.h.shape[1:], np.float32)
      Lh[:K] = self.h
      phi_p = np.zeros((kc, self.cfg.phi_dim), np.float32)
      phi_p[:K] = self.phi
      prev = model.SlotState(
          tuple(lstm.LSTMState(jnp.asarray(Lh[None, :, l, 0]), jnp.asarray(Lh[None, :, l, 1]))
                for l in range(self.cfg.num_layers)),
          jnp.asarray(phi_p[None]), jnp.asarray((np.arange(kc) < K)[None]))
      x = np.zeros((1, nc, self.cfg.input_dim), np.float32)
      x[0, :n] = dvec
      new, out = _step(self.params, prev, jnp.asarray(x), jnp.asarray((np.arange(nc) < n)[None]),
                       self.cfg)
      new, out = jax.device_get((new, out))
      phi_d = np.asarray(out["phi"][0, :n])
      prob = np.asarray(out["prob"][0, :n])
      h_d = np.stack([np.stack([np.asarray(s.h[0, :n]), np.asarray(s.c[0, :n])], 1)
                      for s in new.lstm], 1)
      if self.frame_size is not None:
        W, H = self.frame_size
        b = np.asarray(out["box"][0, :n], np.float64) * np.array([W, H, W, H])
        refined = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)

    # 3. Associate: tracks seen in the previous frame first, then the lost ones.
    d_idx = k_idx = np.zeros(0, np.int64)
    if K and n:
      sim = self.phi @ phi_d.T if self.tc.use_phi else np.ones((K, n))
      iou = pairwise_iou(pred, boxes)
      cp = pred[:, :2] + pred[:, 2:] / 2
      cd = boxes[:, :2] + boxes[:, 2:] / 2
      dist = np.linalg.norm(cp[:, None] - cd[None], axis=-1) / np.sqrt(pred[:, 2] * pred[:, 3])[:, None]
      recent = self.tsu <= 1
      allowed = (iou >= self.tc.iou_gate) & (sim >= self.tc.sim_threshold)
      lost_ok = (dist <= self.tc.reid_distance) & (sim >= self.tc.sim_threshold)
      if self.tc.use_phi and self.tc.reid_sim_threshold is not None:
        lost_ok |= sim >= self.tc.reid_sim_threshold
      allowed |= ~recent[:, None] & lost_ok
      score = sim + self.tc.iou_weight * iou
      free_d = np.ones(n, bool)
      ks, ds = [], []
      groups = ((np.nonzero(recent)[0], np.nonzero(~recent)[0]) if self.tc.cascade
                else (np.arange(K),))
      for rows in groups:
        cols = np.nonzero(free_d)[0]
        r, c = _assign(score[np.ix_(rows, cols)], allowed[np.ix_(rows, cols)])
        ks.append(rows[r])
        ds.append(cols[c])
        free_d[cols[c]] = False
      k_idx, d_idx = np.concatenate(ks).astype(np.int64), np.concatenate(ds).astype(np.int64)

    # 4. Matched tracks.
    if len(k_idx):
      upd = kalman.update(kalman.KalmanState(self.kf.x[k_idx], self.kf.P[k_idx]), boxes[d_idx])
      self.kf.x[k_idx], self.kf.P[k_idx] = upd.x, upd.P
      self.h[k_idx] = h_d[d_idx]
      self.phi[k_idx] = phi_d[d_idx]
      self.tsu[k_idx] = 0
      self.hits[k_idx] += 1
      self.hit_streak[k_idx] += 1
    src = np.full(len(self.ids), -1, np.int64)   # detection reported for each track
    src[k_idx] = d_idx

    # 5. Birth.
    new_d = np.setdiff1d(np.arange(n), d_idx)
    if self.tc.background_threshold is not None and len(new_d):
      new_d = new_d[prob[new_d, -1] < self.tc.background_threshold]
    if len(new_d):
      self._append(kalman.init(boxes[new_d]), h_d[new_d], phi_d[new_d], len(new_d))
      src = np.concatenate([src, new_d])

    # 6-7. Confirm and report.
    self.confirmed |= (self.hit_streak >= self.tc.min_hits) | (self.frame_count <= self.tc.min_hits)
    show = (self.tsu == 0) & self.confirmed
    if self.tc.output == "detection":
      out_boxes = boxes[src[show]]
    elif self.tc.output == "refined":
      if self.frame_size is None:
        raise ValueError("output='refined' needs frame_size")
      out_boxes = refined[src[show]]
    else:
      out_boxes = kalman.x_to_box(self.kf.x[show])
    out_ids = self.ids[show].copy()

    # 8. Death.
    self._keep(np.where(self.confirmed, self.tsu <= self.tc.max_age, self.tsu == 0))
    return np.asarray(out_boxes, np.float64).reshape(-1, 4), out_ids


def _assign(score: np.ndarray, allowed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Hungarian assignment maximising the total score over allowed pairs (most pairs first)."""
  if score.size == 0 or not allowed.any():
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  big = 2.0 * min(score.shape) * (np.abs(score[allowed]).max() + 1.0) + 1.0
  r, c = linear_sum_assignment(np.where(allowed, -score, big))
  keep = allowed[r, c]
  return r[keep].astype(np.int64), c[keep].astype(np.int64)


def run_frames(tracker: MultiObjectTracker, frames_dets) -> Objects:
  """Runs a tracker over per-frame inputs (e.g. `detections.encode_video` output) from frame 0.

  Returns the hypotheses as Objects (frame, track_id, box; score 1).
  """
  tracker.reset()
  f, i, b = [], [], []
  for t, d in enumerate(frames_dets):
    boxes, ids = tracker.update(d)
    f.append(np.full(len(ids), t, np.int64))
    i.append(np.asarray(ids, np.int64))
    b.append(np.asarray(boxes, np.float64).reshape(-1, 4))
  if not f:
    return Objects.empty()
  return Objects.from_arrays(np.concatenate(f), np.concatenate(i), np.concatenate(b))


def from_checkpoint(directory: str, tracker: TrackerConfig = TrackerConfig(),
                    frame_size: Optional[Tuple[float, float]] = None) -> AssociationTracker:
  """An `AssociationTracker` from a training workdir (or params-only checkpoint) whose meta holds
  'config' (the AssociationConfig) and 'dvec' (the DVectorConfig)."""
  from rolo_jax.train.checkpoint import load_params

  params, meta = load_params(directory)
  if meta.get("model") != "association" or "config" not in meta or "dvec" not in meta:
    raise DataError(directory, f"not an Association LSTM checkpoint (meta: model="
                               f"{meta.get('model')!r})")
  cfg = model.AssociationConfig(**meta["config"])
  dvec = det_lib.DVectorConfig(**meta["dvec"])
  return AssociationTracker(params, cfg, dvec, tracker, frame_size)


__all__ = ["TrackerConfig", "AssociationTracker", "run_frames", "from_checkpoint", "OUTPUTS"]
