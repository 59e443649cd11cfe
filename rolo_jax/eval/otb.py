"""OTB evaluation (OPE, TRE, SRE) with the exact conventions of the benchmark's own MATLAB toolkit.

Reproduces the toolkit's stored curves to the last digit (see tests/eval_otb_test.py and
/work/shared/specs/otb_protocol.md).  Everything is numpy float64.

Per sequence (OPE), with ground truth g_t and result r_t of frame t (boxes x, y, w, h, 1-based
inclusive pixels as in the toolkit):

* start frame s: the first frame that is neither listed in initOmit (ranges of frame numbers)
  nor has a ground-truth value <= 0 / NaN.  Frames s..N-1 are scored, n = N - s.
* result rows are aligned with frame s (the toolkit stores OPE results from the start frame; a
  full-length result, M == N, is cut to its rows s..N-1).  Missing rows (M < n) are not scored
  but stay in the denominator n.
* a result box with a NaN or with w <= 0 or h <= 0 is replaced by the previous (already
  replaced) box, for t >= 1; then the first row is replaced by the ground truth g_s.
* centre c(b) = (x + (w - 1)/2, y + (h - 1)/2);  error_t = ||c(r_t) - c(g_t)||_2.
* IoU with inclusive pixels (calcRectInt):
    iw = max(0, min(x_r + w_r - 1, x_g + w_g - 1) - max(x_r, x_g) + 1), ih likewise,
    IoU = iw ih / (w_r h_r + w_g h_g - iw ih).
* where any ground-truth value is <= 0 (or NaN): IoU_t = -1 and error_t = -1 (a failure at every
  overlap threshold, a success at every error threshold).
* success(theta_k) = #{t : IoU_t > theta_k} / (n + eps) for theta = MATLAB's 0:0.05:1 (its colon
  computes the upper half from the end point: theta_k = 1 - (20 - k) 0.05 for k > 10, the middle
  is (0 + 1)/2), strict comparison; precision(tau) = #{t : error_t <= tau} / (n + eps),
  tau = 0..50.  (The toolkit divides by n + eps; for n >= 2 that is exactly n.)
* AUC = mean of the 21 success values; precision score = precision(20).

Extras (not in the OTB toolkit, same frame conventions):

* normalised precision (TrackingNet / LaSOT): the centre error divided by the ground-truth size,
    e_norm_t = ||(c(r_t) - c(g_t)) / (w_g, h_g)||_2   (-1 where the ground truth is invalid),
  P_norm(tau) = #{t : e_norm_t <= tau} / n for tau = 0:0.01:0.5 (51 thresholds); the score is the
  area under that curve normalised to [0, 1], i.e. the mean of the 51 values (TrackingNet's "AUC
  of the normalised precision between 0 and 0.5"; LaSOT plots the same curve).
* average overlap: the toolkit's aveCoverage, sum of IoU over the scored valid frames / n (frames
  past a short result and invalid-ground-truth frames count 0).

Over sequences every curve is averaged with equal weight per sequence.

TRE: 20 segments per sequence starting at Idx[floor(1 : e/19 : e)] and Idx[e] (MATLAB colon,
1-based positions into the list Idx of non-omitted valid frames, e the last position whose frame
leaves >= 20 frames); each runs to the sequence end; counts are summed over segments and divided
by the summed lengths.  SRE: 12 perturbed initial boxes from the start frame (see
`sre_initial_boxes`), pooled the same way; boxes of scaled runs are scaled back by 1/scale about
their centre before scoring.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Sequence as Seq, Tuple, Union

import numpy as np

from rolo_jax.data import boxes as box_ops
from rolo_jax.trackers import base as tracker_base

_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- MATLAB arithmetic


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
  """MATLAB's ``a:d:b`` in float64, element for element.

  MATLAB does not add d repeatedly: with n intervals and end point c = a + n d (snapped to b when
  within 2 eps max(|a|, |b|)), the first half is a + k d, the second half c - k d, counted from the
  end, and for even n the middle is (a + c)/2.  So 0:0.05:1 has 1 - 9*0.05 (not 11*0.05) at k = 11.

  Args:
    a, d, b: start, step, end.
  Returns:
    float64 [n + 1] (empty when the range is empty).
  """
  a, d, b = float(a), float(d), float(b)
  if math.isnan(a) or math.isnan(d) or math.isnan(b):
    return np.array([np.nan])
  if d == 0 or (a < b and d < 0) or (b < a and d > 0):
    return np.zeros(0)
  tol = 2.0 * _EPS * max(abs(a), abs(b))
  sig = 1.0 if d > 0 else -1.0
  if a == math.floor(a) and d == 1:
    n = int(math.floor(b) - a)
  elif a == math.floor(a) and d == math.floor(d):
    q = math.floor(a / d)
    r = a - q * d
    n = int(math.floor((b - r) / d) - q)
  else:
    n = int(round((b - a) / d))
    if sig * (a + n * d - b) > tol:
      n -= 1
  if n < 0:
    return np.zeros(0)
  c = a + n * d
  if sig * (c - b) > -tol:
    c = b
  v = np.zeros(n + 1)
  for k in range(n // 2 + 1):
    v[k] = a + k * d
    v[n - k] = c - k * d
  if n % 2 == 0:
    v[n // 2] = (a + c) / 2
  return v


def matlab_round(x):
  """MATLAB round: halves away from zero (numpy rounds halves to even)."""
  x = np.asarray(x, np.float64)
  return np.sign(x) * np.floor(np.abs(x) + 0.5)


SUCCESS_THRESHOLDS = matlab_colon(0, 0.05, 1)  # [21] overlap thresholds (strict >)
PRECISION_THRESHOLDS = matlab_colon(0, 1, 50)  # [51] centre-error thresholds in pixels (<=)
NORM_PRECISION_THRESHOLDS = matlab_colon(0, 0.01, 0.5)  # [51] normalised-error thresholds (<=)


# --------------------------------------------------------------------------- per-sequence scores


class SequenceScore(NamedTuple):
  """Scores of one sequence (or of pooled TRE / SRE runs).

  success: [21] fraction of frames with IoU > SUCCESS_THRESHOLDS.
  precision: [51] fraction of frames with centre error <= 0..50 px.
  iou: [n] per-frame IoU (-1 for invalid ground truth, NaN for frames past a short result).
  error: [n] per-frame centre error in pixels (same conventions).
  n: number of frames in the denominator.
  norm_error: [n] centre error divided by the ground-truth size (same conventions).
  norm_precision: [51] fraction with norm_error <= NORM_PRECISION_THRESHOLDS.
  average_overlap: sum of valid IoU / n.
  start: 0-based index of the first scored frame (OPE start frame; 0 for pooled scores).
  """
  success: np.ndarray
  precision: np.ndarray
  iou: np.ndarray
  error: np.ndarray
  n: int
  norm_error: np.ndarray
  norm_precision: np.ndarray
  average_overlap: float
  start: int = 0

  @property
  def auc(self) -> float:
    return float(np.mean(self.success))

  @property
  def precision_20(self) -> float:
    return float(self.precision[20])


def valid_gt(gt: np.ndarray) -> np.ndarray:
  """bool [N]: ground-truth rows whose four values are all > 0 (NaN counts as invalid)."""
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  return np.all(gt > 0, axis=1)


def omitted(num_frames: int, init_omit=(), start_frame_number: int = 1) -> np.ndarray:
  """bool [num_frames]: frames that may not start a run.

  Args:
    num_frames: sequence length N.
    init_omit: [K, 2] inclusive ranges of absolute frame numbers (initOmit/<seq>.txt), or a 1-D
      list of individual frame numbers.
    start_frame_number: the frame number of the sequence's first frame (e.g. 300 for David).
  Returns:
    bool [N].
  """
  mask = np.zeros(num_frames, bool)
  arr = np.asarray(init_omit if init_omit is not None else (), np.float64)
  if arr.size == 0:
    return mask
  if arr.ndim == 2 and arr.shape[1] == 2:
    ranges = arr
  elif arr.ndim == 1:
    ranges = np.stack([arr, arr], axis=1)
  else:
    raise ValueError(f"init_omit must be [K, 2] frame ranges or a list of frames, got shape {arr.shape}")
  for first, last in ranges:
    lo = max(int(first) - start_frame_number, 0)
    hi = min(int(last) - start_frame_number, num_frames - 1)
    if hi >= lo:
      mask[lo:hi + 1] = True
  return mask


def start_candidates(gt: np.ndarray, init_omit=(), start_frame_number: int = 1) -> np.ndarray:
  """0-based indices of frames that may start a run (not omitted, valid ground truth) — the
  toolkit's Idx list (1-based there).  int [K]."""
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  ok = valid_gt(gt) & ~omitted(len(gt), init_omit, start_frame_number)
  return np.nonzero(ok)[0]


