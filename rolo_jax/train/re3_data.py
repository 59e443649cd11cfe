"""Re3 training batches: T consecutive fully labelled frames of one track per sample.

A batch for stage (T, B):
    frames   uint8   [T, B, H, W, 3]  time-major, zero-padded to the sampler's canvas (H, W)
    boxes    float32 [T, B, 4]        ground truth x1, y1, x2, y2 in pixels (continuous coords)
    valid_hw int32   [B, 2]           (h, w) of the real image inside the canvas; crops treat the
                                      padding as outside the image (zeros)

Per sample (all choices from one numpy Generator seeded by (seed, position), so a batch is a pure
function of the sampler's construction and `position` -- the data position stored in checkpoints):
  1. source: real with probability p_real when real tracks are given, else synthetic;
  2. track: uniform among that source's tracks that have at least one window of T consecutive
     labelled frames (boxes finite, w, h > 0);
  3. window start: uniform among that track's labelled windows (no absent frame is ever used);
  4. mirror: with probability p_mirror the frames are flipped left-right and the boxes with them
     (x1' = w - x2, x2' = w - x1, w the image width).

The canvas is fixed for the sampler's lifetime (the largest frame of all tracks, after real
frames are downscaled so their longer side is at most `max_side`): one array shape per
curriculum stage, so the jitted update compiles once per stage whatever the frame sizes.

Synthetic sequences are generated once into an in-memory pool (`synthetic_pool`); real frames
are decoded lazily with a bounded LRU cache.
"""
from __future__ import annotations

import collections
import threading
from typing import Dict, List, NamedTuple, Optional, Sequence as Seq, Tuple

import numpy as np

from rolo_jax.data.sequence import Sequence
from rolo_jax.errors import DataError


class Re3Batch(NamedTuple):
  frames: np.ndarray    # uint8 [T, B, H, W, 3]
  boxes: np.ndarray     # float32 [T, B, 4] xyxy pixels
  valid_hw: np.ndarray  # int32 [B, 2]


class _Track:
  """One sequence prepared for sampling: xyxy boxes (scaled), labelled-window lookup, frame access."""

  def __init__(self, seq: Sequence, max_side: Optional[int], cache: "_FrameCache", key):
    self.seq = seq
    self.key = key
    self.cache = cache
    w, h = seq.size()
    scale = 1.0
    if max_side is not None and max(w, h) > max_side:
      scale = max_side / max(w, h)
    self.scale = scale
    self.hw = (int(round(h * scale)), int(round(w * scale))) if scale != 1.0 else (int(h), int(w))
    b = np.asarray(seq.boxes, np.float64) * scale
    self.xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    ok = seq.present.astype(np.int64)
    self._csum = np.concatenate([[0], np.cumsum(ok)])
    self._starts: Dict[int, np.ndarray] = {}

  def starts(self, t: int) -> np.ndarray:
    """Start indices s with frames s .. s+t-1 all labelled."""
    if t not in self._starts:
      n = len(self.xyxy)
      if n < t:
        self._starts[t] = np.zeros(0, np.int64)
      else:
        s = np.arange(n - t + 1)
        self._starts[t] = s[(self._csum[s + t] - self._csum[s]) == t]
    return self._starts[t]

  def frame(self, i: int) -> np.ndarray:
    return self.cache.get(self, i)


class _FrameCache:
  """LRU cache of decoded (and downscaled) frames of lazily read tracks."""

  def __init__(self, capacity: int):
    self.capacity = capacity
    self._d: "collections.OrderedDict" = collections.OrderedDict()

  def get(self, track: _Track, i: int) -> np.ndarray:
    frames = track.seq.frames
    if hasattr(frames, "array"):  # in memory already (ArrayFrames)
      img = frames.array[i]
      return img if track.scale == 1.0 else _resize(img, track.hw)
    k = (track.key, i)
    img = self._d.get(k)
    if img is not None:
      self._d.move_to_end(k)
      return img
    img = frames[i]
    if img.shape[:2] != track.hw and track.scale == 1.0:
      raise DataError(getattr(frames, "paths", [None] * (i + 1))[i],
                      f"frame {i} of '{track.seq.name}' is {img.shape[1]}x{img.shape[0]}, "
                      f"expected {track.hw[1]}x{track.hw[0]} like the first frame")
    if track.scale != 1.0:
      img = _resize(img, track.hw)
    self._d[k] = img
    if len(self._d) > self.capacity:
      self._d.popitem(last=False)
    return img


