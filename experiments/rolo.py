"""ROLO (coordinate variant) against YOLO alone and YOLO + SORT, on the same detections.

    python -m experiments.rolo                              # synthetic data, the three protocols
    python -m experiments.rolo --detector runs/yolo_pretrain --workdir runs/rolo --protocol third_labels
    python -m experiments.rolo --data_dir ../shared/data/otb --protocol first_third
    python -m experiments.rolo --smoke --workdir /tmp/rolo_smoke        # seconds (tests)

Detector: --detector DIR (a yolo_pretrain workdir). Without it the run uses runs/yolo_pretrain
when that holds a finished detector (python -m experiments.yolo_pretrain, ~20 min), else it runs
yolo_pretrain's default config into <workdir>/detector first (resumable; later runs reuse it).
Detections: score >= 0.05 (--conf_thresh), class-agnostic NMS at IoU 0.5.
A workdir's model is tied to its detections (`data_meta`: the detector's weights, --conf_thresh,
--iou_min, --history, the training sequences): re-running it with others is refused. Note that
a later run without --detector picks runs/yolo_pretrain once that holds a finished detector, which
is then another detector than <workdir>/detector: pass --detector <workdir>/detector to resume.

Assignment (rolo_jax.rolo.assign, paper §2.2; the initial box is the only ground truth used):
history of 3 validated detections, IoU_min 0.1 (--iou_min; the paper gives no value; 0.1 keeps
more frames assigned than assign.py's 0.3 for YOLO, YOLO+SORT and ROLO alike: on the training
sequences YOLO's average overlap is 0.347 with 0.1 and 0.286 with 0.3).

Data: synthetic by default. The held-out sequences are make_split('test', --num_test=20) (150
frames, seeds 10^6.., never seen by the detector, with occluders, look-alike distractors, scale
changes and exits); protocol 'sequences' trains ROLO on make_split('train', --num_train=100)
(64 frames). --data_dir reads any OTB-layout folder instead (frame ranges from
otb100_sequences.json when found); --features_dir reads the authors' precomputed feature
folders (<features_dir>/<sequence>/*.npy, 4096 + 6 floats each) instead of running the detector.

Protocols (--protocol, default all; paper §4.3):
  sequences     train on other sequences, score the held-out ones (exp. 1; on a folder the last
                ceil(n·8/30) sequences are test)
  first_third   train on the first third of every held-out sequence's frames, score the rest (exp. 2)
  third_labels  every third frame labelled, all frames are LSTM inputs, score the unlabelled
                two thirds (exp. 3, the paper's headline and Table 1)
Frames whose labels trained ROLO are never scored; frame 0 (the initial box every tracker gets)
is never scored.

The detector runs once per frame; features and assigned detections are cached in memory, and
the three trackers are scored on exactly those detections:
  YOLO       the assigned detection (previous box when none)
  YOLO+SORT  SORT's constant-velocity Kalman filter over the assigned detections
  ROLO       the LSTM (default --config tiny_residual, below; --config tiny is the paper's model:
             zero-state windows of N frames predicting the window's last frame, 256-d features +
             6 location values, hidden 262, box read from hidden units 257..260)

Default ROLO (not the paper's model; every part is a flag, the paper's is
--config tiny --coord_loss mse --feature_scale auto --num_train 100 --train_frames 64):
  --config tiny_residual   128-unit LSTM, residual read-out (box = the frame's detection + h @ W + b,
                           models.rolo), held detections (a frame without one repeats the last one,
                           with a "fresh" flag in the nulled confidence slot), state carried over the
                           whole sequence (training: chunks of 64 frames, loss on every labelled step)
  --coord_loss iou         loss 100 · (1 - IoU) instead of MSE
  --feature_scale protocol visual features × 0 under 'sequences' (held-out videos), × 1 / RMS otherwise
  --num_train 800 --train_frames 150   synthetic training videos for 'sequences' (train split, as
                           long as the test videos)
Training: 3,000 Adam steps of 32 windows (or chunks), lr 1e-3 (warm-up, cosine).

Why (protocol 'sequences', runs/yolo_pretrain detector, the 20 held-out test videos, average
overlap; YOLO 0.249, YOLO+SORT 0.255 on the same detections). Scratch experiments on cached
detections; "correct" = frames whose assigned detection has IoU > 0.3 with the ground truth (YOLO
0.565, SORT 0.567 there); 300 training videos of 64 frames unless "800×150" (+ the 300):
  faithful, MSE, features ×1/RMS        0.082 (training videos: 0.641 vs YOLO 0.331 — memorised)
  faithful, MSE, no features            0.164 (correct frames 0.346)
  faithful, L1,  no features            0.182 (correct frames 0.391)
  residual, L1,  no features            0.246 (correct frames 0.555)       [hidden 128, 1,500 steps]
  residual, L1,  features ×1/RMS        0.140 (held, 800×150 without the 300: 0.126); held with
                                        ×0.1/RMS 0.153, ×0.3/RMS + dropout 0.5 + wd 1e-3 0.181
  residual, held, MSE, no features      0.206
  residual, held, L1,  no features      0.243; + wd 1e-2, hidden 64: 0.247; 800×150 without the 300: 0.236
  residual, held, GIoU, no features     0.247
  residual, held, IoU, no features      0.250 (correct frames 0.562)
  residual, held, IoU, features ×1/RMS  0.220; 800×150: 0.244
  residual, held, IoU, no features, 800×150: N=6 0.253, N=10 0.254 (correct 0.570; no-detection
                                        frames 0.035 vs SORT 0.064)
  the default (carried state), 800×150, 1,500 steps: 0.256 (correct 0.576, wrong 0.067 vs SORT 0.065,
                                        no-detection 0.027); with GIoU 0.229
Causes: (1) the global visual features let the LSTM memorise the training videos (each has its own
background) instead of reading the location values, and more videos (800×150) did not cure it;
(2) the faithful read-out does not reproduce the detection's four values precisely, and MSE / L1
average over the frames whose detection is wrong (more than half: the assignment locks onto a
look-alike or an occluder and stays there, which no tracker fed the assigned detection can undo),
pulling the box off correct detections. The residual read-out makes copying the detection free,
and 1 - IoU has no gradient on frames whose detection is far from the target, so those frames do
not pull the box away. The margin over YOLO + SORT is small: ROLO gains on frames with a correct
detection and loses on long detection gaps, where SORT's constant velocity keeps moving.
Other protocols (20 test videos, same cache): 'third_labels' default model with features 0.544 vs
YOLO 0.250 / SORT 0.255 (the paper's model 0.693); 'first_third' 0.107 with features, 0.114 without
(YOLO 0.182, SORT 0.189; the paper's model 0.099): 20 first thirds are too little to learn from.

Outputs: <workdir>/summary.md and summary.json (every protocol's average overlap and success AUC
per tracker), and per protocol <workdir>/<protocol>/:
  metrics.json         average overlap, success AUC, precision@20, AO on occluded frames, per tracker;
                       per-sequence AO; runtimes; configuration
  overlap_table.md     per-sequence average overlap of the three trackers (the paper's Table 1)
  success.png          success and precision plots
  gifs/<seq>.gif       held-out sequences with ground truth, YOLO, YOLO+SORT and ROLO boxes
  rolo/                ROLO training run (orbax checkpoints; re-running the same workdir resumes)
  tracker/             ROLO + detector: make_tracker('rolo', checkpoint=<workdir>/<protocol>/tracker)

Measured with no flags and the runs/yolo_pretrain detector (2 CPU cores shared with other jobs,
load ~4): 980 s in all (caching 123,000 frames 203 s; each protocol's training ~210 s). Quiet
machine, session 6: 8 min 38 s, peak memory 1.57 GB (training videos are cached as they are made
and dropped; 8.8 GB when all 800 were held until caching ended). Average overlap (AUC):
  sequences     YOLO 0.249 (0.251)  YOLO+SORT 0.255 (0.257)  ROLO 0.258 (0.261)
  first_third   YOLO 0.182 (0.185)  YOLO+SORT 0.189 (0.192)  ROLO 0.124 (0.130)
  third_labels  YOLO 0.250 (0.252)  YOLO+SORT 0.255 (0.258)  ROLO 0.573 (0.566)
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, Optional

import rolo_jax  # noqa: F401  (backend choice before jax)
import numpy as np

from rolo_jax.errors import ArgumentParser, ConfigMismatchError, DataError, check_output_dir, cli_main
from experiments import _args

DEFAULT_DETECTOR = os.path.join("runs", "yolo_pretrain")


# --------------------------------------------------------------------------------------------------
# arguments

def add_common_args(p: argparse.ArgumentParser, *, workdir: str, config: str, steps: int):
  p.add_argument("--workdir", default=workdir)
  p.add_argument("--detector", default=None, help="yolo_pretrain workdir (default: see module doc)")
  p.add_argument("--data_dir", default=None, help="OTB-layout folder instead of synthetic videos")
  p.add_argument("--sequences_json", default=None, help="otb100_sequences.json (found when omitted)")
  p.add_argument("--features_dir", default=None,
                 help="precomputed per-frame feature folders (authors' format) instead of the detector")
  p.add_argument("--feature_dim", type=_args.whole(1), default=None, help="F of --features_dir vectors (4096)")
  p.add_argument("--protocol", default="all", choices=("all", "sequences", "first_third", "third_labels"))
  p.add_argument("--test_fraction", type=_args.real(0.0, 1.0, low_open=True, high_open=True), default=8 / 30)
  p.add_argument("--num_train", type=_args.whole(1), default=100, help="synthetic training videos")
  p.add_argument("--train_frames", type=_args.whole(2), default=None,
                 help="frames per synthetic training video (default: the train preset's 64)")
  p.add_argument("--num_test", type=_args.whole(1), default=20, help="synthetic held-out videos")
  p.add_argument("--config", default=config, help="models.rolo.CONFIGS name")
  p.add_argument("--window", type=_args.whole(1), default=None, help="N frames per window")
  p.add_argument("--hidden_from", default=None, choices=("faithful", "output_layer", "residual"))
  p.add_argument("--hidden", type=_args.whole(1), default=None, help="LSTM width with --hidden_from output_layer")
  p.add_argument("--carry_state", action=argparse.BooleanOptionalAction, default=None,
                 help="carry the LSTM state between windows (default: the config's)")
  p.add_argument("--hold_detection", action=argparse.BooleanOptionalAction, default=None,
                 help="frames without a detection repeat the last one, with a fresh flag (models.rolo)")
  p.add_argument("--steps", type=_args.whole(1), default=steps)
  p.add_argument("--batch", type=_args.whole(1), default=32)
  p.add_argument("--lr", type=_args.POSITIVE, default=1e-3)
  p.add_argument("--coord_loss", default="mse", choices=("mse", "l1", "iou", "giou"),
                 help="coordinate loss: mse (the paper, x100), l1, 1 - IoU or 1 - GIoU (x100)")
  p.add_argument("--weight_decay", type=_args.NONNEGATIVE, default=0.0, help="L2 term on the LSTM's weights (0: the paper)")
  p.add_argument("--feature_scale", default="auto",
                 help="factor on the visual features: a number (1 = the paper), 'auto' (1 / RMS) or "
                      "'protocol' (0 under 'sequences', where the test videos are unseen; 'auto' otherwise)")
  p.add_argument("--conf_thresh", type=_args.FRACTION, default=None, help="detector score threshold (Detector default: 0.05)")
  p.add_argument("--iou_min", type=_args.FRACTION, default=0.1,
                 help="assignment: minimum IoU with the history (paper: unspecified; see module doc)")
  p.add_argument("--history", type=_args.whole(1), default=3, help="assignment: validated detections averaged")
  p.add_argument("--gifs", type=_args.whole(0), default=3, help="test sequences rendered as GIFs")
  p.add_argument("--seed", type=_args.whole(0), default=0)
  p.add_argument("--smoke", action="store_true", help="tiny sizes: the same code path in seconds")
  p.add_argument("--no_progress", action="store_true")


def rolo_config(args):
  from rolo_jax.models import rolo

  if args.config not in rolo.CONFIGS:
    _args.usage_error(f"unknown --config {args.config!r}; choose from {sorted(rolo.CONFIGS)}")
  cfg = rolo.CONFIGS[args.config]
  over = {}
  if args.window is not None:
    over["window"] = args.window
  if args.hidden_from is not None:
    over["hidden_from"] = args.hidden_from
    if args.hidden_from != "faithful" and args.hidden is None and cfg.hidden < 1:
      over["hidden"] = 256
  if args.hidden is not None:
    over["hidden"] = args.hidden
  if args.carry_state is not None:
    over["carry_state"] = bool(args.carry_state)
  if args.hold_detection is not None:
    over["hold_detection"] = bool(args.hold_detection)
  return cfg.replace(**over) if over else cfg


# --smoke: each of these flags at most this.
SMOKE_CAPS = {"num_train": 3, "num_test": 2, "steps": 6, "batch": 4, "gifs": 1}


def smoke_overrides(args):
  """--smoke: small everything (the same code path)."""
  if args.smoke:
    for name, cap in SMOKE_CAPS.items():
      setattr(args, name, min(getattr(args, name), cap))
  return args


# --------------------------------------------------------------------------------------------------
# detector and data

def prepare_detector(args, log=print):
  """The Detector of this run (module docstring: --detector, runs/yolo_pretrain, or trained here)."""
  from experiments import yolo_pretrain
  from rolo_jax.train import checkpoint as ckpt_lib
  from rolo_jax.train import yolo_task

  kw = {} if args.conf_thresh is None else {"conf_thresh": args.conf_thresh}
  if args.detector:
    if not os.path.isdir(args.detector):
      raise DataError(args.detector, "detector folder does not exist (train one with "
                      "python -m experiments.yolo_pretrain)")
    return yolo_task.Detector.load(args.detector, **kw), {"detector": os.path.abspath(args.detector)}
  task = yolo_task.TASK_CONFIGS["smoke" if args.smoke else "default"]
  if not args.smoke and os.path.isdir(os.path.join(DEFAULT_DETECTOR, ckpt_lib.CHECKPOINT_SUBDIR)):
    try:
      _, meta = ckpt_lib.load_params(DEFAULT_DETECTOR)
      if meta.get("step", 0) >= task.steps:
        log(f"detector: using {DEFAULT_DETECTOR}")
        return yolo_task.Detector.load(DEFAULT_DETECTOR, **kw), {"detector": os.path.abspath(DEFAULT_DETECTOR)}
    except (FileNotFoundError, ValueError):
      pass
  det_dir = os.path.join(args.workdir, "detector")
  log(f"detector: training yolo_pretrain's {'smoke' if args.smoke else 'default'} config in {det_dir}")
  t0 = time.time()
  try:
    metrics = yolo_pretrain.run(det_dir, task, eval_sequences=0 if args.smoke else 4,
                                progress=not args.no_progress, log=log)
  except ConfigMismatchError as e:   # the detector's settings: no flag of this run gives them back
    raise ConfigMismatchError(str(e)) from None
  return yolo_task.Detector.load(det_dir, **kw), {"detector": os.path.abspath(det_dir),
                                                  "detector_seconds": time.time() - t0,
                                                  "detector_metrics": metrics.get("test")}


def iter_synthetic_split(split: str, n: int, cfg, log=print):
  """Yields the first n sequences of a synthetic split whose target is visible in frame 0 (a
  tracker needs an initial box; the others are skipped and named in the log), one at a time:
  a consumer that keeps only what it derives from each (the training caches) holds at most two
  videos' frames at a time (the one being made and the previous one), not the split's."""
  from rolo_jax.data import synthetic

  made, skipped, i = 0, [], 0
  while made < n:
    seq = synthetic.make_split(split, 1, cfg, start=i)[0]
    i += 1
    if np.all(np.isfinite(seq.boxes[0])):
      made += 1
      yield seq
    else:
      skipped.append(seq.name)
  if skipped:
    log(f"{split}: skipped {len(skipped)} sequence(s) whose target is hidden in frame 0: {', '.join(skipped)}")


def synthetic_split(split: str, n: int, cfg, log=print):
  """The list of `iter_synthetic_split`'s sequences."""
  return list(iter_synthetic_split(split, n, cfg, log))


