"""Run a tracker on a video file or a folder of frames.

    python -m rolo_jax.track --frames DIR  --init x,y,w,h --tracker kcf --out boxes.txt
    python -m rolo_jax.track --video a.mp4 --init x,y,w,h --tracker re3 --checkpoint CKPT \\
        --out boxes.txt --render tracked.gif --max_frames 300

Frames of a folder are taken in natural sort order (img2 before img10); a video is decoded with
OpenCV and converted to RGB. The output has one ``x,y,w,h`` line per frame, the first being the
``--init`` box; the speed printed counts the tracker's update calls only (not decoding or init).
Bad input (missing folder, unreadable video, frames of different sizes, malformed or out-of-image
--init or one the tracker cannot start on, unknown tracker, missing or damaged checkpoint, an --out
or --render path that is a folder, --out and --render naming one file, an output path that is an
input file such as the video or a frame, an animation frame larger than 4096 px on a side) prints
one ``error: ...`` line to stderr and exits with status 2; output paths and the animation's size
are checked before tracking starts. A video that decodes to fewer frames than its header says is
tracked as far as it decodes, with a note.

The animation (--render) is limited to MAX_RENDER_SIDE = 4096 px on its longer side after
--render_scale (larger GIFs take minutes and gigabytes to write); a larger one is refused, naming
the --render_scale that fits.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import List, Optional

import numpy as np

from rolo_jax.errors import ArgumentParser, DataError, check_output_file, cli_main, same_file


MAX_RENDER_SIDE = 4096  # px, longer side of an animation frame (after --render_scale)


class _UsageError(Exception):
  pass


class VideoFrames:
  """Frames of a video file, decoded on demand (RGB uint8 [H, W, 3]).

  Reading is sequential: asking for frame i after frame i - 1 (or i again) costs one decode; asking
  for an earlier frame reopens the video and decodes up to it. The length is counted once when the
  video is opened (container frame counts are unreliable), up to `max_frames`.
  """

  def __init__(self, path: str, max_frames: Optional[int] = None):
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise DataError(self.path, "video file does not exist")
    import cv2

    cap = self._open()
    # What the container's header claims (0 or garbage for some formats): only used for a note.
    self.header_frames = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    n = 0
    while (max_frames is None or n < max_frames) and cap.grab():
      n += 1
    cap.release()
    if n == 0:
      raise DataError(self.path, "no frame could be decoded from this video")
    self.n = n
    self._cap = None
    self._pos = 0  # index of the next frame self._cap will return
    self._last = None  # (index, frame)
    first = self[0]
    self._size = (int(first.shape[1]), int(first.shape[0]))

  def _open(self):
    # FFmpeg's own log lines ("moov atom not found") would add to our one-line errors; quiet them
    # unless the user chose a level (read by OpenCV when it first opens a video).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cap = cv2.VideoCapture(self.path)
    if not cap.isOpened():
      raise DataError(self.path, "cannot open this file as a video (OpenCV VideoCapture failed)")
    return cap

  def __len__(self) -> int:
    return self.n

  def size(self) -> tuple[int, int]:
    return self._size

  def __getitem__(self, i: int) -> np.ndarray:
    import cv2

    i = int(i)
    if not 0 <= i < self.n:
      raise IndexError(f"frame {i} outside 0..{self.n - 1}")
    if self._last is not None and self._last[0] == i:
      return self._last[1]
    if self._cap is None or i < self._pos:
      if self._cap is not None:
        self._cap.release()
      self._cap, self._pos = self._open(), 0
    while self._pos < i:
      if not self._cap.grab():
        raise DataError(self.path, f"cannot decode frame {self._pos + 1}")
      self._pos += 1
    ok, bgr = self._cap.read()
    if not ok or bgr is None:
      raise DataError(self.path, f"cannot decode frame {i + 1}")
    self._pos += 1
    if bgr.ndim == 2:
      bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    frame = np.ascontiguousarray(bgr[..., 2::-1])
    self._last = (i, frame)
    return frame

  def close(self):
    if self._cap is not None:
      self._cap.release()
      self._cap = None


def parse_box(text: str) -> np.ndarray:
  """'x,y,w,h' (commas, optionally with spaces) -> float64 [4]; _UsageError when malformed."""
  parts = [p for p in text.replace(" ", ",").split(",") if p]
  try:
    box = np.array([float(p) for p in parts], np.float64)
  except ValueError:
    raise _UsageError(f"--init {text!r}: expected 4 numbers x,y,w,h") from None
  if box.shape != (4,) or not np.all(np.isfinite(box)):
    raise _UsageError(f"--init {text!r}: expected 4 finite numbers x,y,w,h")
  if box[2] < 1 or box[3] < 1:
    raise _UsageError(f"--init {text!r}: width and height must be positive, at least 1 px")
  return box


def format_number(v: float) -> str:
  """Shortest plain text for a box coordinate: 12.0 -> '12', 12.25 -> '12.25' (4 decimals at most)."""
  s = f"{round(float(v), 4):.4f}".rstrip("0").rstrip(".")
  return "0" if s in ("-0", "") else s


def format_box(box) -> str:
  return ",".join(format_number(v) for v in np.asarray(box, np.float64).reshape(4))


def write_boxes(path: str, boxes: np.ndarray) -> None:
  """One 'x,y,w,h' line per row of `boxes` [T, 4] (the parent folder is created)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  with open(path, "w") as f:
    for b in np.asarray(boxes, np.float64).reshape(-1, 4):
      f.write(format_box(b) + "\n")


