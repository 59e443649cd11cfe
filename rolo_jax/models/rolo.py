"""ROLO tracking module: one LSTM over windows of N per-frame vectors (Ning et al. 2016, arXiv
1607.05781).

Spec: ``/work/shared/specs/rolo.md`` (section "Tracking module"); paper §3.2-3.3.

Per-frame input x_t (``frame_inputs``), F = feature_dim (4096 for YOLO v1)::

    coord   x_t = [X_t, B_t],        B_t = (0, x, y, w, h, 0)     D = F + 6     (paper eq. 3)
    heatmap x_t = [X_t, M_t],        M_t = box_to_mask(x, y, w, h) D = F + 1024  (32×32, row-major)

with X_t the visual features and (x, y, w, h) the assigned detection: centre and size relative to the
image (all zero when no detection was assigned, which also gives an all-zero mask).

Window: frames t-N+1 .. t (``make_windows``) through one plain LSTM (``cells.lstm``, kind
'plain'), h_k = LSTM(h_{k-1}, c_{k-1}, x_k), from a zero state (the paper; ``carry_state=False``)
or from a carried state (below). The window predicts its LAST frame t — the prediction is read
from h at the window's last step and is scored against frame t's ground truth. (The authors' code
scored it against frame t-1's, a defect not copied here.)

Read-out of the prediction from the last hidden vector h (``hidden_from``):

* ``'faithful'`` — the authors' model, no output layer: the LSTM is as wide as its input (H = D:
  4102 for coord, 5120 for heatmap) and the prediction is a slice of h:

      coord:   (x̂, ŷ, ŵ, ĥ) = h[F + 1 : F + 5]      units 4097..4100 (0-based; the authors'
                                                   ``[:, 4097:4101]``), the same positions that
                                                   (x, y, w, h) occupy in the input vector
      heatmap: Ĥ = h[F : F + 1024]                 units 4096..5119

  Since h = o ⊙ tanh(c), predictions lie in (-1, 1), which covers the [0, 1] targets.
* ``'output_layer'`` — a smaller LSTM (H = cfg.hidden) and a linear layer: ŷ = h @ W + b.
* ``'residual'`` (coordinate variant; with a carried state only together with ``hold_detection``,
  so that the anchor is in each frame's own input; not in the paper) — the output layer
  predicts a correction to the window's latest detection:

      ŷ_k = h_k @ W + b + a_k,   a_k = (x, y, w, h) of the latest frame j <= k of the window with a
                                       detection (its location values non-zero), 0 when none

  so that W = 0, b = 0 is YOLO alone within the window (with ``hold_detection``: YOLO alone, the
  assigned detection or the previous box when none). Why: with the faithful read-out the LSTM
  has to rebuild the detection's four values through its gates, and on held-out synthetic
  sequences it stayed far from its own input on frames whose detection was right (experiments.rolo
  docstring has the numbers); the skip makes copying free and leaves the LSTM the corrections.

Held detections (``hold_detection=True``; not in the paper, ``hold_locations``): a frame without an
assigned detection gets the latest earlier detection's (x, y, w, h) instead of zeros, and the
location vector's last value (the confidence, nulled in the paper) becomes a "fresh" flag, 1 where
the frame's own detection was assigned, 0 where the box is held:

    B_t = (0, x, y, w, h, 1)          frame t has a detection
    B_t = (0, x_j, y_j, w_j, h_j, 0)  none; j < t the latest frame with one (all zeros when none yet)

Why: with zero rows, a zero-state window that falls inside a detection gap longer than N has no
box at all (the residual anchor is 0), while YOLO alone keeps the last box; with held rows the
anchor is always YOLO's box and the flag still tells the LSTM which frames are gaps.

Losses (``loss``), n the batch size (number of windows):

    coord   L = 100 · (1 / 4n) Σ_i ‖B_target,i - B_pred,i‖²   (MSE over the 4 values × 100; = 25 ×
            the paper's eq. 4, which sums over the 4 values)
    heatmap L = (1 / n) Σ_i ‖H_target,i - H_pred,i‖²          (paper eq. 5; sum over the 1024 cells)

with B_target the ground-truth box of the window's last frame as relative (cx, cy, w, h) and
H_target its 32×32 mask (``box_to_mask``).

Carried state (``carry_state=True``): windows slide one frame at a time and window k+1 starts from
the state window k reached after its FIRST frame (``aux['next_state']``). Window k+1 then runs frames
k+1..k+N from the state that has absorbed frames 0..k exactly once, so its last output equals a
single LSTM run over the whole sequence; the window length only bounds back-propagation through time.
``track_sequence`` uses that identity.

Parameter count: plain LSTM 4H(D + H + 1) (+ H·out + out for the output layer). Paper coord model
H = D = 4102: 4·4102·(4102 + 4102 + 1) = 4·4102·8205 = 134,627,640. Heatmap model H = D = 5120:
4·5120·10,241 = 209,735,680.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.cells import lstm
from rolo_jax.cells.lstm import LSTMState
from rolo_jax.cells.unroll import unroll
from rolo_jax.summary import count_params, param_table  # noqa: F401  (re-exported model API)

Params = Dict[str, Any]
MODES = ("coord", "heatmap")
HIDDEN_FROM = ("faithful", "output_layer", "residual")
LOCATION_DIM = 6   # (class, x, y, w, h, confidence), class and confidence nulled


@dataclass(frozen=True)
class RoloConfig:
  """ROLO tracking module. Frozen and hashable: a static argument to ``jax.jit``."""
  name: str = "paper"
  window: int = 6                 # N frames per window (paper: 6; heatmap model 3; step study 1/3/6/9)
  feature_dim: int = 4096         # F
  mode: str = "coord"             # 'coord' | 'heatmap'
  hidden_from: str = "faithful"   # 'faithful' (slice of h, H = D) | 'output_layer' (H = hidden, linear)
  hidden: int = 0                 # LSTM width for 'output_layer'
  carry_state: bool = False       # False: every window from a zero state (paper)
  hold_detection: bool = False    # True: frames without a detection repeat the last one (not in the paper)
  heatmap_size: int = 32
  coord_loss_scale: float = 100.0
  forget_bias: float = 1.0

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"RoloConfig.mode={self.mode!r}; choose from {', '.join(MODES)}")
    if self.hidden_from not in HIDDEN_FROM:
      raise ValueError(f"RoloConfig.hidden_from={self.hidden_from!r}; choose from {', '.join(HIDDEN_FROM)}")
    if self.hidden_from in ("output_layer", "residual") and self.hidden < 1:
      raise ValueError(f"RoloConfig.hidden must be >= 1 with hidden_from={self.hidden_from!r}")
    if self.hidden_from == "residual" and (self.mode != "coord"
                                           or (self.carry_state and not self.hold_detection)):
      raise ValueError("RoloConfig: hidden_from='residual' is for the coordinate variant (mode='coord'), "
                       "and with carry_state=True it needs hold_detection=True (the online tracker steps "
                       "one frame at a time, so the anchor must be in the frame's own input)")
    if self.window < 1 or self.feature_dim < 1 or self.heatmap_size < 1:
      raise ValueError(f"RoloConfig: window, feature_dim, heatmap_size must be >= 1 ({self})")

  def replace(self, **kw) -> "RoloConfig":
    return dataclasses.replace(self, **kw)

  @property
  def input_dim(self) -> int:
    """D = F + 6 (coord) or F + heatmap_size² (heatmap)."""
    return self.feature_dim + (LOCATION_DIM if self.mode == "coord" else self.heatmap_size ** 2)

  @property
  def out_dim(self) -> int:
    """4 (coord) or heatmap_size² (heatmap)."""
    return 4 if self.mode == "coord" else self.heatmap_size ** 2

  @property
  def lstm_hidden(self) -> int:
    """H: D in faithful mode, ``hidden`` otherwise."""
    return self.input_dim if self.hidden_from == "faithful" else self.hidden

  @property
  def readout_start(self) -> int:
    """First hidden unit of the faithful read-out: F + 1 (coord: x, y, w, h) or F (heatmap)."""
    return self.feature_dim + 1 if self.mode == "coord" else self.feature_dim


CONFIGS: Dict[str, RoloConfig] = {
    # Paper coordinate model: N=6, input and hidden 4102, box from units 4097..4100. 134,627,640 params.
    "paper": RoloConfig(),
    # Paper heatmap model: N=3, input and hidden 5120, heatmap from units 4096..5119. 209,735,680 params.
    "heatmap": RoloConfig(name="heatmap", window=3, mode="heatmap"),
    # Paper-sized features, the "reasonable alternative": 512-unit LSTM + linear output. 9,453,572 params.
    "output_layer": RoloConfig(name="output_layer", hidden_from="output_layer", hidden=512),
    # CPU configs on 256-d features (yolo 'tiny'): faithful coord (H = 262) and heatmap (32²).
    "tiny": RoloConfig(name="tiny", feature_dim=256),
    # experiments.rolo's default (not the paper; see its docstring): residual read-out on a 128-unit
    # LSTM, held detections, state carried over the whole sequence.
    "tiny_residual": RoloConfig(name="tiny_residual", feature_dim=256, hidden_from="residual", hidden=128,
                                carry_state=True, hold_detection=True),
    "tiny_heatmap": RoloConfig(name="tiny_heatmap", window=3, feature_dim=256, mode="heatmap",
                               hidden_from="output_layer", hidden=256),
}


# --------------------------------------------------------------------------------------------------
# init / apply / loss

def init(key: jax.Array, cfg: RoloConfig) -> Params:
  """``{'lstm': {'w': [D + H, 4H], 'b': [4H]}}`` (+ ``'out': {'w': [H, out], 'b': [out]}`` for the
  output layer). Glorot-uniform weights, forget-gate bias ``cfg.forget_bias``, output bias 0."""
  return _init_jit(key, cfg)


def _init(key, cfg: RoloConfig) -> Params:
  k_lstm, k_out = jax.random.split(key)
  cell_init, _ = lstm.make_cell("plain")
  params = {"lstm": cell_init(k_lstm, cfg.input_dim, cfg.lstm_hidden, forget_bias=cfg.forget_bias)}
  if cfg.hidden_from != "faithful":
    lim = (6.0 / (cfg.hidden + cfg.out_dim)) ** 0.5
    params["out"] = {"w": jax.random.uniform(k_out, (cfg.hidden, cfg.out_dim), jnp.float32, -lim, lim),
                     "b": jnp.zeros((cfg.out_dim,), jnp.float32)}
  return params


_init_jit = jax.jit(_init, static_argnums=1)


def initial_state(cfg: RoloConfig, batch: int, dtype=jnp.float32) -> LSTMState:
  """All-zero LSTM state [batch, H]."""
  return lstm.zeros_state(batch, cfg.lstm_hidden, dtype)


def readout(params: Params, h: jax.Array, *, cfg: RoloConfig, anchor: Optional[jax.Array] = None) -> jax.Array:
  """Prediction from hidden vectors h [..., H] -> [..., out_dim] (module docstring); 'residual'
  adds ``anchor`` [..., 4] (``latest_detection``)."""
  if cfg.hidden_from == "faithful":
    s = cfg.readout_start
    return h[..., s:s + cfg.out_dim]
  out = h @ params["out"]["w"] + params["out"]["b"]
  if cfg.hidden_from == "residual":
    if anchor is None:
      raise ValueError("readout: hidden_from='residual' needs the anchor boxes")
    out = out + anchor
  return out


def latest_detection(windows: jax.Array, *, cfg: RoloConfig) -> jax.Array:
  """a_k of the 'residual' read-out: for every step k of every window, the (x, y, w, h) location
  values of the latest step j <= k whose location values are not all zero; 0 when there is none.

  Args:
    windows: [B, N, D] coordinate-variant inputs.
  Returns:
    [B, N, 4].
  """
  f = cfg.feature_dim
  loc = windows[..., f + 1:f + 5]
  has = jnp.any(loc != 0, axis=-1)                                    # [B, N]
  n = windows.shape[1]
  idx = jnp.where(has, jnp.arange(n)[None, :], -1)
  last = jax.lax.cummax(idx, axis=1)                                  # latest valid step <= k
  a = jnp.take_along_axis(loc, jnp.maximum(last, 0)[..., None], axis=1)
  return jnp.where((last >= 0)[..., None], a, 0.0)


def apply(params: Params, windows: jax.Array, *, cfg: RoloConfig,
          state0: Optional[LSTMState] = None, checkpoint: bool = False) -> Tuple[jax.Array, Dict[str, Any]]:
  """Runs the LSTM over each window and predicts the window's last frame.

  Args:
    params: from ``init``.
    windows: [B, N, D] B windows of N frame inputs (``make_windows``), oldest first.
    state0: initial LSTMState [B, H]; zeros when None.
    checkpoint: rematerialise each step in the backward pass.
  Returns:
    (pred [B, out_dim], aux) with aux = {'steps': [B, N, out_dim] the read-out at every step (the last
    one is pred), 'hidden': [B, N, H], 'state': final LSTMState, 'next_state': LSTMState after the
    first step (the carried state for the window that starts one frame later)}.
  """
  windows = jnp.asarray(windows)
  if windows.ndim != 3 or windows.shape[-1] != cfg.input_dim:
    raise ValueError(f"rolo.apply: windows must be [B, N, {cfg.input_dim}] for config {cfg.name!r}, "
                     f"got {windows.shape}")
  b = windows.shape[0]
  if state0 is None:
    state0 = initial_state(cfg, b)
  _, cell_step = lstm.make_cell("plain")

  def step(p, s, x):
    s, h = cell_step(p, s, x)
    return s, (s.h, s.c)

  with jax.named_scope("lstm"):
    final, (hs, cs) = unroll(step, params["lstm"], state0, jnp.swapaxes(windows, 0, 1),
                             checkpoint=checkpoint)
  hs = jnp.swapaxes(hs, 0, 1)                      # [B, N, H]
  anchor = latest_detection(windows, cfg=cfg) if cfg.hidden_from == "residual" else None
  steps = readout(params, hs, cfg=cfg, anchor=anchor)
  aux = {"steps": steps, "hidden": hs, "state": final,
         "next_state": LSTMState(h=hs[:, 0], c=cs[0])}
  return steps[:, -1], aux


def loss(params: Params, windows: jax.Array, targets: jax.Array, *, cfg: RoloConfig,
         state0: Optional[LSTMState] = None, checkpoint: bool = False) -> Tuple[jax.Array, Dict[str, Any]]:
  """Training loss of a batch of windows (module docstring).

  Args:
    windows: [B, N, D].
    targets: the ground truth of each window's LAST frame: [B, 4] relative (cx, cy, w, h) (coord) or
      [B, heatmap_size²] masks (heatmap; ``box_to_mask``).
  Returns:
    (loss scalar, aux) — aux as ``apply``'s plus 'pred'.
  """
  pred, aux = apply(params, windows, cfg=cfg, state0=state0, checkpoint=checkpoint)
  if targets.shape != pred.shape:
    raise ValueError(f"rolo.loss: targets must be {pred.shape} (the last frame of each window), "
                     f"got {targets.shape}")
  err = jnp.square(pred - targets.astype(pred.dtype))
  if cfg.mode == "coord":
    value = cfg.coord_loss_scale * jnp.mean(err)
  else:
    value = jnp.mean(jnp.sum(err, axis=-1))
  return value, dict(aux, pred=pred)


# --------------------------------------------------------------------------------------------------
# heatmaps

def box_to_mask(box, size: int = 32) -> jax.Array:
  """Rasterises relative (cx, cy, w, h) boxes to size×size binary masks, flattened row-major.

  Cell (r, c) covers [c/size, (c+1)/size) × [r/size, (r+1)/size) of the image; it is 1 when it
  overlaps the box (x1, x2) × (y1, y2) = (cx ∓ w/2) × (cy ∓ h/2) with positive area, else 0. A box
  of zero width or height (no detection) gives an all-zero mask. Jittable.

  Args:
    box: [..., 4] relative (cx, cy, w, h).
  Returns:
    float32 [..., size²].
  """
  box = jnp.asarray(box, jnp.float32)
  cx, cy, w, h = (box[..., k] for k in range(4))
  edges = jnp.arange(size + 1, dtype=jnp.float32) / size
  lo, hi = edges[:-1], edges[1:]

  def overlap(a1, a2):  # [..., size] 1D overlap of each cell with (a1, a2)
    return (jnp.minimum(a2[..., None], hi) - jnp.maximum(a1[..., None], lo)) > 0

  ox = overlap(cx - w / 2, cx + w / 2)
  oy = overlap(cy - h / 2, cy + h / 2)
  mask = oy[..., :, None] & ox[..., None, :]
  return mask.reshape(mask.shape[:-2] + (size * size,)).astype(jnp.float32)


def heatmap_to_box(heatmap, threshold: float = 0.5, size: int = 32) -> jax.Array:
  """Decodes heatmaps to boxes: the bounding box of the cells with value > threshold.

  When no cell exceeds the threshold, the cell(s) holding the maximum value are used instead, so a
  box always comes out. Inverse of ``box_to_mask`` for boxes on the cell grid. Jittable.

  Args:
    heatmap: [..., size²] (flattened row-major) or [..., size, size].
    threshold: cell threshold.
    size: heatmap side.
  Returns:
    [..., 4] relative (cx, cy, w, h): x1 = first column / size, x2 = (last column + 1) / size, etc.
  """
  hm = jnp.asarray(heatmap, jnp.float32)
  side = size
  if hm.shape[-1] == size * size:
    hm = hm.reshape(hm.shape[:-1] + (size, size))
  elif hm.shape[-2:] != (size, size):
    raise ValueError(f"heatmap_to_box: expected [..., {size * size}] or [..., {size}, {size}], "
                     f"got {hm.shape}")
  mask = hm > threshold
  peak = hm >= jnp.max(hm, axis=(-2, -1), keepdims=True)
  mask = jnp.where(jnp.any(mask, axis=(-2, -1), keepdims=True), mask, peak)
  cols = jnp.any(mask, axis=-2)   # [..., side]
  rows = jnp.any(mask, axis=-1)
  first = lambda v: jnp.argmax(v, axis=-1)
  last = lambda v: side - 1 - jnp.argmax(v[..., ::-1], axis=-1)
  x1, x2 = first(cols) / side, (last(cols) + 1) / side
  y1, y2 = first(rows) / side, (last(rows) + 1) / side
  return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1).astype(jnp.float32)


# --------------------------------------------------------------------------------------------------
# sequences and windows

def hold_locations(locations) -> np.ndarray:
  """Held location vectors (module docstring, ``hold_detection``).

  Args:
    locations: [T, 6] (0, x, y, w, h, 0) per frame, all zeros where no detection was assigned.
  Returns:
    float32 [T, 6]: (0, x, y, w, h, 1) where frame t has a detection, else the latest earlier
    detection's (0, x, y, w, h, 0), zeros before the first detection.
  """
  loc = np.asarray(locations, np.float32).reshape(-1, LOCATION_DIM)
  has = np.any(loc[:, 1:5] != 0, axis=1)
  t = np.arange(len(loc))
  last = np.maximum.accumulate(np.where(has, t, -1)) if len(loc) else np.zeros(0, np.int64)
  out = np.where((last >= 0)[:, None], loc[np.maximum(last, 0)], 0.0).astype(np.float32)
  out[:, 0] = 0.0
  out[:, 5] = has.astype(np.float32)
  return out


def frame_inputs(features, locations, *, cfg: RoloConfig) -> jax.Array:
  """Per-frame LSTM inputs.

  Args:
    features: [T, F] visual features.
    locations: [T, 6] location vectors (0, x, y, w, h, 0) (``rolo_jax.rolo.assign``); zeros where
      no detection was assigned.
  Returns:
    float32 [T, D]: [features, locations] (coord) or [features, box_to_mask(x, y, w, h)] (heatmap).
  """
  features = jnp.asarray(features, jnp.float32)
  locations = jnp.asarray(locations, jnp.float32)
  if features.ndim != 2 or features.shape[1] != cfg.feature_dim:
    raise ValueError(f"frame_inputs: features must be [T, {cfg.feature_dim}], got {features.shape}")
  if locations.shape != (features.shape[0], LOCATION_DIM):
    raise ValueError(f"frame_inputs: locations must be [{features.shape[0]}, 6], got {locations.shape}")
  if cfg.mode == "coord":
    loc = locations
  else:
    loc = box_to_mask(locations[:, 1:5], cfg.heatmap_size)
  return jnp.concatenate([features, loc], axis=-1)


def window_end_frames(num_frames: int, window: int, *, pad_first: bool = True) -> np.ndarray:
  """Index of the last frame of every window (the frame it predicts and is scored on).

  pad_first=True: one window per frame, window t ends at frame t (t = 0 .. T-1).
  pad_first=False: only full windows, window k ends at frame k + N - 1.
  """
  start = 0 if pad_first else window - 1
  return np.arange(start, num_frames, dtype=np.int64)


def make_windows(inputs, window: int, *, pad_first: bool = True) -> jax.Array:
  """Sliding windows of N consecutive frame inputs, one frame apart.

  Window k holds frames e - N + 1 .. e (oldest first) with e = ``window_end_frames(...)[k]``; with
  ``pad_first`` frames before 0 are replaced by frame 0 (the target has not moved yet), so every
  frame gets a window.

  Args:
    inputs: [T, D].
  Returns:
    [T, N, D] (pad_first) or [T - N + 1, N, D].
  """
  inputs = jnp.asarray(inputs)
  T = inputs.shape[0]
  if not pad_first and T < window:
    raise ValueError(f"make_windows: {T} frames are fewer than one window of {window}")
  ends = window_end_frames(T, window, pad_first=pad_first)
  idx = np.maximum(ends[:, None] - (window - 1) + np.arange(window)[None, :], 0)
  return inputs[idx]


def window_targets(targets, window: int, *, pad_first: bool = True):
  """The target of every window: the ground truth of its LAST frame, ``targets[window_end_frames]``.

  Args:
    targets: [T, ...] per-frame ground truth.
  Returns:
    [num_windows, ...].
  """
  ends = window_end_frames(len(targets), window, pad_first=pad_first)
  return targets[ends]


def track_sequence(params: Params, inputs, *, cfg: RoloConfig) -> jax.Array:
  """A prediction for every frame of a sequence.

  Zero-state mode: every frame t gets the window ending at t (``make_windows(pad_first=True)``), all
  windows run as one batch. Carried-state mode: one LSTM run over the whole sequence, which equals
  the carried windows (module docstring).

  Args:
    inputs: [T, D] frame inputs (``frame_inputs``).
  Returns:
    [T, out_dim]: row t predicts frame t.
  """
  inputs = jnp.asarray(inputs, jnp.float32)
  if cfg.carry_state:
    _, aux = apply(params, inputs[None], cfg=cfg)
    return aux["steps"][0]
  pred, _ = apply(params, make_windows(inputs, cfg.window, pad_first=True), cfg=cfg)
  return pred
