"""Pictures of ROLO's heatmap output next to the frame (the paper's occlusion figures, Fig. 6).

Each picture is two panels of the frame's size side by side:

* left: the frame with the ground truth (red), the assigned YOLO detection (blue) and ROLO's
  decoded box (green) — the paper's colours;
* right: the LSTM's 32×32 output heatmap, values clipped to [0, 1], nearest-neighbour upsampled to
  the frame and drawn with the 'jet' colour map over a darkened grey copy of the frame
  (``0.35 · grey + 0.65 · jet(heat)``), with the same boxes.

``heat_on_target`` measures what the pictures show: the share of the (clipped, non-negative) heat
that lies inside the ground-truth box, cells weighted by their overlap with it::

    on_target = Σ_c heat_c · mask_c / Σ_c heat_c,   mask = models.rolo.box_to_mask(gt)

(NaN when the ground truth is absent or there is no positive heat). 1 means all heat is on the
target.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence as Seq, Tuple

import numpy as np

from rolo_jax.eval import render

GT_COLOR = (255, 40, 40)
DET_COLOR = (40, 120, 255)
ROLO_COLOR = (40, 230, 40)
DEFAULT_COLORS = {"ground truth": GT_COLOR, "YOLO": DET_COLOR, "ROLO": ROLO_COLOR}


def _square(heatmap) -> np.ndarray:
  h = np.asarray(heatmap, np.float64)
  if h.ndim == 1:
    s = int(round(np.sqrt(h.size)))
    if s * s != h.size:
      raise ValueError(f"heatmap of {h.size} values is not square")
    h = h.reshape(s, s)
  if h.ndim != 2 or h.shape[0] != h.shape[1]:
    raise ValueError(f"heatmap must be [S*S] or [S, S], got {h.shape}")
  return h


def colorize(heatmap, size: Tuple[int, int]) -> np.ndarray:
  """uint8 RGB [H, W, 3] 'jet' picture of a heatmap clipped to [0, 1]; size = (width, height)."""
  import cv2

  h = np.clip(np.nan_to_num(_square(heatmap)), 0.0, 1.0)
  u8 = np.round(h * 255).astype(np.uint8)
  big = cv2.resize(u8, (int(size[0]), int(size[1])), interpolation=cv2.INTER_NEAREST)
  return cv2.applyColorMap(big, cv2.COLORMAP_JET)[..., ::-1].copy()


def heat_on_target(heatmap, gt_box, size: Tuple[int, int]) -> float:
  """Share of the heat inside the ground-truth box (module docstring). gt_box: [4] px xywh."""
  from rolo_jax.models import rolo
  from rolo_jax.models import yolo

  h = np.clip(np.nan_to_num(_square(heatmap)), 0.0, None)
  g = np.asarray(gt_box, np.float64).reshape(4)
  if not (np.all(np.isfinite(g)) and g[2] > 0 and g[3] > 0) or h.sum() <= 0:
    return float("nan")
  rel = np.asarray(yolo.to_relative(g, size[0], size[1]))
  mask = np.asarray(rolo.box_to_mask(rel, h.shape[0])).reshape(h.shape)
  return float(np.sum(h * mask) / np.sum(h))


def heatmap_panel(frame: np.ndarray, heatmap, boxes: Mapping[str, Seq[float]],
                  colors: Optional[Mapping[str, Tuple[int, int, int]]] = None,
                  caption: Optional[str] = None, scale: float = 1.0) -> np.ndarray:
  """The two-panel picture of one frame (module docstring).

  Args:
    frame: uint8 [H, W, 3].  heatmap: [S*S] or [S, S].
    boxes: label -> [4] px xywh (NaN boxes are skipped).
    colors: label -> RGB (defaults: DEFAULT_COLORS, then render's palette).
    caption: text for the left panel (e.g. the frame number).
    scale: resize factor applied to the frame and the boxes first.
  Returns:
    uint8 [H', 2 W' + 4, 3].
  """
  import cv2

  f = np.asarray(frame)
  if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
    raise ValueError(f"heatmap_panel: frame must be uint8 [H, W, 3], got {f.dtype} {f.shape}")
  if scale != 1.0:
    f = cv2.resize(f, (max(1, int(round(f.shape[1] * scale))), max(1, int(round(f.shape[0] * scale)))),
                   interpolation=cv2.INTER_LINEAR)
  h, w = f.shape[:2]
  boxes = {k: np.asarray(v, np.float64) * scale for k, v in boxes.items()}
  cols = dict(DEFAULT_COLORS)
  cols.update(colors or {})
  left = render.render_boxes(f, boxes, cols, caption=caption)
  grey = np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2).astype(np.float64)
  heat = colorize(heatmap, (w, h)).astype(np.float64)
  right = np.clip(np.round(0.35 * grey + 0.65 * heat), 0, 255).astype(np.uint8)
  right = render.render_boxes(right, {k: v for k, v in boxes.items()}, cols, caption="LSTM heatmap")
  gap = np.full((h, 4, 3), 255, np.uint8)
  return np.concatenate([left, gap, right], axis=1)


def write_heatmap_pictures(frames, heatmaps, boxes: Mapping[str, np.ndarray], frame_indices: Seq[int],
                           out_dir: str, *, prefix: str = "frame", gif: bool = True, fps: float = 4,
                           scale: float = 2.0, frame_numbers: Optional[Seq[int]] = None,
                           extra_caption: Optional[Mapping[int, str]] = None) -> List[str]:
  """Writes one PNG per listed frame (``<prefix>_<t:04d>.png``) and, with ``gif``, an animation
  ``<prefix>.gif`` of them.

  Args:
    frames: indexable uint8 frames (a FrameSource or [T, H, W, 3]).
    heatmaps: [T, S*S] LSTM outputs.
    boxes: label -> [T, 4] px per frame (e.g. 'ground truth', 'YOLO', 'ROLO').
    frame_indices: which frames (0-based).
    frame_numbers: what to print as the frame number (default t + 1).
    extra_caption: optional t -> text appended to the caption (e.g. 'occluded').
  Returns:
    the written paths (PNGs, then the GIF).
  """
  import cv2

  os.makedirs(out_dir, exist_ok=True)
  paths, pics = [], []
  for t in frame_indices:
    t = int(t)
    num = int(frame_numbers[t]) if frame_numbers is not None else t + 1
    cap = f"#{num}" + (f" {extra_caption[t]}" if extra_caption and t in extra_caption else "")
    pic = heatmap_panel(np.asarray(frames[t]), heatmaps[t], {k: v[t] for k, v in boxes.items()},
                        caption=cap, scale=scale)
    p = os.path.join(out_dir, f"{prefix}_{t:04d}.png")
    if not cv2.imwrite(p, pic[..., ::-1]):
      raise OSError(f"{p}: could not write the PNG")
    paths.append(p)
    pics.append(pic)
  if gif and pics:
    g = os.path.join(out_dir, f"{prefix}.gif")
    render.write_animation(pics, g, fps=fps)
    paths.append(g)
  return paths


__all__ = ["colorize", "heat_on_target", "heatmap_panel", "write_heatmap_pictures", "DEFAULT_COLORS"]
