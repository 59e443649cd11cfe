"""SORT: Simple Online and Realtime Tracking (Bewley, Ge, Ott, Ramos, Upcroft; ICIP 2016).

Per frame t, with the detections of t (boxes x, y, w, h and scores):

  0. Detections with a score below `min_score` (when given) or without a positive size are dropped.
  1. Predict: every track's Kalman filter (rolo_jax.mot.kalman: state [u, v, s, r, u', v', s'])
     steps once; age += 1; a track that was not matched in the previous frame has its hit streak
     reset to 0; time_since_update += 1.  Tracks whose prediction is not a valid box are dropped.
  2. Associate: Hungarian assignment maximising the total IoU between detections and predicted
     boxes, over pairs with IoU >= iou_threshold (0.3, the paper's IoU_min); other pairs cannot
     match.
  3. Matched tracks are corrected with their detection (Kalman update); time_since_update = 0,
     hits += 1, hit_streak += 1.
  4. Birth: every unmatched detection starts a track (x = [z, 0, 0, 0], P = P0, hit_streak 0, a
     new id = 1, 2, ... in order of birth).
  5. Report: a track appears in the output of frame t when it was matched or born at t
     (time_since_update == 0) and either hit_streak >= min_hits (confirmed: matched in min_hits
     consecutive frames after its birth frame) or t is among the first min_hits frames of the
     video (frame_count <= min_hits, so targets present from the start are not hidden).  Its box
     is the corrected state (the detection itself in its birth frame).
  6. Death: tracks with time_since_update > max_age are deleted (the paper's T_lost = 1 frame).

Defaults follow the paper and the authors' reference settings: max_age=1, min_hits=3,
iou_threshold=0.3.  The tracker only uses boxes and scores, so it runs from a det.txt alone:

    python -m rolo_jax.mot.sort --det ../shared/data/mot/TUD-Campus/det.txt --out /tmp/sort.txt

Bad input (a malformed det.txt, --out naming a folder or the --det file itself, --max_age or
--min_hits below 0, --iou_threshold outside (0, 1], --num_frames below 1, a non-finite --min_score)
prints one ``error: ...`` line and exits with status 2 before tracking.  Detections after
--num_frames are not tracked (a note says how many).
"""
from __future__ import annotations

import math
import os
import sys
from typing import Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from rolo_jax.data.boxes import pairwise_iou
from rolo_jax.errors import ArgumentParser, check_output_file, cli_main, same_file
from rolo_jax.mot import Detections, MultiObjectTracker, as_detections, kalman, run_mot


