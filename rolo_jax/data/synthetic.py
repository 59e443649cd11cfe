"""Deterministic synthetic tracking videos: the project's embedded default data.

Every command works with nothing downloaded because a seed is enough to make a video.  The
generator follows the Re3 paper's recipe (an object patch moved by random walks of speed, angle,
size and aspect over a background image, plus occluder patches) and adds the nuisances real
videos have: look-alike distractors, motion blur, illumination drift, camera pan and targets that
partly (or fully) leave the frame.

Determinism: all randomness comes from ``np.random.Generator(np.random.PCG64(seed))`` and is drawn
before rendering, in a fixed order.  Rendering uses only IEEE-exact elementwise arithmetic
(``+ - * /``, comparisons, rounding) on numpy arrays, integer look-up tables and OpenCV's bit-exact
``INTER_LINEAR_EXACT`` resize of uint8 images; transcendental functions (sin, cos, exp) are only
evaluated in float64 on per-sequence quantities, where a last-bit difference between math libraries
cannot move a value across a uint8 rounding boundary in practice.  So the same seed gives the same
uint8 frames, whatever the machine or thread count.

Model (per object; ``u = sqrt(H * W)`` is the frame's size unit, ``n ~ N(0, 1)`` fresh each step)::

  speed   s_{t+1} = clip(s_t + sigma_v u n, 0, v_max u)
  heading a_{t+1} = a_t + sigma_a n
  centre  c_{t+1} = c_t + s_t (cos a_t, sin a_t), reflected at the borders of the domain
          [-m w, W + m w] x [-m h, H + m h]; m = -1/2 keeps the object inside the frame,
          m > 1/2 lets it leave completely (sequences with partial exit draw m > 0)
  size    d_{t+1} = rho d_t + sigma_s n,  log z_{t+1} = log z_t + d_{t+1}   (z = sqrt(w h)),
          clipped to [min_size_px, max_size u] (the velocity d bounces at the limits)
  aspect  the same random walk on log(w / h), clipped to `aspect_range`

Distractors (same class, jittered colours and pattern) do their own walk plus a rendezvous bump
``p(t) += exp(-(t - t_c)^2 / (2 tau^2)) (q - p(t_c))`` that brings them to a point ``q`` near the
target at a random time ``t_c``.  Occluders move on straight lines that pass near the target at
their own ``t_c``.  Layers are composited back to front with premultiplied alpha::

  I <- I (1 - alpha) + alpha rgb          (per layer; alpha in [0, 1] from the object's mask)
  frame = clip(round(g_c(t) I + o(t)), 0, 255)      (illumination: per-channel gain, offset)

with motion blur (when on) the mean of the layer's premultiplied RGBA over integer shifts along
the motion direction, over a length ``motion_blur_strength * |velocity|`` pixels.

Ground truth.  An object's mask is ``alpha >= 1/2`` of its resized sprite.  The box is the tight
box of the FULL object's mask clipped to the image (x, y, w, h, pixel-edge coordinates: mask pixel
columns x0..x1 give x = x0, w = x1 - x0 + 1), so a target half behind an occluder keeps its full
box, as OTB annotates it.  The box is NaN when the visible fraction

  visible_fraction = |mask & in frame & not covered by a layer in front| / |mask|

is below `min_visible` (fully occluded or out of view).  ``meta['occluded']`` marks frames where at
least `occluded_threshold` of the object's area is covered by a layer in front.

Seeds of the splits (`make_split`): train uses seeds ``0 .. n-1``, test uses
``TEST_SEED_OFFSET + i = 10**6 + i``; each split holds at most 10**6 sequences, so they never meet.
Multi-object videos seed ``PCG64([seed, 1])`` so that they do not share streams with the
single-object video of the same seed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from rolo_jax.data.sequence import ArrayFrames, MultiSequence, Objects, Sequence

CLASS_NAMES: Tuple[str, ...] = ("disc", "square", "triangle", "ring", "cross", "star")

TRAIN_SEED_OFFSET = 0
TEST_SEED_OFFSET = 10**6
MAX_SPLIT_SIZE = 10**6
_MULTI_TAG = 1


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What the synthetic videos look like.  Ranges are (low, high), sampled uniformly per sequence.

  Sizes are fractions of the frame's size unit ``sqrt(height * width)`` unless named ``_px``;
  speeds are such fractions per frame.
  """
  height: int = 128
  width: int = 160
  num_frames: int = 64
  classes: Tuple[str, ...] = CLASS_NAMES
  texture_size: int = 48              # side (px) of the sprite each object is resized from
  # Target geometry and motion.
  target_size: Tuple[float, float] = (0.12, 0.3)   # initial sqrt(w h)
  min_size_px: float = 8.0
  max_size: float = 0.6
  aspect_range: Tuple[float, float] = (0.45, 2.2)   # limits of w / h
  initial_aspect: Tuple[float, float] = (0.6, 1.6)
  speed: Tuple[float, float] = (0.0, 0.025)         # initial speed
  max_speed: float = 0.045
  speed_sigma: float = 0.002
  angle_sigma: float = 0.12                          # radians per frame
  size_momentum: float = 0.9                         # rho of the size and aspect walks
  scale_change_prob: float = 0.5                     # P(sequence has a strong size walk)
  scale_sigma: float = 0.004                         # sigma_s of a strong walk (weak: / 5)
  aspect_change_prob: float = 0.4
  aspect_sigma: float = 0.003
  partial_exit_prob: float = 0.3                     # P(target may leave the frame)
  exit_margin: Tuple[float, float] = (0.0, 0.75)     # m when it may (> 0.5: fully out)
  # Other layers.
  num_distractors: Tuple[int, int] = (0, 2)          # inclusive range
  distractor_color_jitter: float = 24.0              # std of the colour change (0..255 levels)
  num_occluders: Tuple[int, int] = (0, 2)
  occluder_size: Tuple[float, float] = (0.6, 1.8)    # relative to the target's size at crossing
  occluder_speed: Tuple[float, float] = (0.01, 0.035)
  background_clutter: Tuple[int, int] = (0, 4)       # static shapes painted into the background
  camera_pan: float = 0.08                           # background margin the camera can pan over
  # Image nuisances.
  motion_blur_prob: float = 0.3
  motion_blur_strength: float = 1.0                  # blur length / speed
  illumination_prob: float = 0.4
  illumination_strength: float = 0.35                # amplitude of log gain
  # Ground truth.
  min_visible: float = 0.05
  occluded_threshold: float = 0.1
  # Multi-object videos.
  num_targets: Tuple[int, int] = (2, 4)
  crossing_prob: float = 0.7

  def __post_init__(self):
    if self.height < 16 or self.width < 16:
      raise ValueError(f"frames must be at least 16x16, got {self.height}x{self.width}")
    if self.num_frames < 1:
      raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
    unknown = [c for c in self.classes if c not in CLASS_NAMES]
    if unknown or not self.classes:
      raise ValueError(f"classes must be a non-empty subset of {CLASS_NAMES}, got {self.classes}")
    for f in ("num_distractors", "num_occluders", "background_clutter", "num_targets"):
      lo, hi = getattr(self, f)
      if not 0 <= lo <= hi:
        raise ValueError(f"{f} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")

  @property
  def unit(self) -> float:
    return math.sqrt(self.height * self.width)