def start_index(gt: np.ndarray, init_omit=(), start_frame_number: int = 1) -> int:
  """0-based OPE start frame: the first non-omitted frame with valid ground truth."""
  idx = start_candidates(gt, init_omit, start_frame_number)
  if len(idx) == 0:
    raise ValueError("no frame can start a run: every frame is omitted or has invalid ground truth")
  return int(idx[0])


def replace_bad_boxes(result: np.ndarray) -> np.ndarray:
  """Replaces each result box (from the second on) that has a NaN, w <= 0 or h <= 0 by the
  previous, already replaced, box.  [M, 4] -> [M, 4] (a copy)."""
  res = np.array(result, np.float64).reshape(-1, 4)
  for t in range(1, len(res)):
    r = res[t]
    if np.isnan(r).any() or r[2] <= 0 or r[3] <= 0:
      res[t] = res[t - 1]
  return res


def _curves(iou, error, norm_error, n):
  den = n + _EPS  # the toolkit's successNum / (lenALL + eps)
  with np.errstate(invalid="ignore"):
    success = np.array([np.sum(iou > th) for th in SUCCESS_THRESHOLDS]) / den
    precision = np.array([np.sum(error <= th) for th in PRECISION_THRESHOLDS]) / den
    norm_precision = np.array([np.sum(norm_error <= th) for th in NORM_PRECISION_THRESHOLDS]) / den
  return success, precision, norm_precision