def load_sequences(args, protocols, log=print):
  """(sequences, train indices for 'sequences', test indices for 'sequences', pool of 'other')
  before the protocols' frame masks.

  Synthetic: the test split's --num_test videos (150 frames) are the held-out sequences of
  'sequences' and the sequences of 'first_third' / 'third_labels'; the train split's --num_train
  videos (64 frames) train 'sequences' (made only when that protocol runs). The training videos
  come as a generator (`iter_synthetic_split`) chained after the test list: ``cache_all`` makes,
  caches and drops them one at a time (800 videos of 150 frames are 7 GB of frames). OTB folder:
  every sequence (a list; frames are read from disk when used); 'sequences' splits them
  (``rolo_task.split_sequences``), the other protocols use all.
  """
  from rolo_jax.data import synthetic
  from rolo_jax.train import rolo_task

  if args.data_dir is None:
    test_cfg = synthetic.PRESETS["test"] if not args.smoke else synthetic.SyntheticConfig(num_frames=24)
    test = synthetic_split("test", args.num_test, test_cfg, log)
    train = []
    if "sequences" in protocols:
      train_cfg = synthetic.PRESETS["train"] if not args.smoke else synthetic.SyntheticConfig(num_frames=16)
      if args.train_frames and not args.smoke:
        train_cfg = dataclasses.replace(train_cfg, num_frames=int(args.train_frames))
      train = iter_synthetic_split("train", args.num_train, train_cfg, log)
    seqs = itertools.chain(test, train)
    te = list(range(len(test)))
    n_train = args.num_train if "sequences" in protocols else 0
    return seqs, list(range(len(test), len(test) + n_train)), te, te
  from rolo_jax.data.formats.otb import find_sequences_json
  from rolo_jax.data.formats.otb import read_otb_dataset

  sj = args.sequences_json or find_sequences_json(args.data_dir)
  seqs = read_otb_dataset(args.data_dir, sequences_json=sj)
  log(f"{len(seqs)} sequences from {args.data_dir}")
  if "sequences" in protocols and len(seqs) < 2:
    raise DataError(args.data_dir, f"--protocol {args.protocol}: the 'sequences' protocol trains on "
                    f"some sequences and tests on the others, so it needs at least 2, found "
                    f"{len(seqs)}; --protocol first_third or third_labels splits one sequence's frames")
  tr, te = rolo_task.split_sequences(len(seqs), args.test_fraction) if "sequences" in protocols else ([], [])
  return seqs, tr, te, list(range(len(seqs)))


