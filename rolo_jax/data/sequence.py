"""The two sequence types every reader returns and every tracker / trainer consumes.

Boxes are float64 ``x, y, w, h`` in pixels (x, y = top-left corner, 0-based pixel coordinates as the
files store them), NaN where the target is absent.  Frames are a `FrameSource`: anything with
``len()`` and ``[i] -> uint8 [H, W, 3]`` (RGB); image files are read lazily.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Protocol, Sequence as Seq

import numpy as np

from rolo_jax.data.images import load_image, image_size
from rolo_jax.errors import DataError


class FrameSource(Protocol):

  def __len__(self) -> int:
    ...

  def __getitem__(self, i: int) -> np.ndarray:
    ...


class ImageFiles:
  """Frames stored as image files, decoded on access (RGB uint8 [H, W, 3]).

  Every frame must have the first frame's size: a frame of another size raises DataError naming
  both files when it is decoded (boxes of a sequence share one pixel grid)."""

  def __init__(self, paths: Seq[str]):
    self.paths = [os.fspath(p) for p in paths]
    self._hw: Optional[tuple[int, int]] = None   # (height, width) of frame 0, read on first access

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i: int) -> np.ndarray:
    img = load_image(self.paths[i])
    if self._hw is None:
      w, h = image_size(self.paths[0]) if i != 0 else (img.shape[1], img.shape[0])
      self._hw = (int(h), int(w))
    if img.shape[:2] != self._hw:
      raise DataError(self.paths[i], f"frame {i} is {img.shape[1]}x{img.shape[0]} but the sequence's "
                                     f"first frame ({self.paths[0]}) is {self._hw[1]}x{self._hw[0]}; "
                                     f"all frames of a sequence must have one size")
    return img

  def size(self) -> tuple[int, int]:
    """(width, height) of the first frame."""
    return image_size(self.paths[0])

  def __repr__(self):
    return f"ImageFiles({len(self)} files, first={self.paths[0] if self.paths else None!r})"


class ArrayFrames:
  """Frames held in memory: uint8 [T, H, W, 3]."""

  def __init__(self, array: np.ndarray):
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
      raise ValueError(f"ArrayFrames expects uint8 [T, H, W, 3], got {array.dtype} {array.shape}")
    self.array = array

  def __len__(self) -> int:
    return self.array.shape[0]

  def __getitem__(self, i: int) -> np.ndarray:
    return self.array[i]

  def size(self) -> tuple[int, int]:
    return int(self.array.shape[2]), int(self.array.shape[1])

  def __repr__(self):
    return f"ArrayFrames({self.array.shape})"


def frame_size(frames: FrameSource) -> tuple[int, int]:
  """(width, height) of a frame source."""
  if hasattr(frames, "size"):
    return frames.size()
  f = frames[0]
  return int(f.shape[1]), int(f.shape[0])


@dataclasses.dataclass
class Sequence:
  """One target in one video.

  Attributes:
    name: sequence name (e.g. 'Jogging-2' for the second target of a two-target OTB sequence, as otb100_sequences.json names it).
    frames: the frames, len T.
    boxes: float64 [T, 4] x, y, w, h in pixels; NaN rows where the target is absent.
    frame_numbers: int [T], the 1-based frame numbers in the original dataset (OTB ranges start
      later than 1 for some sequences).
    meta: free-form per-dataset extras (e.g. 'init_omit' frame numbers, 'occlusion' flags [T],
      'out_of_view' flags [T], 'class' name).
  """
  name: str
  frames: FrameSource
  boxes: np.ndarray
  frame_numbers: Optional[np.ndarray] = None
  meta: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
    if self.frame_numbers is None:
      self.frame_numbers = np.arange(1, len(self.boxes) + 1)
    self.frame_numbers = np.asarray(self.frame_numbers, np.int64)

  def __len__(self) -> int:
    return len(self.boxes)

  @property
  def present(self) -> np.ndarray:
    """bool [T]: frames where the target is visible (box finite with positive size)."""
    b = self.boxes
    return np.all(np.isfinite(b), axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)

  def frame(self, i: int) -> np.ndarray:
    return self.frames[i]

  def size(self) -> tuple[int, int]:
    """(width, height) of the frames."""
    return frame_size(self.frames)


@dataclasses.dataclass
class Objects:
  """A flat table of object boxes over a video (ground truth or detections), MOTChallenge style.

  Attributes (all length N):
    frame: int, 0-based index into the video's frames.
    track_id: int; -1 for detections without identity.
    box: float64 [N, 4] x, y, w, h in pixels.
    score: float confidence (1 for ground truth unless the file says otherwise).
    label: int class index (-1 unknown).
    visibility: float in [0, 1] (1 when unknown).
  """
  frame: np.ndarray
  track_id: np.ndarray
  box: np.ndarray
  score: np.ndarray
  label: np.ndarray
  visibility: np.ndarray

  @staticmethod
  def empty() -> "Objects":
    return Objects(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0),
                   np.zeros(0, np.int64), np.zeros(0))

  @staticmethod
  def from_arrays(frame, track_id, box, score=None, label=None, visibility=None) -> "Objects":
    frame = np.asarray(frame, np.int64).reshape(-1)
    n = len(frame)
    return Objects(
        frame=frame,
        track_id=np.asarray(track_id, np.int64).reshape(n),
        box=np.asarray(box, np.float64).reshape(n, 4),
        score=np.ones(n) if score is None else np.asarray(score, np.float64).reshape(n),
        label=-np.ones(n, np.int64) if label is None else np.asarray(label, np.int64).reshape(n),
        visibility=np.ones(n) if visibility is None else np.asarray(visibility, np.float64).reshape(n),
    )

  def __len__(self) -> int:
    return len(self.frame)

  def select(self, mask) -> "Objects":
    return Objects(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

  def in_frame(self, t: int) -> "Objects":
    return self.select(self.frame == t)

  def track_ids(self) -> np.ndarray:
    return np.unique(self.track_id[self.track_id >= 0])


@dataclasses.dataclass
class MultiSequence:
  """Many objects in one video (MOTChallenge, ImageNet VID, synthetic multi-object videos).

  Attributes:
    name: sequence name.
    frames: the frames, len T.
    gt: ground-truth objects with identities, or None when the dataset has none (test split).
    detections: detector output (e.g. MOT det.txt), or None.
    class_names: names of the label indices, when known.
    meta: extras (e.g. seqinfo.ini fields, frame rate).
  """
  name: str
  frames: FrameSource
  gt: Optional[Objects] = None
  detections: Optional[Objects] = None
  class_names: List[str] = dataclasses.field(default_factory=list)
  meta: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.frames)

  def track(self, track_id: int) -> Sequence:
    """Single-object view of one ground-truth track: a box per frame, NaN where it is absent."""
    if self.gt is None:
      raise ValueError(f"{self.name}: no ground truth to take a track from")
    sel = self.gt.select(self.gt.track_id == track_id)
    if len(sel) == 0:
      raise KeyError(f"{self.name}: no track with id {track_id}")
    boxes = np.full((len(self.frames), 4), np.nan)
    boxes[sel.frame] = sel.box
    first, last = int(sel.frame.min()), int(sel.frame.max())
    label = int(sel.label[0])
    meta = {"track_id": int(track_id), "label": label, "first": first, "last": last}
    if 0 <= label < len(self.class_names):
      meta["class"] = self.class_names[label]
    return Sequence(f"{self.name}/{track_id}", self.frames, boxes, meta=meta)

  def tracks(self) -> List[Sequence]:
    if self.gt is None:
      return []
    return [self.track(int(i)) for i in self.gt.track_ids()]

  def size(self) -> tuple[int, int]:
    return frame_size(self.frames)
