"""Training ROLO's detection module (YOLO v1, ``rolo_jax.models.yolo``) on synthetic videos, and
running it over sequences to cache ROLO's per-frame inputs.

Spec: ``/work/shared/specs/rolo.md`` ("Detection module"). ImageNet / VOC pretraining is out of
reach offline, so the detector learns the synthetic generator's six classes
(``rolo_jax.data.synthetic.CLASS_NAMES``) from multi-object videos (``make_multi_sequence``: every
object of a target class is annotated, several classes per video, crossings and occluders).

Data (``MultiObjectImages``): frames of the training split's multi-object videos (seeds
``make_split('train', n, multi=True)``; by default 2,500 videos of 32 frames without the
generator's unannotated background clutter, which would contradict the labels), every
``frame_stride``-th frame, resized to
input_size × input_size (``resize_frames``; the aspect ratio is not kept, boxes are relative so
they follow). Per image the ground truth is YOLO's target tensor (``yolo.encode_targets``) of the
visible objects' boxes (relative centre and size) and class indices. Batch ``k`` of the run is a
pure function of (seed, k): indices and horizontal flips (cx -> 1 - cx) drawn from
``np.random.default_rng([seed, k])``, so a resumed run sees the same batches.

Update (jitted, params and optimiser state donated)::

    L = yolo.loss(yolo.apply(params, x, train=True, rng=fold_in(key, step)), targets)   (YOLO v1 eq. 3)
    params <- Adam(lr(step)) step on ∇L              (warm-up + cosine schedule, optim.lr_schedule)

``fit`` runs both ROLO tasks (this one and ``rolo_task``) through the project's one training loop
(``rolo_jax.train.loop.train``, a one-stage curriculum): one orbax ``Checkpointer`` per workdir,
resume from the latest checkpoint (params, optimiser state, step; the data and dropout keys are
functions of the step), TensorBoard and JSON-lines log, stop with a clear error on a non-finite
loss or gradient.

Detection (``Detector``): one jitted forward pass per chunk of frames gives fc1's features
(ROLO's visual features X_t) and the detections (``yolo.decode``: class-specific score >=
conf_thresh (0.05), then class-agnostic NMS at IoU 0.5 (or yolo.decode's per-class NMS)),
returned in pixels of the original frame.

Default model ``tiny_fast`` (``DETECTOR_CONFIGS``): see ``TINY_FAST_LAYERS``; measured after the
default run (3,000 steps): class-agnostic AP@0.5 0.26-0.44 on held-out multi-object videos
(depending on the videos drawn), recall 0.63-0.74 at score 0.05.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence as Seq, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.data import boxes as bx
from rolo_jax.data import synthetic
from rolo_jax.errors import DataError
from rolo_jax.models import yolo
from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import loop as loop_lib
from rolo_jax.train import optim

PyTree = Any


# --------------------------------------------------------------------------------------------------
# configuration

# 112 input like 'tiny', but the first conv has stride 2 (112 -> 56) and three 2×2 pools take 56 to
# the 7×7 grid: ~4× fewer multiply-adds than 'tiny' (11 M vs 43 M per image), so the detector
# learns in the CPU budget. Confidence target 1 for the responsible predictor (rescore=False):
# with IoU targets an untrained detector's confidences stay near its (low) IoUs for a long time.
TINY_FAST_LAYERS = (
    ("conv", 3, 16, 2), ("pool", 2, 2),
    ("conv", 3, 32, 1), ("pool", 2, 2),
    ("conv", 3, 64, 1), ("pool", 2, 2),
    ("conv", 3, 64, 1), ("conv", 1, 32, 1), ("conv", 3, 64, 1),
)

DETECTOR_CONFIGS: Dict[str, yolo.YoloConfig] = dict(
    yolo.CONFIGS,
    tiny_fast=yolo.CONFIGS["tiny"].replace(name="tiny_fast", layers=TINY_FAST_LAYERS, rescore=False),
)


@dataclass(frozen=True)
class YoloTaskConfig:
  """Detector training run (hashable: part of the checkpoint meta, checked on resume)."""
  model: str = "tiny_fast"         # DETECTOR_CONFIGS name (yolo.CONFIGS plus 'tiny_fast')
  num_sequences: int = 2500        # multi-object training videos (train split seeds 0..n-1)
  frame_stride: int = 8            # every k-th frame of each video
  synthetic: str = "train"         # synthetic.PRESETS name of the videos
  video_frames: int = 32           # frames per video (0: the preset's); short videos = more scenes
  clutter: bool = False            # keep the generator's unannotated background shapes
  steps: int = 3000
  batch: int = 32
  lr: float = 2e-3
  warmup_steps: int = 20
  final_lr_fraction: float = 0.1
  clip_norm: float = 10.0
  flip: bool = True
  seed: int = 0
  checkpoint_every: int = 100

  def replace(self, **kw) -> "YoloTaskConfig":
    return dataclasses.replace(self, **kw)


TASK_CONFIGS: Dict[str, YoloTaskConfig] = {
    # The default of `python -m experiments.yolo_pretrain`: 10,000 images from 2,500 videos, 3,000
    # steps (20 min on 2 CPU cores shared with other jobs).
    "default": YoloTaskConfig(),
    # Same code path in seconds (tests).
    "smoke": YoloTaskConfig(num_sequences=4, frame_stride=8, steps=6, batch=4, warmup_steps=1,
                            checkpoint_every=3),
}


def detector_config(name: str) -> yolo.YoloConfig:
  if name not in DETECTOR_CONFIGS:
    raise ValueError(f"unknown detector config {name!r}; choose from {', '.join(sorted(DETECTOR_CONFIGS))}")
  return DETECTOR_CONFIGS[name]


def yolo_config_from_json(d: Dict[str, Any]) -> yolo.YoloConfig:
  """Rebuilds a YoloConfig from its JSON form in a checkpoint's meta (lists back to tuples)."""
  d = dict(d)
  if "layers" in d:
    d["layers"] = tuple(tuple(x) for x in d["layers"])
  fields = {f.name for f in dataclasses.fields(yolo.YoloConfig)}
  return yolo.YoloConfig(**{k: v for k, v in d.items() if k in fields})


