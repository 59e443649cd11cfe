"""Re3 training task: the unrolled loss with the network's own predictions fed back, and the update.

Unrolled loss (one `rolo_jax.cells.unroll.unroll` = one lax.scan over time, all on the device).
For a batch of T frames x_t with ground truth g_t (xyxy pixels), the scan carries
(LSTM state s, crop box c_{t-1}, crop of frame t-1 at window(c_{t-1})):

    c_{-1} = g_0,  p_{-1} = crop(x_0, W(g_0))            (step 0: both crops from frame 0 at g_0)
    step t = 0 .. T-1:
      W_t    = context_window(c_{t-1}, 2)                (box x2 about its centre, w and h apart)
      q_t    = crop(x_t, W_t)                            (S x S bilinear, zeros outside the image)
      s, y_t = re3.step(params, s, [p_{t-1}, q_t] - mean)
      target = to_crop(g_t, W_t) * 10                    ((x1, y1, x2, y2) in the crop, x10)
      l_t    = sum_k |y_t,k - target_k|                  (L1 over the 4 coordinates)
      c_t    = nudge(d_t, g_t), with
               d_t = sanitise(from_crop(stop_gradient(y_t) / 10, W_t))   with probability p_pred
                   = jitter(g_t)                                          otherwise
      p_t    = crop(x_t, W(c_t))                         (the previous crop of step t+1)

    loss = mean_{t, b} l_t + 0.0005 * sum_v 1/2 ||v||^2

jitter(g): centre += Laplace(0, 1/5) * (w, h); (w, h) *= clip(Laplace(1, 1/15), 0.6, 1.4) (w and
h independently).
sanitise(d): coordinates ordered, non-finite -> g, size at least `min_box` px, centre clipped into
the image, size at most `max_box_factor` x the image.
nudge(d, g): the 2x context window of the crop box must hold >= 70% of g's area; a fixed number
of halving steps (jittable, no data-dependent loop):
    repeat K times:  d <- (d + g) / 2  where  area(W(d) ∩ g) / area(g) < 0.7
and d <- g if it still fails after K steps (after K halvings d is within 2^-K of g).
Paper / spec: the nudge applies to the jittered ground truth; `nudge_pred` (default on) applies it
to fed-back predictions too, so the target is always mostly inside the crop (a prediction that
has lost the target teaches nothing the network can act on).

The update is one jitted function per stage shape (jax.jit caches by shape):
    update(state, batch, key, p_pred) -> (state, metrics),  state donated,
with the per-update key fold_in(key, state.step) and per-time-step keys jax.random.split(., T).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.cells.unroll import unroll
from rolo_jax.data import crops as crops_lib
from rolo_jax.models import re3
from rolo_jax.train import optim
from rolo_jax.train.loop import TrainState

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Re3 training-step settings (static; hashable)."""
  context: float = 2.0
  jitter: bool = True
  centre_noise: float = 1.0 / 5.0   # Laplace scale, x box size
  size_noise: float = 1.0 / 15.0    # Laplace scale of the size factor around 1
  size_clip: Tuple[float, float] = (0.6, 1.4)
  min_visible: float = 0.7          # fraction of the gt area inside the 2x crop window
  nudge_iters: int = 8
  nudge_pred: bool = True
  min_box: float = 2.0              # px, sanitised predicted boxes
  max_box_factor: float = 2.0       # x image size, sanitised predicted boxes
  weight_decay: float = optim.WEIGHT_DECAY
  remat: bool = False               # jax.checkpoint each time step (BPTT memory)
  prior_output_bias: bool = True    # fresh runs: fc_out.b = the centre-half box (see init_train_state)


# --------------------------------------------------------------------------- box helpers


def _wh(b):
  return b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]


