"""Baseline trackers (static box, OpenCV KCF, OpenCV CSRT) on every sequence of an OTB folder.

    python -m experiments.otb_baselines --data ../shared/data/otb --out runs/otb_baselines
    python -m rolo_jax.evaluate ...   # scores <out>/<tracker>/ against the ground truth

Each tracker runs once per sequence (OPE): initialised with the ground truth at the sequence's start
frame (the first frame not listed in initOmit/ and with valid ground truth, as the OTB toolkit
chooses it; frame 0 for nearly all sequences) and run to the end. Outputs:

  <out>/<tracker>/<Seq>.txt   one x,y,w,h row per frame from the start frame (the toolkit's layout;
                              <Seq> is the benchmark's own spelling, e.g. 'basketball', 'jogging-1',
                              as in the toolkit's result folders)
  <out>/fps.json              {tracker: mean over sequences of the per-sequence frames/s}
  <out>/runs.json             per tracker and sequence: start index, frames, fps, OpenCV failures

Frames/s count the trackers' update calls only (not JPEG decoding or init). The frame ranges come
from otb100_sequences.json (--sequences; found automatically as <data>/otb100_sequences.json or
<data>/../otb_annotations/otb100_sequences.json), which also locates initOmit/.
Runtime on the 7 sequences of ../shared/data/otb (about 1,950 frames): ~1-3 min on one CPU core,
mostly CSRT and JPEG decoding.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import List, Optional

import numpy as np

from rolo_jax import trackers
from rolo_jax.data.formats.otb import find_sequences_json
from experiments import _args
from rolo_jax.errors import ArgumentParser, cli_main

TRACKERS = ("static", "kcf", "csrt")


def result_name(seq) -> str:
  return seq.meta.get("benchmark_name", seq.name)


def run(data: str, out: str, sequences_json: Optional[str] = None, tracker_names=TRACKERS,
        names: Optional[List[str]] = None, log=print) -> dict:
  """Runs every tracker on every sequence and writes the result files; returns the fps table."""
  from rolo_jax.data.formats.otb import read_otb_dataset
  from rolo_jax.eval.otb import start_index
  from rolo_jax.track import write_boxes

  if sequences_json is None:
    sequences_json = find_sequences_json(data)
  seqs = read_otb_dataset(data, sequences_json=sequences_json, names=names)
  log(f"{len(seqs)} sequences from {data}" +
      (f" (frame ranges: {sequences_json})" if sequences_json else " (no sequences json)"))
  for name in tracker_names:
    trackers.make_tracker(name)  # fail early on an unknown name
  fps_table, runs = {}, {}
  for name in tracker_names:
    runs[name] = {}
    t0 = time.time()
    for seq in seqs:
      fn = seq.frame_numbers
      omit = seq.meta.get("init_omit_ranges", ())
      s = start_index(seq.boxes, omit, int(fn[0]) if len(fn) else 1)
      info = {}
      tracker = trackers.make_tracker(name)
      boxes, fps = trackers.run_tracker(tracker, seq, start=s, info=info, warn=False)
      write_boxes(os.path.join(out, name, result_name(seq) + ".txt"), boxes)
      runs[name][result_name(seq)] = {
          "start": s, "frames": len(boxes), "fps": fps, "invalid_boxes": info["failures"],
          "opencv_failures": int(getattr(tracker, "failures", 0))}
    per_seq = [r["fps"] for r in runs[name].values() if np.isfinite(r["fps"])]
    fps_table[name] = float(np.mean(per_seq)) if per_seq else None
    mean = "n/a" if fps_table[name] is None else f"{fps_table[name]:.1f}"
    log(f"{name}: {len(seqs)} sequences, mean {mean} frames/s "
        f"(wall {time.time() - t0:.0f} s) -> {os.path.join(out, name)}")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "fps.json"), "w") as f:
    json.dump(fps_table, f, indent=1)
  with open(os.path.join(out, "runs.json"), "w") as f:
    json.dump(runs, f, indent=1)
  return fps_table


def _checkpoint_free() -> List[str]:
  """The registered trackers that can be made without a checkpoint."""
  out = []
  for name in trackers.available():
    try:
      trackers.make_tracker(name)
    except (ValueError, ImportError):
      continue
    out.append(name)
  return out


def main(argv: Optional[List[str]] = None) -> int:
  p = ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data", required=True, help="folder of OTB sequence folders")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--sequences", default=None, help="otb100_sequences.json (frame ranges)")
  p.add_argument("--trackers", default=",".join(TRACKERS), help="comma-separated tracker names")
  p.add_argument("--names", default=None, help="comma-separated sequence folders (default: all)")
  args = p.parse_args(argv)
  names = args.names.split(",") if args.names else None
  tracker_names = [t.strip() for t in args.trackers.split(",") if t.strip()]
  if not tracker_names:
    p.error(f"--trackers {args.trackers!r}: no tracker names; known: {', '.join(trackers.available())}")
  for flag, given in (("--trackers", tracker_names), ("--names", [n.strip() for n in names or []])):
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
      p.error(f"{flag}: {', '.join(twice)} named twice")
  for name in tracker_names:
    try:
      trackers.make_tracker(name)
    except trackers.UnknownTrackerError as e:
      p.error(str(e))
    except ValueError:   # a learned tracker: it needs a checkpoint, which this command has no flag for
      p.error(f"--trackers {name}: a learned tracker needs a checkpoint, which otb_baselines does not "
              f"take; it runs {', '.join(_checkpoint_free())}. Track with a learned one through "
              f"'python -m rolo_jax.track --checkpoint DIR' and score it with 'python -m rolo_jax.evaluate'")
  if names is not None and not [n for n in names if n.strip()]:
    p.error(f"--names {args.names!r}: no sequence names")
  _args.check_paths(p, out_dirs=[("--out", args.out)])
  run(args.data, args.out, args.sequences, tracker_names, names)
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main)())
