"""Drawing tracker boxes on frames and writing the result as a GIF or MP4.

A box ``x, y, w, h`` (continuous pixel coordinates) is drawn as the rectangle whose outer edge runs
along pixels ``round(x) .. round(x + w) - 1`` and ``round(y) .. round(y + h) - 1``. Boxes with a NaN
or non-positive size are skipped (the target is absent or the tracker has no estimate).
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Mapping, Optional, Sequence as Seq, Tuple

import numpy as np

Color = Tuple[int, int, int]

# Distinct RGB colours; ground truth is drawn in green, trackers take the rest in order.
GT_COLOR: Color = (0, 255, 0)
PALETTE: Tuple[Color, ...] = (
    (255, 60, 60), (60, 140, 255), (255, 200, 0), (255, 0, 255), (0, 230, 230), (255, 140, 0),
    (160, 90, 255), (255, 255, 255),
)
ANIMATION_EXTENSIONS = (".gif", ".mp4")


def _is_drawable(box) -> bool:
  b = np.asarray(box, np.float64).reshape(-1)
  return b.shape == (4,) and bool(np.all(np.isfinite(b))) and b[2] > 0 and b[3] > 0


def render_boxes(frame: np.ndarray, boxes: Mapping[str, Seq[float]],
                 colors: Optional[Mapping[str, Color]] = None, *, thickness: Optional[int] = None,
                 caption: Optional[str] = None) -> np.ndarray:
  """Draws labelled rectangles on a copy of `frame`.

  Args:
    frame: uint8 [H, W, 3] RGB.
    boxes: label -> [4] x, y, w, h. NaN / empty boxes are skipped.
    colors: label -> (r, g, b); labels without a colour get `PALETTE` colours in order
      ('ground truth' / 'gt' default to green).
    thickness: line width in pixels (default: about 1/200 of the larger side, at least 1).
    caption: optional text drawn in the top-left corner (e.g. the frame number).
  Returns:
    uint8 [H, W, 3] RGB, a new array.
  """
  import cv2

  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
    raise ValueError(f"render_boxes: expected uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
  out = np.ascontiguousarray(frame).copy()
  h, w = out.shape[:2]
  t = thickness or max(1, round(max(h, w) / 200))
  font_scale = max(0.35, max(h, w) / 1000)
  if caption:  # drawn first, so boxes stay visible on top of it
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), -1)
    cv2.putText(out, caption, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                cv2.LINE_AA)
  colors = dict(colors or {})
  k = 0
  for label, box in boxes.items():
    if label not in colors:
      if label.lower() in ("gt", "ground truth", "groundtruth"):
        colors[label] = GT_COLOR
      else:
        colors[label] = PALETTE[k % len(PALETTE)]
        k += 1
    if not _is_drawable(box):
      continue
    x, y, bw, bh = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = int(round(x + bw)) - 1, int(round(y + bh)) - 1
    color = tuple(int(c) for c in colors[label])
    cv2.rectangle(out, (x0, y0), (max(x0, x1), max(y0, y1)), color, t)
    if label:
      (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
      ty = y0 - t - 2 if y0 - t - 2 - th >= 0 else min(h - base - 1, max(y1, y0) + t + th + 2)
      tx = min(max(x0, 0), max(0, w - tw - 1))
      cv2.putText(out, label, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
  return out


def _check_extension(out_path: str) -> str:
  ext = os.path.splitext(os.fspath(out_path))[1].lower()
  if ext not in ANIMATION_EXTENSIONS:
    raise ValueError(f"{out_path}: unsupported animation format {ext or '(no extension)'!r}; "
                     f"use one of {', '.join(ANIMATION_EXTENSIONS)}")
  return ext


def write_animation(frames: Iterable[np.ndarray], out_path: str, fps: float = 20) -> int:
  """Writes RGB frames as an animated GIF or an MP4 video, chosen by the extension of `out_path`.

  * ``.gif``: Pillow, each frame quantised to its own adaptive 256-colour palette, looping forever,
    ``1000 / fps`` ms per frame. Note that Pillow merges a frame identical to the one before it into
    that frame (longer duration), so a GIF of repeated frames has fewer frames than written.
  * ``.mp4``: OpenCV VideoWriter with the 'mp4v' (MPEG-4 part 2) codec. Odd widths / heights are
    padded by one pixel (edge copy) to even, which MPEG-4 needs.

  Args:
    frames: iterable of uint8 [H, W, 3] RGB frames, all the same size.
    out_path: output file ending in .gif or .mp4 (its folder is created).
    fps: frames per second.
  Returns:
    the number of frames written.
  Raises:
    ValueError: other extensions, no frames, frames of different sizes, fps <= 0.
  """
  out_path = os.fspath(out_path)
  ext = _check_extension(out_path)
  if not fps > 0:
    raise ValueError(f"fps must be positive, got {fps}")
  folder = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(folder, exist_ok=True)
  if ext == ".gif":
    return _write_gif(frames, out_path, fps)
  return _write_mp4(frames, out_path, fps)


def _frames_checked(frames: Iterable[np.ndarray]):
  size = None
  for i, f in enumerate(frames):
    f = np.asarray(f)
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
      raise ValueError(f"frame {i}: expected uint8 [H, W, 3], got {f.dtype} {f.shape}")
    if size is None:
      size = f.shape[:2]
    elif f.shape[:2] != size:
      raise ValueError(f"frame {i}: size {f.shape[:2]} differs from the first frame's {size}")
    yield f


def _write_gif(frames, out_path: str, fps: float) -> int:
  from PIL import Image

  images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
            for f in _frames_checked(frames)]
  if not images:
    raise ValueError(f"{out_path}: no frames to write")
  duration = max(1, int(round(1000 / fps)))
  images[0].save(out_path, save_all=True, append_images=images[1:], duration=duration, loop=0,
                 disposal=1)
  return len(images)


def _write_mp4(frames, out_path: str, fps: float) -> int:
  import cv2

  writer = None
  n = 0
  try:
    for f in _frames_checked(frames):
      ph, pw = f.shape[0] % 2, f.shape[1] % 2
      if ph or pw:  # MPEG-4 needs even sizes (else the encoder drops the last row / column)
        f = np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge")
      if writer is None:
        h, w = f.shape[:2]
        writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
          raise ValueError(f"{out_path}: OpenCV cannot open an 'mp4v' video writer for {w}x{h}")
      writer.write(np.ascontiguousarray(f[..., ::-1]))
      n += 1
  finally:
    if writer is not None:
      writer.release()
  if n == 0:
    raise ValueError(f"{out_path}: no frames to write")
  return n


def render_sequence(sequence, tracks: Mapping[str, np.ndarray], out_path: str,
                    max_frames: Optional[int] = None, scale: Optional[float] = None, fps: float = 20,
                    colors: Optional[Mapping[str, Color]] = None, gt_label: str = "ground truth") -> int:
  """Renders a sequence with its ground truth and every tracker's boxes into a GIF or MP4.

  Frame t shows ``sequence.boxes[t]`` (label `gt_label`, green; skipped where NaN) and
  ``tracks[name][t]`` for every tracker (skipped where NaN or where the track has fewer than t + 1
  rows), plus the frame number (``sequence.frame_numbers``) in the top-left corner.

  Args:
    sequence: a `Sequence` (frames, boxes [T, 4]).
    tracks: tracker name -> float [T', 4] x, y, w, h, row t for frame t.
    out_path: .gif or .mp4.
    max_frames: render only the first `max_frames` frames.
    scale: resize factor for frames and boxes (e.g. 0.5 for smaller GIFs); None = 1.
    fps: frames per second of the animation.
    colors: optional label -> (r, g, b).
    gt_label: label of the ground-truth box.
  Returns:
    the number of frames written.
  """
  _check_extension(out_path)
  import cv2

  n = len(sequence.frames)
  if max_frames is not None:
    n = min(n, int(max_frames))
  scale = 1.0 if scale is None else float(scale)
  if not scale > 0:
    raise ValueError(f"scale must be positive, got {scale}")
  gt = np.asarray(sequence.boxes, np.float64).reshape(-1, 4)
  tracks = {k: np.asarray(v, np.float64).reshape(-1, 4) for k, v in tracks.items()}
  colors = dict(colors or {})
  colors.setdefault(gt_label, GT_COLOR)
  for i, k in enumerate(tracks):
    colors.setdefault(k, PALETTE[i % len(PALETTE)])

  numbers = getattr(sequence, "frame_numbers", None)

  def frames():
    for t in range(n):
      f = np.asarray(sequence.frames[t])
      if scale != 1.0:
        h, w = f.shape[:2]
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        f = cv2.resize(f, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
      boxes = {}
      if t < len(gt):
        boxes[gt_label] = gt[t] * scale
      for k, v in tracks.items():
        if t < len(v):
          boxes[k] = v[t] * scale
      yield render_boxes(f, boxes, colors, caption=f"#{numbers[t] if numbers is not None and t < len(numbers) else t + 1}")

  return write_animation(frames(), out_path, fps=fps)