def cache_all(seqs, detector, args, log=print, keep=None):
  """(caches, sequences): one cache per sequence of the iterable `seqs`, in order.  Sequence i is
  kept in the returned list when keep(i) (default: all); otherwise None stands in for it, so an
  in-memory video that only trains is dropped as soon as it is cached."""
  from rolo_jax.train import rolo_task

  out, kept = [], []
  for i, s in enumerate(seqs):
    if args.features_dir:
      folder = os.path.join(args.features_dir, s.name)
      out.append(rolo_task.cache_from_feature_folder(s, folder, args.feature_dim or 4096,
                                                     history=args.history, iou_min=args.iou_min))
    else:
      out.append(rolo_task.cache_sequence(s, detector, history=args.history, iou_min=args.iou_min))
    kept.append(s if keep is None or keep(i) else None)
  return out, kept


class Prepared(dict):
  """Everything the experiments share after the detector ran (a dict with attribute access)."""
  __getattr__ = dict.__getitem__


def protocols_of(args):
  from rolo_jax.train import rolo_task

  return list(rolo_task.PROTOCOLS) if args.protocol == "all" else [args.protocol]


def prepare(args, log=print, protocols=None) -> Prepared:
  """Detector, sequences and caches of a run (the detector runs once per frame, for every protocol)."""
  t0 = time.time()
  protocols = protocols or protocols_of(args)
  info: Dict[str, Any] = {}
  detector = None
  # A data folder is read (and its errors reported) before the detector trains or loads; synthetic
  # videos are made after it, as before, so they are not held in memory while it trains.
  loaded = load_sequences(args, protocols, log) if args.data_dir is not None else None
  if not args.features_dir:
    detector, info = prepare_detector(args, log)
  seqs, tr, te, pool = loaded or load_sequences(args, protocols, log)
  t1 = time.time()
  # Only the sequences a protocol scores are used after caching (their frames: GIFs, pictures);
  # synthetic training videos are dropped as they are cached. Folder sequences read their frames
  # from disk and are all kept.
  scored = set(te) | set(pool)
  caches, seqs = cache_all(seqs, detector, args, log,
                           keep=(lambda i: i in scored) if args.data_dir is None else None)
  cache_s = time.time() - t1
  frames = sum(c.num_frames for c in caches)
  log(f"cached {frames} frames in {cache_s:.0f} s ({frames / max(cache_s, 1e-9):.0f} frames/s, detector "
      "+ assignment)")
  return Prepared(detector=detector, detector_info=info, seqs=seqs, caches=caches, split=(tr, te, pool),
                  cache_seconds=cache_s, cached_frames=frames, prepare_seconds=time.time() - t0)