# --------------------------------------------------------------------------------------------------
# data

def resize_frames(frames, size: int) -> np.ndarray:
  """uint8 [N, H, W, 3] (or one [H, W, 3]) -> uint8 [N, size, size, 3] (cv2 INTER_AREA when
  shrinking, bilinear when enlarging)."""
  import cv2

  a = np.asarray(frames)
  single = a.ndim == 3
  if single:
    a = a[None]
  if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
    raise ValueError(f"resize_frames: expected uint8 [N, H, W, 3], got {a.dtype} {a.shape}")
  h, w = a.shape[1:3]
  interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
  out = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in a])
  return out[0] if single else out


class MultiObjectImages(NamedTuple):
  """Detector training images: resized frames and their objects (relative boxes, labels)."""
  images: np.ndarray        # uint8 [M, S, S, 3]
  boxes: List[np.ndarray]   # per image [K, 4] relative (cx, cy, w, h)
  labels: List[np.ndarray]  # per image [K] int


def multi_object_images(sequences, input_size: int, frame_stride: int = 1) -> MultiObjectImages:
  """Every ``frame_stride``-th frame of each MultiSequence with its visible objects."""
  images, boxes, labels = [], [], []
  for seq in sequences:
    w, h = seq.frames.size() if hasattr(seq.frames, "size") else (seq.frames[0].shape[1], seq.frames[0].shape[0])
    ts = np.arange(0, len(seq.frames), frame_stride)
    frames = np.stack([np.asarray(seq.frames[t]) for t in ts])
    images.append(resize_frames(frames, input_size))
    for t in ts:
      g = seq.gt.in_frame(int(t))
      ok = np.all(np.isfinite(g.box), axis=1) & (g.box[:, 2] > 0) & (g.box[:, 3] > 0)
      rel = np.asarray(yolo.to_relative(g.box[ok], w, h), np.float64).reshape(-1, 4)
      rel[:, :2] = np.clip(rel[:, :2], 0.0, 1.0)
      boxes.append(rel)
      labels.append(np.asarray(g.label[ok], np.int64))
  return MultiObjectImages(np.concatenate(images), boxes, labels)