PRESETS: Dict[str, SyntheticConfig] = {
    # CPU training: short clips (Re3 unrolls up to 32 steps).
    "train": SyntheticConfig(),
    # Evaluation: longer videos, same distribution.
    "test": SyntheticConfig(num_frames=150),
    # Closer to real video sizes (OTB frames are ~360x480 and larger).
    "large": SyntheticConfig(height=360, width=480, num_frames=100, texture_size=96,
                             min_size_px=12.0),
}


# ----------------------------------------------------------------------------------------------
# Appearance: sprites (RGBA uint8, square, `texture_size` px) made from a parameter dict.


def _grid(size: int):
  """Pixel-centre coordinates in [-1, 1]: u[i] = (2 i + 1) / size - 1."""
  c = (2.0 * np.arange(size) + 1.0) / size - 1.0
  return c[None, :], c[:, None]   # u [1, S], v [S, 1]


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray, p: Dict[str, Any]) -> np.ndarray:
  """Approximate signed distance to the shape's outline (negative inside), in [-1, 1] units."""
  r = np.sqrt(u * u + v * v)
  if shape == "disc":
    return r - 1.0
  if shape == "square":   # rounded square filling the sprite
    k = p["corner"]
    qx = np.maximum(np.abs(u) - (1.0 - k), 0.0)
    qy = np.maximum(np.abs(v) - (1.0 - k), 0.0)
    return np.sqrt(qx * qx + qy * qy) - k
  if shape == "triangle":   # apex at the top, base at the bottom
    return np.maximum(v - 1.0, (2.0 * np.abs(u) - v - 1.0) / math.sqrt(5.0))
  if shape == "ring":
    t = p["thickness"]
    return np.abs(r - (1.0 - t)) - t
  if shape == "cross":
    a = p["arm"]
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - a, av - 1.0), np.maximum(au - 1.0, av - a))
  if shape == "star":
    n, k = p["points"], p["inner"]
    theta = np.arctan2(v, u) + math.pi / 2 + p["twist"]
    sector = 2.0 * math.pi / n
    f = np.abs(np.mod(theta, sector) / sector * 2.0 - 1.0)   # 1 at a tip, 0 between tips
    return (r - (k + (1.0 - k) * f)) * 0.8
  if shape == "ellipse":
    return r - 1.0
  raise ValueError(f"unknown shape {shape!r}")


def _pattern(kind: str, u, v, p: Dict[str, Any]) -> np.ndarray:
  """Procedural texture in [0, 1] on the sprite grid."""
  f, ph = p["freq"], p["phase"]
  if kind == "disc":       # concentric waves
    r = np.sqrt(u * u + v * v)
    return 0.5 + 0.5 * np.cos(2.0 * math.pi * f * r + ph)
  if kind == "square":     # soft checkerboard
    s = np.sin(math.pi * f * u + ph) * np.sin(math.pi * f * v + ph)
    return 0.5 + 0.5 * np.clip(3.0 * s, -1.0, 1.0)
  if kind == "triangle":   # oriented stripes
    ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
    return 0.5 + 0.5 * np.cos(math.pi * f * (u * ca + v * sa) + ph)
  if kind == "ring":       # angular bands
    return 0.5 + 0.5 * np.cos(p["bands"] * np.arctan2(v, u) + ph)
  if kind == "cross":      # plaid
    return 0.25 * (2.0 + np.cos(math.pi * f * u + ph) + np.cos(math.pi * f * v + 2.0 * ph))
  if kind == "star":       # radial gradient with a ripple
    r = np.sqrt(u * u + v * v)
    return np.clip(1.0 - r + 0.15 * np.cos(2.0 * math.pi * f * r + ph), 0.0, 1.0)
  if kind == "occluder":   # bark-like: stretched stripes plus noise (noise added by the caller)
    ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
    w = u * ca + v * sa
    return 0.5 + 0.35 * np.cos(math.pi * f * w + ph) + 0.15 * np.cos(math.pi * 3.1 * f * w)
  raise ValueError(f"unknown pattern {kind!r}")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  return rng.uniform(0.0, 255.0, size=3)