def view(prep: Prepared, protocol: str) -> Prepared:
  """The train / test caches and frame masks of one protocol (``rolo_task.protocol_masks``)."""
  from rolo_jax.train import rolo_task

  tr, te, pool = prep.split
  if protocol == "sequences":
    train_idx, test_idx, role = tr, te, "train"
  else:
    train_idx = test_idx = pool
    role = "test"
  train_caches = [prep.caches[i] for i in train_idx]
  test_caches = [prep.caches[i] for i in test_idx]
  return Prepared(prep, protocol=protocol, train_caches=train_caches, test_caches=test_caches,
                  test_seqs=[prep.seqs[i] for i in test_idx],
                  label_masks=[rolo_task.protocol_masks(c.num_frames, protocol, role)[0] for c in train_caches],
                  score_masks=[rolo_task.protocol_masks(c.num_frames, protocol, "test")[1] for c in test_caches])


def check_feature_scale(text: str) -> None:
  """--feature_scale: a finite number >= 0, 'auto' or 'protocol' (checked before any work)."""
  if text in ("auto", "protocol"):
    return
  try:
    v = float(text)
  except ValueError:
    v = float("nan")
  if not (np.isfinite(v) and v >= 0):
    _args.usage_error(f"--feature_scale {text!r}: a finite number >= 0, 'auto' or 'protocol'")