def synthetic_training_images(task: YoloTaskConfig, cfg: yolo.YoloConfig, split: str = "train",
                              num_sequences: Optional[int] = None) -> MultiObjectImages:
  """The training images of a task config: multi-object videos of the ``split`` split."""
  n = task.num_sequences if num_sequences is None else num_sequences
  syn = synthetic.PRESETS[task.synthetic]
  if not task.clutter:   # unannotated look-alike shapes in the background contradict the labels
    syn = dataclasses.replace(syn, background_clutter=(0, 0))
  if task.video_frames:
    syn = dataclasses.replace(syn, num_frames=task.video_frames)
  seqs = synthetic.make_split(split, n, syn, multi=True)
  return multi_object_images(seqs, cfg.input_size, task.frame_stride)


def make_batch(data: MultiObjectImages, step: int, batch: int, cfg: yolo.YoloConfig, *, seed: int = 0,
               flip: bool = True) -> Tuple[np.ndarray, np.ndarray]:
  """Batch number ``step`` (deterministic in (seed, step)).

  Returns:
    (images uint8 [B, S, S, 3], targets float32 [B, grid, grid, 5 + C]).
  """
  rng = np.random.default_rng([int(seed), int(step)])
  idx = rng.integers(0, len(data.images), size=batch)
  flips = (rng.random(batch) < 0.5) if flip else np.zeros(batch, bool)
  imgs = data.images[idx].copy()
  targets = np.empty((batch, cfg.grid, cfg.grid, 5 + cfg.num_classes), np.float32)
  for i, (k, f) in enumerate(zip(idx, flips)):
    b = data.boxes[k].copy()
    if f:
      imgs[i] = imgs[i, :, ::-1]
      b[:, 0] = 1.0 - b[:, 0]
    targets[i] = yolo.encode_targets(b, data.labels[k], cfg.grid, cfg.num_classes)
  return imgs, targets


# --------------------------------------------------------------------------------------------------
# the ROLO tasks' entry to the training loop

# The loop's errors, under the names the ROLO code has used.
NonFiniteError = loop_lib.NonFiniteError
ConfigMismatchError = loop_lib.ConfigMismatchError


def fit(*, workdir: str, init_fn: Callable[[], Tuple[PyTree, PyTree]], update_fn: Callable,
        batch_fn: Callable[[int], Any], total_steps: int, meta: Dict[str, Any], seed: int = 0,
        checkpoint_every: int = 100, log_every: int = 10, progress: bool = True,
        stop_after: Optional[int] = None, log: Optional[Callable[[str], None]] = None,
        batch_shape: Tuple[int, int] = (1, 1)) -> Tuple[PyTree, Dict[str, Any]]:
  """Trains (or resumes) a run in ``workdir`` with rolo_jax.train.loop (one stage, no curriculum).

  Args:
    init_fn: () -> (params, opt_state) of a fresh run.
    update_fn: (params, opt_state, batch, key) -> (params, opt_state, metrics); metrics hold
      'loss' and 'grad_norm'. Called with key = fold_in(PRNGKey(seed), step).
    batch_fn: step -> batch (deterministic in the step, so resumed runs see the same data).
    total_steps: the run ends after this many updates (resumed ones included).
    meta: JSON-able run description saved with every checkpoint; resuming a workdir whose
      checkpoint has a different 'model', 'config' or 'task' raises ConfigMismatchError.
    stop_after: end this process after that many updates (tests: an interrupted run).
    log: called with a line when the run resumes.
    batch_shape: (frames per sample, samples) of a batch, for the loop's frames/s figure.
  Returns:
    (params, the loop's summary: steps, steps_this_run, resumed_from, seconds, steps_per_s,
    last: the scalar metrics of the last update, ...).
  Raises:
    NonFiniteError: a non-finite loss or gradient norm (no checkpoint written for it).
  """
  base_key = jax.random.PRNGKey(seed)

  def init(_key):
    params, opt_state = init_fn()
    return loop_lib.TrainState(params, opt_state, jnp.zeros((), jnp.int32))

  def update(state, batch, _key, _p_pred):
    # The key is fold_in(PRNGKey(seed), step), as before these runs used the shared loop (so
    # the measured ROLO / detector runs stay reproducible), not the loop's stored training key.
    params, opt_state, metrics = update_fn(state.params, state.opt_state, batch,
                                           jax.random.fold_in(base_key, state.step))
    return loop_lib.TrainState(params, opt_state, state.step + 1), metrics

  lcfg = loop_lib.LoopConfig(workdir=workdir, total_steps=total_steps, checkpoint_every=checkpoint_every,
                             log_every=log_every, seed=seed, stop_after=stop_after, progress=progress)
  hooks = loop_lib.TaskHooks(postfix=("loss",), desc=str(meta.get("model", "train")))
  state, summary = loop_lib.train(init_fn=init, update_fn=update,
                                  batch_fn=lambda position, stage: batch_fn(position),
                                  curriculum=loop_lib.fixed_stage(*batch_shape), config=lcfg, meta=meta,
                                  hooks=hooks, log=log)
  return state.params, summary