def _sample_appearance(rng: np.random.Generator, cls: str, occluder: bool = False) -> Dict[str, Any]:
  """Parameters of an object's look (shape, pattern, palette, noise seed)."""
  c0 = _random_colour(rng)
  c1 = np.mod(c0 + rng.uniform(70.0, 186.0, size=3), 256.0)   # far from c0 in every channel
  p = {
      "shape": cls, "pattern": cls, "c0": c0, "c1": c1,
      "freq": float(rng.uniform(1.0, 3.0)), "phase": float(rng.uniform(0.0, 2 * math.pi)),
      "angle": float(rng.uniform(0.0, math.pi)), "bands": int(rng.integers(3, 8)),
      "corner": float(rng.uniform(0.1, 0.4)), "thickness": float(rng.uniform(0.2, 0.32)),
      "arm": float(rng.uniform(0.28, 0.45)), "points": int(rng.integers(4, 8)),
      "inner": float(rng.uniform(0.4, 0.6)), "twist": float(rng.uniform(-0.3, 0.3)),
      "light": float(rng.uniform(0.0, 2 * math.pi)), "noise": float(rng.uniform(8.0, 24.0)),
      "noise_seed": int(rng.integers(0, 2**31)),
  }
  if occluder:
    grey = rng.uniform(40.0, 200.0)
    tint = rng.uniform(-30.0, 30.0, size=3)
    p.update(shape=str(rng.choice(["square", "ellipse"])), pattern="occluder",
             c0=np.clip(grey + tint, 0, 255), c1=np.clip(grey * 0.55 + tint, 0, 255),
             freq=float(rng.uniform(2.0, 6.0)), corner=float(rng.uniform(0.0, 0.3)),
             noise=float(rng.uniform(10.0, 30.0)))
  return p


def _jitter_appearance(rng: np.random.Generator, p: Dict[str, Any], jitter: float) -> Dict[str, Any]:
  """A look-alike: same shape and pattern, colours and pattern parameters slightly changed."""
  q = dict(p)
  q["c0"] = np.clip(p["c0"] + rng.normal(0.0, jitter, size=3), 0.0, 255.0)
  q["c1"] = np.clip(p["c1"] + rng.normal(0.0, jitter, size=3), 0.0, 255.0)
  q["freq"] = p["freq"] * float(rng.uniform(0.85, 1.15))
  q["phase"] = float(rng.uniform(0.0, 2 * math.pi))
  q["light"] = p["light"] + float(rng.uniform(-0.5, 0.5))
  q["noise_seed"] = int(rng.integers(0, 2**31))
  return q