def check_args(args) -> None:
  """What can be checked before the detector trains or any video is made: the flags whose values
  argparse types cannot judge alone, and the workdir (a file there is named, not 'File exists')."""
  check_feature_scale(str(args.feature_scale))
  rolo_config(args)
  check_output_dir(args.workdir, "--workdir")   # (a DataError: one line, exit 2 through cli_main)
  if args.features_dir and not os.path.isdir(args.features_dir):
    _args.usage_error(f"--features_dir {args.features_dir}: no such folder")
  if args.features_dir and (args.detector or args.conf_thresh is not None):
    _args.usage_error("--features_dir replaces the detector: --detector and --conf_thresh have no effect with it")


def feature_scale_of(args, prep) -> float:
  from rolo_jax.train import rolo_task

  fs = str(args.feature_scale)
  check_feature_scale(fs)
  if fs == "protocol":
    fs = "0" if prep.protocol == "sequences" else "auto"
  if fs == "auto":
    return float(np.float32(rolo_task.suggest_feature_scale(prep.train_caches)))
  return float(fs)


def data_meta(args, prep: Prepared) -> Dict[str, Any]:
  """What ROLO's training examples are made from, stored as the checkpoint's 'data' entry and
  compared on resume (rolo_jax.train.loop.CHECKED_META): the detector (by its parameters, not its
  folder) and score threshold, or the feature folder; the assignment settings; the sequences the
  model trains on. A workdir re-run with another detector or assignment is refused instead of
  reusing a model trained on other detections."""
  import hashlib

  # Folders by their last name only: a moved data folder (another machine's copy) still resumes; the
  # sequences themselves are identified by their names and frame count below.
  base = lambda path: os.path.basename(os.path.normpath(os.path.abspath(path)))
  d: Dict[str, Any] = {"iou_min": float(args.iou_min), "history": int(args.history)}
  if args.features_dir:
    d.update(features_dir=base(args.features_dir), feature_dim=int(args.feature_dim or 4096))
  else:
    det = prep.detector
    d.update(detector=det.fingerprint(), conf_thresh=det.conf_thresh, nms_iou=det.nms_iou,
             class_agnostic=det.class_agnostic)
  names = [c.name for c in prep.train_caches]
  d.update(data=base(args.data_dir) if args.data_dir else "synthetic",
           train_sequences=len(names),
           train_frames=int(sum(c.num_frames for c in prep.train_caches)),
           train_names_sha1=hashlib.sha1("\n".join(names).encode()).hexdigest()[:16])
  return d