def jitter_boxes(key: jax.Array, gt: jax.Array, cfg: TaskConfig) -> jax.Array:
  """Jittered ground truth (module docstring). gt: [B, 4] xyxy -> [B, 4] xyxy."""
  kc, ks = jax.random.split(key)
  w, h = _wh(gt)
  cx, cy = 0.5 * (gt[:, 0] + gt[:, 2]), 0.5 * (gt[:, 1] + gt[:, 3])
  dc = jax.random.laplace(kc, (gt.shape[0], 2)) * cfg.centre_noise
  fs = jnp.clip(1.0 + jax.random.laplace(ks, (gt.shape[0], 2)) * cfg.size_noise, *cfg.size_clip)
  cx, cy = cx + dc[:, 0] * w, cy + dc[:, 1] * h
  w, h = w * fs[:, 0], h * fs[:, 1]
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def visible_fraction(box: jax.Array, gt: jax.Array, context: float) -> jax.Array:
  """area(context_window(box) ∩ gt) / area(gt). [..., 4] xyxy -> [...]."""
  win = crops_lib.context_window(box, context)
  iw = jnp.clip(jnp.minimum(win[..., 2], gt[..., 2]) - jnp.maximum(win[..., 0], gt[..., 0]), 0.0)
  ih = jnp.clip(jnp.minimum(win[..., 3], gt[..., 3]) - jnp.maximum(win[..., 1], gt[..., 1]), 0.0)
  gw, gh = _wh(gt)
  return iw * ih / jnp.maximum(gw * gh, 1e-12)


def nudge_boxes(box: jax.Array, gt: jax.Array, cfg: TaskConfig) -> jax.Array:
  """Moves `box` toward `gt` by halving until its context window holds min_visible of gt."""
  def body(_, b):
    bad = visible_fraction(b, gt, cfg.context) < cfg.min_visible
    return jnp.where(bad[..., None], 0.5 * (b + gt), b)

  b = jax.lax.fori_loop(0, cfg.nudge_iters, body, box)
  bad = visible_fraction(b, gt, cfg.context) < cfg.min_visible
  return jnp.where(bad[..., None], gt, b)