def _smooth_noise(seed: int, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
  """Value noise in [0, 1): uint8 noise on a coarse grid, bit-exact bilinear upsampling."""
  g = np.random.Generator(np.random.PCG64(seed))
  coarse = g.integers(0, 256, size=(max(2, h // cell + 2), max(2, w // cell + 2), channels),
                      dtype=np.uint8)
  big = cv2.resize(coarse, (coarse.shape[1] * cell, coarse.shape[0] * cell),
                   interpolation=cv2.INTER_LINEAR_EXACT)
  if big.ndim == 2:
    big = big[..., None]
  return big[cell // 2:cell // 2 + h, cell // 2:cell // 2 + w].astype(np.float64) / 256.0


def render_sprite(p: Dict[str, Any], size: int) -> np.ndarray:
  """The object's sprite: uint8 [size, size, 4] RGBA (alpha: anti-aliased shape)."""
  u, v = _grid(size)
  d = _shape_distance(p["shape"], u, v, p)
  alpha = np.clip(0.5 - d * (size / 2.0), 0.0, 1.0)
  t = _pattern(p["pattern"], u, v, p)
  shade = 1.0 + 0.22 * (u * math.cos(p["light"]) + v * math.sin(p["light"]))
  noise = _smooth_noise(p["noise_seed"], size, size, max(2, size // 8))[..., 0] - 0.5
  rgb = (p["c0"] + (p["c1"] - p["c0"]) * t[..., None]) * shade[..., None]
  rgb = rgb + (noise * (2.0 * p["noise"]))[..., None]
  out = np.empty((size, size, 4), np.uint8)
  out[..., :3] = np.clip(np.floor(rgb + 0.5), 0, 255)
  out[..., 3] = np.clip(np.floor(alpha * 255.0 + 0.5), 0, 255)
  return out


# ----------------------------------------------------------------------------------------------
# Backgrounds.


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """Textured background uint8 [h, w, 3]: oriented sinusoids + value noise + a gradient, mapped
  through a random 3-colour palette, times a smooth shading field."""
  yy = np.arange(h, dtype=np.float64)[:, None]
  xx = np.arange(w, dtype=np.float64)[None, :]
  scale = math.sqrt(h * w)
  n_waves = int(rng.integers(3, 7))
  field = np.zeros((h, w))
  for _ in range(n_waves):
    cycles = math.exp(rng.uniform(math.log(1.0), math.log(14.0)))   # per frame unit
    ang = rng.uniform(0.0, math.pi)
    ph = rng.uniform(0.0, 2 * math.pi)
    amp = rng.uniform(0.3, 1.0) / math.sqrt(cycles)
    kx = 2 * math.pi * cycles * math.cos(ang) / scale
    ky = 2 * math.pi * cycles * math.sin(ang) / scale
    # cos(kx x + ky y + ph) = cos(kx x) cos(ky y + ph) - sin(kx x) sin(ky y + ph): O(h + w) trig.
    field += amp * (np.cos(kx * xx) * np.cos(ky * yy + ph) - np.sin(kx * xx) * np.sin(ky * yy + ph))
  noise_seed = int(rng.integers(0, 2**31))
  cell = int(rng.integers(4, 16))
  noise = _smooth_noise(noise_seed, h, w, cell)[..., 0] + 0.5 * _smooth_noise(
      noise_seed + 1, h, w, max(2, cell // 3))[..., 0]
  g_ang = rng.uniform(0.0, 2 * math.pi)
  grad = (xx * math.cos(g_ang) + yy * math.sin(g_ang)) / scale
  w_wave, w_noise, w_grad = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.8)
  f = w_wave * field + w_noise * noise + w_grad * grad
  f = (f - f.min()) / max(f.max() - f.min(), 1e-9)
  stops = rng.uniform(0.0, 255.0, size=(3, 3))
  rgb = np.empty((h, w, 3))
  for c in range(3):
    rgb[..., c] = np.interp(f, [0.0, 0.5, 1.0], stops[:, c])
  shade_seed = int(rng.integers(0, 2**31))
  shade = 0.75 + 0.5 * _smooth_noise(shade_seed, h, w, max(8, int(scale) // 3))[..., 0]
  rgb *= shade[..., None]
  return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Motion.


class _Track(NamedTuple):
  cx: np.ndarray   # [T] float64 centre
  cy: np.ndarray
  w: np.ndarray    # [T] width, height (px)
  h: np.ndarray


def _walk(rng: np.random.Generator, cfg: SyntheticConfig, size0: float, aspect0: float,
          margin: float, scale_sigma: float, aspect_sigma: float) -> _Track:
  """One object's random walk of speed, heading, size and aspect (see module docstring)."""
  T, H, W, u = cfg.num_frames, cfg.height, cfg.width, cfg.unit
  noise = rng.standard_normal((T, 4))
  speed = rng.uniform(*cfg.speed) * u
  angle = rng.uniform(0.0, 2 * math.pi)
  log_z, log_a = math.log(size0), math.log(aspect0)
  z_lo, z_hi = math.log(cfg.min_size_px), math.log(max(cfg.max_size * u, cfg.min_size_px + 1))
  a_lo, a_hi = math.log(cfg.aspect_range[0]), math.log(cfg.aspect_range[1])
  dz = da = 0.0
  z = math.exp(log_z)
  w, h = z * math.exp(0.5 * log_a), z * math.exp(-0.5 * log_a)
  # The walk starts with the whole object inside the frame (a tracker is initialised on the whole
  # object); with margin > -0.5 it may leave the frame later.
  lo_x, hi_x = _domain(W, w, min(margin, -0.5))
  lo_y, hi_y = _domain(H, h, min(margin, -0.5))
  x = rng.uniform(min(lo_x, hi_x), max(lo_x, hi_x))
  y = rng.uniform(min(lo_y, hi_y), max(lo_y, hi_y))
  v_max = cfg.max_speed * u
  cx, cy, ws, hs = (np.empty(T) for _ in range(4))
  for t in range(T):
    cx[t], cy[t], ws[t], hs[t] = x, y, w, h
    n_v, n_a, n_z, n_r = noise[t]
    x += speed * math.cos(angle)
    y += speed * math.sin(angle)
    speed = min(max(speed + cfg.speed_sigma * u * n_v, 0.0), v_max)
    angle += cfg.angle_sigma * n_a
    dz = cfg.size_momentum * dz + scale_sigma * n_z
    log_z += dz
    if log_z < z_lo or log_z > z_hi:
      log_z = min(max(log_z, z_lo), z_hi)
      dz = -dz
    da = cfg.size_momentum * da + aspect_sigma * n_r
    log_a += da
    if log_a < a_lo or log_a > a_hi:
      log_a = min(max(log_a, a_lo), a_hi)
      da = -da
    z = math.exp(log_z)
    w, h = z * math.exp(0.5 * log_a), z * math.exp(-0.5 * log_a)
    lo, hi = _domain(W, w, margin)
    if x < lo or x > hi:
      x = 2 * lo - x if x < lo else 2 * hi - x
      x = min(max(x, lo), hi) if lo <= hi else 0.5 * W
      angle = math.pi - angle
    lo, hi = _domain(H, h, margin)
    if y < lo or y > hi:
      y = 2 * lo - y if y < lo else 2 * hi - y
      y = min(max(y, lo), hi) if lo <= hi else 0.5 * H
      angle = -angle
  return _Track(cx, cy, ws, hs)


def _domain(extent: float, size: float, margin: float) -> Tuple[float, float]:
  """Allowed centre coordinates: [-margin size, extent + margin size]."""
  return -margin * size, extent + margin * size


def _rendezvous(track: _Track, t_c: int, goal: Tuple[float, float], tau: float) -> _Track:
  """Adds a Gaussian-in-time bump so that the centre is exactly `goal` at frame `t_c`."""
  t = np.arange(len(track.cx), dtype=np.float64)
  bump = np.exp(-0.5 * ((t - t_c) / tau) ** 2)
  dx, dy = goal[0] - track.cx[t_c], goal[1] - track.cy[t_c]
  return track._replace(cx=track.cx + bump * dx, cy=track.cy + bump * dy)


def _line(cfg: SyntheticConfig, t_c: int, goal: Tuple[float, float], speed: float, angle: float,
          w: float, h: float) -> _Track:
  """Straight-line motion through `goal` at frame `t_c` (occluders)."""
  t = np.arange(cfg.num_frames, dtype=np.float64) - t_c
  return _Track(goal[0] + speed * math.cos(angle) * t, goal[1] + speed * math.sin(angle) * t,
                np.full(cfg.num_frames, w), np.full(cfg.num_frames, h))


# ----------------------------------------------------------------------------------------------
# Rendering.


class _Layer(NamedTuple):
  sprite: np.ndarray    # uint8 [S, S, 4]
  track: _Track
  target: int           # index among the annotated targets, -1 for distractors / occluders


class _Scene(NamedTuple):
  canvas: np.ndarray    # uint8 [H + 2 py, W + 2 px, 3]
  camera: np.ndarray    # int [T, 2] (x, y) offsets into the canvas
  layers: List[_Layer]  # back to front
  gain: Optional[np.ndarray]    # [T, 3] or None
  offset: Optional[np.ndarray]  # [T] or None
  blur: bool


class _Rendered(NamedTuple):
  frames: np.ndarray          # uint8 [T, H, W, 3]
  boxes: np.ndarray           # [K, T, 4] float64, NaN where hidden
  visible: np.ndarray         # [K, T] visible fraction
  in_frame: np.ndarray        # [K, T] fraction of the object inside the image
  covered: np.ndarray         # [K, T] fraction of the object covered by layers in front
  size: np.ndarray            # [K, T, 2] rendered sprite (w, h) px
  masks: Optional[np.ndarray]          # [K, T, H, W] bool (debug)
  visible_masks: Optional[np.ndarray]  # [K, T, H, W] bool (debug)


def _blur_taps(vx: float, vy: float, strength: float) -> Optional[List[Tuple[int, int]]]:
  """Integer offsets along the motion direction for a box blur of length strength*|v|."""
  length = strength * math.hypot(vx, vy)
  if length < 1.5:
    return None
  n = int(length) + 1
  ux, uy = vx / math.hypot(vx, vy), vy / math.hypot(vx, vy)
  taps = []
  for i in range(n):
    s = (i / (n - 1) - 0.5) * length
    taps.append((int(math.floor(s * ux + 0.5)), int(math.floor(s * uy + 0.5))))
  return taps


_INV255 = np.float32(1.0 / 255.0)


def _composite(frame: np.ndarray, patch: np.ndarray, x0: int, y0: int,
               taps: Optional[List[Tuple[int, int]]]) -> None:
  """Blends an RGBA uint8 patch whose top-left corner is (x0, y0) into `frame` in place."""
  H, W = frame.shape[:2]
  h, w = patch.shape[:2]
  if taps is None:
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx0 >= fx1 or fy0 >= fy1:
      return
    p = patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    a = p[..., 3:4].astype(np.float32) * _INV255
    pre = p[..., :3].astype(np.float32) * a
  else:
    pad = max(max(abs(dx), abs(dy)) for dx, dy in taps)
    a0 = patch[..., 3:4].astype(np.float32) * _INV255
    src = np.concatenate([patch[..., :3].astype(np.float32) * a0, a0], axis=-1)
    acc = np.zeros((h + 2 * pad, w + 2 * pad, 4), np.float32)
    for dx, dy in taps:
      acc[pad + dy:pad + dy + h, pad + dx:pad + dx + w] += src
    acc *= np.float32(1.0 / len(taps))
    x0, y0 = x0 - pad, y0 - pad
    h, w = h + 2 * pad, w + 2 * pad
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx0 >= fx1 or fy0 >= fy1:
      return
    acc = acc[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    pre, a = acc[..., :3], acc[..., 3:4]
  region = frame[fy0:fy1, fx0:fx1]
  out = region.astype(np.float32) * (np.float32(1.0) - a) + pre
  out += np.float32(0.5)
  np.minimum(out, np.float32(255.0), out=out)
  region[...] = out.astype(np.uint8)


def _render(cfg: SyntheticConfig, scene: _Scene, num_targets: int, debug: bool) -> _Rendered:
  T, H, W = cfg.num_frames, cfg.height, cfg.width
  K = num_targets
  frames = np.empty((T, H, W, 3), np.uint8)
  boxes = np.full((K, T, 4), np.nan)
  visible = np.zeros((K, T))
  in_frame = np.zeros((K, T))
  covered = np.zeros((K, T))
  size = np.zeros((K, T, 2))
  masks = np.zeros((K, T, H, W), bool) if debug else None
  vmasks = np.zeros((K, T, H, W), bool) if debug else None
  # Integer geometry of every layer, all frames at once.
  geo = []
  for layer in scene.layers:
    tr = layer.track
    wp = np.maximum(2, np.floor(tr.w + 0.5)).astype(np.int64)
    hp = np.maximum(2, np.floor(tr.h + 0.5)).astype(np.int64)
    x0 = np.floor(tr.cx - 0.5 * wp + 0.5).astype(np.int64)
    y0 = np.floor(tr.cy - 0.5 * hp + 0.5).astype(np.int64)
    vx = np.diff(tr.cx, prepend=tr.cx[:1] if T < 2 else 2 * tr.cx[:1] - tr.cx[1:2])
    vy = np.diff(tr.cy, prepend=tr.cy[:1] if T < 2 else 2 * tr.cy[:1] - tr.cy[1:2])
    geo.append((wp, hp, x0, y0, vx, vy))
  lut = None
  if scene.gain is not None:
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.empty((256, 1, 3), np.uint8)
  for t in range(T):
    frame = frames[t]
    ox, oy = scene.camera[t]
    frame[...] = scene.canvas[oy:oy + H, ox:ox + W]
    drawn = []   # targets drawn so far: (k, x0, y0, mask, cover)
    for layer, (wp, hp, x0s, y0s, vx, vy) in zip(scene.layers, geo):
      w, h, x0, y0 = int(wp[t]), int(hp[t]), int(x0s[t]), int(y0s[t])
      if layer.target >= 0:
        size[layer.target, t] = (w, h)
      taps = _blur_taps(float(vx[t]), float(vy[t]), cfg.motion_blur_strength) if scene.blur else None
      reach = 0 if taps is None else max(max(abs(a), abs(b)) for a, b in taps)
      if x0 + w + reach <= 0 or y0 + h + reach <= 0 or x0 - reach >= W or y0 - reach >= H:
        continue   # wholly outside: invisible, and it hides nothing
      patch = cv2.resize(layer.sprite, (w, h), interpolation=cv2.INTER_LINEAR_EXACT)
      mask = patch[..., 3] >= 128
      for _, tx0, ty0, tmask, tcover in drawn:   # this layer is in front of those targets
        th, tw = tmask.shape
        ix0, iy0 = max(x0, tx0), max(y0, ty0)
        ix1, iy1 = min(x0 + w, tx0 + tw), min(y0 + h, ty0 + th)
        if ix0 < ix1 and iy0 < iy1:
          tcover[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0] |= mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
      if layer.target >= 0:
        drawn.append((layer.target, x0, y0, mask, np.zeros_like(mask)))
      _composite(frame, patch, x0, y0, taps)
    for k, x0, y0, mask, cover in drawn:
      total = int(np.count_nonzero(mask))
      if total == 0:
        continue
      h, w = mask.shape
      fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
      if fx0 >= fx1 or fy0 >= fy1:
        continue
      m_in = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
      c_in = cover[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] & m_in
      n_in, n_cov = int(np.count_nonzero(m_in)), int(np.count_nonzero(c_in))
      in_frame[k, t] = n_in / total
      covered[k, t] = n_cov / total
      visible[k, t] = (n_in - n_cov) / total
      if debug:
        masks[k, t, fy0:fy1, fx0:fx1] = m_in
        vmasks[k, t, fy0:fy1, fx0:fx1] = m_in & ~c_in
      if visible[k, t] >= cfg.min_visible:
        cols = np.flatnonzero(m_in.any(axis=0))
        rows = np.flatnonzero(m_in.any(axis=1))
        boxes[k, t] = (fx0 + cols[0], fy0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    if lut is not None:
      vals = levels * scene.gain[t][None, :] + scene.offset[t]
      lut[:, 0, :] = np.clip(np.floor(vals + 0.5), 0, 255)
      cv2.LUT(frame, lut, dst=frame)
  return _Rendered(frames, boxes, visible, in_frame, covered, size, masks, vmasks)


# ----------------------------------------------------------------------------------------------
# Scene assembly.


def _camera_and_canvas(rng: np.random.Generator, cfg: SyntheticConfig):
  T, H, W = cfg.num_frames, cfg.height, cfg.width
  px, py = int(round(cfg.camera_pan * W)), int(round(cfg.camera_pan * H))
  canvas = _background(rng, H + 2 * py, W + 2 * px)
  pan_speed = rng.uniform(0.0, 1.0) * 0.004 * cfg.unit
  noise = rng.standard_normal((T, 2))
  cam = np.empty((T, 2), np.int64)
  x, y = float(px), float(py)
  vx, vy = (rng.uniform(-1.0, 1.0, size=2) * pan_speed).tolist()
  for t in range(T):
    cam[t] = (int(math.floor(x + 0.5)), int(math.floor(y + 0.5)))
    vx = 0.95 * vx + 0.3 * pan_speed * noise[t, 0]
    vy = 0.95 * vy + 0.3 * pan_speed * noise[t, 1]
    x, y = x + vx, y + vy
    if x < 0 or x > 2 * px:
      x, vx = min(max(x, 0.0), 2.0 * px), -vx
    if y < 0 or y > 2 * py:
      y, vy = min(max(y, 0.0), 2.0 * py), -vy
  return canvas, cam


def _paint_clutter(rng: np.random.Generator, cfg: SyntheticConfig, canvas: np.ndarray) -> None:
  """Static shapes of random classes painted into the background (not annotated)."""
  n = int(rng.integers(cfg.background_clutter[0], cfg.background_clutter[1] + 1))
  for _ in range(n):
    cls = str(rng.choice(list(cfg.classes)))
    app = _sample_appearance(rng, cls)
    z = rng.uniform(*cfg.target_size) * cfg.unit
    a = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    w, h = max(2, int(z * math.sqrt(a))), max(2, int(z / math.sqrt(a)))
    x0 = int(rng.integers(-w // 2, canvas.shape[1] - w // 2))
    y0 = int(rng.integers(-h // 2, canvas.shape[0] - h // 2))
    sprite = render_sprite(app, cfg.texture_size)
    _composite(canvas, cv2.resize(sprite, (w, h), interpolation=cv2.INTER_LINEAR_EXACT), x0, y0,
               None)


def _illumination(rng: np.random.Generator, cfg: SyntheticConfig):
  """Per-frame gain [T, 3] and offset [T], or (None, None) when the sequence has no change.

  The same numbers are drawn either way, so switching the feature off changes nothing else.
  """
  T = cfg.num_frames
  on = bool(rng.uniform() < cfg.illumination_prob)
  period = rng.uniform(0.5, 2.0) * max(T, 2)
  phase, phase2 = rng.uniform(0.0, 2 * math.pi, size=2)
  amp = rng.uniform(0.4, 1.0)
  ramp = rng.uniform(-1.0, 1.0)
  tint = rng.uniform(-0.25, 0.25, size=3)
  off_amp = rng.uniform(-20.0, 20.0)
  if not on:
    return None, None
  s = cfg.illumination_strength
  t = np.arange(T, dtype=np.float64)
  base = s * (amp * np.sin(2 * math.pi * t / period + phase) + ramp * (t / max(T - 1, 1) - 0.5))
  gain = np.exp(base[:, None] + s * tint[None, :] * np.sin(2 * math.pi * t / (1.7 * period))[:, None])
  offset = s * off_amp * np.sin(2 * math.pi * t / (0.8 * period) + phase2)
  return gain, offset


def _target_walk(rng: np.random.Generator, cfg: SyntheticConfig):
  size0 = rng.uniform(*cfg.target_size) * cfg.unit
  size0 = min(max(size0, cfg.min_size_px), cfg.max_size * cfg.unit)
  aspect0 = rng.uniform(*cfg.initial_aspect)
  exits = bool(rng.uniform() < cfg.partial_exit_prob)
  margin = rng.uniform(*cfg.exit_margin) if exits else -0.5
  strong_scale = bool(rng.uniform() < cfg.scale_change_prob)
  strong_aspect = bool(rng.uniform() < cfg.aspect_change_prob)
  track = _walk(rng, cfg, size0, aspect0, margin,
                cfg.scale_sigma if strong_scale else cfg.scale_sigma / 5,
                cfg.aspect_sigma if strong_aspect else cfg.aspect_sigma / 5)
  info = {"may_exit": exits, "exit_margin": float(margin), "strong_scale_walk": strong_scale,
          "strong_aspect_walk": strong_aspect}
  return track, info


def _crossing_time(rng: np.random.Generator, T: int) -> int:
  return int(rng.integers(int(0.1 * T), max(int(0.9 * T), int(0.1 * T) + 1)))


def _occluder_layer(rng: np.random.Generator, cfg: SyntheticConfig, target: _Track) -> _Layer:
  t_c = _crossing_time(rng, cfg.num_frames)
  z_t = math.sqrt(target.w[t_c] * target.h[t_c])
  goal = (target.cx[t_c] + rng.normal(0.0, 0.3) * z_t, target.cy[t_c] + rng.normal(0.0, 0.3) * z_t)
  z = rng.uniform(*cfg.occluder_size) * z_t
  a = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
  speed = rng.uniform(*cfg.occluder_speed) * cfg.unit
  angle = rng.uniform(0.0, 2 * math.pi)
  track = _line(cfg, t_c, goal, speed, angle, z * math.sqrt(a), z / math.sqrt(a))
  app = _sample_appearance(rng, "square", occluder=True)
  return _Layer(render_sprite(app, cfg.texture_size), track, -1)


def _scene_common(rng, cfg):
  canvas, cam = _camera_and_canvas(rng, cfg)
  _paint_clutter(rng, cfg, canvas)
  gain, offset = _illumination(rng, cfg)
  blur = bool(rng.uniform() < cfg.motion_blur_prob)
  return canvas, cam, gain, offset, blur


# ----------------------------------------------------------------------------------------------
# Public API.


def make_sequence(seed: int, cfg: SyntheticConfig = PRESETS["train"], *,
                  debug: bool = False) -> Sequence:
  """One single-target video.

  Args:
    seed: any non-negative int; the video is a pure function of (seed, cfg).
    cfg: the look and length (`PRESETS['train' | 'test' | 'large']` or your own).
    debug: also return the target's masks (memory: T*H*W bools each).
  Returns:
    Sequence named 'synthetic-<seed>' with frames `ArrayFrames` uint8 [T, H, W, 3], boxes [T, 4]
    float64 (tight box of the full object clipped to the image; NaN when less than `min_visible`
    of it is visible) and meta:
      'class' (str), 'class_index' (int into CLASS_NAMES), 'seed',
      'visible_fraction' [T], 'in_frame_fraction' [T], 'covered_fraction' [T] (hidden by layers in
      front), 'occluded' [T] bool (covered_fraction >= occluded_threshold), 'out_of_view' [T] bool
      (part of the object, or all of it, is outside the image),
      'object_size' [T, 2] (w, h of the rendered sprite, px, unclipped),
      'num_distractors', 'num_occluders', 'motion_blur', 'illumination_change' (bools),
      'may_exit', 'exit_margin', 'strong_scale_walk', 'strong_aspect_walk';
      with debug: 'masks' and 'visible_masks' bool [T, H, W] (full object in the image / the part
      not covered).
  """
  rng = np.random.Generator(np.random.PCG64(seed))
  T = cfg.num_frames
  canvas, cam, gain, offset, blur = _scene_common(rng, cfg)
  cls = str(rng.choice(list(cfg.classes)))
  app = _sample_appearance(rng, cls)
  target, info = _target_walk(rng, cfg)
  layers_behind, layers_front = [], []
  n_dis = int(rng.integers(cfg.num_distractors[0], cfg.num_distractors[1] + 1))
  for _ in range(n_dis):
    d_app = _jitter_appearance(rng, app, cfg.distractor_color_jitter)
    z0 = math.sqrt(target.w[0] * target.h[0]) * rng.uniform(0.8, 1.25)
    a0 = target.w[0] / target.h[0] * rng.uniform(0.85, 1.15)
    a0 = min(max(a0, cfg.aspect_range[0]), cfg.aspect_range[1])
    walk = _walk(rng, cfg, z0, a0, 0.3, cfg.scale_sigma / 3, cfg.aspect_sigma / 3)
    t_c = _crossing_time(rng, T)
    z_t = math.sqrt(target.w[t_c] * target.h[t_c])
    goal = (target.cx[t_c] + rng.normal(0.0, 0.5) * z_t, target.cy[t_c] + rng.normal(0.0, 0.5) * z_t)
    walk = _rendezvous(walk, t_c, goal, rng.uniform(0.08, 0.2) * T)
    layer = _Layer(render_sprite(d_app, cfg.texture_size), walk, -1)
    (layers_front if rng.uniform() < 0.5 else layers_behind).append(layer)
  n_occ = int(rng.integers(cfg.num_occluders[0], cfg.num_occluders[1] + 1))
  occluders = [_occluder_layer(rng, cfg, target) for _ in range(n_occ)]
  layers = layers_behind + [_Layer(render_sprite(app, cfg.texture_size), target, 0)] + layers_front
  layers += occluders
  scene = _Scene(canvas, cam, layers, gain, offset, blur)
  r = _render(cfg, scene, 1, debug)
  meta: Dict[str, Any] = {
      "class": cls, "class_index": CLASS_NAMES.index(cls), "seed": int(seed),
      "visible_fraction": r.visible[0], "in_frame_fraction": r.in_frame[0],
      "covered_fraction": r.covered[0], "occluded": r.covered[0] >= cfg.occluded_threshold,
      "out_of_view": r.in_frame[0] < 1.0,
      "object_size": r.size[0], "num_distractors": n_dis, "num_occluders": n_occ,
      "motion_blur": blur, "illumination_change": gain is not None, **info,
  }
  if debug:
    meta["masks"], meta["visible_masks"] = r.masks[0], r.visible_masks[0]
  return Sequence(f"synthetic-{seed}", ArrayFrames(r.frames), r.boxes[0], meta=meta)


def make_multi_sequence(seed: int, cfg: SyntheticConfig = PRESETS["train"], *,
                        debug: bool = False) -> MultiSequence:
  """A video with several annotated targets of several classes that cross and occlude each other.

  Targets walk as in `make_sequence`; with probability `crossing_prob` each target after the
  first gets a rendezvous with an earlier one.  Their depth order is a random permutation (fixed
  over the video); occluders (`num_occluders`) pass in front of random targets.  Distractors are
  not used (every object of a target class is annotated).

  Returns:
    MultiSequence named 'synthetic-multi-<seed>', class_names = CLASS_NAMES, gt Objects with one
    row per (frame, visible target): track_id 1..K, label = class index, box as in
    `make_sequence`, visibility = visible fraction (rows with visibility < min_visible are left
    out).  meta: 'seed', 'classes' [K] names, 'visible_fraction' / 'occluded' / 'out_of_view' /
    'in_frame_fraction' / 'covered_fraction' [K, T], 'object_size' [K, T, 2],
    'depth_order' (track ids back to front); debug: 'masks', 'visible_masks' [K, T, H, W].
  """
  rng = np.random.Generator(np.random.PCG64([seed, _MULTI_TAG]))
  T = cfg.num_frames
  canvas, cam, gain, offset, blur = _scene_common(rng, cfg)
  K = int(rng.integers(cfg.num_targets[0], cfg.num_targets[1] + 1))
  K = max(K, 1)
  classes, sprites, tracks = [], [], []
  for k in range(K):
    cls = str(rng.choice(list(cfg.classes)))
    app = _sample_appearance(rng, cls)
    track, _ = _target_walk(rng, cfg)
    if k > 0 and rng.uniform() < cfg.crossing_prob:
      j = int(rng.integers(0, k))
      t_c = _crossing_time(rng, T)
      z_t = math.sqrt(tracks[j].w[t_c] * tracks[j].h[t_c])
      goal = (tracks[j].cx[t_c] + rng.normal(0.0, 0.4) * z_t,
              tracks[j].cy[t_c] + rng.normal(0.0, 0.4) * z_t)
      track = _rendezvous(track, t_c, goal, rng.uniform(0.08, 0.2) * T)
    classes.append(cls)
    sprites.append(render_sprite(app, cfg.texture_size))
    tracks.append(track)
  order = rng.permutation(K)
  layers = [_Layer(sprites[k], tracks[k], int(k)) for k in order]
  n_occ = int(rng.integers(cfg.num_occluders[0], cfg.num_occluders[1] + 1))
  for _ in range(n_occ):
    layers.append(_occluder_layer(rng, cfg, tracks[int(rng.integers(0, K))]))
  r = _render(cfg, _Scene(canvas, cam, layers, gain, offset, blur), K, debug)
  kk, tt = np.nonzero(r.visible >= cfg.min_visible)
  sel = np.lexsort((kk, tt))   # frame-major, then track
  kk, tt = kk[sel], tt[sel]
  gt = Objects.from_arrays(frame=tt, track_id=kk + 1, box=r.boxes[kk, tt],
                           label=[CLASS_NAMES.index(classes[k]) for k in kk],
                           visibility=r.visible[kk, tt])
  meta: Dict[str, Any] = {
      "seed": int(seed), "classes": classes, "visible_fraction": r.visible,
      "in_frame_fraction": r.in_frame, "covered_fraction": r.covered,
      "occluded": r.covered >= cfg.occluded_threshold, "out_of_view": r.in_frame < 1.0,
      "object_size": r.size,
      "depth_order": [int(k) + 1 for k in order], "num_occluders": n_occ,
      "motion_blur": blur, "illumination_change": gain is not None,
  }
  if debug:
    meta["masks"], meta["visible_masks"] = r.masks, r.visible_masks
  return MultiSequence(f"synthetic-multi-{seed}", ArrayFrames(r.frames), gt=gt,
                       class_names=list(CLASS_NAMES), meta=meta)


def split_seeds(split: str, n: int, start: int = 0) -> np.ndarray:
  """Seeds of sequences start .. start+n-1 of a split: train i -> i, test i -> 10**6 + i."""
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  if n < 0 or start < 0 or start + n > MAX_SPLIT_SIZE:
    raise ValueError(f"a split holds sequences 0 .. {MAX_SPLIT_SIZE - 1}; asked for "
                     f"{start} .. {start + n - 1}")
  offset = TRAIN_SEED_OFFSET if split == "train" else TEST_SEED_OFFSET
  return offset + start + np.arange(n, dtype=np.int64)


def make_split(split: str, n: int, cfg: Optional[SyntheticConfig] = None, *, start: int = 0,
               multi: bool = False) -> List[Any]:
  """Sequences start .. start+n-1 of the train or test split (seeds from `split_seeds`).

  Args:
    split: 'train' or 'test'.
    n: number of sequences.
    cfg: defaults to PRESETS[split].
    start: index of the first sequence (to extend a split or shard it).
    multi: make `MultiSequence`s (make_multi_sequence) instead of single-target ones.
  """
  cfg = PRESETS[split] if cfg is None else cfg
  fn = make_multi_sequence if multi else make_sequence
  return [fn(int(s), cfg) for s in split_seeds(split, n, start)]