def _average_overlap(iou, n):
  ok = np.isfinite(iou) & (iou >= 0)
  return float(np.sum(iou[ok]) / (n + _EPS))


def score_segment(gt: np.ndarray, result: np.ndarray, start: int = 0) -> SequenceScore:
  """Scores a result against ground truth that both begin at the run's first frame.

  The toolkit's calcSeqErrRobust: bad boxes replaced, first row := gt[0], IoU / centre error per
  frame, -1 where the ground truth is invalid; rows past the result's end are not scored but n =
  len(gt).

  Args:
    gt: [n, 4] ground truth from the run's first frame to the sequence end.
    result: [m, 4] result rows from the same first frame (m < n: shorter; m > n: cut to n).
    start: recorded in the returned score.
  Returns:
    SequenceScore.
  """
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  n = len(gt)
  res = replace_bad_boxes(np.asarray(result, np.float64).reshape(-1, 4)[:n])
  m = len(res)
  if m > 0:
    res[0] = gt[0]
  iou = np.full(n, np.nan)
  err = np.full(n, np.nan)
  nerr = np.full(n, np.nan)
  if m > 0:
    g = gt[:m]
    with np.errstate(invalid="ignore", divide="ignore"):
      iou[:m] = box_ops.iou_otb(res, g)
      err[:m] = box_ops.centre_error_otb(res, g)
      d = (box_ops.centre_otb(res) - box_ops.centre_otb(g)) / g[:, 2:4]
      nerr[:m] = np.sqrt(d[:, 0]**2 + d[:, 1]**2)
    bad = ~valid_gt(g)
    iou[:m][bad] = -1.0
    err[:m][bad] = -1.0
    nerr[:m][bad] = -1.0
  success, precision, norm_precision = _curves(iou, err, nerr, n)
  return SequenceScore(success, precision, iou, err, n, nerr, norm_precision,
                       _average_overlap(iou, n), int(start))


