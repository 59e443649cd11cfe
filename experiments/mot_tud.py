"""TUD-Campus (MOTChallenge 2015) from its public det.txt: SORT and the Association LSTM next to the
reference tracker output.

    python -m experiments.mot_tud                       # trains the boxes-only model if needed
    python -m experiments.mot_tud --checkpoint runs/association_boxes --out_dir runs/mot_tud
    python -m experiments.mot_tud --data DIR            # another folder with det.txt + gt.txt

TUD-Campus has no images here (det.txt, gt.txt and a reference tracker's output only), so the
Association LSTM runs on D-vectors built from the boxes and detection scores alone (mode 'boxes':
D = 1 score + 4 box values, normalised by the 640 x 480 frame), with phi from the boxes and the
LSTM's history.  Its model is the boxes-only model trained on synthetic videos
(``python -m experiments.association_lstm --config boxes``, workdir runs/association_boxes); when
that workdir has no checkpoint, this command trains it first (about 5-8 min on 2 shared cores).
No parameter is fitted on TUD-Campus.

Scored (MOTChallenge metrics, IoU >= 0.5; `rolo_jax.eval.mot`, which reproduces the reference
values of tracker_output.txt in ../shared/specs/association_lstm.md exactly):
  reference      tracker_output.txt as given
  sort           SORT, the paper's settings (max_age 1, min_hits 3, IoU 0.3)
  sort_max_age   SORT with max_age 30 (the Association tracker's track life-span)
  assoc_lstm     the Association LSTM tracker (boxes-only model, settings of --config boxes)
  assoc_no_phi   the same without phi (IoU / distance association; an ablation)

MEASURED (2 shared CPU cores, nice 19): 5 min 37 s from scratch (the boxes-only model trained
first), 8 s with the model present.  Result (no parameter fitted on TUD-Campus):
  reference     MOTA 0.526  IDF1 0.558  (the spec's values, reproduced)
  sort          MOTA 0.627  IDF1 0.606
  sort_max_age  MOTA 0.630  IDF1 0.738
  assoc_lstm    MOTA 0.596  IDF1 0.604
  assoc_no_phi  MOTA 0.585  IDF1 0.639

Writes to --out_dir: results/<tracker>.txt (MOTChallenge format), metrics.json, table.md,
tracks.png (box centre x over time, coloured by id: ground truth, SORT, Association LSTM,
reference).  Malformed det.txt / gt.txt rows: one line naming file and line, exit status 2; an
empty det.txt gives empty results (MOTA 0, every box a miss).
"""
from __future__ import annotations

import json
import os
import sys
import time

import rolo_jax  # noqa: F401  (backend choice before jax)

from experiments import _args
from rolo_jax.errors import ArgumentParser, DataError, cli_main


def parse_args(argv=None):
  from rolo_jax.data import paths

  shared = paths.shared_data()
  p = ArgumentParser(prog="python -m experiments.mot_tud", description=__doc__.split("\n")[0])
  p.add_argument("--data", default=os.path.join(shared, "mot", "TUD-Campus") if shared else None,
                 help="folder with det.txt, gt.txt (and tracker_output.txt)")
  p.add_argument("--checkpoint", default="runs/association_boxes",
                 help="boxes-only Association LSTM workdir (trained here when it has no checkpoint)")
  p.add_argument("--no_train", action="store_true", help="fail instead of training a missing model")
  p.add_argument("--out_dir", default="runs/mot_tud")
  p.add_argument("--frame_size", default="640x480", help="WIDTHxHEIGHT of TUD-Campus frames")
  p.add_argument("--no_progress", action="store_true")
  a = p.parse_args(argv)
  _args.check_paths(p, out_dirs=[("--out_dir", a.out_dir), ("--checkpoint", a.checkpoint)])
  return a


def _has_checkpoint(workdir: str) -> bool:
  d = os.path.join(workdir, "checkpoints")
  return os.path.isdir(d) and any(e.isdigit() for e in os.listdir(d))