def load_frames(frames_dir: Optional[str], video: Optional[str], max_frames: Optional[int]):
  """The frame source for --frames or --video, limited to `max_frames`."""
  from rolo_jax.data.images import list_images
  from rolo_jax.data.sequence import ImageFiles

  if frames_dir is not None:
    if not os.path.isdir(frames_dir):
      raise DataError(frames_dir, "frame folder does not exist")
    paths = list_images(frames_dir)
    return ImageFiles(paths[:max_frames] if max_frames is not None else paths)
  return VideoFrames(video, max_frames=max_frames)


def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m rolo_jax.track", description=__doc__.split("\n\n")[0])
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--frames", help="folder of frame images (natural sort order)")
  src.add_argument("--video", help="video file readable by OpenCV")
  p.add_argument("--init", required=True, help="initial box x,y,w,h in pixels in the first frame (write --init=-3,4,20,20 when x is negative)")
  p.add_argument("--tracker", required=True, help="tracker name (e.g. static, kcf, csrt)")
  p.add_argument("--out", required=True, help="output text file: one x,y,w,h line per frame")
  p.add_argument("--checkpoint", default=None, help="learned parameters for learned trackers")
  p.add_argument("--render", default=None, help="also write an animation (.gif or .mp4)")
  p.add_argument("--render_fps", type=float, default=20, help="frames/s of the animation")
  p.add_argument("--render_scale", type=float, default=None,
                 help=f"resize factor of the animation; the rendered frame may be at most "
                      f"{MAX_RENDER_SIDE} px on a side")
  p.add_argument("--max_frames", type=int, default=None, help="track only the first N frames")
  return p


def check_outputs_apart(args) -> None:
  """_UsageError when --out and --render name one file, or either names an input file (the
  video, a frame of the --frames folder, a checkpoint file): it would be overwritten."""
  from rolo_jax.data.images import list_images

  outputs = [(f, p) for f, p in (("--out", args.out), ("--render", args.render)) if p is not None]
  if len(outputs) == 2 and same_file(args.out, args.render):
    raise _UsageError(f"--out and --render name one file ({args.out}); the animation would "
                      "overwrite the boxes: give them different paths")
  inputs = [("--video", args.video), ("--checkpoint", args.checkpoint)]
  if args.frames is not None and os.path.isdir(args.frames):
    try:
      inputs += [("--frames", p) for p in list_images(args.frames)]
    except DataError:
      pass  # no frames there: load_frames says so
  for flag, path in outputs:
    for what, inp in inputs:
      if inp is not None and os.path.isfile(inp) and same_file(path, inp):
        raise _UsageError(f"{flag} {path}: this is an input file ({what} {inp}); writing there "
                          "would destroy it: give another path")