# --------------------------------------------------------------------------------------------------
# one ROLO model: train, predict, score, write

def warmup_steps(steps: int) -> int:
  """The learning-rate warm-up of a ROLO run of `steps` updates (it follows --steps)."""
  return min(50, max(1, steps // 10))


def train_and_track(args, prep: Prepared, cfg, workdir: str, log=print, *, steps: Optional[int] = None):
  """Trains (or resumes) ROLO in <workdir> and predicts every test sequence.

  Returns (params, {name: boxes [T, 4]}, {name: raw outputs [T, out]}, info dict).
  """
  from rolo_jax.train import rolo_task

  scale = feature_scale_of(args, prep)
  task = rolo_task.RoloTaskConfig(steps=steps or args.steps, batch=args.batch, lr=args.lr,
                                  feature_scale=scale, seed=args.seed, coord_loss=args.coord_loss,
                                  weight_decay=args.weight_decay, warmup_steps=warmup_steps(steps or args.steps))
  data = rolo_task.window_data(prep.train_caches, prep.label_masks, cfg, scale, task.carry_chunk)
  log(f"ROLO {cfg.name} (N={cfg.window}, {cfg.mode}, {cfg.hidden_from}, carry={cfg.carry_state}): "
      f"{len(data.index)} training examples, feature_scale {scale:.4g}")
  t0 = time.time()
  try:
    params, summary = rolo_task.train_rolo(workdir, cfg, task, data, meta={"data": data_meta(args, prep)},
                                           progress=not args.no_progress, log=log)
  except ConfigMismatchError as e:
    # --smoke caps --steps and --batch: a checkpoint's larger value is no hint for this run.
    saved = {k: e.saved_values.get(("task", k)) for k in ("steps", "batch")}
    if args.smoke and any(isinstance(v, int) and v > SMOKE_CAPS[k] for k, v in saved.items()):
      raise ConfigMismatchError(str(e)) from None
    raise
  train_s = time.time() - t0
  log(f"trained {summary['steps']} steps ({summary['steps_this_run']} this run) in {train_s:.0f} s, "
      f"last loss {summary['last'].get('loss', float('nan')):.4f}")
  boxes, raw = {}, {}
  t1 = time.time()
  for c in prep.test_caches:
    boxes[c.name], raw[c.name] = rolo_task.predict_cache(params, cfg, c, scale)
  info = {"train_seconds": train_s, "predict_seconds": time.time() - t1, "train_examples": len(data.index),
          "feature_scale": scale, "task": dict(task.__dict__), "train_summary": summary,
          "config": dict(cfg.__dict__)}
  return params, boxes, raw, info


def baseline_tracks(prep: Prepared) -> Dict[str, Dict[str, np.ndarray]]:
  from rolo_jax.train import rolo_task

  out: Dict[str, Dict[str, np.ndarray]] = {"YOLO": {}, "YOLO+SORT": {}}
  for c in prep.test_caches:
    b = rolo_task.baseline_boxes(c)
    out["YOLO"][c.name] = b["YOLO"]
    out["YOLO+SORT"][c.name] = b["YOLO+SORT"]
  return out


def overlap_table(per_sequence, out_md: str, summary) -> None:
  trackers = list(per_sequence)
  names = list(next(iter(per_sequence.values())))
  lines = ["| sequence | " + " | ".join(trackers) + " |", "|---|" + "---|" * len(trackers)]
  for n in names:
    vals = [per_sequence[t][n].average_overlap for t in trackers]
    best = int(np.argmax(vals))
    cells = [f"**{v:.3f}**" if i == best else f"{v:.3f}" for i, v in enumerate(vals)]
    lines.append(f"| {n} | " + " | ".join(cells) + " |")
  lines.append("| **mean AO** | " + " | ".join(f"**{summary[t]['average_overlap']:.3f}**" for t in trackers) + " |")
  lines.append("| AO, occluded frames | " + " | ".join(f"{summary[t]['average_overlap_occluded']:.3f}"
                                                    for t in trackers) + " |")
  lines.append("| success AUC | " + " | ".join(f"{summary[t]['auc']:.3f}" for t in trackers) + " |")
  lines.append("| precision@20 | " + " | ".join(f"{summary[t]['precision_20']:.3f}" for t in trackers) + " |")
  with open(out_md, "w") as f:
    f.write("\n".join(lines) + "\n")


def write_results(args, prep: Prepared, tracks, out_dir: str, extra: Dict[str, Any], log=print,
                  title: str = "ROLO") -> Dict[str, Any]:
  """Scores the trackers and writes metrics.json, overlap_table.md, success.png and GIFs."""
  from rolo_jax.eval import plots, render
  from rolo_jax.train import rolo_task

  os.makedirs(out_dir, exist_ok=True)
  res = rolo_task.evaluate(tracks, prep.test_caches, prep.score_masks)
  summary = res["summary"]
  for name, s in summary.items():
    log(f"{name:>10s}: AO {s['average_overlap']:.3f}  AUC {s['auc']:.3f}  P@20 {s['precision_20']:.3f}  "
        f"AO(occluded) {s['average_overlap_occluded']:.3f}  ({s['frames']} frames)")
  overlap_table(res["per_sequence"], os.path.join(out_dir, "overlap_table.md"), summary)
  plots.plot_success_precision({k: {"success": np.asarray(v["success"]), "precision": np.asarray(v["precision"]),
                                    "auc": v["auc"], "precision_20": v["precision_20"]}
                                for k, v in summary.items()},
                               os.path.join(out_dir, "success.png"), title=f"{title}, protocol {prep.protocol}")
  gifs = []
  for seq in prep.test_seqs[:args.gifs]:
    p = os.path.join(out_dir, "gifs", f"{seq.name}.gif")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    w = seq.size()[0]
    render.render_sequence(seq, {k: v[seq.name] for k, v in tracks.items()}, p,
                           scale=2.0 if w < 320 else 1.0, fps=12)
    gifs.append(p)
  metrics = {
      "protocol": prep.protocol, "data": args.data_dir or "synthetic",
      "summary": {k: {kk: vv for kk, vv in v.items() if kk not in ("success", "precision")}
                  for k, v in summary.items()},
      "per_sequence_average_overlap": {t: {n: s.average_overlap for n, s in per.items()}
                                       for t, per in res["per_sequence"].items()},
      "test_sequences": [c.name for c in prep.test_caches],
      "train_sequences": [c.name for c in prep.train_caches],
      "cache_seconds": prep.cache_seconds, "cached_frames": prep.cached_frames,
      "detections_assigned_fraction": float(np.mean(np.concatenate(
          [np.all(np.isfinite(c.assigned), axis=1) for c in prep.test_caches]))),
      "gifs": gifs, **prep.detector_info, **extra,
  }
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, default=float)
  return metrics


def run_protocol(args, prep: Prepared, protocol: str, cfg, out_dir: str, log=print, *, title: str = "ROLO",
                 after=None) -> Dict[str, Any]:
  """One protocol: train ROLO, score it with YOLO and YOLO + SORT on the same detections, export the
  tracker and write the results into ``out_dir``. ``after(view, params, boxes, raw, tracks, out_dir)``
  may add entries to metrics.json (the heatmap pictures)."""
  from rolo_jax.train import rolo_task

  v = view(prep, protocol)
  params, boxes, raw, info = train_and_track(args, v, cfg, os.path.join(out_dir, "rolo"), log)
  tracks = baseline_tracks(v)
  tracks["ROLO"] = boxes
  if prep.detector is not None:
    rolo_task.export_tracker(os.path.join(out_dir, "tracker"), params, cfg, prep.detector,
                             feature_scale=info["feature_scale"], history=args.history,
                             iou_min=args.iou_min)
  info["lstm_fps"] = rolo_task.lstm_fps(params, cfg, num_frames=20 if args.smoke else 200)
  extra = {"rolo": info, "assignment": {"history": args.history, "iou_min": args.iou_min}}
  if after is not None:
    extra.update(after(v, params, boxes, raw, tracks, out_dir))
  return write_results(args, v, tracks, out_dir, extra, log, title=title)


def run_protocols(args, cfg, log=print, *, title: str = "ROLO", after=None) -> Dict[str, Any]:
  """Every protocol of --protocol on one set of cached detections; each writes <workdir>/<protocol>/,
  and <workdir>/summary.md / summary.json compare them."""
  t0 = time.time()
  os.makedirs(args.workdir, exist_ok=True)
  protocols = protocols_of(args)
  prep = prepare(args, log, protocols)
  results = {}
  for p in protocols:
    log(f"--- protocol {p}")
    out_dir = os.path.join(args.workdir, p)
    t1 = time.time()
    results[p] = run_protocol(args, prep, p, cfg, out_dir, log, title=title, after=after)
    results[p]["protocol_seconds"] = time.time() - t1
  total = time.time() - t0
  if results:
    names = list(next(iter(results.values()))["summary"])
    lines = [f"{title}: average overlap (success AUC) on the scored frames; data: "
             f"{args.data_dir or 'synthetic'}; {total:.0f} s in all", "",
             "| protocol | frames | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for p, m in results.items():
      sm = m["summary"]
      best = max(names, key=lambda n: sm[n]["average_overlap"])
      cells = [(f"**{sm[n]['average_overlap']:.3f}**" if n == best else f"{sm[n]['average_overlap']:.3f}")
               + f" ({sm[n]['auc']:.3f})" for n in names]
      lines.append(f"| {p} | {sm[names[0]]['frames']} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.workdir, "summary.md"), "w") as f:
      f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
      json.dump({"seconds": total, "cache_seconds": prep.cache_seconds,
                 "protocols": {p: {"summary": m["summary"], "seconds": m["protocol_seconds"]}
                               for p, m in results.items()}, **prep.detector_info}, f, indent=1, default=float)
    log("\n".join(lines))
  log(f"done in {total:.0f} s; results in {args.workdir}")
  return results


def run(args, log=print) -> Dict[str, Any]:
  args = smoke_overrides(args)
  check_args(args)
  cfg = rolo_config(args)
  if cfg.mode != "coord":
    _args.usage_error(f"experiments.rolo is the coordinate variant; --config {args.config} is a "
                     "heatmap model (use python -m experiments.rolo_heatmap)")
  return run_protocols(args, cfg, log)


# (checkpoint meta section, field) -> the flag that sets it alone, for a refused workdir's hint
# (add_common_args: rolo_heatmap's flags too). No entry: what --config sets (name, feature_dim, ...),
# the feature scale (--feature_scale 'auto' / 'protocol' is a number per protocol), the detector (its
# weights) and the training sequences (--num_train, --train_frames, --data_dir together).
FLAG_OF = {("task", "steps"): "steps", ("task", "batch"): "batch", ("task", "lr"): "lr",
           ("task", "coord_loss"): "coord_loss", ("task", "weight_decay"): "weight_decay",
           ("task", "seed"): "seed", ("train", "seed"): "seed",
           ("config", "window"): "window", ("config", "hidden_from"): "hidden_from",
           ("config", "hidden"): "hidden", ("config", "carry_state"): "carry_state",
           ("config", "hold_detection"): "hold_detection",
           ("data", "iou_min"): "iou_min", ("data", "history"): "history",
           ("data", "conf_thresh"): "conf_thresh", ("data", "feature_dim"): "feature_dim"}


def resume_flags(saved_values) -> str:
  """The flags that give a refused workdir's checkpoint settings back ('' when a difference has
  none; `_args.resume_hint`). The warm-up follows --steps; a faithful read-out's hidden 0 is no
  --hidden value."""
  saved = dict(saved_values)
  steps = saved.get(("task", "steps"))
  if isinstance(steps, int) and saved.get(("task", "warmup_steps")) == warmup_steps(steps):
    del saved[("task", "warmup_steps")]
  hidden = saved.get(("config", "hidden"))
  if isinstance(hidden, int) and hidden < 1:
    return ""
  return _args.resume_hint(saved, FLAG_OF, false_flag="--no-{flag}")


@functools.partial(cli_main, mismatch_hint=resume_flags)
def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__.split("\n")[0])
  add_common_args(p, workdir=os.path.join("runs", "rolo"), config="tiny_residual", steps=3000)
  # The defaults that beat YOLO and YOLO + SORT on the held-out sequences (module docstring);
  # the paper's model: --config tiny --coord_loss mse --feature_scale auto --num_train 100
  # --train_frames 64.
  p.set_defaults(coord_loss="iou", feature_scale="protocol", num_train=800, train_frames=150)
  run(p.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
