"""Association LSTM training: windows of detections with ground-truth matches, the losses, the update.

Data.  A video's detections (simulated from the ground truth by
`rolo_jax.mot.detections.simulate_detections`, or a detector's) become per-frame D-vectors, at most
N per frame (the highest scores), zero-padded with a mask.  Every detection is matched to the
frame's ground truth (Hungarian, IoU >= 0.5; `detections.match_to_gt`), which gives per slot a
ground-truth id g (-1: false positive or padding), a class target (the gt class, or background
K for a false positive; with K = 1 every object is class 0) and the gt box.  Windows of τ
consecutive frames are cut from random videos at random starts; B windows form a batch
x [τ, B, N, D], mask, g, label, gt box (time-major).

Targets of the association: theta^g_{t, ji} = 1 when slot j at frame t and slot i at frame t - g
hold detections matched to the same gt id (both valid).  Ground-truth ids are unique per frame
and the matching is one-to-one, so a row or column of theta holds at most one 1.

Losses (phi unit vectors, c_ji = cos(phi_t^j, phi_{t-g}^i) = phi_t^j . phi_{t-g}^i):

  detection (last frame t = τ - 1 only, as in the paper: weakly labelled videos need labels on one
  frame per window):
    L_det = mean_{valid j} CE(cls_j, label_j) + mean_{matched j} smoothL1(d_j - delta(box_j, gt_j))
  smoothness (neighbouring frames, the same object):
    L_smooth = sum_{t, ij} theta^1_{t, ji} (|phi_t^j - phi_{t-1}^i|^2 + |p_t^j - p_{t-1}^i|^2)
               / sum theta^1            (p = softmax(cls), the class probabilities)
  association, for every gap g in `gaps` (g = 1 is the paper's t-1 -> t; larger gaps teach
  re-identification across missed frames):
    L_assoc = mean over valid rows j of  -log softmax_j([m, c_j1 .. c_jN] / T)[target_j]
              + the same over the columns (each previous object i against the current ones)
    target_j = the i with theta_ji = 1, or the "no match" option (logit m / T) when j has none.
    Padded slots get the logit -1e9 (probability exactly 0): a padded slot never matches.
  gather (the state the LSTM continues, `rolo_jax.models.association`): the same cross-entropy on
    the model's gather logits [null, l_j1 .. l_jN] with the gap-1 targets (null for new objects).

  L = w_det L_det + w_smooth L_smooth + w_assoc L_assoc + w_gather L_gather (+ weight decay)

Deviation from the paper, deliberate: its association loss L = sum_t sum_ij theta_ji
|phi_{t-1}^i . phi_t^j| is minimised, which pushes MATCHED pairs towards orthogonality, and nothing
in it separates non-matching pairs, so it has no useful minimum (with a sign flip, every phi
collapsing onto one vector is optimal).  The contrastive form above keeps the paper's theta
(Hungarian matching to gt ids, linked between frames): matched pairs are pulled together and every
other pair in the frame is pushed below the no-match level m (cosine 0.5 by default), which is
exactly what the online Hungarian assignment on phi similarity needs.

Optional augmentation (`position_dropout`, off by default): with that probability per window
every box centre is set to 0.5, so phi must separate the objects by size and appearance alone
(and no box target is used there).  On validation videos it made phi more stable over long gaps
but did not improve tracking, so the default leaves it off.

The update is one jitted function, update(state, batch, key, p_pred) -> (state, metrics) with the
state donated (the signature `rolo_jax.train.loop.train` calls; the key, folded with the step,
only drives `position_dropout`; p_pred is unused).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, NamedTuple, Optional, Sequence as Seq, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.data.sequence import MultiSequence, Objects
from rolo_jax.models import association as model
from rolo_jax.mot import detections as det_lib
from rolo_jax.train import optim
from rolo_jax.train.loop import TrainState

PyTree = Any


class WindowBatch(NamedTuple):
  """A batch of windows, time-major."""
  x: np.ndarray      # [τ, B, N, D] float32 D-vectors
  mask: np.ndarray   # [τ, B, N] bool
  gid: np.ndarray    # [τ, B, N] int32 gt id of the slot's detection, -1 none
  label: np.ndarray  # [τ, B, N] int32 class target (K = background), -1 padded
  gbox: np.ndarray   # [τ, B, N, 4] float32 gt box (cx/W, cy/H, w/W, h/H), 0 unmatched


class VideoArrays(NamedTuple):
  """One video's padded detections and targets (frame-major [T, N, ...])."""
  x: np.ndarray
  mask: np.ndarray
  gid: np.ndarray
  label: np.ndarray
  gbox: np.ndarray


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Loss settings (static; hashable)."""
  gaps: Tuple[int, ...] = (1, 2, 4)
  temperature: float = 0.1
  margin: float = 0.5
  w_det: float = 1.0
  w_box: float = 1.0
  w_smooth: float = 0.1
  w_assoc: float = 1.0
  w_gather: float = 0.5
  weight_decay: float = 0.0
  position_dropout: float = 0.0
  remat: bool = False


# ------------------------------------------------------------------------------------------ data

def prepare_video(detections: Seq[det_lib.FrameDetections], gt: Objects, frame_size,
                  num_classes: int, max_dets: int, iou_threshold: float = 0.5) -> VideoArrays:
  """Pads a video's per-frame D-vectors to N = max_dets and matches them to the ground truth.

  Args:
    detections: `detections.encode_video` output (sorted by score: the first N are kept).
    gt: ground truth (frame, track_id >= 0, box, label).
    frame_size: (W, H).
    num_classes: K (labels >= K are an error; with K = 1 every object is class 0).
  Returns:
    VideoArrays [T, N, ...].
  """
  T = len(detections)
  D = detections[0].dvec.shape[1] if T else 0
  x = np.zeros((T, max_dets, D), np.float32)
  mask = np.zeros((T, max_dets), bool)
  gid = np.full((T, max_dets), -1, np.int32)
  label = np.full((T, max_dets), -1, np.int32)
  gbox = np.zeros((T, max_dets, 4), np.float32)
  order = np.argsort(gt.frame, kind="stable")
  bounds = np.searchsorted(gt.frame[order], np.arange(T + 1))
  for t, fd in enumerate(detections):
    n = min(len(fd.boxes), max_dets)
    if n == 0:
      continue
    x[t, :n], mask[t, :n] = fd.dvec[:n], True
    label[t, :n] = num_classes
    rows = order[bounds[t]:bounds[t + 1]]
    m = det_lib.match_to_gt(fd.boxes[:n], gt.box[rows], iou_threshold)
    hit = np.nonzero(m >= 0)[0]
    if len(hit):
      g = rows[m[hit]]
      gid[t, hit] = gt.track_id[g]
      lab = gt.label[g] if num_classes > 1 else np.zeros(len(g), np.int64)
      if (lab >= num_classes).any() or (lab < 0).any():
        raise ValueError(f"gt labels must be in [0, {num_classes}), got {lab.min()}..{lab.max()}")
      label[t, hit] = lab
      gbox[t, hit] = det_lib.box_features(gt.box[g], frame_size)
  return VideoArrays(x, mask, gid, label, gbox)


def simulated_video(ms: MultiSequence, dvec: det_lib.DVectorConfig, *, variant: int = 0,
                    noise: det_lib.DetectionNoise = det_lib.DetectionNoise(),
                    detector=None) -> Tuple[Objects, List[det_lib.FrameDetections]]:
  """Detections of a synthetic video and their per-frame D-vectors.

  Args:
    ms: a `synthetic.make_multi_sequence` video (meta['seed'] seeds the detection noise).
    dvec: the D-vector layout.
    variant: which noise draw (seed (meta['seed'], variant)).
    detector: None (simulated detections) or a callable frames -> (Objects, feature maps
      [T, Hf, Wf, C]) such as a tiny YOLO (`rolo_jax.mot.detections.yolo_detect`).
  Returns:
    (detections, `encode_video` output).
  """
  T, (W, H) = len(ms), ms.size()
  maps = None
  if detector is None:
    dets = det_lib.simulate_detections(ms.gt, T, (W, H), num_classes=len(ms.class_names),
                                       seed=(int(ms.meta.get("seed", 0)), int(variant)), noise=noise)
  else:
    dets, fm = detector(np.stack([ms.frames[t] for t in range(T)]))
    maps = lambda t: fm[t]
  return dets, det_lib.encode_video(dets, T, (W, H), dvec, frames=ms.frames, feature_maps=maps)


def synthetic_videos(split: str, n: int, dvec: det_lib.DVectorConfig, *, start: int = 0,
                     syn_cfg=None, variants: int = 1, max_dets: int = 8,
                     noise: det_lib.DetectionNoise = det_lib.DetectionNoise(),
                     detector=None) -> List[VideoArrays]:
  """Training arrays of synthetic multi-object videos start .. start+n-1 of a split, each with
  `variants` independent detection draws (one VideoArrays per draw)."""
  from rolo_jax.data import synthetic

  out = []
  for seed in synthetic.split_seeds(split, n, start):
    ms = synthetic.make_multi_sequence(int(seed), syn_cfg or synthetic.PRESETS[split])
    for v in range(variants if detector is None else 1):
      _, enc = simulated_video(ms, dvec, variant=v, noise=noise, detector=detector)
      out.append(prepare_video(enc, ms.gt, ms.size(), dvec.num_classes, max_dets))
  return out


class WindowSampler:
  """Deterministic batches of windows: batch(position) depends only on (seed, position)."""

  def __init__(self, videos: Seq[VideoArrays], window: int, batch: int, seed: int = 0):
    self.videos = [v for v in videos if len(v.x) >= window]
    if not self.videos:
      raise ValueError(f"no video has {window} frames (a window)")
    self.window, self.batch_size, self.seed = int(window), int(batch), int(seed)

  def batch(self, position: int, stage=None) -> WindowBatch:
    rng = np.random.default_rng([self.seed, int(position)])
    T = self.window
    picks = []
    for _ in range(self.batch_size):
      v = self.videos[int(rng.integers(len(self.videos)))]
      s = int(rng.integers(len(v.x) - T + 1))
      picks.append(VideoArrays(*(a[s:s + T] for a in v)))
    return WindowBatch(*(np.stack([getattr(p, f) for p in picks], axis=1)
                         for f in VideoArrays._fields))

  __call__ = batch


# ------------------------------------------------------------------------------------------ losses

def contrastive_ce(sim: jax.Array, theta: jax.Array, mask_cur: jax.Array, mask_prev: jax.Array,
                   temperature: float, margin: float) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """Row-wise softmax cross-entropy over similarities with a "no match" option.

  Args:
    sim: [..., Nc, Np] similarities.  theta: [..., Nc, Np] bool targets (<= one per row).
    mask_cur: [..., Nc], mask_prev: [..., Np] valid slots.
  Returns:
    (sum of the row losses over valid rows, number of valid rows, number of valid rows whose
    argmax (no-match included) is the target).
  """
  logits = jnp.where(mask_prev[..., None, :], sim / temperature, model.NEG)
  null = jnp.full(logits.shape[:-1] + (1,), margin / temperature, logits.dtype)
  full = jnp.concatenate([null, logits], axis=-1)
  theta = theta & mask_prev[..., None, :] & mask_cur[..., :, None]
  has = jnp.any(theta, axis=-1)
  tgt = jnp.where(has, 1 + jnp.argmax(theta, axis=-1), 0)
  ce = jax.nn.logsumexp(full, axis=-1) - jnp.take_along_axis(full, tgt[..., None], -1)[..., 0]
  valid = mask_cur.astype(sim.dtype)
  correct = (jnp.argmax(full, axis=-1) == tgt).astype(sim.dtype) * valid
  return jnp.sum(ce * valid), jnp.sum(valid), jnp.sum(correct)


def _theta(gid_c, gid_p, mask_c, mask_p):
  return ((gid_c[..., :, None] == gid_p[..., None, :]) & (gid_c[..., :, None] >= 0)
          & mask_c[..., :, None] & mask_p[..., None, :])


def _smooth_l1(d):
  a = jnp.abs(d)
  return jnp.where(a < 1.0, 0.5 * d * d, a - 0.5)


def drop_positions(x: jax.Array, key: jax.Array, rate: float, cfg: model.AssociationConfig) -> jax.Array:
  """Sets the box centre (cx/W, cy/H) of every detection of a window to 0.5 with probability
  `rate` per window (x [τ, B, N, D]); sizes, scores and appearance stay.  Returns (x, dropped [B]).
  """
  drop = jax.random.bernoulli(key, rate, (x.shape[1],))
  k = cfg.num_classes
  centre = jnp.where(drop[None, :, None, None], 0.5, x[..., k:k + 2])
  return x.at[..., k:k + 2].set(centre), drop


def loss_fn(params, batch: WindowBatch, *, cfg: model.AssociationConfig,
            task: TaskConfig, key: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """The total loss and its terms (see the module docstring)."""
  x = jnp.asarray(batch.x)
  dropped = jnp.zeros((x.shape[1],), bool)
  if task.position_dropout > 0 and key is not None:
    x, dropped = drop_positions(x, key, task.position_dropout, cfg)
  mask, gid = jnp.asarray(batch.mask), jnp.asarray(batch.gid)
  out, _ = model.apply(params, x, mask, cfg=cfg, remat=task.remat)
  T = x.shape[0]
  f32 = jnp.float32
  # Detection loss, last frame.
  m_last = mask[-1]
  lab = jnp.clip(jnp.asarray(batch.label)[-1], 0, cfg.num_classes)
  logp = jax.nn.log_softmax(out["cls_logits"][-1], axis=-1)
  ce = -jnp.take_along_axis(logp, lab[..., None], -1)[..., 0]
  n_last = jnp.maximum(jnp.sum(m_last), 1)
  det_ce = jnp.sum(ce * m_last) / n_last
  cls_acc = jnp.sum((jnp.argmax(logp, -1) == lab) * m_last) / n_last
  matched = m_last & (gid[-1] >= 0) & ~dropped[:, None]   # no box target without a position
  target = model.encode_delta(model.box_part(x[-1], cfg), jnp.asarray(batch.gbox)[-1])
  target = jnp.where(matched[..., None], target, 0.0)
  box_l = jnp.sum(_smooth_l1(out["box_delta"][-1] - target).sum(-1) * matched) / jnp.maximum(
      jnp.sum(matched), 1)
  # Association (rows and columns), every gap.
  phi = out["phi"]
  a_sum = a_n = a_ok = jnp.zeros((), f32)
  for g in task.gaps:
    if g >= T:
      continue
    sim = jnp.einsum("tbnp,tbmp->tbnm", phi[g:], phi[:-g])
    th = _theta(gid[g:], gid[:-g], mask[g:], mask[:-g])
    for s_, th_, mc, mp in ((sim, th, mask[g:], mask[:-g]),
                            (jnp.swapaxes(sim, -1, -2), jnp.swapaxes(th, -1, -2), mask[:-g], mask[g:])):
      l, n, ok = contrastive_ce(s_, th_, mc, mp, task.temperature, task.margin)
      a_sum, a_n, a_ok = a_sum + l, a_n + n, a_ok + ok
  assoc = a_sum / jnp.maximum(a_n, 1)
  assoc_acc = a_ok / jnp.maximum(a_n, 1)
  # Gather: the model's own logits [null, prev slots] with the gap-1 targets.
  th1 = _theta(gid[1:], gid[:-1], mask[1:], mask[:-1])                  # [T-1, B, N, N]
  gl = out["gather_logits"][1:]
  tgt = jnp.where(jnp.any(th1, -1), 1 + jnp.argmax(th1, -1), 0)
  gce = jax.nn.logsumexp(gl, -1) - jnp.take_along_axis(gl, tgt[..., None], -1)[..., 0]
  gmask = mask[1:]
  gather = jnp.sum(gce * gmask) / jnp.maximum(jnp.sum(gmask), 1)
  # Smoothness between neighbouring frames of the same object.
  prob = jax.nn.softmax(out["cls_logits"], -1)
  d_phi = jnp.sum(jnp.square(phi[1:, :, :, None] - phi[:-1, :, None, :]), -1)
  d_cls = jnp.sum(jnp.square(prob[1:, :, :, None] - prob[:-1, :, None, :]), -1)
  smooth = jnp.sum((d_phi + d_cls) * th1) / jnp.maximum(jnp.sum(th1), 1)
  total = (task.w_det * det_ce + task.w_box * box_l + task.w_smooth * smooth
           + task.w_assoc * assoc + task.w_gather * gather)
  if task.weight_decay:
    total = total + optim.weight_decay_loss(params, task.weight_decay)
  return total, {"det_ce": det_ce, "l1": box_l, "assoc": assoc, "gather": gather,
                 "smooth": smooth, "assoc_acc": assoc_acc, "cls_acc": cls_acc,
                 "null_logit": params["null_logit"]}


# ------------------------------------------------------------------------------------------ update

def make_train_state(key, cfg: model.AssociationConfig, tx: optax.GradientTransformation) -> TrainState:
  params = model.init(key, cfg)
  return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))


def make_update(cfg: model.AssociationConfig, task: TaskConfig, tx: optax.GradientTransformation):
  """update(state, batch, key, p_pred) -> (state, metrics), jitted, state donated."""

  def update(state: TrainState, batch: WindowBatch, key=None, p_pred=None):
    k = None if key is None else jax.random.fold_in(key, state.step)
    (loss, terms), grads = jax.value_and_grad(
        functools.partial(loss_fn, cfg=cfg, task=task, key=k), has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(terms, loss=loss, **optim.norms(state.params, grads, updates))
    return TrainState(params, opt_state, state.step + 1), metrics

  jitted = jax.jit(update, donate_argnums=0)
  device = jax.devices()[0]

  def call(state: TrainState, batch: WindowBatch, key=None, p_pred=None):
    # A state restored from a checkpoint holds uncommitted arrays, the update's outputs committed
    # ones; jit caches on that too, so commit every time (a no-op for committed arrays) to
    # compile once per run, resumed or not.
    state = jax.device_put(state, device)
    key = None if key is None else jax.device_put(key, device)
    return jitted(state, batch, key, p_pred)

  return call


def make_eval(cfg: model.AssociationConfig, task: TaskConfig):
  """eval(params, batch) -> metrics (the loss terms, no update), jitted."""

  @jax.jit
  def ev(params, batch):
    loss, terms = loss_fn(params, batch, cfg=cfg, task=task)
    return dict(terms, loss=loss)

  return ev


__all__ = ["TrainState", "WindowBatch", "VideoArrays", "TaskConfig", "prepare_video",
           "simulated_video", "synthetic_videos",
           "WindowSampler", "contrastive_ce", "loss_fn", "make_train_state", "make_update",
           "make_eval"]