def score_sequence(gt: np.ndarray,
                   result: np.ndarray,
                   *,
                   init_omit=(),
                   start_frame_number: int = 1,
                   result_start: Union[str, int] = "auto") -> SequenceScore:
  """OPE score of one sequence, as the OTB toolkit computes it.

  Args:
    gt: [N, 4] ground truth of the whole sequence (its frame range).
    result: [M, 4] tracker output.
    init_omit: [K, 2] inclusive frame-number ranges that may not start a run (initOmit/<seq>.txt).
    start_frame_number: frame number of gt[0] (to map init_omit; David starts at 300).
    result_start: which frame result[0] belongs to.  "auto": frame 0 when M == N (a full-length
      result, cut to the start frame), else the start frame (the toolkit's layout: tiger1's
      results begin at frame 6).  "start" or an int index force it.
  Returns:
    SequenceScore over frames start..N-1 (n = N - start).
  """
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  result = np.asarray(result, np.float64).reshape(-1, 4)
  s = start_index(gt, init_omit, start_frame_number)
  if result_start == "auto":
    first = 0 if (len(result) == len(gt) and s > 0) else s
  elif result_start == "start":
    first = s
  else:
    first = int(result_start)
  if first > s:
    raise ValueError(f"result starts at frame index {first}, after the start frame {s}")
  return score_segment(gt[s:], result[s - first:], start=s)


def pool(scores: Seq[SequenceScore]) -> SequenceScore:
  """Pools runs of one sequence (TRE segments, SRE perturbations): counts summed over runs and
  divided by the summed lengths."""
  scores = list(scores)
  if not scores:
    raise ValueError("pool() needs at least one score")
  iou = np.concatenate([s.iou for s in scores])
  err = np.concatenate([s.error for s in scores])
  nerr = np.concatenate([s.norm_error for s in scores])
  n = int(sum(s.n for s in scores))
  success, precision, norm_precision = _curves(iou, err, nerr, n)
  return SequenceScore(success, precision, iou, err, n, nerr, norm_precision,
                       _average_overlap(iou, n), 0)


def aggregate(scores: Union[Mapping[str, SequenceScore], Iterable[SequenceScore]]) -> Dict[str, Any]:
  """Averages per-sequence scores with equal weight per sequence.

  Returns:
    dict with success [21], precision [51], normalized_precision_curve [51] (numpy arrays),
    auc (mean of success), precision_20, normalized_precision (mean of its curve),
    average_overlap (mean over sequences), num_sequences.
  """
  vals = list(scores.values()) if isinstance(scores, Mapping) else list(scores)
  if not vals:
    raise ValueError("aggregate() needs at least one sequence score")
  success = np.mean(np.stack([s.success for s in vals]), axis=0)
  precision = np.mean(np.stack([s.precision for s in vals]), axis=0)
  norm = np.mean(np.stack([s.norm_precision for s in vals]), axis=0)
  return dict(
      success=success,
      precision=precision,
      auc=float(np.mean(success)),
      precision_20=float(precision[20]),
      normalized_precision_curve=norm,
      normalized_precision=float(np.mean(norm)),
      average_overlap=float(np.mean([s.average_overlap for s in vals])),
      num_sequences=len(vals),
  )


# --------------------------------------------------------------------------- TRE / SRE


