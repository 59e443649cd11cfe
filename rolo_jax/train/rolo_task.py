"""ROLO's tracking module: cached detector outputs, the paper's three protocols, training and
evaluation against YOLO alone and YOLO + SORT on the same detections.

Spec: ``/work/shared/specs/rolo.md``; paper §2.2, §3.2-3.3, §4.3-4.4.

Pipeline (the detector runs once per frame; the LSTM trains on the cached vectors)::

    frame t --Detector--> X_t (features [F]), detections D_t ([K, 6] px x, y, w, h, score, class)
    D_t --DetectionAssigner (initial box only in frame 0)--> d_t (px, NaN when none)
    B_t = (0, x, y, w, h, 0) relative centre / size of d_t, zeros when none      (paper eq. 3)
    inputs_t = [X_t · feature_scale, B_t]  (coord)  or  [X_t · feature_scale, mask(d_t)] (heatmap)

``feature_scale`` (1 = the paper) multiplies the visual features before they reach the LSTM; the
tiny detector's features are not normalised like YOLO v1's, and a scale that brings them to about
unit size (``suggest_feature_scale``) keeps the location values from being drowned. It is part
of the ROLO checkpoint, so the tracker applies the same one.

Training (``train_rolo``), zero-state windows (the paper): window k = frames e_k - N + 1 .. e_k
(frame 0 repeated before the start, ``models.rolo.make_windows``), target = the ground truth of
its LAST frame e_k, used only where e_k is a labelled frame with a visible target::

    coord   L = 100 · mean over the batch and the 4 values of (B̂ - B)²     B = relative (cx, cy, w, h)
            (the paper; ``coord_loss`` 'l1', 'iou', 'giou' are alternatives, ``batch_loss``)
    heatmap L = mean over the batch of ‖Ĥ - H‖²                          H = 32×32 mask of the box

Adam (optim.make_optimizer; the paper's lr 1e-5 with batch 1 is a flag away, the default uses
batch 32 and lr 1e-3 to fit the CPU budget). ``feature_dropout`` (0 = the paper, which reports
dropout on the visual features as inferior) zeroes each visual feature with that probability in
training (inverted dropout; the location part is never dropped). Carried-state mode (``carry_state=True``): the
tracker runs one LSTM over the whole sequence (``models.rolo`` explains why that equals carried
windows); training unrolls chunks of ``carry_chunk`` consecutive frames from a zero state with the
loss on every labelled step (truncated back-propagation; the chunk, not the window, bounds it).

Protocols (``protocol_masks``; paper §4.3). Per sequence a label mask (frames whose ground truth
trains ROLO) and a score mask (frames that are scored); frame 0 holds the initial box every
tracker is given and is never scored, and no frame is in both masks:

    'sequences'     train on the training sequences' frames, score the other sequences (exp. 1)
    'first_third'   label frames t < ceil(T/3), score the rest (exp. 2; windows ending in the
                    first third only contain first-third frames)
    'third_labels'  label every third frame (t % 3 == 0), all frames are LSTM inputs, score the
                    unlabelled ones (exp. 3)

Scores (``masked_score``): the OTB per-frame IoU (inclusive pixels) and centre error on the scored
frames; a frame whose ground truth is absent (NaN, or w or h <= 0) counts as a failure (IoU -1 for
the success curve, 0 for the average overlap), as the OTB toolkit does (the toolkit also rejects
x or y <= 0; synthetic boxes legitimately touch the image's left and top edges, so here only the
size decides). average overlap = Σ IoU / n.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence as Seq, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.data import boxes as bx
from rolo_jax.data.formats import rolo_features
from rolo_jax.errors import DataError
from rolo_jax.eval import otb
from rolo_jax.models import rolo, yolo
from rolo_jax.rolo import assign
from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import optim
from rolo_jax.train import yolo_task
from rolo_jax.trackers import yolo_sort

PyTree = Any
PROTOCOLS = ("sequences", "first_third", "third_labels")


# --------------------------------------------------------------------------------------------------
# configuration

@dataclass(frozen=True)
class RoloTaskConfig:
  """ROLO training run (hashable; stored in the checkpoint meta and checked on resume)."""
  steps: int = 3000
  batch: int = 32
  lr: float = 1e-3
  warmup_steps: int = 50
  final_lr_fraction: float = 0.05
  clip_norm: float = 5.0
  feature_scale: float = 1.0
  feature_dropout: float = 0.0     # drop rate of the visual features in training (0: the paper)
  coord_loss: str = "mse"          # 'mse' (the paper) | 'l1' | 'iou' | 'giou' (batch_loss)
  weight_decay: float = 0.0        # L2 term wd · Σ ½‖v‖² added to the loss (0: the paper)
  carry_chunk: int = 64
  seed: int = 0
  checkpoint_every: int = 500

  def replace(self, **kw) -> "RoloTaskConfig":
    return dataclasses.replace(self, **kw)


def rolo_config_from_json(d: Dict[str, Any]) -> rolo.RoloConfig:
  fields = {f.name for f in dataclasses.fields(rolo.RoloConfig)}
  return rolo.RoloConfig(**{k: v for k, v in dict(d).items() if k in fields})


# --------------------------------------------------------------------------------------------------
# cached detector outputs

class CachedSequence(NamedTuple):
  """One target's sequence after the detector and the assignment.

  features: float32 [T, F] (unscaled); detections: per frame [K, 6] px (x, y, w, h, score,
  class); assigned: [T, 4] px, NaN where no detection was assigned; locations: [T, 6] B_t;
  gt: [T, 4] px ground truth (NaN where absent); size: (width, height); occluded: bool [T]
  (the synthetic generator's flag; False when unknown).
  """
  name: str
  features: np.ndarray
  detections: List[np.ndarray]
  assigned: np.ndarray
  locations: np.ndarray
  gt: np.ndarray
  size: Tuple[int, int]
  occluded: np.ndarray

  @property
  def num_frames(self) -> int:
    return len(self.gt)


def _init_box(seq) -> np.ndarray:
  gt = np.asarray(seq.boxes, np.float64).reshape(-1, 4)
  if len(gt) == 0 or not (np.all(np.isfinite(gt[0])) and gt[0, 2] > 0 and gt[0, 3] > 0):
    raise DataError(getattr(seq, "name", "sequence"), "the first frame needs a ground-truth box "
                    f"(the tracker's initial box), found {gt[0].tolist() if len(gt) else 'none'}")
  return gt[0]


def cache_from_detections(seq, features, detections, *, history: int = assign.DEFAULT_HISTORY,
                          iou_min: float = assign.DEFAULT_IOU_MIN) -> CachedSequence:
  """Assigns per-frame detections to ``seq``'s target (initial box = seq.boxes[0] only)."""
  T = len(seq.boxes)
  features = np.asarray(features, np.float32)
  if features.ndim != 2 or len(features) != T or len(detections) != T:
    raise DataError(getattr(seq, "name", "sequence"), f"{T} frames but features {features.shape} and "
                    f"{len(detections)} detection lists")
  w, h = seq.size()
  a = assign.assign_sequence(detections, _init_box(seq), (w, h), history=history, iou_min=iou_min)
  occ = np.asarray(seq.meta.get("occluded", np.zeros(T, bool)), bool).reshape(-1)
  if occ.shape != (T,):
    occ = np.zeros(T, bool)
  return CachedSequence(seq.name, features, [np.asarray(d, np.float64) for d in detections], a.boxes,
                        a.locations, np.asarray(seq.boxes, np.float64), (int(w), int(h)), occ)


def cache_sequence(seq, detector: "yolo_task.Detector", **assign_kw) -> CachedSequence:
  """Runs the detector once over every frame and assigns its boxes to the target."""
  feats, dets = detector.frames_of(seq)
  return cache_from_detections(seq, feats, dets, **assign_kw)


def cache_from_feature_folder(seq, folder: str, feature_dim: int, **assign_kw) -> CachedSequence:
  """Precomputed vectors in the authors' format (one .npy of F + 6 floats per frame: features,
  then (class, x, y, w, h, confidence) relative; ``rolo_jax.data.formats.rolo_features``). The
  stored box is the frame's only detection (none when its w or h is 0); it still goes through the
  assignment. DataError when the folder's frame count differs from the sequence's."""
  feats, dets = rolo_features.read_feature_folder(folder, feature_dim)
  T = len(seq.boxes)
  if len(feats) != T:
    raise DataError(folder, f"{len(feats)} feature files for the {T} frames of {seq.name}")
  w, h = seq.size()
  per_frame = []
  for d in dets:
    cx, cy, bw, bh = d[1:5]
    if bw > 0 and bh > 0:
      px = np.asarray(yolo.to_pixels(np.array([cx, cy, bw, bh]), w, h), np.float64)
      per_frame.append(np.concatenate([px, [d[5], d[0]]])[None])
    else:
      per_frame.append(np.zeros((0, 6)))
  return cache_from_detections(seq, feats, per_frame, **assign_kw)


def write_cache(cache: CachedSequence, folder: str) -> List[str]:
  """Writes a cache as a feature folder in the authors' format: features and the ASSIGNED
  detection as (class, x, y, w, h, confidence) relative (zeros where none)."""
  dets = np.zeros((cache.num_frames, 6))
  for t in range(cache.num_frames):
    if np.all(np.isfinite(cache.assigned[t])):
      k = [i for i, d in enumerate(cache.detections[t]) if np.allclose(d[:4], cache.assigned[t])]
      d = cache.detections[t][k[0]] if k else np.zeros(6)
      dets[t] = [d[5], *cache.locations[t, 1:5], d[4]]
  return rolo_features.write_feature_folder(folder, cache.features, dets)


def relative_gt(cache: CachedSequence) -> np.ndarray:
  """[T, 4] relative (cx, cy, w, h) of the ground truth, NaN rows where absent."""
  w, h = cache.size
  g = cache.gt.copy()
  bad = ~(np.all(np.isfinite(g), axis=1) & (g[:, 2] > 0) & (g[:, 3] > 0))
  g[bad] = np.nan
  return np.asarray(yolo.to_relative(g, w, h), np.float64)


def suggest_feature_scale(caches: Seq[CachedSequence]) -> float:
  """1 / RMS of the visual features over the given caches (1 when they are all zero)."""
  x = np.concatenate([c.features for c in caches]).astype(np.float64)
  rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
  return 1.0 / rms if rms > 0 else 1.0


def sequence_inputs(cache: CachedSequence, cfg: rolo.RoloConfig, feature_scale: float = 1.0) -> np.ndarray:
  """float32 [T, D] LSTM inputs of a cached sequence (``models.rolo.frame_inputs``; the location
  vectors go through ``models.rolo.hold_locations`` first when ``cfg.hold_detection``)."""
  if cache.features.shape[1] != cfg.feature_dim:
    raise ValueError(f"{cache.name}: features are {cache.features.shape[1]}-d, the ROLO config "
                     f"{cfg.name!r} wants {cfg.feature_dim}")
  loc = rolo.hold_locations(cache.locations) if cfg.hold_detection else cache.locations
  return np.asarray(rolo.frame_inputs(cache.features * np.float32(feature_scale), loc, cfg=cfg))


# --------------------------------------------------------------------------------------------------
# protocols

def protocol_masks(num_frames: int, protocol: str, role: str) -> Tuple[np.ndarray, np.ndarray]:
  """(label_mask, score_mask) bool [T] of one sequence (module docstring).

  Args:
    protocol: 'sequences' | 'first_third' | 'third_labels'.
    role: 'train' or 'test' — only used by 'sequences' (train: every frame labelled, none
      scored; test: none labelled, frames 1.. scored).
  """
  T = int(num_frames)
  t = np.arange(T)
  if protocol == "sequences":
    if role not in ("train", "test"):
      raise ValueError(f"role must be 'train' or 'test', got {role!r}")
    return (np.ones(T, bool), np.zeros(T, bool)) if role == "train" else (np.zeros(T, bool), t >= 1)
  if protocol == "first_third":
    k = int(math.ceil(T / 3))
    return t < k, t >= max(k, 1)
  if protocol == "third_labels":
    lab = t % 3 == 0
    return lab, ~lab & (t >= 1)
  raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


def split_sequences(n: int, test_fraction: float = 8 / 30) -> Tuple[List[int], List[int]]:
  """Exp. 1 on a folder of n sequences: the last ceil(n · test_fraction) (at least 1, at most
  n - 1) are test sequences, the rest train (the authors' code: first 20 / last 8 of OTB-30)."""
  if n < 2:
    raise ValueError(f"the 'sequences' protocol needs at least 2 sequences, got {n}")
  k = min(max(int(math.ceil(n * test_fraction)), 1), n - 1)
  return list(range(n - k)), list(range(n - k, n))


# --------------------------------------------------------------------------------------------------
# training data

class WindowData(NamedTuple):
  """Training examples gathered from per-frame inputs.

  inputs: float32 [P, D] all frames of all sequences; index: int [M, L] rows into ``inputs``
  (L = window N, or carry_chunk); targets: float32 [M, L', out] (L' = 1 for windows: the last
  frame; L for chunks); mask: float32 [M, L'] 1 where the target is a labelled visible frame.
  """
  inputs: np.ndarray
  index: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


def _targets_of(cache: CachedSequence, cfg: rolo.RoloConfig) -> Tuple[np.ndarray, np.ndarray]:
  rel = relative_gt(cache)
  ok = np.all(np.isfinite(rel), axis=1)
  rel0 = np.where(ok[:, None], rel, 0.0)
  if cfg.mode == "coord":
    tgt = rel0.astype(np.float32)
  else:
    tgt = np.asarray(rolo.box_to_mask(rel0, cfg.heatmap_size), np.float32)
  return tgt, ok


def window_data(caches: Seq[CachedSequence], label_masks: Seq[np.ndarray], cfg: rolo.RoloConfig,
                feature_scale: float = 1.0, carry_chunk: int = 64) -> WindowData:
  """Training examples: zero-state windows ending at labelled visible frames, or (carry_state)
  chunks of consecutive frames with a per-step mask."""
  inputs, index, targets, mask = [], [], [], []
  offset = 0
  for cache, lab in zip(caches, label_masks):
    x = sequence_inputs(cache, cfg, feature_scale)
    T = len(x)
    lab = np.asarray(lab, bool).reshape(T)
    tgt, ok = _targets_of(cache, cfg)
    use = lab & ok
    inputs.append(x)
    if not cfg.carry_state:
      ends = rolo.window_end_frames(T, cfg.window, pad_first=True)
      idx = np.maximum(ends[:, None] - (cfg.window - 1) + np.arange(cfg.window)[None, :], 0)
      sel = use[ends]
      index.append(idx[sel] + offset)
      targets.append(tgt[ends][sel][:, None])
      mask.append(np.ones((int(sel.sum()), 1), np.float32))
    else:
      L = int(carry_chunk)
      last = np.nonzero(use)[0]
      if len(last):
        for s in range(0, int(last[-1]) + 1, L):
          idx = np.minimum(s + np.arange(L), T - 1)
          m = use[idx] & (s + np.arange(L) < T)
          if m.any():
            index.append(idx[None] + offset)
            targets.append(tgt[idx][None])
            mask.append(m[None].astype(np.float32))
    offset += T
  if not index or sum(len(i) for i in index) == 0:
    raise ValueError("no training example: no labelled frame with a visible target "
                     + ("" if not cfg.carry_state else "in any chunk"))
  out_dim = cfg.out_dim
  L = cfg.window if not cfg.carry_state else int(carry_chunk)
  return WindowData(np.concatenate(inputs).astype(np.float32),
                    np.concatenate([i.reshape(-1, L) for i in index]).astype(np.int64),
                    np.concatenate([t.reshape(len(t), -1, out_dim) for t in targets]).astype(np.float32),
                    np.concatenate([m.reshape(len(m), -1) for m in mask]).astype(np.float32))


def make_batch(data: WindowData, step: int, batch: int, seed: int = 0):
  """Batch ``step`` (deterministic in (seed, step)): (inputs [B, L, D], targets, mask)."""
  rng = np.random.default_rng([int(seed), int(step), 7])
  k = rng.integers(0, len(data.index), size=batch)
  return data.inputs[data.index[k]], data.targets[k], data.mask[k]


# --------------------------------------------------------------------------------------------------
# loss, update

COORD_LOSSES = ("mse", "l1", "iou", "giou")


def box_overlap_loss(pred, target, kind: str = "iou", eps: float = 1e-6):
  """1 - IoU (kind 'iou') or 1 - GIoU (kind 'giou') of relative (cx, cy, w, h) boxes.

  IoU is invariant under scaling x and y separately, so the relative boxes give the pixel IoU.
  Predicted w, h are clamped to >= eps. GIoU = IoU - (|C| - |A ∪ B|) / |C| with C the smallest box
  enclosing both (Rezatofighi et al. 2019).

  Args:
    pred, target: [..., 4].
  Returns:
    [...] loss in [0, 1] (iou) or [0, 2] (giou).
  """
  pw, ph = jnp.maximum(pred[..., 2], eps), jnp.maximum(pred[..., 3], eps)
  tw, th = target[..., 2], target[..., 3]
  px1, px2 = pred[..., 0] - pw / 2, pred[..., 0] + pw / 2
  py1, py2 = pred[..., 1] - ph / 2, pred[..., 1] + ph / 2
  tx1, tx2 = target[..., 0] - tw / 2, target[..., 0] + tw / 2
  ty1, ty2 = target[..., 1] - th / 2, target[..., 1] + th / 2
  iw = jnp.maximum(jnp.minimum(px2, tx2) - jnp.maximum(px1, tx1), 0.0)
  ih = jnp.maximum(jnp.minimum(py2, ty2) - jnp.maximum(py1, ty1), 0.0)
  inter = iw * ih
  union = pw * ph + tw * th - inter
  iou = inter / jnp.maximum(union, eps)
  if kind == "iou":
    return 1.0 - iou
  cw = jnp.maximum(px2, tx2) - jnp.minimum(px1, tx1)
  ch = jnp.maximum(py2, ty2) - jnp.minimum(py1, ty1)
  c = jnp.maximum(cw * ch, eps)
  return 1.0 - (iou - (c - union) / c)


def batch_loss(params, inputs, targets, mask, *, cfg: rolo.RoloConfig, coord_loss: str = "mse"):
  """Masked ROLO loss (module docstring) of a batch and the per-example predictions.

  Windows (zero state): inputs [B, N, D], targets [B, 1, out], mask [B, 1] -> the last step's
  read-out against the last frame's target (= ``models.rolo.loss`` when every mask is 1 and
  coord_loss is 'mse').
  Chunks (carry_state): inputs [B, L, D], targets / mask [B, L(, out)] -> every step.
  coord_loss (coordinate variant): 'mse' 100 · mean (B̂ - B)² (the paper), 'l1' 100 · mean |B̂ - B|,
  'iou' 100 · (1 - IoU(B̂, B)) or 'giou' 100 · (1 - GIoU(B̂, B)) (``box_overlap_loss``). 1 - IoU has no
  gradient where the prediction misses the target, so frames whose detection is wrong do not pull a
  residual model's box off the detections that are right (experiments.rolo has the numbers).
  """
  if coord_loss not in COORD_LOSSES:
    raise ValueError(f"coord_loss={coord_loss!r}; choose from {', '.join(COORD_LOSSES)}")
  _, aux = rolo.apply(params, inputs, cfg=cfg)
  pred = aux["steps"][:, -1:] if not cfg.carry_state else aux["steps"]
  diff = pred - targets
  if cfg.mode == "coord" and coord_loss in ("iou", "giou"):
    per = box_overlap_loss(pred, targets, coord_loss) * cfg.coord_loss_scale
  elif cfg.mode == "coord":
    err = jnp.abs(diff) if coord_loss == "l1" else jnp.square(diff)
    per = jnp.mean(err, axis=-1) * cfg.coord_loss_scale
  else:
    per = jnp.sum(jnp.square(diff), axis=-1)
  n = jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.sum(per * mask) / n, pred


def _rel_iou(pred, target):
  return bx.iou(bx.cxcywh_to_xywh(pred), bx.cxcywh_to_xywh(target))


@functools.lru_cache(maxsize=16)
def make_update(cfg: rolo.RoloConfig, task: RoloTaskConfig):
  """The jitted update (params, opt_state donated) and its optimiser."""
  schedule = optim.lr_schedule(task.lr, task.steps, kind="cosine", warmup_steps=task.warmup_steps,
                               final_fraction=task.final_lr_fraction)
  optimizer = optim.make_optimizer(schedule, clip_norm=task.clip_norm)

  def update(params, opt_state, batch, key):
    inputs, targets, mask = batch
    if task.feature_dropout > 0:   # inverted dropout on the F visual features only
      keep = 1.0 - task.feature_dropout
      f = cfg.feature_dim
      m = jax.random.bernoulli(key, keep, inputs.shape[:-1] + (f,)).astype(inputs.dtype) / keep
      inputs = jnp.concatenate([inputs[..., :f] * m, inputs[..., f:]], axis=-1)
    def total(p):
      value, pred = batch_loss(p, inputs, targets, mask, cfg=cfg, coord_loss=task.coord_loss)
      if task.weight_decay > 0:
        value = value + optim.weight_decay_loss(p, task.weight_decay)
      return value, pred

    (value, pred), grads = jax.value_and_grad(total, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    metrics = dict(loss=value, lr=schedule(optim.adam_count(opt_state) - 1),
                   **optim.norms(params, grads, updates))
    if cfg.mode == "coord":
      iou = _rel_iou(pred, targets)
      metrics["iou"] = jnp.sum(iou * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return new_params, opt_state, metrics

  return jax.jit(update, donate_argnums=(0, 1)), optimizer


def train_rolo(workdir: str, cfg: rolo.RoloConfig, task: RoloTaskConfig, data: WindowData, *,
               meta: Optional[Dict[str, Any]] = None, progress: bool = True,
               stop_after: Optional[int] = None, log: Optional[Callable[[str], None]] = None):
  """Trains (or resumes) ROLO in ``workdir`` on ``data`` (``window_data``).

  Returns (params, summary) as ``yolo_task.fit``.
  """
  update, optimizer = make_update(cfg, task)

  def init_fn():
    p = rolo.init(jax.random.PRNGKey(task.seed), cfg)
    return p, optimizer.init(p)

  def batch_fn(step):
    return make_batch(data, step, task.batch, task.seed)

  run_meta = {"model": "rolo", "config": cfg, "config_name": cfg.name, "task": task}
  run_meta.update(meta or {})
  return yolo_task.fit(workdir=workdir, init_fn=init_fn, update_fn=update, batch_fn=batch_fn,
                       total_steps=task.steps, meta=run_meta, seed=task.seed,
                       checkpoint_every=task.checkpoint_every, progress=progress,
                       stop_after=stop_after, log=log, batch_shape=(cfg.window, task.batch))


# --------------------------------------------------------------------------------------------------
# inference

@functools.partial(jax.jit, static_argnames=("cfg",))
def _track(params, inputs, *, cfg):
  return rolo.track_sequence(params, inputs, cfg=cfg)


def decode_predictions(pred, cfg: rolo.RoloConfig, size: Tuple[int, int], *, heat_threshold: float = 0.5,
                       min_size: float = 1.0) -> np.ndarray:
  """ROLO outputs -> pixel boxes.

  coord: relative (cx, cy, w, h) -> pixels, w and h at least ``min_size`` px. heatmap:
  ``models.rolo.heatmap_to_box`` (cells > heat_threshold, else the peak) -> pixels.

  Args:
    pred: [T, out_dim].  size: (width, height).
  Returns:
    float64 [T, 4] x, y, w, h, finite (a non-finite prediction raises FloatingPointError).
  """
  p = np.asarray(pred, np.float64)
  if not np.all(np.isfinite(p)):
    raise FloatingPointError("ROLO produced a non-finite output (check the inputs and the checkpoint)")
  if cfg.mode == "heatmap":
    p = np.asarray(rolo.heatmap_to_box(p, heat_threshold, cfg.heatmap_size), np.float64)
  w, h = size
  c = p.copy()
  c[:, 2] = np.maximum(c[:, 2], min_size / w)
  c[:, 3] = np.maximum(c[:, 3], min_size / h)
  return np.asarray(yolo.to_pixels(c, w, h), np.float64)


def predict_cache(params, cfg: rolo.RoloConfig, cache: CachedSequence, feature_scale: float = 1.0
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """ROLO over a cached sequence: (boxes [T, 4] px with row 0 = the initial box, raw outputs
  [T, out_dim]). A sequence shorter than the window is handled like the start of any sequence:
  the windows repeat frame 0 until they fill (``models.rolo.make_windows``)."""
  x = sequence_inputs(cache, cfg, feature_scale)
  raw = np.asarray(jax.device_get(_track(params, jnp.asarray(x), cfg=cfg)))
  boxes = decode_predictions(raw, cfg, cache.size)
  boxes[0] = cache.gt[0]
  return boxes, raw


# --------------------------------------------------------------------------------------------------
# scoring

def masked_score(gt, result, mask) -> otb.SequenceScore:
  """OTB scores of the frames where ``mask`` is True (module docstring)."""
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  res = otb.replace_bad_boxes(np.asarray(result, np.float64).reshape(-1, 4))
  m = np.asarray(mask, bool).reshape(-1)
  if len(gt) != len(res) or len(m) != len(gt):
    raise ValueError(f"masked_score: gt {gt.shape}, result {res.shape}, mask {m.shape} differ")
  g, r = gt[m], res[m]
  n = len(g)
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = bx.iou_otb(r, g) if n else np.zeros(0)
    err = bx.centre_error_otb(r, g) if n else np.zeros(0)
    d = (bx.centre_otb(r) - bx.centre_otb(g)) / g[:, 2:4] if n else np.zeros((0, 2))
    nerr = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)
  bad = ~(np.all(np.isfinite(g), axis=1) & (g[:, 2] > 0) & (g[:, 3] > 0))   # absent target
  iou, err, nerr = np.asarray(iou, np.float64), np.asarray(err, np.float64), np.asarray(nerr, np.float64)
  iou[bad], err[bad], nerr[bad] = -1.0, -1.0, -1.0
  den = max(n, 1)
  success = np.array([np.sum(iou > th) for th in otb.SUCCESS_THRESHOLDS]) / den
  precision = np.array([np.sum(err <= th) for th in otb.PRECISION_THRESHOLDS]) / den
  norm_p = np.array([np.sum(nerr <= th) for th in otb.NORM_PRECISION_THRESHOLDS]) / den
  ao = float(np.sum(np.where(iou >= 0, iou, 0.0)) / den)
  return otb.SequenceScore(success, precision, iou, err, n, nerr, norm_p, ao,
                           int(np.argmax(m)) if m.any() else 0)


def baseline_boxes(cache: CachedSequence) -> Dict[str, np.ndarray]:
  """The detection-only trackers on a cached sequence: {'YOLO': ..., 'YOLO+SORT': ...} [T, 4]."""
  init = cache.gt[0]
  return {"YOLO": yolo_sort.hold_boxes(cache.assigned, init),
          "YOLO+SORT": yolo_sort.kalman_boxes(cache.assigned, init)}


def evaluate(tracks: Dict[str, Dict[str, np.ndarray]], caches: Seq[CachedSequence],
             score_masks: Seq[np.ndarray]) -> Dict[str, Any]:
  """Scores every tracker on every sequence.

  Args:
    tracks: tracker -> {sequence name -> boxes [T, 4]}.
    score_masks: per cache, the frames to score.
  Returns:
    {'per_sequence': tracker -> name -> SequenceScore, 'summary': tracker -> {auc, precision_20,
    average_overlap, average_overlap_occluded, occluded_frames, frames}}; 'average_overlap_occluded'
    is the mean IoU (0 for absent ground truth) over the scored frames flagged occluded, pooled
    over sequences (NaN when none).
  """
  per, summary = {}, {}
  for name, boxes in tracks.items():
    per[name] = {}
    occ_iou = []
    frames = 0
    for c, m in zip(caches, score_masks):
      s = masked_score(c.gt, boxes[c.name], m)
      per[name][c.name] = s
      frames += s.n
      occ = np.asarray(c.occluded, bool)[np.asarray(m, bool)]
      occ_iou.extend(np.where(s.iou >= 0, s.iou, 0.0)[occ].tolist())
    agg = otb.aggregate(per[name])
    summary[name] = {"auc": agg["auc"], "precision_20": agg["precision_20"],
                     "average_overlap": agg["average_overlap"],
                     "average_overlap_occluded": float(np.mean(occ_iou)) if occ_iou else float("nan"),
                     "occluded_frames": len(occ_iou), "frames": frames,
                     "success": agg["success"].tolist(), "precision": agg["precision"].tolist()}
  return {"per_sequence": per, "summary": summary}


def lstm_fps(params, cfg: rolo.RoloConfig, num_frames: int = 200, repeats: int = 3) -> float:
  """Online LSTM speed: frames/s of the jitted window step on one window [1, N, D] per frame
  (zero state: the N-step window; carried state: one step), after a warm-up; median of repeats.
  Excludes the detector."""
  if cfg.carry_state:
    state = rolo.initial_state(cfg, 1)
    x = jnp.zeros((1, 1, cfg.input_dim), jnp.float32)
    fn = jax.jit(lambda p, s, x: rolo.apply(p, x, cfg=cfg, state0=s)[1]["state"])

    def run():
      s = state
      for _ in range(num_frames):
        s = fn(params, s, x)
      jax.block_until_ready(s)
  else:
    x = jnp.zeros((1, cfg.window, cfg.input_dim), jnp.float32)
    fn = jax.jit(lambda p, x: rolo.apply(p, x, cfg=cfg)[0])

    def run():
      out = None
      for _ in range(num_frames):
        out = fn(params, x)
      jax.block_until_ready(out)

  run()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return float(num_frames / np.median(times))


# --------------------------------------------------------------------------------------------------
# export for the online tracker

def export_tracker(directory: str, params, cfg: rolo.RoloConfig, detector: "yolo_task.Detector", *,
                   feature_scale: float, history: int = assign.DEFAULT_HISTORY,
                   iou_min: float = assign.DEFAULT_IOU_MIN) -> str:
  """A params-only checkpoint {'rolo', 'detector'} for ``make_tracker('rolo', checkpoint=...)``.

  An earlier export in ``directory`` (a folder holding only ``checkpoints/``) is replaced."""
  import shutil

  if os.path.isdir(directory):
    if set(os.listdir(directory)) - {ckpt_lib.CHECKPOINT_SUBDIR}:
      raise ValueError(f"{directory}: exists and holds other files; not overwriting it")
    shutil.rmtree(directory)
  meta = {"model": "rolo_tracker", "config": cfg, "detector_config": detector.cfg,
          "feature_scale": float(feature_scale), "history": int(history), "iou_min": float(iou_min),
          "conf_thresh": detector.conf_thresh, "nms_iou": detector.nms_iou,
          "class_agnostic": detector.class_agnostic}
  return ckpt_lib.save_params(directory, {"rolo": params, "detector": detector.params}, meta)


__all__ = ["PROTOCOLS", "RoloTaskConfig", "rolo_config_from_json", "CachedSequence",
           "cache_from_detections", "cache_sequence", "cache_from_feature_folder", "write_cache",
           "relative_gt", "suggest_feature_scale", "sequence_inputs", "protocol_masks",
           "split_sequences", "WindowData", "window_data", "make_batch", "box_overlap_loss", "batch_loss",
           "make_update",
           "train_rolo", "decode_predictions", "predict_cache", "masked_score", "baseline_boxes",
           "evaluate", "lstm_fps", "export_tracker"]
