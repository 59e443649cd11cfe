"""Association LSTM trained on synthetic multi-object videos, then tracked online against SORT.

    python -m experiments.association_lstm                      # train + evaluate (MEASURED below)
    python -m experiments.association_lstm --config smoke --workdir /tmp/assoc_smoke   # seconds
    python -m experiments.association_lstm --config boxes --workdir runs/association_boxes
                                                                # boxes-only model (det.txt input)
    python -m experiments.association_lstm --eval_only          # re-score the workdir's model
    python -m experiments.association_lstm --detector yolo --yolo_checkpoint runs/yolo_pretrain
                                                                # the tiny YOLO's detections and
                                                                # feature maps instead of simulated
    python -m experiments.association_lstm --track_det DET.txt --checkpoint runs/association_boxes \\
        --out RESULTS.txt [--frame_size 640x480] [--gt GT.txt]  # track a MOTChallenge det.txt

Running the same --workdir again resumes training from its last checkpoint (orbax; params, Adam
state, step, data position, RNG) or, when training is done, only re-evaluates.

Data.  Training: `num_train_seqs` synthetic multi-object videos (`make_split('train', multi=True)`,
64 frames, 2-4 targets of 6 classes that cross and occlude each other, occluders, illumination
change, motion blur, camera pan), each with `variants` independent draws of simulated detections.
Evaluation: `num_test_seqs` held-out videos (`make_split('test', multi=True)`, 150 frames), one
detection draw each, the SAME detections for every tracker.  Simulated detections
(`rolo_jax.mot.detections.simulate_detections`): centre jitter 4% and size jitter 6% of the box,
5% random misses plus up to 60% more under occlusion (p = 0.05 + 0.6 (1 - visible fraction)),
0.3 false positives per frame (half of them duplicate-like boxes next to a real object), 10% wrong
class labels, scores 0.85 +- 0.1 (true) and U(0.3, 0.8) (false).

Trackers scored (MOTChallenge metrics, IoU >= 0.5, `rolo_jax.eval.mot`, class rules off):
  sort            SORT with the paper's settings (max_age 1, min_hits 3, IoU 0.3)
  sort_max_age    SORT with the Association tracker's max_age (same track life-span)
  assoc_lstm      the Association LSTM tracker (`rolo_jax.mot.association_tracker`)
  assoc_no_phi    the same without phi (IoU / distance association only; an ablation)

Writes to --workdir: checkpoints/ (orbax), train_log.jsonl, tb/, train_summary.json,
metrics.json (overall and per-sequence metrics of every tracker, runtimes), sequences.md
(per-sequence IDF1 / MOTA / ID switches), results/<tracker>/<seq>.txt (MOTChallenge files),
tracks_<seq>.png (x-centre of every track over time, coloured by id: ground truth, SORT,
Association LSTM).

MEASURED (2 CPU cores shared with 5-7 other jobs, load average 8-12, this run under nice 19):
  default (fresh workdir): 6 min 31 s wall = data 40 s + training 2,500 steps 314 s (~8 steps/s)
  + evaluation of 4 trackers on 20 x 150 frames ~20 s; the Association tracker runs ~370 frames/s
  (pixels mode, model step included), SORT ~2,500.  Re-running the finished workdir (evaluation
  only): 55 s.  --config boxes: 5 min 44 s.
  Held-out result of that run (20 videos, 9,305 gt boxes, 9,004 detections):
    IDF1 assoc_lstm 0.776 / sort 0.477 / sort_max_age 0.565 / assoc_no_phi 0.687;
    MOTA 0.826 / 0.663 / 0.666 / 0.820.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Dict, Optional, Tuple

import rolo_jax  # noqa: F401  (backend choice before jax)
import numpy as np

from rolo_jax.errors import ArgumentParser, DataError, cli_main
from rolo_jax.mot.association_tracker import TrackerConfig
from experiments import _args

_TRACKER = TrackerConfig()   # the experiment's tracker settings default to the tracker's own
_TRACKER_FIELDS = ("sim_threshold", "iou_gate", "reid_distance", "reid_sim_threshold", "iou_weight",
                   "max_age", "min_hits", "output")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Data, model, training and tracker settings of one run."""
  name: str = "default"
  features: str = "pixels"          # D-vector mode: pixels | boxes | features (YOLO maps)
  model: str = "small"              # rolo_jax.models.association.CONFIGS name
  num_train_seqs: int = 200
  train_frames: int = 64
  variants: int = 2                 # detection draws per training video
  num_test_seqs: int = 20
  test_frames: int = 150
  max_dets: int = 8                 # N slots per frame in training windows
  window: int = 16                  # τ
  gaps: Tuple[int, ...] = (1, 2, 4, 8, 15)
  batch: int = 16
  steps: int = 2500
  lr: float = 2e-3
  warmup_steps: int = 50
  clip_norm: float = 1.0
  seed: int = 0
  checkpoint_every: int = 500
  # Tracker (_TRACKER_FIELDS; defaults: rolo_jax.mot.association_tracker.TrackerConfig's).
  sim_threshold: float = _TRACKER.sim_threshold
  iou_gate: float = _TRACKER.iou_gate
  reid_distance: float = _TRACKER.reid_distance
  reid_sim_threshold: Optional[float] = _TRACKER.reid_sim_threshold
  iou_weight: float = _TRACKER.iou_weight
  max_age: int = _TRACKER.max_age
  min_hits: int = _TRACKER.min_hits
  output: str = _TRACKER.output

  def replace(self, **kw) -> "ExperimentConfig":
    return dataclasses.replace(self, **kw)


