"""ROLO's step study (paper §4.4, Fig. 9): average overlap and LSTM frames/s for N = 1, 3, 6, 9.

    python -m experiments.rolo_steps                           # synthetic data, protocol 'first_third'
    python -m experiments.rolo_steps --steps_list 1,3,6,9 --detector runs/yolo_pretrain
    python -m experiments.rolo_steps --smoke --workdir /tmp/rolo_steps_smoke   # seconds (tests)

As the paper, the study repeats experiment 2 (--protocol first_third: ROLO trains on the first
third of every sequence's frames and is scored on the rest) with one coordinate model per window
length N (--config tiny: faithful read-out from hidden units, zero state per window; the other
common flags as experiments.rolo). Every model sees the same cached detections, so YOLO and
YOLO + SORT are scored once, on the same frames, as references.

LSTM frames/s: the jitted window step on one window [1, N, D] per frame, after a warm-up, median of
3 runs of 200 frames (``rolo_task.lstm_fps``; the detector is not included, as in the paper's
60 fps LSTM figure). The machine may be shared: frames/s are comparable within one run only.

Outputs in --workdir:
  steps_table.md / steps.json   N, average overlap, success AUC, AO on occluded frames, LSTM frames/s
  steps.png                     average overlap and frames/s against N
  N<k>/                         each model's training run (orbax; re-running resumes)

Expected runtime with no flags and a trained detector: ~8-12 min on 2 shared CPU cores.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict

import rolo_jax  # noqa: F401

from experiments import _args
from experiments import rolo as rolo_exp
from rolo_jax.errors import ArgumentParser, cli_main


def plot_steps(rows, refs, out_png: str) -> str:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6.5, 4.2))
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  ns = [r["N"] for r in rows]
  ax.plot(ns, [r["average_overlap"] for r in rows], "o-", color="C2", linewidth=2, label="ROLO average overlap")
  for i, (name, v) in enumerate(refs.items()):
    ax.axhline(v, color=f"C{i}", linestyle="--", linewidth=1, label=f"{name} ({v:.3f})")
  ax.set(xlabel="LSTM steps N", ylabel="average overlap", xticks=ns, title="ROLO step study")
  ax2 = ax.twinx()
  ax2.plot(ns, [r["lstm_fps"] for r in rows], "s:", color="C3", label="LSTM frames/s")
  ax2.set_ylabel("LSTM frames/s")
  h1, l1 = ax.get_legend_handles_labels()
  h2, l2 = ax2.get_legend_handles_labels()
  ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
  ax.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  return out_png


def run(args, log=print) -> Dict[str, Any]:
  from rolo_jax.train import rolo_task

  t0 = time.time()
  args = rolo_exp.smoke_overrides(args)
  try:
    ns = [int(x) for x in str(args.steps_list).split(",") if x.strip()]
  except ValueError:
    ns = []
  if not ns or min(ns) < 1:
    _args.usage_error(f"--steps_list must be positive integers, got {args.steps_list!r}")
  if len(set(ns)) < len(ns):
    # each N trains in <workdir>/N<n>: a repeat would only re-read the same model and row
    _args.usage_error(f"--steps_list repeats a window length: {args.steps_list!r}")
  rolo_exp.check_args(args)
  base = rolo_exp.rolo_config(args)
  if base.mode != "coord":
    _args.usage_error("the step study uses a coordinate model")
  if args.protocol == "all":
    _args.usage_error("the step study runs one protocol (--protocol first_third, the paper's)")
  os.makedirs(args.workdir, exist_ok=True)
  prep = rolo_exp.view(rolo_exp.prepare(args, log), args.protocol)
  base_tracks = rolo_exp.baseline_tracks(prep)
  ref = rolo_task.evaluate(base_tracks, prep.test_caches, prep.score_masks)["summary"]
  rows = []
  for n in ns:
    cfg = base.replace(window=n, name=f"{base.name}_N{n}")
    params, boxes, _, info = rolo_exp.train_and_track(args, prep, cfg, os.path.join(args.workdir, f"N{n}"), log)
    s = rolo_task.evaluate({"ROLO": boxes}, prep.test_caches, prep.score_masks)["summary"]["ROLO"]
    fps = rolo_task.lstm_fps(params, cfg, num_frames=20 if args.smoke else 200)
    rows.append({"N": n, "average_overlap": s["average_overlap"], "auc": s["auc"],
                 "precision_20": s["precision_20"], "average_overlap_occluded": s["average_overlap_occluded"],
                 "lstm_fps": fps, "train_seconds": info["train_seconds"], "train_examples": info["train_examples"]})
    log(f"N={n}: AO {s['average_overlap']:.3f}  AUC {s['auc']:.3f}  LSTM {fps:.0f} frames/s")
  refs = {k: v["average_overlap"] for k, v in ref.items()}
  lines = ["| N | average overlap | success AUC | P@20 | AO occluded | LSTM frames/s | train s |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['N']} | {r['average_overlap']:.3f} | {r['auc']:.3f} | {r['precision_20']:.3f} | "
                 f"{r['average_overlap_occluded']:.3f} | {r['lstm_fps']:.0f} | {r['train_seconds']:.0f} |")
  for k, v in ref.items():
    lines.append(f"| {k} (reference) | {v['average_overlap']:.3f} | {v['auc']:.3f} | {v['precision_20']:.3f} | "
                 f"{v['average_overlap_occluded']:.3f} | | |")
  with open(os.path.join(args.workdir, "steps_table.md"), "w") as f:
    f.write(f"ROLO step study, protocol {args.protocol}, {len(prep.test_caches)} sequences "
            f"({args.data_dir or 'synthetic'})\n\n" + "\n".join(lines) + "\n")
  plot_steps(rows, refs, os.path.join(args.workdir, "steps.png"))
  out = {"protocol": args.protocol, "data": args.data_dir or "synthetic", "rows": rows,
         "references": {k: {kk: vv for kk, vv in v.items() if kk not in ("success", "precision")}
                        for k, v in ref.items()},
         "test_sequences": [c.name for c in prep.test_caches], "config": dict(base.__dict__),
         "total_seconds": time.time() - t0, **prep.detector_info}
  with open(os.path.join(args.workdir, "steps.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)
  log("\n".join(lines))
  log(f"done in {time.time() - t0:.0f} s; results in {args.workdir}")
  return out


@cli_main
def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__.split("\n")[0])
  rolo_exp.add_common_args(p, workdir=os.path.join("runs", "rolo_steps"), config="tiny", steps=1500)
  p.set_defaults(protocol="first_third", num_test=30, gifs=0)
  p.add_argument("--steps_list", default="1,3,6,9", help="window lengths N to compare")
  run(p.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