def _resize(img: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
  import cv2
  return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


class Re3Sampler:
  """Deterministic batches of labelled windows from synthetic and (optionally) real tracks.

  Args:
    synthetic: synthetic Sequences (usually `synthetic_pool(...)`); may be empty if real is not.
    real: real Sequences (any reader's output); may be empty.
    seed: sampling seed; batch(position, ...) depends only on (seed, position, T, B, the tracks).
    p_real: probability of a real track per sample when both kinds are given (Re3: 0.5).
    p_mirror: probability of a left-right flip per sample (Re3: 0.5).
    max_side: real frames are downscaled so that max(w, h) <= max_side (None: never).
    cache_frames: decoded real frames kept in memory.
  """

  def __init__(self, synthetic: Seq[Sequence] = (), real: Seq[Sequence] = (), *, seed: int = 0,
               p_real: float = 0.5, p_mirror: float = 0.5, max_side: Optional[int] = 640,
               cache_frames: int = 2048):
    if not synthetic and not real:
      raise ValueError("Re3Sampler needs at least one track")
    self.seed = int(seed)
    self.p_real = float(p_real) if (synthetic and real) else (1.0 if real else 0.0)
    self.p_mirror = float(p_mirror)
    self._cache = _FrameCache(cache_frames)
    self.sources = [
        [_Track(s, None, self._cache, ("syn", i)) for i, s in enumerate(synthetic)],
        [_Track(s, max_side, self._cache, ("real", i)) for i, s in enumerate(real)],
    ]
    all_tracks = self.sources[0] + self.sources[1]
    self.canvas_hw = (max(t.hw[0] for t in all_tracks), max(t.hw[1] for t in all_tracks))
    self._eligible: Dict[Tuple[int, int], np.ndarray] = {}
    self._lock = threading.Lock()

  @property
  def num_tracks(self) -> Tuple[int, int]:
    return len(self.sources[0]), len(self.sources[1])

  def _eligible_tracks(self, src: int, t: int) -> np.ndarray:
    k = (src, t)
    if k not in self._eligible:
      self._eligible[k] = np.array([i for i, tr in enumerate(self.sources[src]) if len(tr.starts(t))],
                                   np.int64)
    return self._eligible[k]

  def sample_plan(self, position: int, unroll: int, batch: int) -> List[Tuple[int, int, int, bool]]:
    """The (source, track, start, mirror) choices of batch `position` (pure; see module docstring)."""
    rng = np.random.default_rng([self.seed, int(position), int(unroll), int(batch)])
    plan = []
    for _ in range(batch):
      src = 1 if rng.random() < self.p_real else 0
      elig = self._eligible_tracks(src, unroll)
      if len(elig) == 0:
        src = 1 - src
        elig = self._eligible_tracks(src, unroll)
      if len(elig) == 0:
        raise DataError(None, f"no track has {unroll} consecutive labelled frames "
                              f"({self.num_tracks[0]} synthetic, {self.num_tracks[1]} real tracks)")
      ti = int(elig[rng.integers(len(elig))])
      starts = self.sources[src][ti].starts(unroll)
      start = int(starts[rng.integers(len(starts))])
      mirror = bool(rng.random() < self.p_mirror)
      plan.append((src, ti, start, mirror))
    return plan

  def batch(self, position: int, unroll: int, batch: int) -> Re3Batch:
    """Batch number `position` of shape (T=unroll, B=batch). See the module docstring.

    Thread-safe (the training loop prefetches the next batch in a worker thread)."""
    with self._lock:
      return self._batch(position, unroll, batch)

  def _batch(self, position: int, unroll: int, batch: int) -> Re3Batch:
    hc, wc = self.canvas_hw
    frames = np.zeros((unroll, batch, hc, wc, 3), np.uint8)
    boxes = np.zeros((unroll, batch, 4), np.float32)
    valid = np.zeros((batch, 2), np.int32)
    for b, (src, ti, start, mirror) in enumerate(self.sample_plan(position, unroll, batch)):
      tr = self.sources[src][ti]
      h, w = tr.hw
      valid[b] = (h, w)
      bx = tr.xyxy[start:start + unroll].copy()
      for t in range(unroll):
        img = tr.frame(start + t)
        frames[t, b, :h, :w] = img[:, ::-1] if mirror else img
      if mirror:
        bx[:, [0, 2]] = w - bx[:, [2, 0]]
      boxes[:, b] = bx
    return Re3Batch(frames, boxes, valid)


# --------------------------------------------------------------------------- sources


def synthetic_pool(n: int, preset: str = "train", start: int = 0) -> List[Sequence]:
  """`n` synthetic training sequences: the generator's 'train' split, sequences start .. start+n-1.

  The 'train' split's seeds are disjoint from the 'test' split's (rolo_jax.data.synthetic), so
  held-out evaluation on make_split('test', ...) never sees a training sequence. `preset` picks
  the look (frame size, clip length) from synthetic.PRESETS.
  """
  from rolo_jax.data import synthetic
  return list(synthetic.make_split("train", n, synthetic.PRESETS[preset], start=start))


DATA_KINDS = ("synthetic", "otb", "got10k", "vid", "lasot")


def real_sequences(kind: str, data_dir: str, *, exclude: Seq[str] = (), **reader_kw) -> List[Sequence]:
  """Single-target training tracks from a dataset folder (rolo_jax.data.formats.load_dataset).

  Args:
    kind: 'otb' | 'got10k' | 'vid' | 'lasot'.
    data_dir: the dataset root.
    exclude: sequence names to leave out (e.g. sequences kept for evaluation).
    **reader_kw: passed to the reader (e.g. split='train').
  Returns:
    list of Sequences; multi-object videos (ImageNet VID) are split into one per track.
  """
  from rolo_jax.data.formats import load_dataset
  if kind not in DATA_KINDS or kind == "synthetic":
    raise ValueError(f"unknown real data kind {kind!r}; expected one of {DATA_KINDS[1:]}")
  if kind == "otb":
    # Strict, with the benchmark's frame ranges where its json is beside the data (as every other
    # OTB reader of the project): a sequence whose boxes and frames differ in number is an error,
    # not cut to the shorter (session 18; it was cut without a word).
    from rolo_jax.data.formats.otb import find_sequences_json
    reader_kw.setdefault("strict", True)
    if "sequences_json" not in reader_kw:
      reader_kw["sequences_json"] = find_sequences_json(data_dir)
  items = load_dataset(kind, data_dir, **reader_kw)
  seqs: List[Sequence] = []
  for it in items:
    if hasattr(it, "tracks"):
      seqs.extend(it.tracks())
    else:
      seqs.append(it)
  excl = set(exclude)
  seqs = [s for s in seqs if s.name not in excl]
  if not seqs:
    raise DataError(data_dir, f"no {kind} training sequences found")
  return seqs