def associate(det_boxes: np.ndarray, trk_boxes: np.ndarray,
              iou_threshold: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
  """Hungarian matching of detections to tracks maximising total IoU over pairs with
  IoU >= iou_threshold.

  Args:
    det_boxes: [N, 4] x, y, w, h.  trk_boxes: [K, 4].
  Returns:
    (det indices, track indices) of the matched pairs, int64 [P] each.
  """
  if len(det_boxes) == 0 or len(trk_boxes) == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  iou = pairwise_iou(det_boxes, trk_boxes)
  ok = iou >= iou_threshold
  if not ok.any():
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  r, c = linear_sum_assignment(np.where(ok, iou, 0.0), maximize=True)
  keep = ok[r, c]
  return r[keep].astype(np.int64), c[keep].astype(np.int64)


class Sort(MultiObjectTracker):
  """SORT (see the module docstring).

  Args:
    max_age: a track survives this many consecutive frames without a detection.
    min_hits: consecutive matches (after the birth frame) before a track is reported.
    iou_threshold: minimum IoU of a detection with a track's predicted box to match.
    min_score: detections scoring below this are ignored (None: keep all).
  """

  name = "sort"

  def __init__(self, max_age: int = 1, min_hits: int = 3, iou_threshold: float = 0.3,
               min_score: Optional[float] = None):
    if max_age < 0 or min_hits < 0:
      raise ValueError(f"max_age and min_hits must be >= 0, got {max_age}, {min_hits}")
    if not 0.0 < iou_threshold <= 1.0:
      raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    self.max_age, self.min_hits = int(max_age), int(min_hits)
    self.iou_threshold = float(iou_threshold)
    self.min_score = min_score
    self.reset()

  def reset(self) -> None:
    n = kalman.DIM_X
    self.state = kalman.KalmanState(np.zeros((0, n)), np.zeros((0, n, n)))
    self.ids = np.zeros(0, np.int64)
    self.hits = np.zeros(0, np.int64)
    self.hit_streak = np.zeros(0, np.int64)
    self.age = np.zeros(0, np.int64)
    self.time_since_update = np.zeros(0, np.int64)
    self.frame_count = 0
    self.next_id = 1

  def _keep_tracks(self, keep: np.ndarray) -> None:
    self.state = kalman.KalmanState(self.state.x[keep], self.state.P[keep])
    for f in ("ids", "hits", "hit_streak", "age", "time_since_update"):
      setattr(self, f, getattr(self, f)[keep])

  def num_tracks(self) -> int:
    """Live tracks (confirmed or not)."""
    return len(self.ids)

  def update(self, detections: Detections) -> Tuple[np.ndarray, np.ndarray]:
    boxes, scores = as_detections(detections)
    ok = np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    if self.min_score is not None:
      ok &= scores >= self.min_score
    boxes = boxes[ok]
    self.frame_count += 1

    # 1. Predict.
    if len(self.ids):
      self.state = kalman.predict(self.state)
      self.age += 1
      self.hit_streak[self.time_since_update > 0] = 0
      self.time_since_update += 1
      self._keep_tracks(np.all(np.isfinite(kalman.x_to_box(self.state.x)), axis=1))

    # 2-3. Associate and correct.
    d, k = associate(boxes, kalman.x_to_box(self.state.x), self.iou_threshold)
    if len(k):
      upd = kalman.update(kalman.KalmanState(self.state.x[k], self.state.P[k]), boxes[d])
      self.state.x[k], self.state.P[k] = upd.x, upd.P
      self.time_since_update[k] = 0
      self.hits[k] += 1
      self.hit_streak[k] += 1

    # 4. Birth.
    new = np.setdiff1d(np.arange(len(boxes)), d)
    if len(new):
      born = kalman.init(boxes[new])
      n = len(new)
      self.state = kalman.KalmanState(np.concatenate([self.state.x, born.x]),
                                      np.concatenate([self.state.P, born.P]))
      self.ids = np.concatenate([self.ids, np.arange(self.next_id, self.next_id + n)])
      self.next_id += n
      zeros = np.zeros(n, np.int64)
      self.hits = np.concatenate([self.hits, zeros])
      self.hit_streak = np.concatenate([self.hit_streak, zeros])
      self.age = np.concatenate([self.age, zeros])
      self.time_since_update = np.concatenate([self.time_since_update, zeros])

    # 5. Report.
    show = (self.time_since_update == 0) & ((self.hit_streak >= self.min_hits)
                                           | (self.frame_count <= self.min_hits))
    out_boxes = kalman.x_to_box(self.state.x[show])
    out_ids = self.ids[show].copy()

    # 6. Death.
    self._keep_tracks(self.time_since_update <= self.max_age)
    return out_boxes, out_ids


def make_sort(checkpoint=None, **kw) -> Sort:
  """Factory: SORT has no parameters to load (ValueError when a checkpoint is given)."""
  if checkpoint is not None:
    raise ValueError("sort takes no checkpoint")
  return Sort(**kw)


def main(argv=None) -> int:
  from rolo_jax.data.formats.mot import read_mot_file
  from rolo_jax.mot.io import write_mot_results

  p = ArgumentParser(prog="python -m rolo_jax.mot.sort",
                     description="Runs SORT on a MOTChallenge det.txt and writes results.")
  p.add_argument("--det", required=True, help="det.txt (frame, -1, x, y, w, h, score, ...)")
  p.add_argument("--out", required=True, help="results file to write (MOTChallenge format)")
  p.add_argument("--num_frames", type=int, default=None,
                 help="frames in the video (default: the last detection frame)")
  p.add_argument("--min_score", type=float, default=None)
  p.add_argument("--max_age", type=int, default=1)
  p.add_argument("--min_hits", type=int, default=3)
  p.add_argument("--iou_threshold", type=float, default=0.3)
  a = p.parse_args(argv)
  if a.max_age < 0 or a.min_hits < 0:
    p.error(f"--max_age and --min_hits must be >= 0, got {a.max_age} and {a.min_hits}")
  if not 0.0 < a.iou_threshold <= 1.0:
    p.error(f"--iou_threshold must be in (0, 1], got {a.iou_threshold}")
  if a.num_frames is not None and a.num_frames < 1:
    p.error(f"--num_frames must be at least 1, got {a.num_frames}")
  if a.min_score is not None and not math.isfinite(a.min_score):
    p.error(f"--min_score must be a finite number, got {a.min_score}")
  check_output_file(a.out, "--out")   # before tracking
  if os.path.isfile(a.det) and same_file(a.out, a.det):
    p.error(f"--out {a.out} is the --det file; writing there would destroy the detections: give "
            "another path")
  dets = read_mot_file(a.det, "det")
  tracker = Sort(a.max_age, a.min_hits, a.iou_threshold, a.min_score)
  if a.num_frames is not None and len(dets) and int(dets.frame.max()) >= a.num_frames:
    late = int((dets.frame >= a.num_frames).sum())
    print(f"note: {a.det}: {late} detections lie after frame {a.num_frames} (--num_frames) and "
          "are not tracked", file=sys.stderr)
  hyp = run_mot(tracker, dets, a.num_frames)
  write_mot_results(a.out, hyp)
  print(f"wrote {len(hyp)} boxes of {len(hyp.track_ids())} tracks to {a.out}")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main)())