@cli_main
def main(argv=None) -> int:
  from experiments import association_lstm as assoc_exp
  from rolo_jax.data.formats.mot import read_mot_file
  from rolo_jax.eval import mot as mot_eval
  from rolo_jax.mot import association_tracker as at
  from rolo_jax.mot import io as mot_io
  from rolo_jax.mot import run_mot, sort

  a = parse_args(argv)
  if not a.data:
    raise DataError("../shared/data", "not found: pass --data (a folder with det.txt and gt.txt)")
  det_path, gt_path = os.path.join(a.data, "det.txt"), os.path.join(a.data, "gt.txt")
  ref_path = os.path.join(a.data, "tracker_output.txt")
  if not os.path.isfile(det_path) and os.path.isfile(os.path.join(a.data, "det", "det.txt")):
    det_path, gt_path = os.path.join(a.data, "det", "det.txt"), os.path.join(a.data, "gt", "gt.txt")
  dets = read_mot_file(det_path, "det")
  if not len(dets.frame):   # valid MOT input (a detector that found nothing), but worth a word
    print(f"note: {det_path} holds no detections; the results are empty", file=sys.stderr)
  gt = read_mot_file(gt_path, "gt", allow_empty=False)
  # The reference tracker's results, read before any training or tracking: a damaged file is
  # named at once, not after the trackers have run.
  reference = read_mot_file(ref_path, "results") if os.path.isfile(ref_path) else None
  size = assoc_exp.parse_frame_size(a.frame_size)
  exp = assoc_exp.CONFIGS["boxes"]
  t0 = time.time()
  if not _has_checkpoint(a.checkpoint):
    if a.no_train:
      raise FileNotFoundError(f"{a.checkpoint}: no checkpoint (run python -m "
                              "experiments.association_lstm --config boxes)")
    print(f"no model in {a.checkpoint}: training the boxes-only model (--config boxes)")
    assoc_exp.train(exp, a.checkpoint, progress=not a.no_progress)
  train_s = time.time() - t0
  num_frames = max([int(t.frame.max()) + 1 for t in (dets, gt) if len(t)] or [0])
  trackers = {
      "sort": sort.Sort(),
      "sort_max_age": sort.Sort(max_age=exp.max_age),
      "assoc_lstm": at.from_checkpoint(a.checkpoint, assoc_exp.tracker_config(exp), size),
      "assoc_no_phi": at.from_checkpoint(a.checkpoint, assoc_exp.tracker_config(exp, use_phi=False),
                                         size),
  }
  if trackers["assoc_lstm"].dvec.mode != "boxes":
    raise DataError(a.checkpoint, f"the model needs {trackers['assoc_lstm'].dvec.mode!r} D-vectors; "
                                  "TUD-Campus has boxes only (train --config boxes)")
  hyps, seconds = {}, {}
  for name, tr in trackers.items():
    t1 = time.time()
    hyps[name] = run_mot(tr, dets, num_frames)
    seconds[name] = time.time() - t1
    mot_io.write_mot_results(os.path.join(a.out_dir, "results", f"{name}.txt"), hyps[name])
  if reference is not None:
    hyps = {"reference": reference, **hyps}
  metrics = {name: mot_eval.evaluate_sequence(gt, h) for name, h in hyps.items()}
  table = assoc_exp.overall_table(metrics)
  os.makedirs(a.out_dir, exist_ok=True)
  with open(os.path.join(a.out_dir, "table.md"), "w") as f:
    f.write(f"# TUD-Campus ({num_frames} frames, {len(gt)} gt boxes, {len(dets)} detections)\n\n")
    f.write(table)
  panels = {"ground truth": gt, "SORT": hyps["sort"], "Association LSTM": hyps["assoc_lstm"]}
  if "reference" in hyps:
    panels["reference"] = hyps["reference"]
  plot = assoc_exp.plot_tracks(panels, os.path.join(a.out_dir, "tracks.png"), title="TUD-Campus")
  with open(os.path.join(a.out_dir, "metrics.json"), "w") as f:
    json.dump({"metrics": metrics, "frame_size": size, "num_frames": num_frames,
               "checkpoint": os.path.abspath(a.checkpoint), "tracker_seconds": seconds,
               "train_seconds": train_s, "plot": plot}, f, indent=1, default=str)
  print(table)
  for name in ("reference", "sort", "assoc_lstm"):
    if name in metrics:
      print(f"{name}: MOTA {metrics[name]['mota']:.4f} IDF1 {metrics[name]['idf1']:.4f}")
  print(f"wrote {a.out_dir}/table.md, metrics.json, tracks.png, results/")
  return 0


if __name__ == "__main__":
  sys.exit(main())
