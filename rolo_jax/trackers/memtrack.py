"""The online MemTrack tracker (spec: /work/shared/specs/memtrack.md, "Inference").

K targets of one video are tracked by one jitted step; each target runs as a batch of 3 scales,
so the model sees a batch of 3K (target-major: row k·3 + s). Per target, with centre c, size
(w, h), p = context·(w + h), s_z = sqrt((w + p)(h + p)), s_x = s_z · S / E:

* ``init_state(frame_0, boxes)``: T_0 = features of the exemplar window (side s_z) of each box;
  the model state ``memtrack.initial_state`` repeated for the 3 scales; the pending exemplar
  Z = T_0 (written by the first step).
* ``step(state, frame_t)``::

      windows   side s_x · q_s about c, q_s = 1.05^{-1, 0, 1}; crops S², the frame's mean colour
                outside the image
      y_s       = memtrack.step(params, state, (features(crop_s), Z))      (evaluation mode BN)
      Y_s       = bicubic upsampling of y_s to (16 R)², side-scale peaks × 0.97, best scale s*
      Y         = Y_{s*} − min;  Y /= ΣY;  Y = 0.85 Y + 0.15 H    (H the Hann window, ΣH = 1)
      (i, j)    = argmax Y;  response coordinate u = (j + ½)/16 − ½ (likewise v)
      c        += (E/2 + stride · u − S/2, E/2 + stride · v − S/2) · s_x q_{s*} / S
      (w, h)   ← (1 − 0.6)(w, h) + 0.6 (w, h) q_{s*}     (clamped to [0.2, 5] × the initial size)
      state     = the best scale's model state, copied to all 3 scales
      Z         = features of the exemplar window at the new box (written by the next step)

  The centre is kept inside the frame. (The spec writes the displacement as (pos − 136) · 8/16 ·
  x_roi/255; with the half-pixel geometry of the upsampling the centre of a 272-pixel map is 135.5,
  which is what the formula above gives for the paper's sizes.)

Use: ``make_tracker('memtrack', checkpoint=WORKDIR)`` with a MemTrack training workdir
(``python -m experiments.memtrack``); ``make_tracker('siamfc', checkpoint=WORKDIR)`` runs the same
tracker with the plain first-frame template (a memory-off checkpoint as trained, or a memory
checkpoint with its memory ignored). ``record=True`` keeps per-frame internals (response,
attention, read/write weights, usage, gates) in ``core.records`` for pictures. ``core.write_at``
replaces the pending exemplar (a diagnostic: "oracle writes" at the ground truth box, used by
``experiments/memtrack_ablation.py``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.data import boxes as box_ops
from rolo_jax.data import crops
from rolo_jax.models import memtrack
from rolo_jax.trackers.base import CoreTracker, as_boxes, check_frame


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
  """Online tracking settings (the spec's values)."""
  num_scales: int = 3
  scale_step: float = 1.05
  scale_penalty: float = 0.97
  scale_lr: float = 0.6
  upsample: int = 16
  window_influence: float = 0.15
  min_scale: float = 0.2   # target size limits relative to the initial size
  max_scale: float = 5.0


class MemTrackTrackState(NamedTuple):
  model: memtrack.MemTrackState  # batch K·num_scales
  pending: jax.Array             # [K, h, w, C] exemplar feature written by the next step
  centre: jax.Array              # [K, 2] (cx, cy) pixels
  size: jax.Array                # [K, 2] (w, h)
  base_size: jax.Array           # [K, 2] initial (w, h)


def _cut(frame, windows, size):
  """[N, size, size, 3] crops of one frame at windows [N, 4], mean-colour padding."""
  fill = jnp.mean(frame.reshape(-1, 3).astype(jnp.float32), axis=0)
  return jax.vmap(lambda w: crops.crop(frame, w, size, fill=fill))(windows)


def _xywh(centre, size):
  return jnp.concatenate([centre - 0.5 * size, size], axis=-1)


def _exemplar_features(params, stats, frame, centre, size, cfg):
  z_win, _ = crops.siamfc_window(_xywh(centre, size), cfg.context, cfg.exemplar_size, cfg.instance_size)
  feat, _ = memtrack.extract(params, stats, _cut(frame, z_win, cfg.exemplar_size), cfg=cfg)
  return feat


@functools.partial(jax.jit, static_argnames=("cfg", "tcfg"))
def _init(params, stats, frame, centre, size, *, cfg, tcfg):
  t0 = _exemplar_features(params, stats, frame, centre, size, cfg)
  state = memtrack.initial_state(params, t0, cfg=cfg)
  state = jax.tree_util.tree_map(lambda a: jnp.repeat(a, tcfg.num_scales, axis=0), state)
  return state, t0


def hann_window(n: int) -> np.ndarray:
  """outer(hanning(n), hanning(n)) / its sum: [n, n] float32."""
  h = np.hanning(n)
  w = np.outer(h, h)
  return (w / w.sum()).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("cfg", "tcfg"))