def tre_segments(gt: np.ndarray,
                 init_omit=(),
                 start_frame_number: int = 1,
                 *,
                 num_segments: int = 20,
                 min_length: int = 20) -> List[int]:
  """0-based start frames of the TRE segments (the toolkit's splitSeqTRE).

  Idx = frames not omitted and with valid ground truth (1-based positions 1..K); e = the last
  position whose frame leaves >= min_length frames (N - Idx[e] >= min_length - 1 with 0-based
  frames); starts = Idx[[floor(1 : e/(num_segments-1) : e), e]] (MATLAB colon).  Duplicates are
  kept, as in the toolkit.  A sequence too short for any such frame gets the one segment Idx[1].

  Args:
    gt: [N, 4] ground truth.  init_omit, start_frame_number: as in `score_sequence`.
  Returns:
    list of 0-based frame indices, normally num_segments of them, the first the OPE start.
  """
  gt = np.asarray(gt, np.float64).reshape(-1, 4)
  n = len(gt)
  idx = start_candidates(gt, init_omit, start_frame_number)
  if len(idx) == 0:
    raise ValueError("no frame can start a run: every frame is omitted or has invalid ground truth")
  ends = [i for i in range(len(idx)) if n - idx[i] >= min_length]
  if not ends:
    return [int(idx[0])]
  e = ends[-1] + 1  # 1-based position
  pos = np.floor(matlab_colon(1, e / (num_segments - 1), e)).astype(int).tolist() + [e]
  return [int(idx[p - 1]) for p in pos]


SRE_SHIFTS = ("left", "right", "up", "down", "topLeft", "topRight", "bottomLeft", "bottomRight",
              "scale_8", "scale_9", "scale_11", "scale_12")
_SRE_SCALES = {"scale_8": 0.8, "scale_9": 0.9, "scale_11": 1.1, "scale_12": 1.2}


def sre_initial_boxes(box, image_w: int, image_h: int) -> List[Tuple[str, np.ndarray, float]]:
  """The 12 perturbed initial boxes of SRE (the toolkit's shiftInitBB), in the toolkit's order.

  With box (x, y, w, h), br = (x + w - 1, y + h - 1) and MATLAB's round (halves away from 0):
    left / right:  x -/+ ceil(0.1 w);   up / down: y -/+ ceil(0.1 h)   (size kept);
    topLeft:     x' = round(x - 0.1 w), y' = round(y - 0.1 h), bottom-right corner fixed;
    topRight:    br_x' = round(br_x + 0.1 w), y' = round(y - 0.1 h), x and br_y fixed;
    bottomLeft:  x' = round(x - 0.1 w), br_y' = round(br_y + 0.1 h), y and br_x fixed;
    bottomRight: br_x' = round(br_x + 0.1 w), br_y' = round(br_y + 0.1 h), x and y fixed;
      (w' = br_x' - x' + 1, h' = br_y' - y' + 1);
    scale_s:     about the centre (x + w/2, y + h/2): round([cx - s w/2, cy - s h/2, s w, s h]);
  then clipped to the image in 1-based pixels: x, y < 1 -> 1 (size kept), and w, h cut so that
  x + w - 1 <= image_w, y + h - 1 <= image_h.

  Args:
    box: [4] x, y, w, h of the first frame's ground truth.
    image_w, image_h: image size in pixels.
  Returns:
    list of 12 (name, box float64 [4], scale) with scale 1.0 for the shifts.
  """
  x, y, w, h = (float(v) for v in np.asarray(box, np.float64).reshape(4))
  br_x, br_y = x + w - 1, y + h - 1
  out = []
  for name in SRE_SHIFTS:
    r = [x, y, w, h]
    scale = _SRE_SCALES.get(name, 1.0)
    if name == "left":
      r[0] = x - math.ceil(0.1 * w)
    elif name == "right":
      r[0] = x + math.ceil(0.1 * w)
    elif name == "up":
      r[1] = y - math.ceil(0.1 * h)
    elif name == "down":
      r[1] = y + math.ceil(0.1 * h)
    elif name in ("topLeft", "topRight", "bottomLeft", "bottomRight"):
      x1, y1, x2, y2 = x, y, br_x, br_y
      if name in ("topLeft", "bottomLeft"):
        x1 = float(matlab_round(x - 0.1 * w))
      else:
        x2 = float(matlab_round(br_x + 0.1 * w))
      if name in ("topLeft", "topRight"):
        y1 = float(matlab_round(y - 0.1 * h))
      else:
        y2 = float(matlab_round(br_y + 0.1 * h))
      r = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
    else:
      cx, cy = x + w / 2, y + h / 2
      sw, sh = scale * w, scale * h
      r = [float(v) for v in matlab_round([cx - sw / 2, cy - sh / 2, sw, sh])]
    if r[0] < 1:
      r[0] = 1.0
    if r[1] < 1:
      r[1] = 1.0
    if r[0] + r[2] - 1 > image_w:
      r[2] = image_w - r[0] + 1
    if r[1] + r[3] - 1 > image_h:
      r[3] = image_h - r[1] + 1
    out.append((name, np.asarray(r, np.float64), scale))
  return out


