"""The online Re3 tracker (spec: /work/shared/specs/re3.md, "Inference").

For K targets in one video, all tracked by one batched, jitted step (batch axis = targets):

* ``init_state(frame_0, boxes_0)``: one pass with both crops cut from frame 0 at the given boxes,
  from the zero LSTM state; the resulting state is the current state *and* the saved first-frame
  state S_0. The given boxes are kept (they are the output for frame 0).
* ``step(state, frame_t)`` for t = 1, 2, ...: with B = the previous (predicted) box and
  W = context_window(B, 2) (B scaled ×2 about its centre, width and height independently)::

      crops  = (crop(frame_{t-1}, W), crop(frame_t, W))          crop_size², bilinear, zeros outside
      s, out = re3.step(params, s, preprocess(crops))
      B_t    = sanitise(from_crop(out / output_scale, W))        (x1, y1, x2, y2) in the image

  and after the n-th update with n % reset_every == 0 (n = 32, 64, ...; the authors' ``MAX_TRACK_LENGTH``
  reset): ``s = re3.step(params, S_0, (crop(frame_t, W'), crop(frame_t, W')))`` with
  W' = context_window(B_t, 2) — the current frame at the new box as both inputs, from the saved
  first-frame state; that step's box is ignored.
* Crops are cut on the device from the frame uploaded once per step (the previous frame stays on
  the device in the state); ``crops.crop`` is vmapped over the K windows with the frame shared
  (``crops.crop_batch`` would want the frame repeated K times as [K, H, W, 3]).

Sanitising (`sanitise_boxes`, applied to every predicted box, and to the initial boxes before
they are used for cropping; the initial boxes themselves are what the tracker reports for frame 0):
a box with a non-finite coordinate is replaced by the previous box; corners are ordered
(x1 <= x2, y1 <= y2); width and height are clamped to [min_size, max_scale · frame size] (defaults
2 px and 2× the frame) about the box centre; the centre is clamped to the frame padded by half the
box size on each side ([-w/2, W + w/2] × [-h/2, H + h/2]), so a box at worst touches the frame's
edge from outside and the next crop still sees the border. Targets that leave the frame or shrink
thus give finite boxes of at least 2 × 2 px, never NaN.

Use: ``make_tracker('re3', checkpoint=DIR)`` with DIR a folder written by
``python -m rolo_jax.convert re3`` or a Re3 training workdir (`load_params`; meta['config'] names
or lists the `Re3Config`). The returned `CoreTracker` is both a `Tracker` (one [4] box) and a
`MultiTracker` ([K, 4] boxes).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.cells import lstm
from rolo_jax.data import boxes as box_ops
from rolo_jax.data import crops
from rolo_jax.models import re3
from rolo_jax.trackers.base import CoreTracker, as_boxes, check_frame

RESET_EVERY = 32
CONTEXT = 2.0
MIN_SIZE = 2.0
MAX_SCALE = 2.0


class Re3TrackState(NamedTuple):
  """State of the online tracker for K targets."""
  lstm: re3.Re3State        # current LSTM state, [K, H] leaves
  saved: re3.Re3State       # state after the first-frame pass (restored every reset_every updates)
  frame: jax.Array          # uint8 [H, W, 3]: the previous frame, on the device
  boxes: jax.Array          # float32 [K, 4]: the previous boxes, xyxy in image pixels
  count: int                # number of updates so far (host int)


def sanitise_boxes(boxes_xyxy, fallback_xyxy, frame_hw, *, min_size: float = MIN_SIZE,
                   max_scale: float = MAX_SCALE):
  """Finite, ordered, size- and position-clamped boxes (see the module docstring).

  Args:
    boxes_xyxy: [K, 4] predicted boxes.
    fallback_xyxy: [K, 4] boxes used where a prediction has a non-finite coordinate.
    frame_hw: (H, W) of the frame.
  Returns:
    [K, 4] xyxy with min_size <= w <= max_scale·W, min_size <= h <= max_scale·H, centre in
    [-w/2, W + w/2] × [-h/2, H + h/2].
  """
  b = jnp.asarray(boxes_xyxy, jnp.float32)
  fb = jnp.asarray(fallback_xyxy, jnp.float32)
  ok = jnp.all(jnp.isfinite(b), axis=-1, keepdims=True)
  b = jnp.where(ok, b, fb)
  height, width = float(frame_hw[0]), float(frame_hw[1])
  x1, x2 = jnp.minimum(b[:, 0], b[:, 2]), jnp.maximum(b[:, 0], b[:, 2])
  y1, y2 = jnp.minimum(b[:, 1], b[:, 3]), jnp.maximum(b[:, 1], b[:, 3])
  w = jnp.clip(x2 - x1, min_size, max(max_scale * width, min_size))
  h = jnp.clip(y2 - y1, min_size, max(max_scale * height, min_size))
  cx = jnp.clip(0.5 * (x1 + x2), -0.5 * w, width + 0.5 * w)
  cy = jnp.clip(0.5 * (y1 + y2), -0.5 * h, height + 0.5 * h)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def _crop_pair(prev_frame, frame, windows, cfg: re3.Re3Config):
  """[K, 2, S, S, 3] preprocessed crops: (prev_frame, frame) both at windows [K, 4]."""
  cut = jax.vmap(lambda im, w: crops.crop(im, w, cfg.crop_size), in_axes=(None, 0))
  pair = jnp.stack([cut(prev_frame, windows), cut(frame, windows)], axis=1)
  return re3.preprocess(pair, cfg.mean_rgb)


@functools.partial(jax.jit, static_argnames=("cfg", "context"))
def _first_pass(params, frame, boxes_xyxy, *, cfg, context):
  """Init: both crops from the first frame at the (sanitised) given boxes, zero state.

  Returns (state after the pass, the sanitised boxes: where the next crops are cut)."""
  k = boxes_xyxy.shape[0]
  boxes = sanitise_boxes(boxes_xyxy, boxes_xyxy, frame.shape[:2])
  windows = crops.context_window(boxes, context)
  state0 = re3.initial_state(cfg, k)
  state, _ = re3.step(params, state0, _crop_pair(frame, frame, windows, cfg), cfg=cfg)
  return state, boxes


@functools.partial(jax.jit, static_argnames=("cfg", "context", "reset"))
def _track_step(params, lstm_state, saved, prev_frame, frame, boxes_xyxy, *, cfg, context, reset):
  """One update for K targets; with reset=True also the re-initialisation from `saved`."""
  windows = crops.context_window(boxes_xyxy, context)
  lstm_state, (out, _) = re3.step(params, lstm_state, _crop_pair(prev_frame, frame, windows, cfg),
                                  cfg=cfg)
  pred = crops.from_crop(out / cfg.output_scale, windows)
  new_boxes = sanitise_boxes(pred, boxes_xyxy, frame.shape[:2])
  if reset:
    w2 = crops.context_window(new_boxes, context)
    lstm_state, _ = re3.step(params, saved, _crop_pair(frame, frame, w2, cfg), cfg=cfg)
  return lstm_state, new_boxes


class Re3Core:
  """Re3 as a `TrackerCore`: ``init_state(frame, boxes [K, 4]) -> state``,
  ``step(state, frame) -> (state, boxes [K, 4])`` (x, y, w, h; the parameters closed over).

  Args:
    params: re3 params (numpy or jax; moved to the device once).
    cfg: the `Re3Config` they belong to.
    reset_every: re-initialise from the first-frame state after every this many updates
      (32, the authors' value; 0 or None disables it).
    context: crop context factor (2).
  """

  name = "re3"

  def __init__(self, params, cfg: re3.Re3Config, *, reset_every: Optional[int] = RESET_EVERY,
               context: float = CONTEXT):
    self.params = jax.device_put(params)
    self._params_one = None   # the one-target layout, made on first use (params_for)
    self.cfg = cfg
    self.reset_every = int(reset_every or 0)
    self.context = float(context)

  def params_for(self, k: int):
    """The params the step for k targets runs with.

    k = 1: every matrix stored [out, in] (`rolo_jax.cells.lstm.transposed`; made once, on first
    use). A one-target step is matrix-vector products, memory-bound on fc6 and the LSTMs, and
    XLA:CPU streams an [out, in] matrix ~1.6x faster (paper fc6: 29.3 → 18.5 ms). For k >= 2 the
    same layout makes XLA:CPU's matrix-matrix product 1.5-2x slower than [in, out], so those steps
    use the params as given. Same numbers either way, to float rounding.
    """
    if k != 1:
      return self.params
    if self._params_one is None:
      self._params_one = jax.device_put(lstm.transposed(self.params))
    return self._params_one

  def init_state(self, frame: np.ndarray, boxes) -> Re3TrackState:
    frame = check_frame(frame)
    boxes = as_boxes(boxes)
    if not np.all(np.isfinite(boxes)):
      raise ValueError(f"re3: initial boxes must be finite, got {boxes.tolist()}")
    xyxy = jnp.asarray(box_ops.xywh_to_xyxy(boxes), jnp.float32)
    dev_frame = jnp.asarray(frame)
    if boxes.shape[0] == 0:
      empty = re3.initial_state(self.cfg, 0)
      return Re3TrackState(empty, empty, dev_frame, xyxy, 0)
    state, crop_boxes = _first_pass(self.params_for(boxes.shape[0]), dev_frame, xyxy, cfg=self.cfg,
                                    context=self.context)
    return Re3TrackState(state, state, dev_frame, crop_boxes, 0)

  def step(self, state: Re3TrackState, frame: np.ndarray):
    frame = jnp.asarray(check_frame(frame))
    count = state.count + 1
    if state.boxes.shape[0] == 0:
      return state._replace(frame=frame, count=count), np.zeros((0, 4))
    reset = bool(self.reset_every) and count % self.reset_every == 0
    params = self.params_for(state.boxes.shape[0])
    lstm_state, new_boxes = _track_step(params, state.lstm, state.saved, state.frame, frame,
                                        state.boxes, cfg=self.cfg, context=self.context, reset=reset)
    new_state = Re3TrackState(lstm_state, state.saved, frame, new_boxes, count)
    return new_state, box_ops.xyxy_to_xywh(new_boxes)


def config_from_meta(meta: dict) -> re3.Re3Config:
  """The Re3Config a checkpoint's meta describes: meta['config'] is a CONFIGS name or a dict of fields."""
  from rolo_jax.convert import re3_config_from_dict

  c = meta.get("config")
  if isinstance(c, str):
    if c not in re3.CONFIGS:
      raise ValueError(f"checkpoint meta names Re3 config {c!r}; known: {', '.join(re3.CONFIGS)}")
    return re3.CONFIGS[c]
  if isinstance(c, dict):
    return re3_config_from_dict(c, what="checkpoint meta['config']")
  raise ValueError(f"checkpoint meta has no Re3 config (meta['config'] = {c!r})")


def checked_config(checkpoint: str, params, meta: dict) -> re3.Re3Config:
  """The Re3Config of what `load_params(checkpoint)` returned, once the meta names a Re3 model and
  a config whose structure the params have; otherwise a DataError naming `checkpoint`."""
  from rolo_jax.errors import DataError

  model = meta.get("model", "re3")
  if model != "re3":
    raise DataError(checkpoint, f"checkpoint holds a {model!r} model, not 're3'")
  try:
    cfg = config_from_meta(meta)
  except ValueError as e:
    raise DataError(checkpoint, str(e)) from None
  # Check the structure here so a mismatch is one clear error rather than a shape error inside jit.
  ref = jax.eval_shape(lambda k: re3.init(k, cfg), jax.random.PRNGKey(0))
  flat = lambda t: {jax.tree_util.keystr(p): tuple(np.shape(v))
                    for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  want, got = flat(ref), flat(params)
  bad = [f"{k}: missing" for k in want if k not in got]
  bad += [f"{k}: unexpected" for k in got if k not in want]
  bad += [f"{k}: expected {list(want[k])}, found {list(got[k])}" for k in want
          if k in got and want[k] != got[k]]
  if bad:
    raise DataError(checkpoint, f"params do not match re3 config {cfg.name!r}: " + "; ".join(bad[:6])
                    + (f" (and {len(bad) - 6} more)" if len(bad) > 6 else ""))
  return cfg


def load_core(checkpoint: str, **kw) -> Re3Core:
  """A `Re3Core` from a checkpoint folder (`load_params`); kw go to `Re3Core`."""
  from rolo_jax.train.checkpoint import load_params

  params, meta = load_params(checkpoint)
  cfg = checked_config(checkpoint, params, meta)
  params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), params)
  return Re3Core(params, cfg, **kw)


def make_re3(checkpoint: Optional[str] = None, **kw) -> CoreTracker:
  """Registry factory: ``make_tracker('re3', checkpoint=DIR, reset_every=32, context=2.0)``."""
  if checkpoint is None:
    raise ValueError("the 're3' tracker needs --checkpoint DIR (a folder written by "
                     "'python -m rolo_jax.convert re3' or a Re3 training workdir)")
  return CoreTracker(load_core(checkpoint, **kw), name="re3")


__all__ = ("Re3Core", "Re3TrackState", "sanitise_boxes", "config_from_meta", "checked_config", "load_core",
           "make_re3", "RESET_EVERY")