# --------------------------------------------------------------------------------------------------
# detector training

def make_optimizer(task: YoloTaskConfig):
  schedule = optim.lr_schedule(task.lr, task.steps, kind="cosine", warmup_steps=task.warmup_steps,
                               final_fraction=task.final_lr_fraction)
  return optim.make_optimizer(schedule, clip_norm=task.clip_norm), schedule


@functools.lru_cache(maxsize=4)
def make_update(cfg: yolo.YoloConfig, task: YoloTaskConfig):
  """The jitted detector update (params, opt_state donated) for one (model, task) setting."""
  optimizer, schedule = make_optimizer(task)

  def update(params, opt_state, batch, key):
    images, targets = batch
    x = yolo.preprocess(images)

    def loss_fn(p):
      preds, _ = yolo.apply(p, x, cfg=cfg, train=True, rng=key)
      value, aux = yolo.loss(preds, targets, cfg=cfg)
      return value, {k: aux[k] for k in ("coord", "obj", "noobj", "class")}

    (value, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    metrics = dict(terms, loss=value, lr=schedule(optim.adam_count(opt_state) - 1),
                   **optim.norms(params, grads, updates))
    return new_params, opt_state, metrics

  return jax.jit(update, donate_argnums=(0, 1)), optimizer


def train_detector(workdir: str, task: YoloTaskConfig = TASK_CONFIGS["default"], *,
                   data: Optional[MultiObjectImages] = None, progress: bool = True,
                   stop_after: Optional[int] = None, log: Optional[Callable[[str], None]] = None
                   ) -> Tuple[PyTree, Dict[str, Any]]:
  """Trains (or resumes) the detector of ``task`` in ``workdir``.

  Returns:
    (params, summary) — summary as ``fit``'s plus 'config' (the YoloConfig) and 'data_images'.
  """
  cfg = detector_config(task.model)
  update, optimizer = make_update(cfg, task)
  made = {"data": data}

  def init_fn():
    p = yolo.init(jax.random.PRNGKey(task.seed), cfg)
    return p, optimizer.init(p)

  def batch_fn(step):
    if made["data"] is None:   # made on the first batch: a finished run needs no data
      made["data"] = synthetic_training_images(task, cfg)
    return make_batch(made["data"], step, task.batch, cfg, seed=task.seed, flip=task.flip)

  meta = {"model": "yolo", "config": cfg, "config_name": cfg.name, "task": task,
          "classes": list(synthetic.CLASS_NAMES)}
  params, summary = fit(workdir=workdir, init_fn=init_fn, update_fn=update, batch_fn=batch_fn,
                        total_steps=task.steps, meta=meta, seed=task.seed,
                        checkpoint_every=task.checkpoint_every, progress=progress,
                        stop_after=stop_after, log=log, batch_shape=(1, task.batch))
  summary.update(config=cfg, data_images=int(len(made["data"].images)) if made["data"] is not None else 0)
  return params, summary


def load_detector(path: str) -> Tuple[PyTree, yolo.YoloConfig, Dict[str, Any]]:
  """(params, YoloConfig, meta) from a detector workdir or a params-only checkpoint folder."""
  params, meta = ckpt_lib.load_params(path)
  if meta.get("model") not in (None, "yolo"):
    raise DataError(path, f"holds a {meta.get('model')!r} checkpoint, not a YOLO detector")
  if "config" not in meta:
    raise DataError(path, "checkpoint meta has no 'config'")
  return params, yolo_config_from_json(meta["config"]), meta


# --------------------------------------------------------------------------------------------------
# detection

@functools.partial(jax.jit, static_argnames=("cfg",))
def _forward(params, images, *, cfg):
  preds, aux = yolo.apply(params, yolo.preprocess(images), cfg=cfg)
  return preds, aux["features"]


class Detector:
  """The trained detector as a function of frames.

  Args:
    params, cfg: the YOLO model.
    conf_thresh: keep boxes with class-specific score >= conf_thresh.
    nms_iou: NMS IoU threshold (None: no NMS).
    class_agnostic: NMS over all boxes (True; a tracker follows one object whatever its class,
      and a weak classifier leaves one box per guessed class on an object), else per class
      (``yolo.decode``'s).
    chunk: frames per forward pass (one compilation per distinct chunk size).
  """

  def __init__(self, params, cfg: yolo.YoloConfig, *, conf_thresh: float = 0.05,
               nms_iou: Optional[float] = 0.5, class_agnostic: bool = True, chunk: int = 32):
    self.params = jax.device_put(params)
    self.cfg = cfg
    self.conf_thresh = float(conf_thresh)
    self.nms_iou = nms_iou
    self.class_agnostic = bool(class_agnostic)
    self.chunk = int(chunk)
    self._fingerprint: Optional[str] = None

  @classmethod
  def load(cls, path: str, **kw) -> "Detector":
    params, cfg, _ = load_detector(path)
    return cls(params, cfg, **kw)

  def fingerprint(self) -> str:
    """sha1 (16 hex digits) of every parameter's name, dtype, shape and bytes: which detector this
    is, wherever its folder lies (a ROLO workdir records it; rolo_jax.train.loop.CHECKED_META).
    The config is left out: a field added to YoloConfig later (at its default) must not change
    every detector's fingerprint, and the weights' shapes already tell the architectures apart."""
    if self._fingerprint is not None:
      return self._fingerprint
    import hashlib

    h = hashlib.sha1()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(jax.device_get(self.params))[0],
                             key=lambda kv: jax.tree_util.keystr(kv[0])):
      a = np.ascontiguousarray(leaf)
      h.update(jax.tree_util.keystr(path).encode() + str(a.dtype).encode() + str(a.shape).encode())
      h.update(a.tobytes())
    self._fingerprint = h.hexdigest()[:16]   # (the weights never change: hashed once)
    return self._fingerprint

  def raw(self, frames) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
    """(preds [T, S, S, B·5 + C], features float32 [T, F], (width, height)) of uint8 frames
    [T, H, W, 3] (one size)."""
    a = np.asarray(frames)
    if a.ndim == 3:
      a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
      raise ValueError(f"Detector: expected uint8 [T, H, W, 3] frames, got {a.dtype} {a.shape}")
    size = (int(a.shape[2]), int(a.shape[1]))
    preds, feats = [], []
    for i in range(0, len(a), self.chunk):
      x = resize_frames(a[i:i + self.chunk], self.cfg.input_size)
      n = len(x)
      if n < self.chunk and len(a) > self.chunk:   # pad the last chunk: one compiled shape
        x = np.concatenate([x, np.zeros((self.chunk - n,) + x.shape[1:], np.uint8)])
      p, f = jax.device_get(_forward(self.params, x, cfg=self.cfg))
      preds.append(p[:n])
      feats.append(f[:n])
    return np.concatenate(preds), np.concatenate(feats).astype(np.float32), size

  def decode(self, preds, size: Tuple[int, int]) -> np.ndarray:
    """One frame's detections: float64 [K, 6] = (x, y, w, h) in pixels, score, class."""
    rel, scores, classes = yolo.decode(preds, self.conf_thresh, B=self.cfg.boxes_per_cell,
                                       nms_iou=None if self.class_agnostic else self.nms_iou)
    px = np.asarray(yolo.to_pixels(rel, size[0], size[1]), np.float64).reshape(-1, 4)
    if self.class_agnostic and self.nms_iou is not None and len(px):
      keep = yolo.nms(px, scores, self.nms_iou)
      px, scores, classes = px[keep], scores[keep], classes[keep]
    return np.concatenate([px, scores[:, None], classes[:, None].astype(np.float64)], axis=1)

  def __call__(self, frames) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Features float32 [T, F] and, per frame, detections [K_t, 6] (x, y, w, h, score, class)."""
    preds, feats, size = self.raw(frames)
    return feats, [self.decode(p, size) for p in preds]

  def frames_of(self, sequence, chunk: Optional[int] = None):
    """Runs over a Sequence's frames (lazy sources are read chunk by chunk)."""
    n = len(sequence.frames)
    c = chunk or max(self.chunk, 64)
    feats, dets = [], []
    for i in range(0, n, c):
      f, d = self(np.stack([np.asarray(sequence.frames[t]) for t in range(i, min(n, i + c))]))
      feats.append(f)
      dets.extend(d)
    return np.concatenate(feats), dets


