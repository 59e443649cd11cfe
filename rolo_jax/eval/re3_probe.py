"""How a trained Re3 corrects a wrong crop box: one step's response to a known perturbation.

A tracker that is fed its own predictions only stays on the target if, when the previous box is
off, its next output moves back toward the truth.  This probe measures that for position and size
separately, without the feedback loop (so the numbers do not depend on how the errors compound):

  for labelled frames t of the given sequences (every ``every``-th frame from 1 on):
    state  = one step from the zero state with both crops from frame t-1 at the ground truth g_{t-1}
             (what the tracker does on its first frame);
    box    = g_t scaled by ``size`` about its centre (w and h), then moved by ``offset`` x its width
             along x;
    output = the next step with both crops at ``box`` (frame t-1 and frame t), decoded to the image.
  reported, medians over the frames:
    size_ratio   = output width / true width   (1: size corrected; ``size``: the box size copied)
    centre_error = (output centre x - true centre x) / true width   (0: position corrected;
                   ``offset``: the offset copied)
    size_correction   = (size - size_ratio) / (size - 1)       (1 = fully corrected, 0 = copied)
    centre_correction = (offset - centre_error) / offset        (likewise)

    python -m experiments.re3_curriculum --eval_only --probe      # writes <workdir>/probe.json
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence as Seq

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.data import crops as crops_lib
from rolo_jax.models import re3

SIZES = (0.7, 0.85, 1.0, 1.15, 1.3)
OFFSETS = (0.0, 0.25)


def _xyxy(b: np.ndarray) -> np.ndarray:
  return np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], np.float32)


def _step_fn(cfg: re3.Re3Config):
  size = cfg.crop_size

  def fn(params, prev_frames, frames, prev_boxes, boxes, valid_hw):
    def crop(img, box):
      return crops_lib.crop_batch(img, crops_lib.context_window(box, 2.0), size, 0.0, valid_hw)

    z = crop(prev_frames, prev_boxes)
    state = re3.initial_state(cfg, boxes.shape[0])
    state, _ = re3.step(params, state, re3.preprocess(jnp.stack([z, z], 1), cfg.mean_rgb), cfg=cfg)
    pair = jnp.stack([crop(prev_frames, boxes), crop(frames, boxes)], 1)
    _, (y, _) = re3.step(params, state, re3.preprocess(pair, cfg.mean_rgb), cfg=cfg)
    return crops_lib.from_crop(y / cfg.output_scale, crops_lib.context_window(boxes, 2.0))

  return jax.jit(fn)


def box_response(params, cfg: re3.Re3Config, sequences: Seq[Any], *, sizes=SIZES, offsets=OFFSETS,
                 every: int = 10) -> List[Dict[str, float]]:
  """The probe of the module docstring: one row per (size, offset) with the medians over frames.

  Args:
    params, cfg: a Re3 model.
    sequences: Sequences with ground truth (xywh boxes, NaN where absent) and in-memory frames.
    sizes, offsets: the perturbations (size factor; centre offset in widths along x).
    every: probe frames 1, 1 + every, ...
  Returns:
    [{'size', 'offset', 'frames', 'size_ratio', 'centre_error', 'size_correction',
      'centre_correction'}] (corrections None where undefined: size 1 or offset 0).
  """
  fn = _step_fn(cfg)
  samples = []   # (prev_frame, frame, g_prev xyxy, g xywh, hw)
  for seq in sequences:
    boxes = np.asarray(seq.boxes, np.float64)
    for t in range(1, len(boxes), every):
      g0, g = boxes[t - 1], boxes[t]
      if not (np.all(np.isfinite(g0)) and np.all(np.isfinite(g)) and g0[2] > 0 and g[2] > 0):
        continue
      prev, cur = np.asarray(seq.frames[t - 1]), np.asarray(seq.frames[t])
      samples.append((prev, cur, _xyxy(g0), g, prev.shape[:2]))
  if not samples:
    raise ValueError("box_response: no frame pair with ground truth in both frames")
  rows = []
  for s in sizes:
    for off in offsets:
      ratios, errs = [], []
      for prev, cur, g0, g, hw in samples:
        cx, cy = g[0] + g[2] / 2 + off * g[2], g[1] + g[3] / 2
        w, h = g[2] * s, g[3] * s
        box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], np.float32)
        out = np.asarray(fn(params, prev[None], cur[None], g0[None], box,
                            np.array([hw], np.int32)))[0]
        ratios.append((out[2] - out[0]) / g[2])
        errs.append((0.5 * (out[0] + out[2]) - (g[0] + g[2] / 2)) / g[2])
      ratio, err = float(np.median(ratios)), float(np.median(errs))
      rows.append({"size": float(s), "offset": float(off), "frames": len(samples),
                   "size_ratio": ratio, "centre_error": err,
                   "size_correction": None if s == 1.0 else (s - ratio) / (s - 1.0),
                   "centre_correction": None if off == 0.0 else (off - err) / off})
  return rows


def format_rows(rows: List[Dict[str, float]]) -> str:
  """A Markdown table of ``box_response`` rows."""
  f = lambda v: "—" if v is None else f"{v:.2f}"
  lines = ["| crop box size × | centre offset (widths) | output w / true w | size corrected | "
           "centre error (widths) | offset corrected |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['size']:.2f} | {r['offset']:+.2f} | {r['size_ratio']:.3f} | {f(r['size_correction'])} | "
                 f"{r['centre_error']:+.3f} | {f(r['centre_correction'])} |")
  return "\n".join(lines)
