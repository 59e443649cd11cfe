"""MemTrack: train on synthetic videos (default) and compare with CSRT / KCF / a static box.

    python -m experiments.memtrack                                   # the CPU run (see below)
    python -m experiments.memtrack --eval_otb ../shared/data/otb     # + the OTB folder
    python -m experiments.memtrack --config paper --data vid --data_dir /data/ILSVRC2015 \\
        --steps 100000 --lr 1e-4 --lr_decay_every 10000 --workdir runs/memtrack_paper

What it does (running the same --workdir again resumes training, or skips it when finished):
  1. trains ``--config`` (default ``cpu``: 63/127 crops, stride 4, controller 128, 160,391 params;
     see rolo_jax/models/memtrack.py) on 17-frame samples of the synthetic train split, batch 8,
     Adam lr 1e-3 × 0.8 every 100 steps, ``--steps`` (600) updates (rolo_jax/train/memtrack_task.py);
     deviation from the spec: the exemplars after the first are augmented by up to ±24 px / ±25%
     (``--exemplar_shift`` / ``--exemplar_stretch``; spec ±8 px / ±10%). Training writes exemplars
     cut at the ground truth, the tracker writes them at its own estimates; with the spec's small
     augmentation the memory learnt to trust its slots and the tracker's own errors fed back
     (WORKSPACE.md, MemTrack: the ablation and the session-3 runs);
  2. tracks the held-out synthetic test split (``make_split('test', --n_test)``, 150 frames each)
     with MemTrack and with the baselines (OPE, OTB toolkit conventions: rolo_jax.eval.otb);
  3. with ``--eval_otb DIR``: the same trained model on every sequence of an OTB-layout folder
     (frame ranges from otb100_sequences.json), next to the baselines;
  4. draws the memory at work on one test sequence (``<workdir>/memory.png``: frames with boxes,
     response and attention maps, read / write weights and usage over time).
Writes ``<workdir>/results.json`` (AUC, precision@20, frames/s per tracker and data set; the
training summary with wall-clock and CPU seconds) and prints the tables.

Runtime (2-core CPU): training dominates, ~1.5 s wall per update of the ``cpu`` config on 2 quiet
cores; the evaluation adds MemTrack (3,000 frames), CSRT, KCF and the static box on the 20 test
sequences. The measured total is in WORKSPACE.md; results.json ('timing') records the wall-clock and
CPU seconds of every run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional

import rolo_jax  # noqa: F401  (backend choice before jax is imported)

import numpy as np

from rolo_jax.errors import ArgumentParser, cli_main
from experiments import _args

BASELINES = ("csrt", "kcf", "static")


def build_parser(prog: str = "python -m experiments.memtrack") -> argparse.ArgumentParser:
  p = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", default="runs/memtrack", help="checkpoints, logs, results")
  p.add_argument("--config", default="cpu", help="model config (rolo_jax.models.memtrack.CONFIGS)")
  p.add_argument("--data", default="synthetic", help="synthetic | otb | got10k | vid")
  p.add_argument("--data_dir", default=None, help="dataset root for --data otb/got10k/vid")
  p.add_argument("--num_synthetic", type=_args.whole(1), default=150, help="synthetic training sequences")
  p.add_argument("--steps", type=_args.whole(1), default=600, help="training updates")
  p.add_argument("--batch", type=_args.whole(1), default=8)
  p.add_argument("--lr", type=_args.POSITIVE, default=1e-3)
  p.add_argument("--lr_decay_every", type=_args.whole(1), default=100, help="lr × 0.8 every this many steps")
  p.add_argument("--exemplar_shift", type=_args.NONNEGATIVE, default=24.0,
                 help="training exemplars (t > 0) moved by up to this many px of a 127-px crop "
                      "(spec: 8; see the module docstring)")
  p.add_argument("--exemplar_stretch", type=_args.NONNEGATIVE, default=0.25,
                 help="training exemplars (t > 0) scaled by 1 ± up to this (spec: 0.10)")
  p.add_argument("--seed", type=_args.whole(0), default=0)
  p.add_argument("--checkpoint_every", type=_args.whole(1), default=100)
  p.add_argument("--n_test", type=_args.whole(1), default=20, help="held-out synthetic test sequences")
  p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated tracker names")
  p.add_argument("--eval_otb", default=None, help="an OTB-layout folder to evaluate on as well")
  p.add_argument("--otb_sequences", default=None,
                 help="otb100_sequences.json, the frame ranges for --eval_otb and --data otb "
                      "(default: <folder>/otb100_sequences.json or <folder>/../otb_annotations/...)")
  p.add_argument("--no_picture", action="store_true", help="skip memory.png")
  p.add_argument("--no_progress", action="store_true")
  return p


# --------------------------------------------------------------------------- pieces


def train_model(args, config_name: Optional[str] = None, workdir: Optional[str] = None, log=print):
  """Trains (or resumes / skips) one model; returns the training summary."""
  import jax

  from rolo_jax.models import memtrack
  from rolo_jax.train import memtrack_task as mt

  name = config_name or args.config
  if name not in memtrack.CONFIGS:
    raise ValueError(f"unknown --config {name!r}; choose from {', '.join(memtrack.CONFIGS)}")
  cfg = memtrack.CONFIGS[name]
  tc = mt.TaskConfig(batch=args.batch, lr=args.lr, lr_decay_every=args.lr_decay_every,
                     exemplar_shift=args.exemplar_shift, exemplar_stretch=args.exemplar_stretch)
  workdir = workdir or args.workdir
  t0, c0 = time.time(), time.process_time()
  seqs = mt.training_sequences(args.data, args.data_dir, num_synthetic=args.num_synthetic,
                               sequences_json=args.otb_sequences)
  sampler = mt.MemTrackSampler(seqs, cfg, tc, seed=args.seed)
  data_s = time.time() - t0
  n_params = memtrack.count_params(jax.eval_shape(lambda k: memtrack.init(k, cfg), jax.random.PRNGKey(0)))
  log(f"[{name}] {len(sampler.tracks)} training tracks ({args.data}) in {data_s:.0f} s; "
      f"{n_params:,} params; training {args.steps} steps in {workdir}")
  _, summary = mt.train(cfg, tc, sampler, workdir=workdir, total_steps=args.steps, seed=args.seed,
                        data=args.data if args.data != "synthetic" else f"synthetic:{args.num_synthetic}",
                        checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
  summary["data_seconds"] = data_s
  summary["total_seconds"] = time.time() - t0
  summary["total_cpu_seconds"] = time.process_time() - c0
  log(f"[{name}] {summary['steps']} steps; this run {summary['steps_this_run']} steps in "
      f"{summary['seconds']:.0f} s wall / {summary['cpu_seconds']:.0f} s CPU")
  return summary


def evaluate(factories: Dict[str, Callable], sequences, log=print) -> Dict[str, dict]:
  """OPE of every tracker on every sequence: {name: {auc, precision_20, fps, seconds, per_sequence}}."""
  from rolo_jax.eval import otb
  from rolo_jax.trackers import run_tracker

  out = {}
  for name, make in factories.items():
    t0 = time.time()
    scores, fps = {}, []
    for seq in sequences:
      gt = np.asarray(seq.boxes, np.float64)
      fn = seq.frame_numbers
      omit = seq.meta.get("init_omit_ranges", seq.meta.get("init_omit", ()))
      s = otb.start_index(gt, omit, int(fn[0]) if len(fn) else 1)
      # A factory with per_sequence = True is called with (sequence, start): diagnostics that need
      # the ground truth (experiments/memtrack_ablation.py's oracle writes).
      tracker = make(seq, s) if getattr(make, "per_sequence", False) else make()
      boxes, f = run_tracker(tracker, seq, start=s, warn=False)
      scores[seq.name] = otb.score_segment(gt[s:], boxes, start=s)
      fps.append(f)
    agg = otb.aggregate(scores)
    out[name] = {"auc": agg["auc"], "precision_20": agg["precision_20"],
                 "fps": float(np.median([f for f in fps if np.isfinite(f)] or [np.nan])),
                 "seconds": time.time() - t0,
                 "per_sequence": {k: round(v.auc, 4) for k, v in scores.items()}}
    log(f"  {name:22s} AUC {agg['auc']:.3f}  precision@20 {agg['precision_20']:.3f}  "
        f"{out[name]['fps']:.0f} frames/s  ({out[name]['seconds']:.0f} s)")
  return out


def tracker_factories(workdir: str, baselines, kinds=("memtrack",)) -> Dict[str, Callable]:
  """Factories for the learned trackers of one workdir (one loaded core each) and the baselines."""
  from rolo_jax import trackers
  from rolo_jax.trackers.base import CoreTracker
  from rolo_jax.trackers.memtrack import load_core

  out: Dict[str, Callable] = {}
  for kind in kinds:
    core = load_core(workdir, memory=(kind == "memtrack"))
    out[kind] = (lambda c=core, k=kind: CoreTracker(c, name=k))
  for b in baselines:
    out[b] = (lambda b=b: trackers.make_tracker(b))
  return out


def otb_sequences(path: str, sequences_json: Optional[str]):
  from rolo_jax.data.formats.otb import find_sequences_json, read_otb_dataset

  # Strict, as every OTB reader of the project: boxes and frames that differ in number are an error.
  return read_otb_dataset(path, sequences_json=sequences_json or find_sequences_json(path))


def print_table(title: str, results: Dict[str, dict], log=print):
  w = max([10] + [len(k) for k in results])
  log(f"\n{title}")
  log(f"  {'tracker':{w}s} {'AUC':>6s} {'P@20':>6s} {'fps':>7s}")
  for name, r in sorted(results.items(), key=lambda kv: -kv[1]["auc"]):
    log(f"  {name:{w}s} {r['auc']:6.3f} {r['precision_20']:6.3f} {r['fps']:7.1f}")


def memory_picture(workdir: str, seq, path: str, num_frames: int = 6) -> str:
  """Tracks ``seq`` with MemTrack, recording the memory, and draws it to ``path``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from rolo_jax.trackers.base import CoreTracker, run_tracker
  from rolo_jax.trackers.memtrack import load_core

  core = load_core(workdir, memory=True, record=True)
  boxes, _ = run_tracker(CoreTracker(core, name="memtrack"), seq, warn=False)
  rec = core.records  # one per update: frames 1 .. T-1
  n_t = len(rec)
  show = np.linspace(1, n_t, num_frames).astype(int)
  fig = plt.figure(figsize=(2.2 * num_frames, 11))
  gs = fig.add_gridspec(6, num_frames, height_ratios=[1.2, 1, 1, 0.9, 0.9, 0.9])
  for col, t in enumerate(show):
    ax = fig.add_subplot(gs[0, col])
    ax.imshow(seq.frames[t])
    for b, c in ((seq.boxes[t], "lime"), (boxes[t], "red")):
      if np.all(np.isfinite(b)):
        ax.add_patch(plt.Rectangle(b[:2], b[2], b[3], fill=False, color=c, lw=1.2))
    ax.set_title(f"frame {t}", fontsize=8)
    ax.axis("off")
    r = rec[t - 1]
    for row, key, cmap in ((1, "response", "viridis"), (2, "attention", "magma")):
      ax = fig.add_subplot(gs[row, col])
      ax.imshow(r[key], cmap=cmap)
      ax.set_xticks([])
      ax.set_yticks([])
      if col == 0:
        ax.set_ylabel(key, fontsize=8)
  n_slots = rec[0]["read_weight"].shape[0]
  for row, key in ((3, "read_weight"), (4, "write_weight")):
    ax = fig.add_subplot(gs[row, :])
    im = ax.imshow(np.stack([r[key] for r in rec], 1), aspect="auto", cmap="Blues",
                   extent=(0.5, n_t + 0.5, n_slots - 0.5, -0.5), vmin=0, vmax=1)
    ax.set_ylabel(f"{key.replace('_', ' ')}\n(slot)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
  ax = fig.add_subplot(gs[5, :])
  frames = np.arange(1, n_t + 1)
  gates = np.stack([r["gates"] for r in rec])
  for k, label in enumerate(("no-write gate", "read-overwrite gate", "allocate gate")):
    ax.plot(frames, gates[:, k], lw=1, label=label)
  ax.plot(frames, [float(np.mean(r["residual_gate"])) for r in rec], lw=1, label="mean residual gate r")
  ax.plot(frames, [float(np.max(r["read_weight"])) for r in rec], lw=1, label="max read weight")
  ax.set_xlim(0.5, n_t + 0.5)
  ax.set_ylim(-0.02, 1.02)
  ax.legend(fontsize=7, ncol=5, loc="lower left")
  ax.set_xlabel("frame (top row: green ground truth, red MemTrack)", fontsize=8)
  fig.suptitle(f"MemTrack memory at work: {seq.name}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


# --------------------------------------------------------------------------- main


def run(args, log=print) -> dict:
  from rolo_jax.data import synthetic

  t_all, c_all = time.time(), time.process_time()
  results: dict = {"config": args.config, "steps": args.steps, "data": args.data,
                   "machine": {"cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}}
  results["train"] = train_model(args, log=log)
  baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
  t0 = time.time()
  test = synthetic.make_split("test", args.n_test)
  log(f"\nheld-out synthetic test split: {len(test)} sequences × {len(test[0])} frames")
  results["synthetic_test"] = evaluate(tracker_factories(args.workdir, baselines), test, log=log)
  eval_s = time.time() - t0
  print_table(f"synthetic test ({len(test)} sequences), success AUC", results["synthetic_test"], log)
  mt_auc = results["synthetic_test"]["memtrack"]["auc"]
  if "csrt" in results["synthetic_test"]:
    cs = results["synthetic_test"]["csrt"]["auc"]
    log(f"  MemTrack − CSRT: {mt_auc - cs:+.3f} AUC ({'beats' if mt_auc > cs else 'does not beat'} CSRT)")
  if args.eval_otb:
    seqs = otb_sequences(args.eval_otb, args.otb_sequences)
    log(f"\nOTB folder {args.eval_otb}: {len(seqs)} sequences")
    results["otb"] = evaluate(tracker_factories(args.workdir, baselines), seqs, log=log)
    print_table(f"OTB folder ({len(seqs)} sequences), success AUC", results["otb"], log)
  if not args.no_picture:
    # The test sequence with the most distractors and occluders makes the most telling picture.
    pick = max(test, key=lambda s: s.meta.get("num_distractors", 0) + s.meta.get("num_occluders", 0))
    path = memory_picture(args.workdir, pick, os.path.join(args.workdir, "memory.png"))
    log(f"\nmemory picture ({pick.name}): {path}")
  results["timing"] = {"train_wall_s": results["train"]["seconds"],
                       "train_cpu_s": results["train"]["cpu_seconds"],
                       "synthetic_eval_wall_s": eval_s,
                       "total_wall_s": time.time() - t_all, "total_cpu_s": time.process_time() - c_all,
                       "load_average_1min_end": os.getloadavg()[0]}
  with open(os.path.join(args.workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  log(f"\ntotal {results['timing']['total_wall_s']:.0f} s wall, {results['timing']['total_cpu_s']:.0f} s "
      f"CPU (load average now {results['timing']['load_average_1min_end']:.1f} on {os.cpu_count()} cores); "
      f"results in {os.path.join(args.workdir, 'results.json')}")
  return results


def check_args(parser: argparse.ArgumentParser, args) -> None:
  """Usage errors (one line, exit 2) for flag values the run cannot use."""
  from rolo_jax.models import memtrack
  if args.config not in memtrack.CONFIGS:
    parser.error(f"--config {args.config!r}: choose from {', '.join(memtrack.CONFIGS)}")
  if not args.exemplar_stretch < 1:   # (>= 0 for both: their argparse type)
    parser.error(f"--exemplar_shift {args.exemplar_shift} / --exemplar_stretch {args.exemplar_stretch}: "
                 "expected a shift >= 0 px and a stretch in [0, 1)")
  from rolo_jax import trackers
  from rolo_jax.train.memtrack_task import DATA_KINDS
  if args.data not in DATA_KINDS:
    parser.error(f"--data {args.data!r}: choose from {', '.join(DATA_KINDS)}")
  if args.data != "synthetic" and not args.data_dir:
    parser.error(f"--data {args.data} needs --data_dir")
  unknown = trackers.unknown_names(args.baselines)
  if unknown:
    parser.error(f"--baselines: unknown tracker(s) {', '.join(unknown)}; available: "
                 f"{', '.join(trackers.available())}")
  _args.check_paths(parser, out_dirs=[("--workdir", args.workdir)], in_dirs=[("--eval_otb", args.eval_otb)])


# (checkpoint meta section, field) -> the flag that sets it, for a refused workdir's hint. A
# different --config or --data has no entry: the message's list of fields names it.
FLAG_OF = {("task", "lr"): "lr", ("task", "batch"): "batch", ("task", "lr_decay_every"): "lr_decay_every",
           ("task", "exemplar_shift"): "exemplar_shift", ("task", "exemplar_stretch"): "exemplar_stretch",
           ("train", "seed"): "seed"}


def resume_flags(saved_values) -> str:
  """The flags that give a refused workdir's checkpoint settings back ('' when a difference has
  none; `_args.resume_hint`)."""
  return _args.resume_hint(saved_values, FLAG_OF)


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  check_args(parser, args)
  run(args)
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main, mismatch_hint=resume_flags)())