# --------------------------------------------------------------------------------------------------
# detector quality

def average_precision(detections: Seq[np.ndarray], gt_boxes: Seq[np.ndarray], iou_thresh: float = 0.5
                      ) -> Dict[str, float]:
  """Class-agnostic detection quality over images.

  Detections of all images, by descending score, are matched greedily to the unmatched ground truth
  of their image with the highest IoU >= iou_thresh (true positive) or are false positives.
  AP = Σ_k (R_k - R_{k-1}) · max_{j >= k} P_j (all-point interpolation, VOC 2010+).

  Args:
    detections: per image [K, >=5] (x, y, w, h, score, ...).
    gt_boxes: per image [G, 4] x, y, w, h (same unit).
  Returns:
    {'ap', 'recall' (at the lowest score kept), 'precision' (same point), 'num_gt', 'num_det'}.
  """
  rows = []
  num_gt = 0
  for i, (d, g) in enumerate(zip(detections, gt_boxes)):
    d = np.asarray(d, np.float64).reshape(-1, np.shape(d)[-1] if np.size(d) else 6)
    g = np.asarray(g, np.float64).reshape(-1, 4)
    num_gt += len(g)
    used = np.zeros(len(g), bool)
    iou = bx.pairwise_iou(d[:, :4], g) if len(d) and len(g) else np.zeros((len(d), len(g)))
    for k in np.argsort(-d[:, 4], kind="stable") if len(d) else []:
      cand = np.where(used, -1.0, iou[k]) if len(g) else np.zeros(0)
      j = int(np.argmax(cand)) if len(g) else -1
      tp = j >= 0 and cand[j] >= iou_thresh
      if tp:
        used[j] = True
      rows.append((d[k, 4], 1.0 if tp else 0.0))
  if not rows or num_gt == 0:
    return {"ap": 0.0, "recall": 0.0, "precision": 0.0, "num_gt": num_gt, "num_det": len(rows)}
  rows.sort(key=lambda r: -r[0])
  tp = np.cumsum([r[1] for r in rows])
  prec = tp / np.arange(1, len(rows) + 1)
  rec = tp / num_gt
  mono = np.maximum.accumulate(prec[::-1])[::-1]
  ap = float(np.sum(np.diff(np.concatenate([[0.0], rec])) * mono))
  return {"ap": ap, "recall": float(rec[-1]), "precision": float(prec[-1]), "num_gt": int(num_gt),
          "num_det": len(rows)}


def evaluate_detector(detector: Detector, sequences) -> Dict[str, float]:
  """AP@0.5 (class-agnostic) and mean detections per frame on multi-object sequences."""
  dets, gts = [], []
  for seq in sequences:
    _, d = detector.frames_of(seq)
    dets.extend(d)
    for t in range(len(seq.frames)):
      g = seq.gt.in_frame(t)
      gts.append(g.box)
  out = average_precision(dets, gts, 0.5)
  out["detections_per_frame"] = float(np.mean([len(d) for d in dets])) if dets else 0.0
  return out


__all__ = ["TINY_FAST_LAYERS", "DETECTOR_CONFIGS", "detector_config", "YoloTaskConfig", "TASK_CONFIGS", "yolo_config_from_json", "resize_frames",
           "MultiObjectImages", "multi_object_images", "synthetic_training_images", "make_batch",
           "NonFiniteError", "ConfigMismatchError", "fit", "make_update", "train_detector",
           "load_detector", "Detector", "average_precision", "evaluate_detector"]