def sanitize_boxes(box: jax.Array, fallback: jax.Array, valid_hw: jax.Array, cfg: TaskConfig) -> jax.Array:
  """Finite, ordered boxes with min_box <= size <= max_box_factor * image and centre inside.

  The online tracker (`rolo_jax.trackers.re3.sanitise_boxes`) lets the centre go half a box past
  the frame's edge instead: there, with no ground truth to return to, a target leaving the frame
  must be followable up to the edge. Here every fed-back box is then nudged toward the ground truth,
  whose centre is inside the image, so the tighter clamp changes little."""
  ok = jnp.all(jnp.isfinite(box), axis=-1, keepdims=True)
  box = jnp.where(ok, box, fallback)
  x1, x2 = jnp.minimum(box[:, 0], box[:, 2]), jnp.maximum(box[:, 0], box[:, 2])
  y1, y2 = jnp.minimum(box[:, 1], box[:, 3]), jnp.maximum(box[:, 1], box[:, 3])
  img_h, img_w = valid_hw[:, 0].astype(jnp.float32), valid_hw[:, 1].astype(jnp.float32)
  w = jnp.clip(x2 - x1, cfg.min_box, cfg.max_box_factor * img_w)
  h = jnp.clip(y2 - y1, cfg.min_box, cfg.max_box_factor * img_h)
  cx = jnp.clip(0.5 * (x1 + x2), 0.0, img_w)
  cy = jnp.clip(0.5 * (y1 + y2), 0.0, img_h)
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _iou(a, b):
  iw = jnp.clip(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = jnp.clip(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = iw * ih
  aw, ah = _wh(a)
  bw, bh = _wh(b)
  return inter / jnp.maximum(aw * ah + bw * bh - inter, 1e-12)


# --------------------------------------------------------------------------- loss


def feedback_unroll(params: PyTree, frames: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
                    key: jax.Array, p_pred: jax.Array, *, model_cfg: re3.Re3Config,
                    cfg: TaskConfig = TaskConfig()) -> Dict[str, jax.Array]:
  """Pass 1: the tracking unroll with feedback (forward only), one `unroll` over time.

  The carry holds (LSTM state, crop box c_{t-1}, crop of frame t-1 at W(c_{t-1})); see the
  module docstring for the step.  Returns the crop pairs each step saw and the targets:
    pairs [T, B, 2, S, S, 3] float32 (raw crops, not mean-subtracted), targets [T, B, 4],
    iou [T, B] (decoded prediction vs ground truth), used_pred [T, B] (1 where the prediction
    became the next crop box), boxes_next [T, B, 4] (the crop boxes c_t chosen).
  """
  size = model_cfg.crop_size
  n_t, n_b = frames.shape[0], frames.shape[1]
  scale = model_cfg.output_scale
  boxes = boxes.astype(jnp.float32)
  params = jax.lax.stop_gradient(params)

  def crop(frame, box):
    win = crops_lib.context_window(box, cfg.context)
    return crops_lib.crop_batch(frame, win, size, 0.0, valid_hw), win

  with jax.named_scope("first_crop"):
    prev_crop0, _ = crop(frames[0], boxes[0])
  carry0 = (re3.initial_state(model_cfg, n_b), boxes[0], prev_crop0)

  def body(p, carry, x):
    state, box_prev, prev_crop = carry
    frame, gt, k = x
    k_jit, k_coin = jax.random.split(k)
    with jax.named_scope("crop"):
      cur_crop, win = crop(frame, box_prev)
      pair = jnp.stack([prev_crop, cur_crop], axis=1)
    state, (pred, _) = re3.step(p, state, re3.preprocess(pair, model_cfg.mean_rgb), cfg=model_cfg)
    with jax.named_scope("feedback"):
      target = crops_lib.to_crop(gt, win) * scale
      dec = crops_lib.from_crop(pred / scale, win)
      dec = sanitize_boxes(dec, gt, valid_hw, cfg)
      iou = _iou(dec, gt)
      gt_box = jitter_boxes(k_jit, gt, cfg) if cfg.jitter else gt
      gt_box = nudge_boxes(gt_box, gt, cfg)
      if cfg.nudge_pred:
        dec = nudge_boxes(dec, gt, cfg)
      use_pred = jax.random.bernoulli(k_coin, p_pred, (n_b,))
      nxt = jnp.where(use_pred[:, None], dec, gt_box)
    with jax.named_scope("crop"):
      next_prev_crop, _ = crop(frame, nxt)
    ys = {"pairs": pair, "targets": target, "iou": iou, "used_pred": use_pred.astype(jnp.float32),
          "boxes_next": nxt}
    return (state, nxt, next_prev_crop), ys

  keys = jax.random.split(key, n_t)
  _, ys = unroll(body, params, carry0, (frames, boxes, keys))
  return jax.lax.stop_gradient(ys)


def teacher_forced_loss(params: PyTree, pairs: jax.Array, targets: jax.Array, *,
                        model_cfg: re3.Re3Config, cfg: TaskConfig = TaskConfig(),
                        batch_major: bool = False):
  """Pass 2: L1 of the network on fixed crop pairs (differentiable in params).

  The encoder runs once over all T*B*2 crops (outside the time loop: XLA's CPU convolution
  gradients are ~5x slower inside a loop) and fc6 once over all T*B pairs (`re3.fc6`: it has no
  recurrence); only the LSTMs and the output (`re3.recurrent_step`) are unrolled over time.
  Returns (mean L1, l1 [T, B]).
  """
  n_t, n_b = pairs.shape[0], pairs.shape[1]
  if batch_major:
    # Crops in (b, t, pair) order: with the batch split over devices (rolo_jax.train.parallel), a
    # batch-major merge keeps each device's crops on that device; a time-major one made XLA gather
    # every crop onto every device and run the whole encoder there.
    x = jnp.swapaxes(pairs, 0, 1).reshape((n_b * n_t * 2,) + pairs.shape[3:])
    feat, _ = re3.encode(params, re3.preprocess(x, model_cfg.mean_rgb), cfg=model_cfg)
    # [B, T, 2 D] (rows (b, t, 0) and (b, t, 1) are adjacent) -> time-major [T, B, 2 D]
    feat = jnp.swapaxes(feat.reshape(n_b, n_t, -1), 0, 1)
  else:
    # One device: time-major (the order the published single-device runs were measured with; the
    # features are the same, only the summation order of the gradients differs).
    x = re3.preprocess(pairs.reshape((n_t * n_b * 2,) + pairs.shape[3:]), model_cfg.mean_rgb)
    feat, _ = re3.encode(params, x, cfg=model_cfg)
    feat = feat.reshape(n_t, n_b, -1)   # [T, B, 2 D]: rows (t, b, 0) and (t, b, 1) are adjacent

  # fc6 has no recurrence: one [T·B, 2 D] product here, only the LSTMs in the time loop.
  fc6 = re3.fc6(params, feat, cfg=model_cfg)   # [T, B, F]

  def body(p, state, f):
    state, (out, _) = re3.recurrent_step(p, state, f, cfg=model_cfg)
    return state, out

  _, preds = unroll(body, params, re3.initial_state(model_cfg, n_b), fc6, checkpoint=cfg.remat)
  with jax.named_scope("loss"):
    l1 = jnp.sum(jnp.abs(preds - targets), axis=-1)   # [T, B]
  return jnp.mean(l1), l1


def unrolled_loss(params: PyTree, frames: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
                  key: jax.Array, p_pred: jax.Array, *, model_cfg: re3.Re3Config,
                  cfg: TaskConfig = TaskConfig(),
                  batch_major: bool = False) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """The Re3 training loss of one batch (module docstring): feedback unroll, then the L1 + decay.

  Args:
    params: Re3 params.
    frames: [T, B, H, W, 3] uint8 (zero-padded canvas).
    boxes: [T, B, 4] float32 ground truth xyxy pixels.
    valid_hw: [B, 2] int32 image size inside the canvas.
    key: PRNG key for this batch (split into T per-step keys).
    p_pred: scalar probability of feeding the prediction back.
    batch_major: encode the crops in (b, t) order (data-parallel training keeps each device's
      crops local); False: (t, b) order. Same values; only float summation order differs.
  Returns:
    (loss, aux) with aux: 'l1' (mean L1 per step), 'wd', 'iou' (mean IoU of the decoded
    predictions with the ground truth), 'frac_pred' (fraction of fed-back predictions), 'l1_t' [T]
    (mean L1 of each time step), 'l1_last' / 'iou_last' (of the last time step: step 0 is easy,
    the last step shows how well the model tracks after T-1 steps).
  """
  n_t = frames.shape[0]
  ys = feedback_unroll(params, frames, boxes, valid_hw, key, p_pred, model_cfg=model_cfg, cfg=cfg)
  l1_mean, l1 = teacher_forced_loss(params, ys["pairs"], ys["targets"], model_cfg=model_cfg, cfg=cfg,
                                    batch_major=batch_major)
  wd = optim.weight_decay_loss(params, cfg.weight_decay)
  iou, used = ys["iou"], ys["used_pred"]
  aux = {"l1": l1_mean, "wd": wd, "iou": jnp.mean(iou),
         "frac_pred": jnp.mean(used[:-1]) if n_t > 1 else jnp.zeros(()), "l1_t": jnp.mean(l1, axis=1),
         "l1_last": jnp.mean(l1[-1]), "iou_last": jnp.mean(iou[-1])}
  return l1_mean + wd, aux


# --------------------------------------------------------------------------- update


def prior_box(model_cfg: re3.Re3Config) -> jax.Array:
  """The target in its own context crop: (1/4, 1/4, 3/4, 3/4) * output_scale = (2.5, 2.5, 7.5, 7.5)."""
  return jnp.array([0.25, 0.25, 0.75, 0.75], jnp.float32) * model_cfg.output_scale


def init_train_state(key: jax.Array, model_cfg: re3.Re3Config, optimizer: optax.GradientTransformation,
                     cfg: TaskConfig = TaskConfig(), encoder: Optional[PyTree] = None) -> TrainState:
  """Fresh params (re3.init) and optimiser state.

  `encoder` ({'conv1': ..., ..., 'conv5': ...}, e.g. `re3_pretrain.encoder_params`) replaces the
  fresh conv1-conv5 (the skip branches, fc6, the LSTMs and the output stay fresh).

  With cfg.prior_output_bias the output layer's bias starts at `prior_box`, the box every target
  occupies in a crop cut at its own previous position (a zero-motion tracker).  From zero, Adam
  (each step moves a weight by ~lr) needs ~7.5/lr steps to build the 7.5 offsets into the bias, and
  meanwhile the network produces them through saturated LSTM units: a from-scratch model then
  stalls at predicting a constant box (measured: the step-1 L1 stays at ~4.0 after 300 steps with
  the zero bias, falls to ~2.4 with the prior bias).
  """
  params = re3.init(key, model_cfg)
  if encoder is not None:
    for name, layer in encoder.items():
      for k, v in layer.items():
        if params[name][k].shape != v.shape:
          raise ValueError(f"encoder {name}.{k} has shape {v.shape}, the model {params[name][k].shape}")
      params[name] = {k: jnp.asarray(v, params[name][k].dtype) for k, v in layer.items()}
  if cfg.prior_output_bias:
    params["fc_out"]["b"] = prior_box(model_cfg)
  return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_update(model_cfg: re3.Re3Config, optimizer: optax.GradientTransformation,
                schedule: Optional[Callable] = None, cfg: TaskConfig = TaskConfig(),
                parallel=None):
  """The jitted update: update(state, batch, key, p_pred) -> (state, metrics).

  With `parallel` (a rolo_jax.train.parallel.DataParallel) the update is jitted for its device
  mesh: batch split over the devices, state replicated (`DataParallel.jit_update`); the state
  must then be placed with `parallel.replicate`.

  Args to the returned function:
    state: TrainState (donated).
    batch: (frames [T, B, H, W, 3] uint8, boxes [T, B, 4] float32 xyxy, valid_hw [B, 2] int32).
    key: the run's base PRNG key; this update uses fold_in(key, state.step).
    p_pred: float32 scalar (traced: changing it does not recompile).
  Metrics: loss, l1, wd, iou, frac_pred, grad_norm, param_norm, update_norm, lr, l1_t [T].
  """
  def update(state: TrainState, batch, key, p_pred):
    frames, boxes, valid_hw = batch
    k = jax.random.fold_in(key, state.step)
    grad_fn = jax.value_and_grad(unrolled_loss, has_aux=True)
    (loss, aux), grads = grad_fn(state.params, frames, boxes, valid_hw, k, p_pred,
                                 model_cfg=model_cfg, cfg=cfg, batch_major=parallel is not None)
    with jax.named_scope("optimizer"):
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
    metrics = dict(aux, loss=loss, **optim.norms(params, grads, updates))
    if schedule is not None:
      metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
    return TrainState(params, opt_state, state.step + 1), metrics

  if parallel is not None:
    return parallel.jit_update(update)
  return jax.jit(update, donate_argnums=(0,))


@functools.lru_cache(maxsize=8)
def make_eval_loss(model_cfg: re3.Re3Config, cfg: TaskConfig = TaskConfig()):
  """Jitted loss without an update (validation / tests): f(params, batch, key, p_pred) -> (loss, aux)."""
  @jax.jit
  def f(params, batch, key, p_pred):
    frames, boxes, valid_hw = batch
    return unrolled_loss(params, frames, boxes, valid_hw, key, p_pred, model_cfg=model_cfg, cfg=cfg)
  return f


# --------------------------------------------------------------------------- evaluation glue


def re3_tracker_factory(params: PyTree, model_cfg: re3.Re3Config, **kw) -> Callable[[], Any]:
  """() -> a fresh online Re3 tracker (rolo_jax.trackers.re3) sharing one copy of the params."""
  from rolo_jax.trackers.base import CoreTracker
  from rolo_jax.trackers.re3 import Re3Core

  core = Re3Core(params, model_cfg, **kw)
  return lambda: CoreTracker(core, name="re3")


def evaluate_trackers(factories: Dict[str, Callable[[], Any]], sequences, *,
                      log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
  """OPE of every tracker on every sequence (OTB toolkit scoring, rolo_jax.eval.otb).

  Args:
    factories: tracker name -> () -> fresh Tracker.
    sequences: Sequences with ground truth (frame 0 must be labelled... the OTB start-frame rule
      applies: the first labelled frame starts the run).
  Returns:
    {'per_sequence': {tracker: {seq: SequenceScore}}, 'boxes': {tracker: {seq: [T, 4] xywh}},
     'curves': {tracker: otb.aggregate(...)}, 'summary': {tracker: {'auc', 'precision_20', 'fps',
     'seconds'}}}; fps = mean over sequences of the tracker's update rate (run_tracker).
  """
  import time as _time
  from rolo_jax.eval import otb
  from rolo_jax.trackers.base import run_tracker

  per, boxes, curves, summary = {}, {}, {}, {}
  for name, make in factories.items():
    t0 = _time.time()
    per[name], boxes[name], fps = {}, {}, []
    for seq in sequences:
      gt = np.asarray(seq.boxes, np.float64)
      s = otb.start_index(gt)
      out, f = run_tracker(make(), seq, start=s, warn=False)
      full = np.full_like(gt, np.nan)
      full[s:] = out
      boxes[name][seq.name] = full
      per[name][seq.name] = otb.score_sequence(gt, out, result_start="start")
      if np.isfinite(f):
        fps.append(f)
    curves[name] = otb.aggregate(per[name])
    summary[name] = {"auc": curves[name]["auc"], "precision_20": curves[name]["precision_20"],
                     "fps": float(np.mean(fps)) if fps else float("nan"),
                     "seconds": _time.time() - t0, "num_sequences": len(sequences)}
    if log is not None:
      log(f"{name:>8s}: AUC {summary[name]['auc']:.4f}  P@20 {summary[name]['precision_20']:.4f}  "
          f"{summary[name]['fps']:.0f} fps  ({summary[name]['seconds']:.1f} s)")
  return {"per_sequence": per, "boxes": boxes, "curves": curves, "summary": summary}


# --------------------------------------------------------------------------- training entry point


def default_lr_scales(model_cfg: re3.Re3Config) -> Dict[str, float]:
  """{'conv1': 1 / init_input_std}: conv1 reads raw mean-free pixels (std ~64) and its init is
  divided by init_input_std, so Adam's ~lr steps would be ~64x too large relative to its weights
  (measured: a from-scratch tiny model does not learn to localise at lr 1e-3 without this)."""
  return {"conv1": 1.0 / model_cfg.init_input_std}


def _cached_update(model_cfg, cfg, lr, lr_schedule, total_steps, warmup_steps, clip_norm,
                   group_lr_scales=(), lr_final_fraction=0.1, parallel=None, ema_decay=0.0):
  """(optimizer, schedule, jitted update) for one setting, built once per process, so repeated
  runs in one process (tests, resume) reuse the compiled executables of every stage shape.

  The cache is keyed on every argument written out (lru_cache keys on the arguments as passed, so
  a call that leaves a default out would otherwise build a second, uncompiled update)."""
  return _cached_update_all(model_cfg, cfg, float(lr), lr_schedule, int(total_steps), int(warmup_steps),
                            clip_norm, tuple(group_lr_scales), float(lr_final_fraction), parallel,
                            float(ema_decay))


@functools.lru_cache(maxsize=8)
def _cached_update_all(model_cfg, cfg, lr, lr_schedule, total_steps, warmup_steps, clip_norm,
                       group_lr_scales, lr_final_fraction, parallel, ema_decay):
  schedule = optim.lr_schedule(lr, total_steps, kind=lr_schedule, warmup_steps=warmup_steps,
                               final_fraction=lr_final_fraction)
  optimizer = optim.make_optimizer(schedule, clip_norm=clip_norm, group_lr_scales=dict(group_lr_scales),
                                   ema_decay=ema_decay)
  return optimizer, schedule, make_update(model_cfg, optimizer, schedule, cfg, parallel=parallel)


def _check_resume_with_pretraining(workdir: str, run_meta: Dict[str, Any], model_cfg: re3.Re3Config,
                                   pretrain, sampler, seed: int, data: Optional[Dict[str, Any]]):
  """ConfigMismatchError when a resumed run's pretraining (``<workdir>/pretrain``) differs from the
  one asked for; when the curriculum's own settings differ as well, one error names both (so the
  flags it hints at resume the run at once, as ``loop`` does for the curriculum alone)."""
  from rolo_jax.errors import ConfigMismatchError
  from rolo_jax.train import loop
  from rolo_jax.train import re3_pretrain

  try:
    re3_pretrain.check_finished(re3_pretrain.pretrain_dir(workdir), model_cfg, pretrain, sampler,
                                seed=seed, data=data)
    return   # (the curriculum's settings: loop.train checks them)
  except ConfigMismatchError as e:
    pre_error = e
  try:
    loop.check_workdir(workdir, run_meta, seed)
  except ConfigMismatchError as e:
    raise ConfigMismatchError(f"{e}; and {pre_error}", {**e.saved_values, **pre_error.saved_values}) from None
  raise pre_error


def train(*, workdir: str, model_cfg: re3.Re3Config, curriculum, sampler, total_steps: int,
          lr: float = 1e-3, lr_schedule: str = "cosine", warmup_steps: int = 0,
          lr_final_fraction: float = 0.1,
          clip_norm: Optional[float] = None, group_lr_scales: Optional[Dict[str, float]] = None,
          ema_decay: float = 0.0, cfg: TaskConfig = TaskConfig(), seed: int = 0,
          checkpoint_every: int = 200, profile_dir: Optional[str] = None, progress: bool = True,
          nan_at_step: Optional[int] = None, stop_after: Optional[int] = None,
          meta: Optional[Dict[str, Any]] = None, parallel=None, pretrain=None, log=None):
  """Trains (or resumes) Re3 in `workdir` with rolo_jax.train.loop.

  With `pretrain` (a re3_pretrain.PretrainConfig with steps > 0) a fresh run first trains the conv
  encoder with Siamese pretraining on the sampler's tracks in ``<workdir>/pretrain`` (resumable
  like the run itself) and starts the curriculum from it; a run that already has a checkpoint
  resumes without it, after checking that ``<workdir>/pretrain`` holds the pretraining asked for
  (the same settings, seed and tracks: ConfigMismatchError otherwise).

  Args:
    model_cfg: the Re3 architecture.
    curriculum: rolo_jax.train.curriculum.CurriculumConfig.
    sampler: rolo_jax.train.re3_data.Re3Sampler (batches by position).
    total_steps, lr, lr_schedule, warmup_steps, lr_final_fraction, clip_norm: optimiser settings
      (optim.lr_schedule / optim.make_optimizer).
    group_lr_scales: per-parameter-group lr factors (None: `default_lr_scales`; {} for none).
    ema_decay: > 0: keep an exponential moving average of the parameters (`optim.params_ema`; it
      changes no update), written to every checkpoint as `ema_params`, which `load_params` and
      so the tracker and the evaluation use; 0: none.
    cfg: TaskConfig of the unrolled loss.
    meta: extra JSON-able run description stored with the checkpoints.
    parallel: a rolo_jax.train.parallel.DataParallel: data-parallel training on its mesh (the
      same global batches and results as one device, to float rounding); None: one device. (The
      pretraining runs on one device, in every process.)
    pretrain: re3_pretrain.PretrainConfig or None (none).
    log: called with progress lines (the pretraining's end).
  Returns:
    (final TrainState, loop summary); the summary has 'pretrain' (the pretraining loop's summary,
    or None when this process ran none).
  """
  from rolo_jax.train import loop
  from rolo_jax.train import re3_pretrain
  from rolo_jax.train.checkpoint import latest_step

  if group_lr_scales is None:
    group_lr_scales = default_lr_scales(model_cfg)
  scales = tuple(sorted(group_lr_scales.items()))
  optimizer, schedule, update = _cached_update(model_cfg, cfg, lr, lr_schedule, total_steps, warmup_steps,
                                               clip_norm, scales, lr_final_fraction, parallel, ema_decay)

  encoder, pre_summary = None, None
  pretraining = pretrain is not None and pretrain.steps > 0
  run_meta = {"model": "re3", "config": model_cfg, "config_name": model_cfg.name, "task": cfg,
              "optimizer": {"lr": lr, "lr_schedule": lr_schedule, "warmup_steps": warmup_steps,
                            "lr_final_fraction": lr_final_fraction,
                            "clip_norm": clip_norm, "total_steps": total_steps,
                            "group_lr_scales": dict(group_lr_scales),
                            # (only when on: workdirs written before averaging existed resume)
                            **({"ema_decay": ema_decay} if ema_decay else {}),
                            # (likewise; the pretraining's other settings are in its own
                            # checkpoints, <workdir>/pretrain)
                            **({"encoder_pretrain_steps": pretrain.steps} if pretraining else {})},
              "curriculum": {"stages": [list(s) for s in curriculum.stages],
                             "stage_steps": curriculum.stage_steps, "patience": curriculum.patience,
                             "min_delta": curriculum.min_delta, "p_pred": curriculum.p_pred}}
  run_meta.update(meta or {})
  if pretraining and latest_step(workdir) is not None:
    # A resume does not pretrain again; its pretraining must still be the one asked for.
    _check_resume_with_pretraining(workdir, run_meta, model_cfg, pretrain, sampler, seed, meta)
  elif pretraining:
    pre_state, pre_summary = re3_pretrain.train(
        workdir=re3_pretrain.pretrain_dir(workdir), model_cfg=model_cfg, sampler=sampler, cfg=pretrain,
        seed=seed, checkpoint_every=checkpoint_every, progress=progress, data=meta)
    encoder = re3_pretrain.encoder_params(pre_state)
    if log is not None:
      last = pre_summary["last"]
      if pre_summary["steps_this_run"] == 0:   # finished before the curriculum's first checkpoint
        log(f"encoder pretraining: reusing the finished {pre_summary['steps']} steps in "
            f"{re3_pretrain.pretrain_dir(workdir)}")
      else:
        log(f"encoder pretraining: {pre_summary['steps']} steps, {pre_summary['seconds']:.0f} s, "
            f"loss {last['loss']:.4f}, peak within one cell {100 * last['peak_acc']:.0f}% of the last "
            f"batch")

  def init_fn(key):
    return init_train_state(key, model_cfg, optimizer, cfg, encoder=encoder)

  def batch_fn(position, stage):
    return tuple(sampler.batch(position, stage.unroll, stage.batch))

  place_state = None
  if parallel is not None:
    place_state = parallel.replicate
    host_batch_fn = batch_fn

    def batch_fn(position, stage):   # runs in the loop's prefetch thread: the copy overlaps the step
      return parallel.shard_batch(host_batch_fn(position, stage))

  lcfg = loop.LoopConfig(workdir=workdir, total_steps=total_steps, checkpoint_every=checkpoint_every,
                         seed=seed, profile_dir=profile_dir, progress=progress,
                         nan_at_step=nan_at_step, stop_after=stop_after)
  state, summary = loop.train(init_fn=init_fn, update_fn=update, batch_fn=batch_fn, curriculum=curriculum,
                              config=lcfg, meta=run_meta, lr_fn=schedule, place_state=place_state)
  summary["pretrain"] = pre_summary
  return state, summary
