"""The one interface every online tracker implements, and the loop that runs it over a sequence.

Online (causal) tracking: a tracker is told the target's box in the first frame and then sees one
frame at a time, returning its estimate before it sees the next:

    tracker.init(frame_0, box_0)
    box_t = tracker.update(frame_t)        for t = 1, 2, ...

Boxes are float64 ``x, y, w, h`` in pixels (top-left corner, continuous coordinates); frames are RGB
``uint8 [H, W, 3]``.

Three levels:
  * `Tracker` — a single target, stateful object (what the CLI and the OTB runner use).
  * `MultiTracker` — K targets in the same video. The default implementation keeps K independent
    single trackers; learned trackers batch the K targets into one step instead.
  * `TrackerCore` — the functional core of a learned tracker: ``init_state(frame, boxes [K, 4]) ->
    state`` and ``step(state, frame) -> (state, boxes [K, 4])``, pure functions of their inputs (the
    parameters are closed over) so they can be jitted and tested like any other JAX function.
    `CoreTracker(core)` adapts a core to both object interfaces.

`run_tracker(tracker, sequence)` runs one tracker over a `Sequence`, times the update calls only and
guarantees finite boxes with positive size in its output.
"""
from __future__ import annotations

import abc
import time
import warnings
from typing import Any, Callable, Dict, Optional, Protocol, Tuple

import numpy as np


class TrackerInitError(ValueError):
  """A tracker cannot start on the given first frame and box (e.g. OpenCV's CSRT on a box under
  2 px); the message names the box as the tracker saw it and what it needs."""


def as_box(box, what: str = "box") -> np.ndarray:
  """`box` as float64 [4] x, y, w, h; ValueError when it is not 4 numbers."""
  b = np.asarray(box, np.float64)
  if b.shape != (4,):
    raise ValueError(f"{what}: expected 4 numbers x,y,w,h, got shape {b.shape}")
  return b


def as_boxes(boxes, what: str = "boxes") -> np.ndarray:
  """`boxes` as float64 [K, 4]; ValueError for any other shape."""
  b = np.asarray(boxes, np.float64)
  if b.ndim != 2 or b.shape[1] != 4:
    raise ValueError(f"{what}: expected shape [K, 4] x,y,w,h, got {b.shape}")
  return b


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
  """bool [...]: rows that are finite with w > 0 and h > 0."""
  boxes = np.asarray(boxes, np.float64)
  return np.all(np.isfinite(boxes), axis=-1) & (boxes[..., 2] > 0) & (boxes[..., 3] > 0)


def check_frame(frame) -> np.ndarray:
  """`frame` as uint8 [H, W, 3]; ValueError otherwise."""
  f = np.asarray(frame)
  if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
    raise ValueError(f"frame: expected uint8 [H, W, 3] RGB, got {f.dtype} {f.shape}")
  return f


class Tracker(abc.ABC):
  """A single-target online tracker.

  Subclasses implement `init` and `update`. `update` must return a float64 [4] box; `run_tracker`
  still guards against NaN or empty boxes (it keeps the previous box and counts a failure).
  """

  name: str = "tracker"

  @abc.abstractmethod
  def init(self, frame: np.ndarray, box) -> None:
    """Starts tracking.

    Args:
      frame: uint8 [H, W, 3] RGB, the frame in which `box` is given.
      box: [4] x, y, w, h in pixels.
    """

  @abc.abstractmethod
  def update(self, frame: np.ndarray) -> np.ndarray:
    """Tracks into the next frame.

    Args:
      frame: uint8 [H, W, 3] RGB.
    Returns:
      float64 [4] x, y, w, h: the target's box in `frame`.
    """

  def __repr__(self):
    return f"{type(self).__name__}(name={self.name!r})"


class MultiTracker:
  """K targets in one video: ``init(frame, boxes [K, 4])``, ``update(frame) -> [K, 4]``.

  This default implementation keeps one independent single-target tracker per target, made by
  `make_single()`, and loops over them. Learned trackers override `init` / `update` with one batched
  step for all K targets (see `CoreTracker`).

  Args:
    make_single: zero-argument callable returning a fresh `Tracker`.
  """

  name: str = "multi"

  def __init__(self, make_single: Callable[[], Tracker]):
    self.make_single = make_single
    self.trackers: list = []

  def init(self, frame: np.ndarray, boxes) -> None:
    """Starts tracking K targets. boxes: [K, 4] x, y, w, h."""
    boxes = as_boxes(boxes)
    self.trackers = []
    for b in boxes:
      t = self.make_single()
      t.init(frame, b)
      self.trackers.append(t)
    if self.trackers:
      self.name = getattr(self.trackers[0], "name", self.name)

  def update(self, frame: np.ndarray) -> np.ndarray:
    """Returns float64 [K, 4]: every target's box in `frame` (K = 0 gives shape [0, 4])."""
    if not self.trackers:
      return np.zeros((0, 4))
    return np.stack([np.asarray(t.update(frame), np.float64).reshape(4) for t in self.trackers])


