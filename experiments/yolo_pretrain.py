"""Train ROLO's detection module (tiny YOLO v1) on the synthetic multi-object videos.

    python -m experiments.yolo_pretrain                                 # ~20 min, 2 shared CPU cores
    python -m experiments.yolo_pretrain --workdir runs/yolo_pretrain    # (the default workdir)
    python -m experiments.yolo_pretrain --config smoke --workdir /tmp/y # seconds (tests)

Running the same --workdir again resumes from its latest checkpoint (orbax, <workdir>/checkpoints;
params, Adam state and step; batches and dropout keys are functions of the step), and a finished
run only re-evaluates. Outputs in the workdir:

  checkpoints/<step>/     the detector (load with rolo_jax.train.yolo_task.load_detector, or pass
                          the workdir as --detector to experiments.rolo / rolo_heatmap / rolo_steps,
                          which use runs/yolo_pretrain by default)
  detector_metrics.json   class-agnostic AP@0.5, recall, precision, detections per frame on
                          held-out multi-object videos (make_split('test', multi=True)), timings
  detections.png          detections on a few held-out frames (blue) with the ground truth (green)
  train_log.jsonl, tb/    loss terms, lr, gradient / parameter / update norms every 10 steps
                          (JSON lines and TensorBoard; rolo_jax.train.loop)
  train_summary.json      steps, seconds, steps/s, the last update's metrics

Default config (yolo_task.TASK_CONFIGS['default']): the 'tiny_fast' YOLO v1 (112×112 input, 6
convs, the first with stride 2; 256-d features; S=7, B=2, C=6 synthetic classes; confidence
target 1), 2,500 training videos of 32 frames without background clutter (every 8th frame:
10,000 images), 3,000 Adam steps of 32 images, lr 2e-3 warm-up + cosine to 2e-4, gradient
clipping at 10. Measured: 1,195 s of training on 2 CPU cores shared with other jobs (load 8-18);
held-out AP@0.5 0.44 at score 0.05.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import rolo_jax  # noqa: F401  (backend choice before jax)
import numpy as np

from rolo_jax.errors import ArgumentParser, cli_main
from experiments import _args


def parse_args(argv=None):
  p = ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="runs/yolo_pretrain")
  p.add_argument("--config", default="default", help="yolo_task.TASK_CONFIGS name: default | smoke")
  p.add_argument("--steps", type=_args.whole(1), default=None)
  p.add_argument("--batch", type=_args.whole(1), default=None)
  p.add_argument("--num_sequences", type=_args.whole(1), default=None)
  p.add_argument("--lr", type=_args.POSITIVE, default=None)
  p.add_argument("--seed", type=_args.whole(0), default=None)
  p.add_argument("--eval_sequences", type=_args.whole(1), default=6, help="held-out multi-object videos scored")
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)
  _args.check_paths(p, out_dirs=[("--workdir", args.workdir)])
  return args


def task_from_args(args):
  from rolo_jax.train import yolo_task

  if args.config not in yolo_task.TASK_CONFIGS:
    _args.usage_error(f"--config {args.config!r}: unknown; choose from {', '.join(sorted(yolo_task.TASK_CONFIGS))}")
  task = yolo_task.TASK_CONFIGS[args.config]
  over = {k: getattr(args, k) for k in ("steps", "batch", "num_sequences", "lr", "seed")
          if getattr(args, k) is not None}
  return task.replace(**over)


def run(workdir: str, task, *, eval_sequences: int = 6, progress: bool = True, log=print) -> dict:
  """Trains (or resumes) the detector in ``workdir`` and evaluates it; returns the metrics dict."""
  from rolo_jax.data import synthetic
  from rolo_jax.eval import render
  from rolo_jax.train import yolo_task

  t0 = time.time()
  params, summary = yolo_task.train_detector(workdir, task, progress=progress, log=log)
  train_s = time.time() - t0
  if summary["steps_this_run"]:
    log(f"detector: {summary['steps']} steps ({summary['steps_this_run']} this run, "
        f"{train_s:.0f} s), last loss {summary['last']['loss']:.3f}")
  else:
    log(f"detector: already trained ({summary['steps']} steps) in {workdir}")
  det = yolo_task.Detector(params, summary["config"])
  t1 = time.time()
  test = synthetic.make_split("test", eval_sequences, synthetic.PRESETS["train"], multi=True)
  quality = yolo_task.evaluate_detector(det, test) if eval_sequences > 0 else {}
  metrics = {"task": dict(task.__dict__), "train_seconds": train_s, "eval_seconds": time.time() - t1,
             "steps": summary["steps"], "last": summary["last"], "test": quality,
             "data_images": summary["data_images"]}
  with open(os.path.join(workdir, "detector_metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
  if quality:
    log(f"held-out AP@0.5 {quality['ap']:.3f}, recall {quality['recall']:.3f}, "
        f"{quality['detections_per_frame']:.2f} detections/frame")
    tiles = []
    for seq in test[:4]:
      t = len(seq.frames) // 2
      frame = np.asarray(seq.frames[t])
      _, d = det(frame[None])
      boxes = {f"gt{i}": b for i, b in enumerate(seq.gt.in_frame(t).box)}
      boxes.update({f"det{i} {s:.2f}": b[:4] for i, (b, s) in enumerate(zip(d[0], d[0][:, 4]))})
      colors = {k: ((0, 255, 0) if k.startswith("gt") else (60, 140, 255)) for k in boxes}
      tiles.append(render.render_boxes(frame, boxes, colors, caption=f"{seq.name} #{t}"))
    if tiles:
      import cv2
      cv2.imwrite(os.path.join(workdir, "detections.png"), np.concatenate(tiles, axis=1)[..., ::-1])
  return metrics


# (checkpoint meta section, field) -> the flag that sets it alone, for a refused workdir's hint.
# The task's other fields (frame_stride, warmup_steps, checkpoint_every, ...) come from --config only.
FLAG_OF = {("task", "steps"): "steps", ("task", "batch"): "batch", ("task", "num_sequences"): "num_sequences",
           ("task", "lr"): "lr", ("task", "seed"): "seed", ("train", "seed"): "seed"}


def resume_flags(saved_values) -> str:
  """The flags that give a refused workdir's checkpoint settings back ('' when a difference has
  none; `_args.resume_hint`)."""
  return _args.resume_hint(saved_values, FLAG_OF)


@functools.partial(cli_main, mismatch_hint=resume_flags)
def main(argv=None) -> int:
  args = parse_args(argv)
  task = task_from_args(args)
  run(args.workdir, task, eval_sequences=args.eval_sequences, progress=not args.no_progress)
  return 0


if __name__ == "__main__":
  sys.exit(main())