def check_render_size(w: int, h: int, scale: Optional[float]) -> None:
  """_UsageError when the animation of w x h frames at `scale` exceeds MAX_RENDER_SIDE."""
  s = 1.0 if scale is None else float(scale)
  rw, rh = max(1, int(round(w * s))), max(1, int(round(h * s)))  # as render_sequence resizes
  if max(rw, rh) <= MAX_RENDER_SIDE:
    return
  fit = math.floor(MAX_RENDER_SIDE / max(w, h) * 1000) / 1000
  hint = f"use --render_scale {fit:g} or less" if fit > 0 else "the frames are too large to render"
  if scale is None:
    raise _UsageError(f"--render: the {w}x{h} frames exceed the animation's limit of "
                      f"{MAX_RENDER_SIDE} px on a side; {hint}")
  raise _UsageError(f"--render_scale {scale:g} would render {rw}x{rh} frames (from {w}x{h}); the "
                    f"animation is limited to {MAX_RENDER_SIDE} px on a side: {hint}")


def run(args) -> int:
  from rolo_jax import trackers
  from rolo_jax.data.sequence import Sequence, frame_size

  box = parse_box(args.init)
  if args.max_frames is not None and args.max_frames < 1:
    raise _UsageError(f"--max_frames must be at least 1, got {args.max_frames}")
  if args.render is not None:
    ext = os.path.splitext(args.render)[1].lower()
    if ext not in (".gif", ".mp4"):
      raise _UsageError(f"--render {args.render!r}: the animation must end in .gif or .mp4")
  for flag, v in (("--render_fps", args.render_fps), ("--render_scale", args.render_scale)):
    if v is not None and not (math.isfinite(v) and v > 0):
      raise _UsageError(f"{flag} must be a positive number, got {v}")
  check_output_file(args.out, "--out")      # before any tracking, so no work is lost
  check_output_file(args.render, "--render")
  check_outputs_apart(args)
  try:
    tracker = trackers.make_tracker(args.tracker, checkpoint=args.checkpoint)
  except trackers.UnknownTrackerError as e:
    raise _UsageError(str(e)) from None
  except ValueError as e:
    if isinstance(e, DataError):
      raise
    raise _UsageError(f"--tracker {args.tracker}: {e}") from None

  frames = load_frames(args.frames, args.video, args.max_frames)
  if isinstance(frames, VideoFrames) and len(frames) < min(frames.header_frames, args.max_frames or 1 << 62):
    print(f"note: {args.video}: the video's header says {frames.header_frames} frames but only "
          f"{len(frames)} could be decoded (a truncated or damaged file?); tracking those",
          file=sys.stderr)
  w, h = frame_size(frames)
  x, y, bw, bh = box
  if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
    raise _UsageError(f"--init {args.init}: the box lies outside the {w}x{h} first frame")
  if args.render is not None:
    check_render_size(w, h, args.render_scale)

  source = args.frames if args.frames is not None else args.video
  name = os.path.basename(os.path.normpath(source))
  boxes0 = np.full((len(frames), 4), np.nan)
  boxes0[0] = box
  seq = Sequence(name, frames, boxes0)
  info = {}
  try:
    boxes, fps = trackers.run_tracker(tracker, seq, info=info, warn=False)
  except trackers.TrackerInitError as e:
    raise _UsageError(f"--init {args.init}: {e}") from None
  write_boxes(args.out, boxes)
  note = f", {info['failures']} invalid boxes replaced by the previous one" if info["failures"] else ""
  speed = f"{fps:.1f} frames/s (update calls only{note})" if info["updates"] else "no update calls"
  print(f"{tracker.name}: tracked {len(boxes)} frames of {source}, {speed}; boxes in {args.out}")
  if args.render is not None:
    from rolo_jax.eval.render import render_sequence

    blank = Sequence(name, frames, np.full((len(frames), 4), np.nan))
    n = render_sequence(blank, {tracker.name: boxes}, args.render, scale=args.render_scale,
                        fps=args.render_fps)
    print(f"rendered {n} frames to {args.render}")
  if isinstance(frames, VideoFrames):
    frames.close()
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return run(args)
  except _UsageError as e:
    parser.error(str(e))


if __name__ == "__main__":
  sys.exit(cli_main(main)())