# The fields a checkpoint depends on (a resumed run must agree on them; tracker settings and the
# number of steps may change).
TRAIN_FIELDS = ("features", "model", "num_train_seqs", "train_frames", "variants", "max_dets",
                "window", "gaps", "batch", "lr", "warmup_steps", "clip_norm", "seed")

CONFIGS: Dict[str, ExperimentConfig] = {
    "default": ExperimentConfig(),
    "boxes": ExperimentConfig(name="boxes", features="boxes", model="boxes"),
    "smoke": ExperimentConfig(name="smoke", model="tiny_pixels", num_train_seqs=3, variants=1,
                              train_frames=16, num_test_seqs=2, test_frames=24, window=4,
                              gaps=(1,), batch=4, steps=4, checkpoint_every=2, warmup_steps=1),
    "smoke_boxes": ExperimentConfig(name="smoke_boxes", features="boxes", model="tiny_boxes",
                                    num_train_seqs=3, train_frames=16, variants=1,
                                    num_test_seqs=2, test_frames=24,
                                    window=4, gaps=(1,), batch=4, steps=4, checkpoint_every=2,
                                    warmup_steps=1),
}


# ------------------------------------------------------------------------------------------ setup

def dvec_config(exp: ExperimentConfig, feature_channels: int = 64):
  from rolo_jax.data import synthetic
  from rolo_jax.mot import detections as det_lib

  k = len(synthetic.CLASS_NAMES)
  if exp.features == "boxes":
    return det_lib.DVectorConfig("boxes", num_classes=1)
  if exp.features == "features":
    return det_lib.DVectorConfig("features", num_classes=k, pool=2, channels=feature_channels)
  return det_lib.DVectorConfig("pixels", num_classes=k, pool=4, channels=3)


def model_config(exp: ExperimentConfig, dvec):
  from rolo_jax.models import association

  if exp.model.startswith("tiny"):
    base = association.CONFIGS["tiny"]
  else:
    base = association.CONFIGS[exp.model]
  return base.replace(num_classes=dvec.num_classes, appearance_dim=dvec.appearance_dim)


def tracker_config(exp: ExperimentConfig, **over):
  kw = {f: getattr(exp, f) for f in _TRACKER_FIELDS}
  kw.update(over)
  return TrackerConfig(**kw)