def _step(params, stats, state: MemTrackTrackState, frame, *, cfg, tcfg):
  k, n_s = state.centre.shape[0], tcfg.num_scales
  e_sz, s_sz, r, u = cfg.exemplar_size, cfg.instance_size, cfg.response_side, tcfg.upsample
  q = jnp.asarray(tcfg.scale_step ** (np.arange(n_s) - (n_s - 1) / 2.0), jnp.float32)   # [S]
  _, x_win = crops.siamfc_window(_xywh(state.centre, state.size), cfg.context, e_sz, s_sz)
  side = x_win[:, 2] - x_win[:, 0]                                                     # [K]
  sides = side[:, None] * q[None, :]                                                   # [K, S]
  c = jnp.repeat(state.centre, n_s, axis=0)
  sd = sides.reshape(-1, 1)
  windows = jnp.concatenate([c - 0.5 * sd, c + 0.5 * sd], axis=-1)                     # [K·S, 4]
  feat, _ = memtrack.extract(params, stats, _cut(frame, windows, s_sz), cfg=cfg)
  z = jnp.repeat(state.pending, n_s, axis=0)
  model, (resp, aux) = memtrack.step(params, state.model, memtrack.StepInput(feat, z), cfg=cfg,
                                     train=False, stats=stats)
  resp = resp.reshape(k, n_s, r, r)
  up = jax.image.resize(resp, (k, n_s, r * u, r * u), "cubic")
  penalty = jnp.where(jnp.arange(n_s) == (n_s - 1) // 2, 1.0, tcfg.scale_penalty)
  best = jnp.argmax(jnp.max(up, axis=(2, 3)) * penalty[None, :], axis=1)               # [K]
  y = jnp.take_along_axis(up, best[:, None, None, None], axis=1)[:, 0]                 # [K, Ru, Ru]
  y = y - jnp.min(y, axis=(1, 2), keepdims=True)
  y = y / jnp.maximum(jnp.sum(y, axis=(1, 2), keepdims=True), 1e-12)
  y = (1.0 - tcfg.window_influence) * y + tcfg.window_influence * jnp.asarray(hann_window(r * u))
  flat = jnp.argmax(y.reshape(k, -1), axis=1)
  iy, ix = flat // (r * u), flat % (r * u)
  to_crop = lambda i: e_sz / 2.0 + cfg.total_stride * ((i.astype(jnp.float32) + 0.5) / u - 0.5)
  disp = jnp.stack([to_crop(ix), to_crop(iy)], axis=-1) - s_sz / 2.0                  # [K, 2]
  best_side = jnp.take_along_axis(sides, best[:, None], axis=1)                        # [K, 1]
  centre = state.centre + disp * best_side / s_sz
  height, width = frame.shape[0], frame.shape[1]
  centre = jnp.clip(centre, 0.0, jnp.asarray([width, height], jnp.float32))
  qb = q[best][:, None]
  size = (1.0 - tcfg.scale_lr) * state.size + tcfg.scale_lr * state.size * qb
  size = jnp.clip(size, tcfg.min_scale * state.base_size, tcfg.max_scale * state.base_size)

  def pick(a):  # the best scale's row of every target, copied to all scales
    a = a.reshape((k, n_s) + a.shape[1:])
    a = jnp.take_along_axis(a, best.reshape((k, 1) + (1,) * (a.ndim - 2)), axis=1)
    return jnp.repeat(a[:, 0], n_s, axis=0)

  model = jax.tree_util.tree_map(pick, model)
  pending = (_exemplar_features(params, stats, frame, centre, size, cfg) if cfg.use_memory
             else state.pending)
  rec = {"response": jnp.take_along_axis(resp, best[:, None, None, None], axis=1)[:, 0],
         "scale": q[best]}
  for name in ("attention", "read_weight", "write_weight", "usage", "gates", "decay", "read_strength",
               "residual_gate"):
    if name in aux:
      a = aux[name].reshape((k, n_s) + aux[name].shape[1:])
      rec[name] = jnp.take_along_axis(a, best.reshape((k, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]
  new = MemTrackTrackState(model, pending, centre, size, state.base_size)
  return new, _xywh(centre, size), rec


@functools.partial(jax.jit, static_argnames=("cfg",))
def _pending_at(params, stats, pending, frame, boxes, *, cfg):
  ok = jnp.all(jnp.isfinite(boxes), axis=1) & jnp.all(boxes[:, 2:] > 0, axis=1)        # [K]
  safe = jnp.where(ok[:, None], boxes, jnp.asarray([0.0, 0.0, 1.0, 1.0], jnp.float32))
  feat = _exemplar_features(params, stats, frame, safe[:, :2] + 0.5 * safe[:, 2:], safe[:, 2:], cfg)
  return jnp.where(ok[:, None, None, None], feat, pending)


class MemTrackCore:
  """MemTrack as a `TrackerCore` (parameters closed over).

  Args:
    params, batch_stats: the trained variables (numpy or jax).
    cfg: their MemTrackConfig.
    tcfg: TrackerConfig.
    record: keep each step's internals (numpy, first target) in ``self.records``.
  """

  name = "memtrack"

  def __init__(self, params, batch_stats, cfg: memtrack.MemTrackConfig,
               tcfg: TrackerConfig = TrackerConfig(), *, record: bool = False):
    self.params = jax.device_put(params)
    self.stats = jax.device_put(batch_stats)
    self.cfg, self.tcfg = cfg, tcfg
    self.record = record
    self.records: List[Dict[str, np.ndarray]] = []

  def init_state(self, frame: np.ndarray, boxes) -> MemTrackTrackState:
    frame = check_frame(frame)
    boxes = as_boxes(boxes)
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] <= 0):
      raise ValueError(f"memtrack: initial boxes must be finite with w, h > 0, got {boxes.tolist()}")
    centre = jnp.asarray(boxes[:, :2] + 0.5 * boxes[:, 2:], jnp.float32)
    size = jnp.asarray(boxes[:, 2:], jnp.float32)
    model, t0 = _init(self.params, self.stats, jnp.asarray(frame), centre, size, cfg=self.cfg,
                      tcfg=self.tcfg)
    self.records = []
    return MemTrackTrackState(model, t0, centre, size, size)

  def step(self, state: MemTrackTrackState, frame: np.ndarray):
    frame = check_frame(frame)
    if state.centre.shape[0] == 0:
      return state, np.zeros((0, 4))
    new, boxes, rec = _step(self.params, self.stats, state, jnp.asarray(frame), cfg=self.cfg,
                            tcfg=self.tcfg)
    if self.record:
      self.records.append({k: np.asarray(v[0]) for k, v in rec.items()})
    return new, np.asarray(boxes, np.float64)

  def write_at(self, state: MemTrackTrackState, frame: np.ndarray, boxes) -> MemTrackTrackState:
    """The state with the exemplar that the next step writes cropped at ``boxes`` [K, 4] (x, y, w,
    h) instead of at the tracker's estimates; targets whose box is not finite with w, h > 0 keep
    theirs. For diagnostics ("oracle writes": the ground truth box) -- not used in tracking."""
    if not self.cfg.use_memory:
      return state
    boxes = jnp.asarray(as_boxes(boxes), jnp.float32)
    if boxes.shape[0] != state.centre.shape[0]:
      raise ValueError(f"memtrack.write_at: {boxes.shape[0]} boxes for {state.centre.shape[0]} targets")
    pending = _pending_at(self.params, self.stats, state.pending, jnp.asarray(check_frame(frame)),
                          boxes, cfg=self.cfg)
    return state._replace(pending=pending)


def load_core(checkpoint: str, *, memory: Optional[bool] = None, **kw) -> MemTrackCore:
  """A MemTrackCore from a training workdir; ``memory=False`` drops the memory (SiamFC mode)."""
  from rolo_jax.train.memtrack_task import load_variables

  params, stats, cfg, _ = load_variables(checkpoint)
  if memory is False and cfg.use_memory:
    cfg = cfg.replace(use_memory=False)
    params = {k: params[k] for k in ("extractor", "response_bn")}
  elif memory is True and not cfg.use_memory:
    from rolo_jax.errors import DataError
    raise DataError(checkpoint, "this checkpoint was trained without memory (use the 'siamfc' tracker)")
  to_np = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), t)
  return MemTrackCore(to_np(params), to_np(stats), cfg, **kw)


def make_memtrack(checkpoint: Optional[str] = None, **kw) -> CoreTracker:
  """Registry factory: ``make_tracker('memtrack', checkpoint=WORKDIR, record=False)``."""
  if checkpoint is None:
    raise ValueError("the 'memtrack' tracker needs --checkpoint DIR (a MemTrack training workdir "
                     "written by 'python -m experiments.memtrack')")
  return CoreTracker(load_core(checkpoint, memory=True, **kw), name="memtrack")


def make_siamfc(checkpoint: Optional[str] = None, **kw) -> CoreTracker:
  """Registry factory: the plain first-frame template tracker from a MemTrack workdir."""
  if checkpoint is None:
    raise ValueError("the 'siamfc' tracker needs --checkpoint DIR (a MemTrack or memory-off training "
                     "workdir written by 'python -m experiments.memtrack_ablation')")
  core = load_core(checkpoint, memory=False, **kw)
  core.name = "siamfc"
  return CoreTracker(core, name="siamfc")


__all__ = ("TrackerConfig", "MemTrackCore", "MemTrackTrackState", "load_core", "make_memtrack",
           "make_siamfc", "hann_window")
