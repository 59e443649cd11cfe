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

A second measurement, ``oracle_runs``, runs the online tracker over whole sequences with half of
each fed-back box replaced by the ground truth (the centre, or the size), to show which of the two
errors costs the tracker its score once errors compound.

    python -m experiments.re3_curriculum --eval_only --probe      # writes <workdir>/probe.json
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence as Seq

import numpy as np

from rolo_jax.data import boxes as box_ops
from rolo_jax.errors import DataError
from rolo_jax.models import re3
from rolo_jax.trackers import re3 as re3_tracker

SIZES = (0.7, 0.85, 1.0, 1.15, 1.3)
OFFSETS = (0.0, 0.25)


def box_response(params, cfg: re3.Re3Config, sequences: Seq[Any], *, sizes=SIZES, offsets=OFFSETS,
                 every: int = 10) -> List[Dict[str, float]]:
  """The probe of the module docstring: one row per (size, offset) with the medians over frames.

  The two steps are the online tracker's own (`rolo_jax.trackers.re3`: its first-frame pass, then
  one tracking step without the 32-frame reset), run for all perturbations of a frame pair at
  once as K targets.

  Args:
    params, cfg: a Re3 model.
    sequences: Sequences with ground truth (xywh boxes, NaN where absent) and in-memory frames.
    sizes, offsets: the perturbations (size factor; centre offset in widths along x).
    every: probe frames 1, 1 + every, ...
  Returns:
    [{'size', 'offset', 'frames', 'size_ratio', 'centre_error', 'size_correction',
      'centre_correction'}] (corrections None where undefined: size 1 or offset 0).
  Raises:
    DataError: no probed frame pair has ground truth in both frames.
  """
  grid = [(float(s), float(o)) for s in sizes for o in offsets]
  sx = np.array([s for s, _ in grid])
  dx = np.array([o for _, o in grid])
  ratios, errs = [], []   # per frame pair: [len(grid)]
  for seq in sequences:
    boxes = np.asarray(seq.boxes, np.float64)
    for t in range(1, len(boxes), every):
      g0, g = boxes[t - 1], boxes[t]
      if not (np.all(np.isfinite(g0)) and np.all(np.isfinite(g)) and g0[2] > 0 and g[2] > 0):
        continue
      prev, cur = np.asarray(seq.frames[t - 1]), np.asarray(seq.frames[t])
      start = np.tile(box_ops.xywh_to_xyxy(g0).astype(np.float32), (len(grid), 1))
      moved = box_ops.scale_about_centre(np.tile(g, (len(grid), 1)), sx)
      moved[:, 0] += dx * g[2]
      state, _ = re3_tracker._first_pass(params, prev, start, cfg=cfg, context=re3_tracker.CONTEXT)
      _, out = re3_tracker._track_step(params, state, state, prev, cur,
                                       box_ops.xywh_to_xyxy(moved).astype(np.float32), cfg=cfg,
                                       context=re3_tracker.CONTEXT, reset=False)
      out = np.asarray(out)
      ratios.append((out[:, 2] - out[:, 0]) / g[2])
      errs.append((0.5 * (out[:, 0] + out[:, 2]) - (g[0] + g[2] / 2)) / g[2])
  if not ratios:
    raise DataError(None, "Re3 box-response probe: no frame pair with ground truth in both frames "
                          "among the probed ones")
  ratio, err = np.median(np.stack(ratios), axis=0), np.median(np.stack(errs), axis=0)
  rows = []
  for k, (s, off) in enumerate(grid):
    rows.append({"size": s, "offset": off, "frames": len(ratios),
                 "size_ratio": float(ratio[k]), "centre_error": float(err[k]),
                 "size_correction": None if s == 1.0 else (s - float(ratio[k])) / (s - 1.0),
                 "centre_correction": None if off == 0.0 else (off - float(err[k])) / off})
  return rows


ORACLE_MODES = ("tracker", "true size", "true centre", "true box")


def oracle_runs(params, cfg: re3.Re3Config, sequences: Seq[Any],
                modes: Seq[str] = ORACLE_MODES[:3]) -> List[Dict[str, Any]]:
  """The online tracker (`rolo_jax.trackers.re3.Re3Core`, 32-frame reset included) over each
  sequence, with the box it feeds back to itself corrected by the ground truth after every step:

  * ``'tracker'``: not at all (the tracker as it is);
  * ``'true size'``: its centre kept, width and height set to the ground truth's;
  * ``'true centre'``: its size kept, centre moved to the ground truth's;
  * ``'true box'``: replaced by the ground truth (a check: scores as the ground truth itself).

  Frames without ground truth keep the tracker's own box. The corrected box is what is reported
  and what the next crop is cut around. Scored with the OTB protocol (`rolo_jax.eval.otb`).

  Returns:
    [{'mode', 'auc', 'precision_20', 'per_sequence': {name: auc}}], one per mode, in order.
  """
  from rolo_jax.eval import otb

  unknown = [m for m in modes if m not in ORACLE_MODES]
  if unknown:
    raise ValueError(f"oracle_runs: unknown modes {unknown}; known: {ORACLE_MODES}")
  core = re3_tracker.Re3Core(params, cfg)
  rows = []
  for mode in modes:
    scores = {}
    for seq in sequences:
      gt = np.asarray(seq.boxes, np.float64)
      start = otb.start_index(gt)
      state = core.init_state(np.asarray(seq.frames[start]), gt[start][None])
      out = [gt[start]]
      for t in range(start + 1, len(gt)):
        state, b = core.step(state, np.asarray(seq.frames[t]))
        b = np.asarray(b, np.float64)[0]
        g = gt[t]
        if mode != "tracker" and np.all(np.isfinite(g)) and g[2] > 0 and g[3] > 0:
          centre, size = b[:2] + b[2:] / 2, b[2:]
          if mode in ("true centre", "true box"):
            centre = g[:2] + g[2:] / 2
          if mode in ("true size", "true box"):
            size = g[2:]
          b = np.concatenate([centre - size / 2, size])
          state = state._replace(boxes=np.asarray(box_ops.xywh_to_xyxy(b[None]), np.float32))
        out.append(b)
      scores[seq.name] = otb.score_sequence(gt, np.stack(out))   # out starts at the start frame
    agg = otb.aggregate(scores)
    rows.append({"mode": mode, "auc": float(agg["auc"]), "precision_20": float(agg["precision_20"]),
                 "per_sequence": {k: float(v.auc) for k, v in scores.items()}})
  return rows


def format_oracle_rows(rows: List[Dict[str, Any]]) -> str:
  """A Markdown table of ``oracle_runs`` rows."""
  lines = ["| fed-back box | success AUC | P@20 |", "|---|---|---|"]
  lines += [f"| {r['mode']} | {r['auc']:.4f} | {r['precision_20']:.4f} |" for r in rows]
  return "\n".join(lines)


def format_rows(rows: List[Dict[str, float]]) -> str:
  """A Markdown table of ``box_response`` rows."""
  f = lambda v: "—" if v is None else f"{v:.2f}"
  lines = ["| crop box size × | centre offset (widths) | output w / true w | size corrected | "
           "centre error (widths) | offset corrected |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['size']:.2f} | {r['offset']:+.2f} | {r['size_ratio']:.3f} | {f(r['size_correction'])} | "
                 f"{r['centre_error']:+.3f} | {f(r['centre_correction'])} |")
  return "\n".join(lines)
