"""Per-frame detections as the Association LSTM's D-vectors, and simulated detections.

D-vector of one detection (Lu, Lu & Tang, ICCV 2017: D = c + 4 + s*s), in this order::

  class scores  K values   score * one_hot(label)  (label -1, unknown: score / K everywhere;
                           K = 1: the detection score alone, e.g. a MOTChallenge det.txt)
  box           4 values   (cx / W, cy / H, w / W, h / H), the box centre and size relative to the
                           frame (W x H pixels)
  appearance    A values   an s x s ROI-pooled feature of the box (A = s*s*C), by mode:
                  'pixels'   the frame's RGB in [0, 1] pooled (C = 3), mapped to [-1, 1] (2 v - 1)
                  'features' a detector's feature map [Hf, Wf, C] pooled (box scaled by Hf / H,
                             Wf / W), then divided by its L2 norm (unit vector; 0 stays 0)
                  'boxes'    none (A = 0): the D-vector is built from the box and score alone, so
                             a det.txt without images can be tracked

ROI pooling (`roi_pool`) is average pooling over an s x s grid of bins: the box [x0, x1) x [y0, y1)
(in map pixels) is cut at e_k = x0 + k (x1 - x0) / s, bin k covers the integer columns
floor(e_k) .. max(floor(e_{k+1}), floor(e_k) + 1) - 1 (never empty), clipped to the map; a bin
wholly outside the map is 0.  Sums come from an integral image, so a bin mean is exact.
The paper pools a single s x s map (D = c + 4 + s*s); here every channel is pooled (A = s*s*C), so
colour is kept for 'pixels'.

Simulated detections (`simulate_detections`, the default detector of the synthetic experiments),
from ground truth with visibility v per row (all draws from one seeded generator):

  miss      each gt box is dropped with p = p_miss + p_miss_occluded * (1 - v)
  jitter    centre += N(0, centre_jitter^2) * (w, h);  w, h *= exp(N(0, size_jitter^2)) (independent),
            then clipped to the frame (sizes >= 2 px)
  score     true positives: clip(N(tp_score_mean, tp_score_std^2), min_score, 1)
  label     the gt class, replaced by a uniformly drawn other class with p = label_error
  false     Poisson(fp_per_frame) boxes per frame with scores U(fp_score_low, fp_score_high):
  positives a fraction fp_near_fraction next to a random gt box of the frame (centre shifted by
            0.6 .. 1.2 of its size in x or y: a duplicate-like box with IoU < 0.5), the rest
            anywhere in the frame with the size of a random gt box (or 0.15 of the frame).

Defaults: p_miss 0.05, p_miss_occluded 0.6, centre_jitter 0.04, size_jitter 0.06, fp_per_frame
0.3, fp_near_fraction 0.5, label_error 0.1, tp score 0.85 +- 0.1, fp score U(0.3, 0.8): roughly a
decent detector with most misses under occlusion, as in real video.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, NamedTuple, Optional, Sequence as Seq, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from rolo_jax.data.boxes import pairwise_iou
from rolo_jax.data.sequence import Objects

MODES = ("pixels", "features", "boxes")


@dataclasses.dataclass(frozen=True)
class DVectorConfig:
  """Layout of the D-vectors (see the module docstring).

  Attributes:
    mode: 'pixels', 'features' or 'boxes'.
    num_classes: K class-score entries (1: the detection score alone).
    pool: s, the ROI-pooling grid side.
    channels: C of the pooled map (3 for 'pixels'; the detector's channels for 'features').
  """
  mode: str = "pixels"
  num_classes: int = 6
  pool: int = 4
  channels: int = 3

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
    if self.num_classes < 1 or self.pool < 1 or self.channels < 1:
      raise ValueError(f"num_classes, pool and channels must be >= 1, got {self}")
    if self.mode == "pixels" and self.channels != 3:
      raise ValueError(f"mode 'pixels' pools RGB: channels must be 3, got {self.channels}")

  @property
  def appearance_dim(self) -> int:
    return 0 if self.mode == "boxes" else self.pool * self.pool * self.channels

  @property
  def dim(self) -> int:
    """D = K + 4 + A."""
    return self.num_classes + 4 + self.appearance_dim


class FrameDetections(NamedTuple):
  """One frame's detections for `AssociationTracker.update`.

  boxes [n, 4] x, y, w, h pixels; scores [n]; dvec [n, D] float32 D-vectors (`build_dvectors`).
  """
  boxes: np.ndarray
  scores: np.ndarray
  dvec: np.ndarray


# ---------------------------------------------------------------------------------------- pooling

def _bin_edges(lo: np.ndarray, hi: np.ndarray, s: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Integer [start, stop) of the s bins of each interval [lo, hi), clipped to [0, size]."""
  e = lo[:, None] + (hi - lo)[:, None] * (np.arange(s + 1) / s)[None, :]   # [n, s + 1]
  start = np.floor(e[:, :-1])
  stop = np.maximum(np.floor(e[:, 1:]), start + 1)
  return (np.clip(start, 0, size).astype(np.int64), np.clip(stop, 0, size).astype(np.int64))


def roi_pool(feature_map: np.ndarray, boxes: np.ndarray, s: int) -> np.ndarray:
  """Average ROI pooling of boxes on a map (see the module docstring).

  Args:
    feature_map: [H, W, C] (any real dtype).
    boxes: [n, 4] x, y, w, h in map pixels.
    s: bins per side.
  Returns:
    float64 [n, s, s, C]: [k, i, j] is the mean of bin row i, column j of box k (0 outside the map).
  """
  fm = np.asarray(feature_map, np.float64)
  if fm.ndim != 3:
    raise ValueError(f"roi_pool: feature_map must be [H, W, C], got shape {fm.shape}")
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n, (H, W, C) = len(boxes), fm.shape
  if n == 0:
    return np.zeros((0, s, s, C))
  ii = np.zeros((H + 1, W + 1, C))
  ii[1:, 1:] = fm.cumsum(0).cumsum(1)
  x0, y0 = boxes[:, 0], boxes[:, 1]
  xs, xe = _bin_edges(x0, x0 + boxes[:, 2], s, W)      # [n, s]
  ys, ye = _bin_edges(y0, y0 + boxes[:, 3], s, H)
  Y0, X0 = ys[:, :, None], xs[:, None, :]               # [n, s, s]
  Y1, X1 = ye[:, :, None], xe[:, None, :]
  total = ii[Y1, X1] - ii[Y0, X1] - ii[Y1, X0] + ii[Y0, X0]   # [n, s, s, C]
  area = ((Y1 - Y0) * (X1 - X0)).astype(np.float64)[..., None]
  return np.where(area > 0, total / np.maximum(area, 1.0), 0.0)


# ---------------------------------------------------------------------------------------- D-vectors

def class_scores(scores: np.ndarray, labels: Optional[np.ndarray], num_classes: int) -> np.ndarray:
  """[n, K]: score * one_hot(label); label -1 (or labels None) spreads score / K; K = 1: score."""
  scores = np.asarray(scores, np.float64).reshape(-1)
  n = len(scores)
  if num_classes == 1:
    return scores[:, None].copy()
  out = np.repeat((scores / num_classes)[:, None], num_classes, axis=1)
  if labels is not None:
    labels = np.asarray(labels, np.int64).reshape(n)
    if (labels >= num_classes).any():
      raise ValueError(f"class labels must be < num_classes={num_classes}, got {labels.max()}")
    known = labels >= 0
    out[known] = 0.0
    out[np.nonzero(known)[0], labels[known]] = scores[known]
  return out


def box_features(boxes: np.ndarray, frame_size: Tuple[float, float]) -> np.ndarray:
  """[n, 4] (cx / W, cy / H, w / W, h / H) of x, y, w, h boxes; frame_size = (W, H)."""
  W, H = float(frame_size[0]), float(frame_size[1])
  if not (W > 0 and H > 0):
    raise ValueError(f"frame_size must be positive (W, H), got {frame_size}")
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.stack([(b[:, 0] + b[:, 2] / 2) / W, (b[:, 1] + b[:, 3] / 2) / H, b[:, 2] / W,
                   b[:, 3] / H], axis=1)


def build_dvectors(boxes: np.ndarray, scores: np.ndarray, labels: Optional[np.ndarray],
                   frame_size: Tuple[float, float], cfg: DVectorConfig, *,
                   image: Optional[np.ndarray] = None,
                   feature_map: Optional[np.ndarray] = None) -> np.ndarray:
  """D-vectors of one frame's detections.

  Args:
    boxes: [n, 4] x, y, w, h pixels.  scores: [n].  labels: [n] class indices (-1 unknown) or None.
    frame_size: (W, H) of the frame in pixels.
    cfg: the layout.
    image: uint8 [H, W, 3] RGB (mode 'pixels').
    feature_map: [Hf, Wf, C] (mode 'features').
  Returns:
    float32 [n, cfg.dim].
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  parts = [class_scores(scores, labels, cfg.num_classes), box_features(boxes, frame_size)]
  if cfg.mode == "pixels":
    if image is None:
      raise ValueError("D-vectors of mode 'pixels' need the frame image")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
      raise ValueError(f"image must be [H, W, 3], got {img.shape}")
    pooled = roi_pool(img.astype(np.float64) / 255.0, boxes, cfg.pool)
    parts.append(2.0 * pooled.reshape(len(boxes), -1) - 1.0)
  elif cfg.mode == "features":
    if feature_map is None:
      raise ValueError("D-vectors of mode 'features' need the detector's feature map")
    fm = np.asarray(feature_map)
    if fm.ndim != 3 or fm.shape[2] != cfg.channels:
      raise ValueError(f"feature_map must be [Hf, Wf, {cfg.channels}], got {fm.shape}")
    W, H = frame_size
    scale = np.array([fm.shape[1] / W, fm.shape[0] / H] * 2)
    v = roi_pool(fm, boxes * scale, cfg.pool).reshape(len(boxes), -1)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    parts.append(np.where(norm > 0, v / np.maximum(norm, 1e-12), 0.0))
  return np.concatenate(parts, axis=1).astype(np.float32)


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
  """bool [n]: finite boxes with positive width and height."""
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.all(np.isfinite(b), axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)


def encode_video(detections: Objects, num_frames: int, frame_size: Tuple[float, float],
                 cfg: DVectorConfig, *, frames=None,
                 feature_maps: Optional[Callable[[int], np.ndarray]] = None
                 ) -> List[FrameDetections]:
  """Per-frame `FrameDetections` of a whole video (detections sorted by descending score).

  Boxes that are not finite or have no positive size are dropped.

  Args:
    detections: all detections (frame 0-based, box, score, label).
    num_frames: frames of the video (frames without detections give empty entries).
    frame_size: (W, H).
    cfg: the D-vector layout.
    frames: frame source (`frames[t]` uint8 [H, W, 3]), mode 'pixels'.
    feature_maps: t -> [Hf, Wf, C] detector features of frame t, mode 'features'.
  """
  if cfg.mode == "pixels" and frames is None:
    raise ValueError("mode 'pixels' needs the frames")
  if cfg.mode == "features" and feature_maps is None:
    raise ValueError("mode 'features' needs feature maps")
  out = []
  order = np.lexsort((-detections.score, detections.frame))
  f = detections.frame[order]
  bounds = np.searchsorted(f, np.arange(num_frames + 1))
  for t in range(num_frames):
    rows = order[bounds[t]:bounds[t + 1]]
    rows = rows[valid_boxes(detections.box[rows])]
    b, s, lab = detections.box[rows], detections.score[rows], detections.label[rows]
    if len(rows) == 0:
      out.append(FrameDetections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, cfg.dim), np.float32)))
      continue
    kw = {}
    if cfg.mode == "pixels":
      kw["image"] = frames[t]
    elif cfg.mode == "features":
      kw["feature_map"] = feature_maps(t)
    labels = lab if cfg.num_classes > 1 else None
    out.append(FrameDetections(b.copy(), s.copy(), build_dvectors(b, s, labels, frame_size, cfg, **kw)))
  return out


def infer_frame_size(*tables: Objects, minimum: float = 1.0) -> Tuple[float, float]:
  """(W, H) covering every box of the tables: max(x + w), max(y + h) rounded up (no images)."""
  W = H = minimum
  for t in tables:
    if t is not None and len(t):
      ok = valid_boxes(t.box)
      if ok.any():
        b = t.box[ok]
        W = max(W, float(np.ceil(np.max(b[:, 0] + b[:, 2]))))
        H = max(H, float(np.ceil(np.max(b[:, 1] + b[:, 3]))))
  return W, H


# ---------------------------------------------------------------------------------------- matching

def match_to_gt(det_boxes: np.ndarray, gt_boxes: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
  """Hungarian matching of detections to ground truth maximising total IoU over pairs with
  IoU >= iou_threshold (the association loss's theta targets).

  Args:
    det_boxes: [n, 4] x, y, w, h.  gt_boxes: [m, 4].
  Returns:
    int64 [n]: the matched gt row of each detection, -1 when unmatched.
  """
  det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
  gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
  out = np.full(len(det_boxes), -1, np.int64)
  if len(det_boxes) == 0 or len(gt_boxes) == 0:
    return out
  iou = pairwise_iou(det_boxes, gt_boxes)
  ok = iou >= iou_threshold
  if not ok.any():
    return out
  r, c = linear_sum_assignment(np.where(ok, iou, 0.0), maximize=True)
  keep = ok[r, c]
  out[r[keep]] = c[keep]
  return out


# ---------------------------------------------------------------------------------------- simulation

@dataclasses.dataclass(frozen=True)
class DetectionNoise:
  """How simulated detections differ from the ground truth (see the module docstring)."""
  p_miss: float = 0.05
  p_miss_occluded: float = 0.6
  centre_jitter: float = 0.04
  size_jitter: float = 0.06
  fp_per_frame: float = 0.3
  fp_near_fraction: float = 0.5
  label_error: float = 0.1
  tp_score_mean: float = 0.85
  tp_score_std: float = 0.1
  fp_score_low: float = 0.3
  fp_score_high: float = 0.8
  min_score: float = 0.3

  def __post_init__(self):
    for f in ("p_miss", "p_miss_occluded", "fp_near_fraction", "label_error"):
      v = getattr(self, f)
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"{f} must be in [0, 1], got {v}")
    if self.fp_per_frame < 0 or self.centre_jitter < 0 or self.size_jitter < 0:
      raise ValueError(f"rates and jitters must be >= 0: {self}")


def _clip_boxes(b: np.ndarray, W: float, H: float, min_size: float = 2.0) -> np.ndarray:
  x0 = np.clip(b[:, 0], 0, W - min_size)
  y0 = np.clip(b[:, 1], 0, H - min_size)
  x1 = np.clip(b[:, 0] + b[:, 2], x0 + min_size, W)
  y1 = np.clip(b[:, 1] + b[:, 3], y0 + min_size, H)
  return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def simulate_detections(gt: Objects, num_frames: int, frame_size: Tuple[float, float], *,
                        num_classes: int, seed, noise: DetectionNoise = DetectionNoise()) -> Objects:
  """Noisy detections derived from ground truth (see the module docstring).

  Args:
    gt: ground truth (frame, box, label, visibility in [0, 1]).
    num_frames: frames of the video (false positives can appear in any of them).
    frame_size: (W, H).
    num_classes: classes a wrong label is drawn from.
    seed: anything `np.random.default_rng` takes (e.g. (sequence seed, variant)).
    noise: the noise model.
  Returns:
    Objects (track_id -1) sorted by frame, then descending score.
  """
  rng = np.random.default_rng(seed)
  W, H = float(frame_size[0]), float(frame_size[1])
  n = len(gt)
  vis = np.clip(np.asarray(gt.visibility, np.float64), 0.0, 1.0)
  # Every draw is made for every row (fixed stream layout), then selected.
  u_miss = rng.uniform(size=n)
  dc = rng.normal(size=(n, 2)) * noise.centre_jitter
  ds = rng.normal(size=(n, 2)) * noise.size_jitter
  sc = rng.normal(noise.tp_score_mean, noise.tp_score_std, size=n)
  u_lab = rng.uniform(size=n)
  other = rng.integers(0, max(num_classes - 1, 1), size=n)
  keep = u_miss >= noise.p_miss + noise.p_miss_occluded * (1.0 - vis)
  b = np.asarray(gt.box, np.float64)
  w, h = b[:, 2] * np.exp(ds[:, 0]), b[:, 3] * np.exp(ds[:, 1])
  cx = b[:, 0] + b[:, 2] / 2 + dc[:, 0] * b[:, 2]
  cy = b[:, 1] + b[:, 3] / 2 + dc[:, 1] * b[:, 3]
  boxes = _clip_boxes(np.stack([cx - w / 2, cy - h / 2, w, h], 1), W, H) if n else np.zeros((0, 4))
  labels = np.asarray(gt.label, np.int64).copy()
  if num_classes > 1:
    wrong = (u_lab < noise.label_error) & (labels >= 0)
    labels[wrong] = np.where(other[wrong] >= labels[wrong], other[wrong] + 1, other[wrong])
  scores = np.clip(sc, noise.min_score, 1.0)
  frames = [np.asarray(gt.frame, np.int64)[keep]]
  out_b, out_s, out_l = [boxes[keep]], [scores[keep]], [labels[keep]]
  # False positives.
  n_fp = rng.poisson(noise.fp_per_frame, size=num_frames)
  by_frame = {int(t): np.nonzero(gt.frame == t)[0] for t in np.unique(gt.frame)} if n else {}
  for t in np.nonzero(n_fp)[0].tolist():
    rows = by_frame.get(t, np.zeros(0, np.int64))
    for _ in range(int(n_fp[t])):
      u_near, u_pick, u_axis, u_side, u_dist, u_x, u_y = rng.uniform(size=7)
      score = rng.uniform(noise.fp_score_low, noise.fp_score_high)
      label = int(rng.integers(0, num_classes)) if num_classes > 1 else -1
      if len(rows):
        ref = b[rows[min(int(u_pick * len(rows)), len(rows) - 1)]]
        bw, bh = ref[2], ref[3]
      else:
        ref = None
        bw = bh = 0.15 * np.sqrt(W * H)
      if ref is not None and u_near < noise.fp_near_fraction:
        shift = (0.6 + 0.6 * u_dist) * (1.0 if u_side < 0.5 else -1.0)
        x = ref[0] + (shift * bw if u_axis < 0.5 else 0.0)
        y = ref[1] + (shift * bh if u_axis >= 0.5 else 0.0)
      else:
        x, y = u_x * max(W - bw, 1.0), u_y * max(H - bh, 1.0)
      frames.append(np.array([t]))
      out_b.append(_clip_boxes(np.array([[x, y, bw, bh]]), W, H))
      out_s.append(np.array([score]))
      out_l.append(np.array([label if num_classes > 1 else -1]))
  f = np.concatenate(frames)
  bb = np.concatenate(out_b).reshape(-1, 4)
  ss, ll = np.concatenate(out_s), np.concatenate(out_l)
  if num_classes == 1:
    ll = np.full_like(ll, -1)
  order = np.lexsort((-ss, f))
  return Objects.from_arrays(f[order], np.full(len(f), -1), bb[order], score=ss[order],
                             label=ll[order])


# ---------------------------------------------------------------------------------------- YOLO

def yolo_feature_maps(params, ycfg, images: np.ndarray) -> np.ndarray:
  """The tiny YOLO's last convolutional map (after its leaky ReLU) of each image.

  Args:
    params: `rolo_jax.models.yolo` params.  ycfg: its `YoloConfig`.
    images: uint8 [N, H, W, 3] (resized to ycfg.input_size here).
  Returns:
    float32 [N, Hf, Wf, C] (tiny: 7 x 7 x 64).
  """
  import cv2
  import jax
  import flax.linen as nn
  from rolo_jax.models import yolo

  last = f"conv{ycfg.num_convs}"
  x = np.stack([cv2.resize(np.asarray(im), (ycfg.input_size, ycfg.input_size),
                           interpolation=cv2.INTER_AREA) for im in images])
  _, state = yolo.YoloNet(ycfg).apply(
      {"params": params}, yolo.preprocess(x), train=False,
      capture_intermediates=lambda mdl, _: mdl.name == last, mutable=["intermediates"])
  pre = state["intermediates"][last]["__call__"][0]
  return np.asarray(jax.device_get(nn.leaky_relu(pre, ycfg.leaky_slope)), np.float32)


def yolo_detect(params, ycfg, images: np.ndarray, *, conf_thresh: float = 0.2,
                nms_iou: float = 0.5) -> Tuple[Objects, np.ndarray]:
  """Detections of the tiny YOLO on a video, and its feature maps (for mode 'features').

  Args:
    images: uint8 [T, H, W, 3] (all frames of one video).
  Returns:
    (Objects: frame, box in pixels of the original frames, score, label; maps [T, Hf, Wf, C]).
  """
  import cv2
  import jax
  from rolo_jax.models import yolo

  images = np.asarray(images)
  T, H, W = images.shape[:3]
  x = np.stack([cv2.resize(im, (ycfg.input_size, ycfg.input_size), interpolation=cv2.INTER_AREA)
                for im in images])
  preds, _ = jax.jit(lambda p, v: yolo.apply(p, v, cfg=ycfg))(params, yolo.preprocess(x))
  preds = np.asarray(preds)
  fr, bb, ss, ll = [], [], [], []
  for t in range(T):
    rel, sc, cl = yolo.decode(preds[t], conf_thresh, B=ycfg.boxes_per_cell, nms_iou=nms_iou)
    fr.append(np.full(len(sc), t))
    bb.append(yolo.to_pixels(rel, W, H).reshape(-1, 4))
    ss.append(sc)
    ll.append(cl)
  dets = Objects.from_arrays(np.concatenate(fr), np.full(sum(map(len, ss)), -1),
                             np.concatenate(bb).reshape(-1, 4), score=np.concatenate(ss),
                             label=np.concatenate(ll))
  return dets, yolo_feature_maps(params, ycfg, images)


__all__ = ["MODES", "DVectorConfig", "FrameDetections", "roi_pool", "class_scores", "box_features",
           "build_dvectors", "valid_boxes", "encode_video", "infer_frame_size", "match_to_gt",
           "DetectionNoise", "simulate_detections", "yolo_feature_maps", "yolo_detect"]