def make_detector(yolo_checkpoint: Optional[str]):
  """None (simulated detections) or frames -> (Objects, feature maps) of a tiny YOLO."""
  if not yolo_checkpoint:
    return None, None
  from rolo_jax.mot import detections as det_lib
  from rolo_jax.train import yolo_task

  params, ycfg, _ = yolo_task.load_detector(yolo_checkpoint)
  channels = [s for s in ycfg.layers if s[0] == "conv"][-1][2]
  return (lambda frames: det_lib.yolo_detect(params, ycfg, frames)), channels


# ------------------------------------------------------------------------------------------ train

_UPDATES: Dict[Any, Any] = {}


def train(exp: ExperimentConfig, workdir: str, *, detector=None, feature_channels: int = 64,
          progress: bool = True, stop_after: Optional[int] = None, log=print):
  """Trains (or resumes) the model in `workdir`. Returns (params, model cfg, dvec cfg, summary)."""
  import jax
  from rolo_jax.train import association_task as task_lib
  from rolo_jax.train import loop, optim

  dvec = dvec_config(exp, feature_channels)
  cfg = model_config(exp, dvec)
  task = task_lib.TaskConfig(gaps=exp.gaps)
  key = (cfg, task, exp.lr, exp.steps, exp.warmup_steps, exp.clip_norm)
  if key not in _UPDATES:   # one compilation per setting in a process (tests train 3 times)
    schedule = optim.lr_schedule(exp.lr, exp.steps, warmup_steps=exp.warmup_steps)
    tx = optim.make_optimizer(schedule, clip_norm=exp.clip_norm)
    _UPDATES[key] = (schedule, tx, task_lib.make_update(cfg, task, tx))
  schedule, tx, update = _UPDATES[key]
  data = {k: getattr(exp, k) for k in TRAIN_FIELDS}
  meta = {"model": "association", "config": cfg, "dvec": dvec,
          "task": {"loss": task, "data": data, "detector": "yolo" if detector else "simulated"}}
  t0 = time.time()
  videos = []
  from rolo_jax.train.checkpoint import latest_step
  last = latest_step(workdir)
  done = last is not None and last >= exp.steps
  if not done:   # a finished run needs no data (the loop only restores)
    from rolo_jax.data import synthetic
    syn_cfg = dataclasses.replace(synthetic.PRESETS["train"], num_frames=exp.train_frames)
    videos = task_lib.synthetic_videos("train", exp.num_train_seqs, dvec, syn_cfg=syn_cfg,
                                       variants=exp.variants, max_dets=exp.max_dets,
                                       detector=detector)
  data_s = time.time() - t0
  if videos:
    log(f"data: {len(videos)} training videos ({exp.num_train_seqs} x {exp.variants} detection "
        f"draws) in {data_s:.0f} s")
    sampler = task_lib.WindowSampler(videos, exp.window, exp.batch, seed=exp.seed)
    batch_fn = sampler.batch
  else:
    batch_fn = lambda position, stage: None
  try:
    state, summary = loop.train(
        init_fn=lambda key: task_lib.make_train_state(key, cfg, tx), update_fn=update,
        batch_fn=batch_fn,
        curriculum=loop.fixed_stage(exp.window, exp.batch),
        config=loop.LoopConfig(workdir=workdir, total_steps=exp.steps,
                               checkpoint_every=exp.checkpoint_every, seed=exp.seed,
                               progress=progress, stop_after=stop_after),
        meta=meta, lr_fn=schedule)
  except loop.ConfigMismatchError as e:
    raise loop.ConfigMismatchError(str(e), field_differences(e.saved_values, meta)) from None
  summary["data_seconds"] = data_s
  return jax.device_get(state.params), cfg, dvec, summary


def field_differences(saved_values, meta) -> Dict[Any, Any]:
  """A refusal's saved values with a nested entry that differs (the task's 'data' and 'loss'
  dicts) split into its differing fields, ('task', 'data.seed') -> the saved seed, so that a
  field one flag sets can be named (`resume_flags`)."""
  from rolo_jax.errors import ConfigMismatchError
  from rolo_jax.train.checkpoint import to_jsonable

  absent = ConfigMismatchError.ABSENT
  out = {}
  for (section, field), old in saved_values.items():
    cur = to_jsonable(meta.get(section))
    cur = cur.get(field) if isinstance(cur, dict) else None
    if not (isinstance(old, dict) and isinstance(cur, dict)):
      out[(section, field)] = old
      continue
    for k in sorted(set(old) | set(cur)):
      if old.get(k, absent) != cur.get(k, absent):
        out[(section, f"{field}.{k}")] = old.get(k, absent)
  return out


