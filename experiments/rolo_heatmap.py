"""ROLO's heatmap variant (paper §3.3, Fig. 6): train, score against YOLO and YOLO + SORT, and draw
the LSTM's heatmap next to the frame through occlusions.

    python -m experiments.rolo_heatmap                        # synthetic data, the three protocols
    python -m experiments.rolo_heatmap --protocol third_labels --workdir runs/rolo_heatmap
    python -m experiments.rolo_heatmap --smoke --workdir /tmp/rolo_hm_smoke   # seconds (tests)

Model (default --config tiny_heatmap): N = 3 frames per window, input [features, 32×32 mask of the
assigned detection], output a 32×32 heatmap (loss eq. 5: ‖H_target − H_pred‖² per window,
H_target the ground-truth box's mask), decoded to a box by ``models.rolo.heatmap_to_box`` (cells >
0.5, else the peak). ``--hidden_from faithful`` reads the heatmap from hidden units F..F+1023 of
an LSTM as wide as its input (the authors' model; slower). Detector, data, protocols and the
common flags: as experiments.rolo (see its docstring).

Occlusion pictures: in every held-out sequence the frames where the target is occluded (the
generator's ``covered_fraction`` >= 0.1, ground truth present) are grouped into runs of
consecutive frames; a run's statistics use its scored frames only (frames whose labels trained
ROLO are excluded): "heat on target" is the mean share of the heatmap's (non-negative) mass inside
the ground-truth box (``eval.heatmaps.heat_on_target``). A frame is "held" when YOLO's
assigned detection misses the target (none, or IoU < 0.5 with the ground truth) while at least half
of the heat stays on it.  Drawn: among runs with at least 3 YOLO misses, the one with the largest
share of held frames among its misses (then the most held frames, then the mean heat); without such
a run, the one with the most held frames (every run's statistics, with its held count, are listed
in metrics.json['occlusion']['all_runs']): frames from 3 before
to 3 after the run (at most 30, around its most covered frame), one PNG each plus a GIF, in
<workdir>/<protocol>/occlusion/<sequence>/ (captions mark occluded frames, frames without a
detection, and frames whose label was used in training). Left panel: frame with the ground truth
(red), the assigned YOLO detection (blue) and ROLO's decoded box (green); right panel: the
heatmap. metrics.json['occlusion'] names the sequence and the frames and lists, per frame, the
covered fraction, whether it was scored, YOLO's IoU, the heat on target and ROLO's IoU.

Outputs in --workdir: as experiments.rolo (metrics.json, overlap_table.md, success.png, gifs/,
rolo/, tracker/) plus occlusion/.

Expected runtime with no flags and a trained detector: ~5-7 min on 2 shared CPU cores.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Dict, List

import rolo_jax  # noqa: F401
import numpy as np

from experiments import _args
from experiments import rolo as rolo_exp
from rolo_jax.errors import ArgumentParser, cli_main

PAD = 3          # frames drawn before and after an occlusion
MAX_SHOWN = 30   # a longer occlusion is drawn around its most covered frame
MIN_MISSED = 3   # an occlusion run is a candidate picture when YOLO misses on this many frames


def occlusion_runs(cache, seq, score_mask, heat, *, covered_min: float = 0.1) -> List[Dict[str, Any]]:
  """Runs of consecutive occluded frames with a visible target that hold at least one scored
  frame; their statistics are over the scored frames only."""
  from rolo_jax.data import boxes as bx
  from rolo_jax.eval import heatmaps

  T = cache.num_frames
  scored = np.asarray(score_mask, bool)
  covered = np.asarray(seq.meta.get("covered_fraction", np.where(cache.occluded, 1.0, 0.0)), np.float64)
  gt_ok = np.all(np.isfinite(cache.gt), axis=1) & (np.nan_to_num(cache.gt[:, 2]) > 0)
  occ = (covered >= covered_min) & gt_ok
  runs, t = [], 0
  while t < T:
    if not occ[t]:
      t += 1
      continue
    s = t
    while t < T and occ[t]:
      t += 1
    frames = [k for k in range(s, t) if scored[k]]
    if not frames:
      continue
    det_iou = [float(bx.iou(cache.assigned[k], cache.gt[k])) if np.all(np.isfinite(cache.assigned[k])) else 0.0
               for k in frames]
    on = [heatmaps.heat_on_target(heat[k], cache.gt[k], cache.size) for k in frames]
    runs.append({"sequence": cache.name, "first": s, "last": t - 1, "frames": frames,
                 "covered": [float(covered[k]) for k in frames],
                 "yolo_missed": [d < 0.5 for d in det_iou], "yolo_iou": det_iou,
                 "heat_on_target": [float(v) for v in on],
                 "mean_heat_on_target": float(np.nanmean(on)) if np.any(np.isfinite(on)) else float("nan")})
  return runs


def held_frames(r: Dict[str, Any]) -> int:
  """Scored frames of an occlusion run where YOLO misses the target and >= half the heat is on it."""
  return sum(1 for m, h in zip(r["yolo_missed"], r["heat_on_target"]) if m and np.nan_to_num(h) >= 0.5)


def pick_run(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
  """The occlusion run to draw (the paper's Fig. 6 claim: the heat stays on the target while the
  detector loses it).  Among runs where YOLO misses on at least MIN_MISSED scored frames: the largest
  share of held frames among the misses (the whole occlusion, ideally), then the most held frames,
  then the mean heat.  Without such a run: the most held frames, then the most misses, the heat."""
  def key(r):
    missed = sum(r["yolo_missed"])
    heat = np.nan_to_num(r["mean_heat_on_target"])
    if missed >= MIN_MISSED:
      return (1, held_frames(r) / missed, held_frames(r), heat)
    return (0, held_frames(r), missed, heat)
  return max(runs, key=key)


def draw_occlusion(args, prep, raw, tracks, out_root: str, log=print) -> Dict[str, Any]:
  from rolo_jax.data import boxes as bx
  from rolo_jax.eval import heatmaps

  runs = []
  for cache, seq, m in zip(prep.test_caches, prep.test_seqs, prep.score_masks):
    runs.extend(occlusion_runs(cache, seq, m, raw[cache.name]))
  if not runs:
    log("no occluded scored frame in the test sequences: no occlusion pictures")
    return {"found": False}
  best = pick_run(runs)
  i = [c.name for c in prep.test_caches].index(best["sequence"])
  cache, seq = prep.test_caches[i], prep.test_seqs[i]
  lo, hi = max(0, best["first"] - PAD), min(cache.num_frames, best["last"] + PAD + 1)
  if hi - lo > MAX_SHOWN:
    cov = np.asarray(seq.meta.get("covered_fraction", np.zeros(cache.num_frames)), np.float64)
    peak = best["first"] + int(np.argmax(cov[best["first"]:best["last"] + 1]))
    lo = min(max(lo, peak - MAX_SHOWN // 2), hi - MAX_SHOWN)
    hi = lo + MAX_SHOWN
  shown = list(range(lo, hi))
  scored = np.asarray(prep.score_masks[i], bool)
  rolo_boxes = tracks["ROLO"][cache.name]
  boxes = {"ground truth": cache.gt, "YOLO": cache.assigned, "ROLO": rolo_boxes}
  occ_set = set(range(best["first"], best["last"] + 1))
  caption = {}
  for t in shown:
    words = (["occluded"] if t in occ_set else []) + (["no det"] if not np.all(np.isfinite(cache.assigned[t])) else [])
    words += [] if scored[t] else ["(label used in training)"]
    if words:
      caption[t] = ", ".join(words)
  out_dir = os.path.join(out_root, cache.name)
  paths = heatmaps.write_heatmap_pictures(seq.frames, raw[cache.name], boxes, shown, out_dir,
                                          extra_caption=caption, frame_numbers=seq.frame_numbers)
  per_frame = []
  for t in shown:
    per_frame.append({"frame": t, "frame_number": int(seq.frame_numbers[t]), "occluded": t in occ_set,
                      "scored": bool(scored[t]),
                      "covered": float(seq.meta.get("covered_fraction", np.zeros(cache.num_frames))[t]),
                      "yolo_assigned": bool(np.all(np.isfinite(cache.assigned[t]))),
                      "yolo_iou": float(bx.iou(cache.assigned[t], cache.gt[t]))
                      if np.all(np.isfinite(cache.assigned[t])) and np.all(np.isfinite(cache.gt[t])) else 0.0,
                      "heat_on_target": heatmaps.heat_on_target(raw[cache.name][t], cache.gt[t], cache.size),
                      "rolo_iou": float(bx.iou(rolo_boxes[t], cache.gt[t])) if np.all(np.isfinite(cache.gt[t])) else float("nan")})
  f0, f1 = best["first"], best["last"]
  log(f"occlusion pictures: {cache.name}, occluded frames {f0}..{f1} (0-based; frame numbers "
      f"{seq.frame_numbers[f0]}..{seq.frame_numbers[f1]}); on its {len(best['frames'])} scored frames YOLO "
      f"missed {sum(best['yolo_missed'])}, the heat kept >= half its mass on the target on {held_frames(best)} of "
      f"those, mean heat on target {best['mean_heat_on_target']:.2f} -> {out_dir}")
  return {"found": True, "sequence": cache.name, "occluded_frames": list(range(f0, f1 + 1)),
          "scored_occluded_frames": best["frames"],
          "shown_frames": shown, "yolo_missed_frames": int(sum(best["yolo_missed"])),
          "mean_heat_on_target": best["mean_heat_on_target"], "dir": out_dir, "paths": paths,
          "per_frame": per_frame,
          "held_frames": held_frames(best),
          "all_runs": [{k: r[k] for k in ("sequence", "first", "last", "mean_heat_on_target")} |
                       {"scored": len(r["frames"]), "yolo_missed": int(sum(r["yolo_missed"])),
                        "held": held_frames(r)} for r in runs]}


def run(args, log=print) -> Dict[str, Any]:
  args = rolo_exp.smoke_overrides(args)
  rolo_exp.check_args(args)
  cfg = rolo_exp.rolo_config(args)
  if cfg.mode != "heatmap":
    _args.usage_error(f"--config {args.config} is not a heatmap model")

  def pictures(v, params, boxes, raw, tracks, out_dir):
    return {"occlusion": draw_occlusion(args, v, raw, tracks, os.path.join(out_dir, "occlusion"), log)}

  return rolo_exp.run_protocols(args, cfg, log, title="ROLO heatmap", after=pictures)


# The flags are experiments.rolo's (add_common_args), and so is the refused workdir's hint.
@functools.partial(cli_main, mismatch_hint=rolo_exp.resume_flags)
def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__.split("\n")[0])
  rolo_exp.add_common_args(p, workdir=os.path.join("runs", "rolo_heatmap"), config="tiny_heatmap", steps=3000)
  run(p.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