class TrackerCore(Protocol):
  """The functional core of a learned tracker (parameters closed over, no hidden state).

  Both methods are pure, so a core can wrap ``jax.jit``-compiled functions. Frames arrive as
  uint8 [H, W, 3] numpy arrays (a core may move them to the device); boxes are [K, 4] x, y, w, h
  in pixels.
  """

  def init_state(self, frame: np.ndarray, boxes: np.ndarray) -> Any:
    """The tracking state (any pytree) for K targets whose boxes in `frame` are `boxes` [K, 4]."""
    ...

  def step(self, state: Any, frame: np.ndarray) -> Tuple[Any, Any]:
    """One frame: ``(state, frame) -> (new_state, boxes [K, 4])``."""
    ...


class CoreTracker(Tracker, MultiTracker):
  """Adapts a `TrackerCore` to the `Tracker` and the `MultiTracker` interface.

  ``init(frame, box)`` with a [4] box tracks one target and `update` returns [4]; with [K, 4] boxes
  it tracks K targets in one batched `core.step` and `update` returns [K, 4]. Returned boxes are
  float64 numpy arrays (this blocks until the device has computed them, so timing `update` measures
  the real work).

  Args:
    core: an object with `init_state` and `step` (see `TrackerCore`).
    name: the name reported by the tracker (defaults to ``core.name`` or the core's class name).
  """

  def __init__(self, core: TrackerCore, name: Optional[str] = None):
    self.core = core
    self.name = name or getattr(core, "name", type(core).__name__)
    self.state = None
    self._single = True

  def init(self, frame: np.ndarray, box) -> None:
    b = np.asarray(box, np.float64)
    self._single = b.ndim == 1
    boxes = as_box(b)[None] if self._single else as_boxes(b)
    self.state = self.core.init_state(check_frame(frame), boxes)

  def update(self, frame: np.ndarray) -> np.ndarray:
    if self.state is None:
      raise RuntimeError(f"{self.name}: update() called before init()")
    self.state, boxes = self.core.step(self.state, check_frame(frame))
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[0] if self._single else boxes


def run_tracker(tracker: Tracker, sequence, *, init_box=None, start: int = 0,
                info: Optional[Dict[str, Any]] = None, warn: bool = True) -> Tuple[np.ndarray, float]:
  """Runs `tracker` over ``sequence`` from frame `start` to the end (one-pass evaluation).

  Timing: ``fps = (number of update calls) / (seconds spent inside tracker.update)``. `init`, frame
  decoding (``sequence.frames[t]``) and the bookkeeping here are excluded, so the number is the
  tracker's own speed (for a JAX tracker it includes the first call's compilation; `update` returns
  numpy arrays, so the device work is finished when the clock stops). NaN when there is no update
  (a one-frame run).

  Robustness: a box from `update` that is not finite or has w <= 0 or h <= 0 is replaced by the
  previous output box; such frames are counted as failures in `info` (and a warning is issued when
  `warn`). The returned boxes are therefore always finite with positive size.

  Args:
    tracker: a `Tracker`.
    sequence: a `rolo_jax.data.sequence.Sequence` (anything with ``frames`` and ``boxes``).
    init_box: [4] x, y, w, h given to `init` at frame `start`; default ``sequence.boxes[start]``.
    start: index of the first frame (the frame with the initial box).
    info: optional dict, filled with ``failures`` (int), ``failed_frames`` (list of indices into the
      sequence), ``update_seconds``, ``updates``, ``start``.
    warn: warn when there were failures.
  Returns:
    boxes: float64 [T - start, 4]; row 0 is the initial box, row i the estimate for frame start + i.
    fps: float, updates per second (see above).
  """
  n = len(sequence.frames)
  if not 0 <= start < n:
    raise ValueError(f"{getattr(sequence, 'name', 'sequence')}: start={start} outside 0..{n - 1}")
  box0 = sequence.boxes[start] if init_box is None else init_box
  box0 = as_box(box0, "init_box")
  if not valid_boxes(box0):
    raise ValueError(f"{getattr(sequence, 'name', 'sequence')}: initial box {box0.tolist()} at frame "
                     f"{start} is not a finite box with positive width and height")

  out = np.empty((n - start, 4), np.float64)
  out[0] = box0
  tracker.init(sequence.frames[start], box0.copy())
  seconds = 0.0
  failed = []
  for i in range(1, n - start):
    frame = sequence.frames[start + i]
    t0 = time.perf_counter()
    box = tracker.update(frame)
    seconds += time.perf_counter() - t0
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape == (4,) and valid_boxes(box):
      out[i] = box
    else:
      out[i] = out[i - 1]
      failed.append(start + i)
  updates = n - start - 1
  fps = updates / seconds if updates > 0 and seconds > 0 else (float("inf") if updates > 0 else float("nan"))
  if info is not None:
    info.update(failures=len(failed), failed_frames=failed, update_seconds=seconds, updates=updates,
                start=start)
  if failed and warn:
    warnings.warn(f"{getattr(tracker, 'name', tracker)} on {getattr(sequence, 'name', 'sequence')}: "
                  f"{len(failed)} invalid boxes (NaN or empty) replaced by the previous box, first at "
                  f"frame {failed[0]}", RuntimeWarning, stacklevel=2)
  return out, fps