# --------------------------------------------------------------------------- running trackers


def _sequence_info(sequence):
  gt = np.asarray(sequence.boxes, np.float64).reshape(-1, 4)
  fn = getattr(sequence, "frame_numbers", None)
  start_frame_number = int(fn[0]) if fn is not None and len(fn) else 1
  meta = getattr(sequence, "meta", None) or {}
  init_omit = meta.get("init_omit_ranges", meta.get("init_omit", ()))
  return gt, init_omit, start_frame_number


def _run(tracker_factory: Callable[[], Any], sequence, init_box, start: int) -> np.ndarray:
  """A fresh tracker from frame `start` to the end: [T - start, 4], row 0 = init_box."""
  boxes, _ = tracker_base.run_tracker(tracker_factory(), sequence, init_box=init_box, start=start,
                                      warn=False)
  return boxes


def run_ope(tracker_factory: Callable[[], Any], sequence) -> SequenceScore:
  """One-pass evaluation: one run from the start frame, initialised with its ground truth.

  Args:
    tracker_factory: () -> a fresh tracker with init(frame, box) / update(frame) -> box
      (rolo_jax.trackers.base.Tracker).
    sequence: rolo_jax.data.sequence.Sequence; boxes = ground truth, frame_numbers[0] maps the
      omitted frame numbers of meta['init_omit_ranges'] ([K, 2]) or meta['init_omit'] (frames).
  Returns:
    SequenceScore over frames start..T-1.
  """
  gt, init_omit, sfn = _sequence_info(sequence)
  s = start_index(gt, init_omit, sfn)
  return score_segment(gt[s:], _run(tracker_factory, sequence, gt[s], s), start=s)


def run_tre(tracker_factory: Callable[[], Any], sequence, *, num_segments: int = 20) -> SequenceScore:
  """Temporal robustness: a run from each `tre_segments` start to the sequence end, initialised
  with the ground truth there; counts pooled over the runs (`pool`)."""
  gt, init_omit, sfn = _sequence_info(sequence)
  scores = []
  for s in tre_segments(gt, init_omit, sfn, num_segments=num_segments):
    scores.append(score_segment(gt[s:], _run(tracker_factory, sequence, gt[s], s), start=s))
  return pool(scores)


def run_sre(tracker_factory: Callable[[], Any], sequence) -> SequenceScore:
  """Spatial robustness: 12 runs from the start frame with `sre_initial_boxes`, pooled.

  Boxes of a run started with a box scaled by s are scaled by 1/s about their centre
  (x + w/2, y + h/2) before scoring.  Each run's first row is the ground truth, as in OPE.
  """
  gt, init_omit, sfn = _sequence_info(sequence)
  s = start_index(gt, init_omit, sfn)
  w, h = sequence.size()
  scores = []
  for _, box, scale in sre_initial_boxes(gt[s], w, h):
    res = _run(tracker_factory, sequence, box, s)
    if scale != 1.0:
      res = np.asarray(box_ops.scale_about_centre(res, 1.0 / scale), np.float64)
    scores.append(score_segment(gt[s:], res, start=s))
  return pool(scores)


__all__ = (
    "SUCCESS_THRESHOLDS", "PRECISION_THRESHOLDS", "NORM_PRECISION_THRESHOLDS", "SRE_SHIFTS",
    "SequenceScore", "matlab_colon", "matlab_round", "valid_gt", "omitted", "start_candidates",
    "start_index", "replace_bad_boxes", "score_segment", "score_sequence", "pool", "aggregate",
    "tre_segments", "sre_initial_boxes", "run_ope", "run_tre", "run_sre",
)
