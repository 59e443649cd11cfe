"""Ablation: does MemTrack's memory help? Memory on vs the plain first-frame template (SiamFC-style).

    python -m experiments.memtrack_ablation                        # synthetic test split
    python -m experiments.memtrack_ablation --eval_otb ../shared/data/otb

Two models trained with the same data stream (seed), the same number of updates, batch, learning
rate schedule and the same feature extractor (identical conv/BN layers and initialisation):
  memory   ``cpu``        T_t = T_0 + r ⊙ T_retr (attention, LSTM controller, 8-slot memory)
  template ``cpu_nomem``  T_t = T_0 (the first-frame template; no controller or memory weights)
Both are tracked with the same online tracker (3 scales, penalty, damping, Hann window). A third
row runs the memory model's weights with its memory switched off at test time ('memory model,
T_0 only'): how much of its score comes from the memory read at all. A fourth row ('memory,
oracle writes') is a diagnostic, not a tracker: the memory model whose memory is written with the
exemplar cropped at the GROUND-TRUTH box of each frame instead of at its own estimate (searches
still follow its own estimates) -- the memory's value when what it stores is right, i.e. how much
of the gap to the template is the feedback of the tracker's own errors into the memory.

The memory model's workdir defaults to ``runs/memtrack``, the one ``python -m experiments.memtrack``
trains, so after that experiment only the template model is trained here (resuming is exact; a
finished workdir is not retrained). Writes ``<out>/ablation.json`` and prints the table with the
AUC difference and a paired per-sequence comparison.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import List, Optional

import rolo_jax  # noqa: F401

import numpy as np

from experiments import _args
from experiments import memtrack as exp
from rolo_jax.errors import cli_main


def build_parser():
  p = exp.build_parser("python -m experiments.memtrack_ablation")
  p.description = __doc__.split("\n\n")[0]
  p.add_argument("--nomem_workdir", default="runs/memtrack_nomem", help="the template model's workdir")
  p.add_argument("--out", default="runs/memtrack_ablation", help="where ablation.json goes")
  p.set_defaults(baselines="")
  return p


def run(args, log=print) -> dict:
  from rolo_jax.data import synthetic
  from rolo_jax.trackers.base import CoreTracker
  from rolo_jax.trackers.memtrack import load_core

  t0 = time.time()
  mem_cfg = args.config
  nomem_cfg = args.config + "_nomem" if not args.config.endswith("_nomem") else args.config
  res = {"configs": {"memory": mem_cfg, "template": nomem_cfg}, "steps": args.steps, "data": args.data}
  res["train"] = {"memory": exp.train_model(args, mem_cfg, args.workdir, log=log),
                  "template": exp.train_model(args, nomem_cfg, args.nomem_workdir, log=log)}
  factories = {
      "memory": (lambda c=load_core(args.workdir, memory=True): CoreTracker(c, name="memtrack")),
      "template": (lambda c=load_core(args.nomem_workdir, memory=False): CoreTracker(c, name="siamfc")),
      "memory model, T_0 only": (lambda c=load_core(args.workdir, memory=False): CoreTracker(c, name="siamfc")),
      "memory, oracle writes": OracleWrites(load_core(args.workdir, memory=True)),
  }
  sets = [("synthetic_test", synthetic.make_split("test", args.n_test))]
  if args.eval_otb:
    sets.append(("otb", exp.otb_sequences(args.eval_otb, args.otb_sequences)))
  for key, seqs in sets:
    log(f"\n{key}: {len(seqs)} sequences")
    r = exp.evaluate(factories, seqs, log=log)
    a = np.array([r["memory"]["per_sequence"][s.name] for s in seqs])
    b = np.array([r["template"]["per_sequence"][s.name] for s in seqs])
    r["difference"] = {"auc_memory_minus_template": r["memory"]["auc"] - r["template"]["auc"],
                       "sequences_memory_better": int(np.sum(a > b)),
                       "sequences_template_better": int(np.sum(a < b)),
                       "per_sequence_std_of_difference": float(np.std(a - b))}
    res[key] = r
    exp.print_table(f"{key}: memory vs first-frame template, success AUC", r_table(r), log)
    d = r["difference"]
    log(f"  memory − template: {d['auc_memory_minus_template']:+.3f} AUC; memory better on "
        f"{d['sequences_memory_better']}/{len(seqs)} sequences, worse on {d['sequences_template_better']}")
  res["seconds"] = time.time() - t0
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "ablation.json"), "w") as f:
    json.dump(res, f, indent=1)
  log(f"\n{res['seconds']:.0f} s; results in {os.path.join(args.out, 'ablation.json')}")
  return res


class OracleWrites:
  """Per-sequence factory (``experiments.memtrack.evaluate`` calls it with (sequence, start)) of the
  memory tracker whose memory gets the exemplar at the ground-truth box of each frame."""
  per_sequence = True

  def __init__(self, core):
    self.core = core

  def __call__(self, seq, start: int):
    return _OracleWriteTracker(self.core, np.asarray(seq.boxes, np.float64), start)


class _OracleWriteTracker:
  name = "memtrack_oracle_writes"

  def __init__(self, core, gt: np.ndarray, start: int):
    self.core, self.gt, self.t, self.state = core, gt, start, None

  def init(self, frame, box):
    self.state = self.core.init_state(frame, np.asarray(box, np.float64)[None])

  def update(self, frame):
    self.t += 1
    self.state, boxes = self.core.step(self.state, frame)
    self.state = self.core.write_at(self.state, frame, self.gt[self.t][None])  # NaN: keeps the estimate's
    return boxes[0]


def r_table(r: dict) -> dict:
  return {k: v for k, v in r.items() if k != "difference"}


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  exp.check_args(parser, args)
  _args.check_paths(parser, out_dirs=[("--out", args.out), ("--nomem_workdir", args.nomem_workdir)])
  from rolo_jax.models import memtrack
  twin = args.config if args.config.endswith("_nomem") else args.config + "_nomem"
  if twin not in memtrack.CONFIGS:
    parser.error(f"--config {args.config!r} has no template-only twin {twin!r}; choose one of "
                 f"{', '.join(c for c in memtrack.CONFIGS if c + '_nomem' in memtrack.CONFIGS)}")
  run(args)
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main, mismatch_hint=exp.resume_flags)())