# (checkpoint meta section, field) -> the flag that sets it alone, for a refused workdir's hint
# (`field_differences` names the task's data fields). The other TRAIN_FIELDS, the loss and the
# model config come from --config (and --detector yolo, which sets the features too); --steps and
# the tracker's settings may change on resume.
FLAG_OF = {("task", "data.seed"): "seed", ("task", "data.num_train_seqs"): "num_train_seqs",
           ("train", "seed"): "seed"}


def resume_flags(saved_values) -> str:
  """The flags that give a refused workdir's checkpoint settings back ('' when a difference has
  none; `_args.resume_hint`)."""
  return _args.resume_hint(saved_values, FLAG_OF)


# ------------------------------------------------------------------------------------------ evaluate

def plot_tracks(panels: Dict[str, Any], path: str, title: str = "") -> str:
  """Tracks over time: x-centre vs frame, one colour per id, one panel per tracker.

  Args:
    panels: name -> Objects (frame, track_id, box).
    path: PNG to write.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True,
                           squeeze=False)
  cmap = plt.get_cmap("tab20")
  for ax, (name, obj) in zip(axes[0], panels.items()):
    ids = obj.track_ids() if len(obj) else []
    for k, i in enumerate(ids):
      sel = np.nonzero(obj.track_id == i)[0]
      sel = sel[np.argsort(obj.frame[sel])]
      f = obj.frame[sel]
      cx = obj.box[sel, 0] + obj.box[sel, 2] / 2
      # Break the line where the track is absent, so gaps show.
      brk = np.nonzero(np.diff(f) > 1)[0] + 1
      for fs, cs in zip(np.split(f, brk), np.split(cx, brk)):
        ax.plot(fs, cs, "-", color=cmap(k % 20), lw=1.5)
      ax.plot(f, cx, ".", color=cmap(k % 20), ms=2)
    ax.set_title(f"{name} ({len(ids)} ids)")
    ax.set_xlabel("frame")
  axes[0][0].set_ylabel("box centre x (px)")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


TABLE_KEYS = (("IDF1", "idf1"), ("MOTA", "mota"), ("MOTP", "motp"), ("IDs", "num_switches"),
              ("FP", "num_false_positives"), ("FN", "num_misses"), ("FM", "num_fragmentations"),
              ("MT", "mostly_tracked"), ("ML", "mostly_lost"))


def _fmt(v) -> str:
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.3f}"
  return str(v)


def overall_table(overall: Dict[str, Dict[str, float]]) -> str:
  lines = ["| tracker | " + " | ".join(k for k, _ in TABLE_KEYS) + " |",
           "|---|" + "---|" * len(TABLE_KEYS)]
  for name, m in overall.items():
    lines.append(f"| {name} | " + " | ".join(_fmt(m[k]) for _, k in TABLE_KEYS) + " |")
  return "\n".join(lines) + "\n"


def sequence_table(per_seq: Dict[str, Dict[str, Dict[str, float]]],
                   overall: Dict[str, Dict[str, float]]) -> str:
  names = list(overall)
  head = "| sequence | " + " | ".join(f"{n} IDF1 | {n} MOTA | {n} IDs" for n in names) + " |"
  lines = [head, "|---|" + "---|" * (3 * len(names))]
  seqs = list(next(iter(per_seq.values())))
  for s in seqs + ["OVERALL"]:
    row = []
    for n in names:
      m = overall[n] if s == "OVERALL" else per_seq[n][s]
      row += [_fmt(m["idf1"]), _fmt(m["mota"]), _fmt(m["num_switches"])]
    lines.append(f"| {s} | " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def evaluate(exp: ExperimentConfig, params, cfg, dvec, workdir: str, *, detector=None,
             log=print) -> Dict[str, Any]:
  """Scores SORT and the Association LSTM on held-out synthetic videos (same detections)."""
  from rolo_jax.data import synthetic
  from rolo_jax.eval import mot as mot_eval
  from rolo_jax.mot import association_tracker as at
  from rolo_jax.mot import io as mot_io
  from rolo_jax.mot import run_mot, sort
  from rolo_jax.train import association_task as task_lib

  t0 = time.time()
  syn_cfg = dataclasses.replace(synthetic.PRESETS["test"], num_frames=exp.test_frames)
  test = synthetic.make_split("test", exp.num_test_seqs, syn_cfg, multi=True)
  data = []
  for ms in test:
    dets, enc = task_lib.simulated_video(ms, dvec, variant=0, detector=detector)
    data.append((ms, dets, enc))
  data_s = time.time() - t0
  trackers = {
      "sort": lambda ms: sort.Sort(),
      "sort_max_age": lambda ms: sort.Sort(max_age=exp.max_age),
      "assoc_lstm": lambda ms: at.AssociationTracker(params, cfg, dvec, tracker_config(exp),
                                                     ms.size()),
      "assoc_no_phi": lambda ms: at.AssociationTracker(params, cfg, dvec,
                                                       tracker_config(exp, use_phi=False), ms.size()),
  }
  hyps: Dict[str, Dict[str, Any]] = {}
  seconds: Dict[str, float] = {}
  for name, make in trackers.items():
    t1 = time.time()
    frames = 0
    hyps[name] = {}
    for ms, dets, enc in data:
      tr = make(ms)
      if isinstance(tr, sort.Sort):
        hyp = run_mot(tr, dets, len(ms))   # boxes and scores of the same detections
      else:
        hyp = at.run_frames(tr, enc)
      hyps[name][ms.name] = hyp
      frames += len(ms)
      mot_io.write_mot_results(os.path.join(workdir, "results", name, f"{ms.name}.txt"), hyp)
    seconds[name] = time.time() - t1
  per_seq, overall = {}, {}
  for name in trackers:
    pairs = {ms.name: (ms.gt, hyps[name][ms.name]) for ms, _, _ in data}
    per_seq[name], overall[name] = mot_eval.evaluate_many(pairs, use_classes=False)
  # The plot: the test video where the Association LSTM gains most IDF1 over SORT.
  gain = {s: per_seq["assoc_lstm"][s]["idf1"] - per_seq["sort"][s]["idf1"] for s in per_seq["sort"]}
  show = max(gain, key=lambda s: (gain[s] if not math.isnan(gain[s]) else -1))
  ms = next(m for m, _, _ in data if m.name == show)
  plot_path = plot_tracks({"ground truth": ms.gt, "SORT": hyps["sort"][show],
                           "Association LSTM": hyps["assoc_lstm"][show]},
                          os.path.join(workdir, f"tracks_{show}.png"), title=show)
  with open(os.path.join(workdir, "sequences.md"), "w") as f:
    f.write(f"# Held-out synthetic videos ({len(data)} x {exp.test_frames} frames)\n\n")
    f.write(overall_table(overall) + "\n" + sequence_table(per_seq, overall))
  n_frames = sum(len(ms) for ms, _, _ in data)
  metrics = {
      "experiment": dataclasses.asdict(exp), "num_test_videos": len(data), "frames": n_frames,
      "gt_boxes": int(sum(len(ms.gt) for ms, _, _ in data)),
      "detections": int(sum(len(d) for _, d, _ in data)),
      "overall": overall, "per_sequence": per_seq,
      "tracker_fps": {k: n_frames / max(v, 1e-9) for k, v in seconds.items()},
      "eval_data_seconds": data_s, "plot": plot_path,
  }
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, default=str)
  log(overall_table(overall))
  return metrics


# ------------------------------------------------------------------------------------------ det.txt

def parse_frame_size(text: Optional[str]) -> Optional[Tuple[float, float]]:
  if not text:
    return None
  try:
    w, h = (float(v) for v in text.lower().split("x"))
  except ValueError:
    _args.usage_error(f"--frame_size {text!r}: expected WIDTHxHEIGHT (e.g. 640x480)")
  if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
    _args.usage_error(f"--frame_size {text!r}: expected a finite width and height > 0 (e.g. 640x480)")
  return w, h


def frame_size_for(det_path: str, given: Optional[Tuple[float, float]], *tables):
  """The given size, else seqinfo.ini beside det.txt (<seq>/det/det.txt or <seq>/det.txt), else
  the extent of the boxes."""
  if given:
    return given
  from rolo_jax.data.formats.mot import read_seqinfo
  from rolo_jax.mot.detections import infer_frame_size

  d = os.path.dirname(os.path.abspath(det_path))
  for cand in (os.path.join(d, "seqinfo.ini"), os.path.join(os.path.dirname(d), "seqinfo.ini")):
    if os.path.isfile(cand):
      info = read_seqinfo(cand)
      if "imWidth" in info and "imHeight" in info:
        return float(info["imWidth"]), float(info["imHeight"])
  return infer_frame_size(*tables)


def track_det(det_path: str, out_path: str, checkpoint: str, *,
              frame_size: Optional[Tuple[float, float]] = None, num_frames: Optional[int] = None,
              tracker_cfg=None, gt_path: Optional[str] = None, log=print) -> Dict[str, Any]:
  """Tracks a MOTChallenge det.txt with a boxes-only Association LSTM and writes the results.

  Returns {'boxes', 'tracks', 'frames', 'frame_size', 'metrics' (when gt_path is given)}.
  """
  from rolo_jax.data.formats.mot import read_mot_file
  from rolo_jax.eval import mot as mot_eval
  from rolo_jax.mot import association_tracker as at
  from rolo_jax.mot import io as mot_io
  from rolo_jax.mot import run_mot

  dets = read_mot_file(det_path, "det")
  if not len(dets.frame):   # valid MOT input (a detector that found nothing), but worth a word
    print(f"note: {det_path} holds no detections; the results are empty", file=sys.stderr)
  gt = read_mot_file(gt_path, "gt") if gt_path else None
  size = frame_size_for(det_path, frame_size, dets, gt)
  tr = at.from_checkpoint(checkpoint, tracker_cfg or at.TrackerConfig(), size)
  if tr.dvec.mode != "boxes":
    raise DataError(checkpoint, f"a det.txt has no images; this model needs D-vectors of mode "
                                f"{tr.dvec.mode!r} (train one with --config boxes)")
  if num_frames is None:
    last = [int(t.frame.max()) + 1 for t in (dets, gt) if t is not None and len(t)]
    num_frames = max(last) if last else 0
  hyp = run_mot(tr, dets, num_frames)
  mot_io.write_mot_results(out_path, hyp)
  out = {"boxes": len(hyp), "tracks": len(hyp.track_ids()), "frames": num_frames,
         "frame_size": size}
  if gt is not None:
    out["metrics"] = mot_eval.evaluate_sequence(gt, hyp)
  log(f"wrote {len(hyp)} boxes of {out['tracks']} tracks ({num_frames} frames) to {out_path}")
  return out


# ------------------------------------------------------------------------------------------ main

def parse_args(argv=None):
  p = ArgumentParser(prog="python -m experiments.association_lstm",
                              description=__doc__.split("\n")[0])
  p.add_argument("--config", default="default", help=f"one of {sorted(CONFIGS)}")
  p.add_argument("--workdir", default=None, help="run folder (default runs/association_<config>)")
  p.add_argument("--steps", type=_args.whole(1), default=None)
  p.add_argument("--num_train_seqs", type=_args.whole(1), default=None)
  p.add_argument("--num_test_seqs", type=_args.whole(1), default=None)
  p.add_argument("--seed", type=_args.whole(0), default=None)
  p.add_argument("--max_age", type=_args.whole(0), default=None)
  p.add_argument("--detector", choices=("simulated", "yolo"), default="simulated")
  p.add_argument("--yolo_checkpoint", default="runs/yolo_pretrain")
  p.add_argument("--eval_only", action="store_true")
  p.add_argument("--no_progress", action="store_true")
  p.add_argument("--track_det", default=None, help="a MOTChallenge det.txt to track (no training)")
  p.add_argument("--checkpoint", default=None, help="--track_det: the model's workdir")
  p.add_argument("--out", default=None, help="--track_det: results file to write")
  p.add_argument("--gt", default=None, help="--track_det: gt.txt to score the result against")
  p.add_argument("--frame_size", default=None, help="--track_det: WIDTHxHEIGHT of the frames")
  p.add_argument("--num_frames", type=_args.whole(1), default=None)
  a = p.parse_args(argv)
  track_only = [f"--{k}" for k in ("checkpoint", "out", "gt", "frame_size", "num_frames")
                if getattr(a, k) is not None]
  if a.track_det:
    if not a.checkpoint or not a.out:
      p.error("--track_det needs --checkpoint (a boxes-only model's workdir) and --out")
    _args.check_paths(p, out_files=[("--out", a.out)])
  else:
    if track_only:
      p.error(f"{', '.join(track_only)}: only used with --track_det (tracking a det.txt)")
    _args.check_paths(p, out_dirs=[("--workdir", a.workdir)])
  return a


@functools.partial(cli_main, mismatch_hint=resume_flags)
def main(argv=None) -> int:
  a = parse_args(argv)
  if a.config not in CONFIGS:
    _args.usage_error(f"--config {a.config!r}: unknown; choose from {', '.join(sorted(CONFIGS))}")
  # A det.txt is tracked with the boxes-only model: its tracker settings unless --config is given.
  exp = CONFIGS["boxes" if a.track_det and a.config == "default" else a.config]
  over = {k: getattr(a, k) for k in ("steps", "num_train_seqs", "num_test_seqs", "seed", "max_age")
          if getattr(a, k) is not None}
  exp = exp.replace(**over)
  if a.track_det:
    r = track_det(a.track_det, a.out, a.checkpoint, frame_size=parse_frame_size(a.frame_size),
                  num_frames=a.num_frames, tracker_cfg=tracker_config(exp), gt_path=a.gt)
    if "metrics" in r:
      m = r["metrics"]
      print(f"MOTA={m['mota']:.4f} IDF1={m['idf1']:.4f} IDs={m['num_switches']}")
    return 0
  workdir = a.workdir or f"runs/association_{exp.name}"
  detector, channels = (None, 64)
  if a.detector == "yolo":
    detector, channels = make_detector(a.yolo_checkpoint)
    exp = exp.replace(features="features")
  t0 = time.time()
  if a.eval_only:
    from rolo_jax.models import association
    from rolo_jax.mot import detections as det_lib
    from rolo_jax.train.checkpoint import load_params
    params, meta = load_params(workdir)
    if meta.get("model") != "association" or "config" not in meta:
      raise DataError(workdir, f"not an Association LSTM workdir (its checkpoint holds model="
                               f"{meta.get('model')!r})")
    cfg = association.AssociationConfig(**meta["config"])
    dvec = det_lib.DVectorConfig(**meta["dvec"])
    summary = {"steps": meta.get("step")}
  else:
    params, cfg, dvec, summary = train(exp, workdir, detector=detector, feature_channels=channels,
                                       progress=not a.no_progress)
  train_s = time.time() - t0
  print(f"training: {summary.get('steps')} steps, {train_s:.0f} s this run")
  t1 = time.time()
  metrics = evaluate(exp, params, cfg, dvec, workdir, detector=detector)
  eval_s = time.time() - t1
  metrics.update(train_seconds_this_run=train_s, eval_seconds=eval_s,
                 total_seconds=time.time() - t0, train_summary=summary)
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, default=str)
  o = metrics["overall"]
  print(f"IDF1 assoc_lstm {o['assoc_lstm']['idf1']:.4f} vs sort {o['sort']['idf1']:.4f} "
        f"(sort_max_age {o['sort_max_age']['idf1']:.4f}); total {time.time() - t0:.0f} s; "
        f"wrote {workdir}/metrics.json, sequences.md, {os.path.basename(metrics['plot'])}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
