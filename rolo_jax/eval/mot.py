"""MOTChallenge metrics: CLEAR MOT (MOTA, MOTP, ID switches, fragmentations, MT/PT/ML) and the
identity metrics IDF1 / IDP / IDR, computed the way py-motmetrics and the MOTChallenge devkit do.

Per-frame matching (CLEAR MOT, Bernardin & Stiefelhagen 2008), frames in increasing order, over
every frame that has a ground-truth (gt) or a hypothesis (hyp) box:

  d(o, h) = 1 - IoU(o, h)                     continuous IoU of x, y, w, h boxes
  (o, h) may pair only if d(o, h) <= 1 - iou_threshold   (IoU >= 0.5 by default)

  1. Keep correspondences: a gt o whose last match (in any earlier frame) was hyp id h, with h
     present in this frame and allowed to pair, is matched to h again.
  2. The remaining gt and hyps are matched by the Hungarian method: among the assignments with the
     largest number of allowed pairs, the one with the least total distance (py-motmetrics solves
     it with a large finite cost on forbidden pairs; so does this module).
     A new match (o, h) is an ID switch when o was last matched to another hyp id.
  3. Unmatched gt boxes are misses (FN), unmatched hyp boxes false positives (FP).

From the per-frame events, with GT = number of gt boxes (all frames), H = number of hyp boxes:

  MOTA      = 1 - (FN + FP + IDSW) / GT
  MOTP      = sum of d(o, h) over all matches / number of matches   -- the py-motmetrics convention:
              a DISTANCE (lower is better), 1 - the devkit's MOTP overlap
  recall    = matches / GT,   precision = matches / (matches + FP)   (matches include switches)
  MT/PT/ML  = gt tracks matched in >= 80% / [20%, 80%) / < 20% of the frames they appear in
  FRAG      = per gt track, the number of tracked -> missed transitions between its first and last
              matched frame (counted over the frames where the gt box exists, as py-motmetrics)

Identity metrics (Ristani et al., ECCV 2016 workshops): a one-to-one matching of gt trajectories to
hyp trajectories that maximises IDTP = sum over matched pairs (o, h) of the number of frames in
which o and h may pair (IoU >= threshold).  This is the same optimum as py-motmetrics' min-cost
assignment of IDFP + IDFN with dummy nodes (for any matching, IDFP + IDFN = GT + H - 2 IDTP).

  IDFN = GT - IDTP,  IDFP = H - IDTP
  IDP  = IDTP / H,   IDR = IDTP / GT,   IDF1 = 2 IDTP / (GT + H)

Ground-truth rows that are not evaluated (`prepare_gt`):
  * MOT15-style files (no class column, e.g. TUD-Campus): rows whose 'consider' flag (7th column,
    `Objects.score`) is 0.  MOT15 gt files have 1 there throughout, so no row is ignored.
  * MOT16/17/20-style files (class column present): as the MOT17 devkit's preprocessing: in every
    frame ALL gt rows are matched to the hyps (Hungarian, IoU >= threshold) and hyps matched to a
    distractor (classes 2 person_on_vehicle, 7 static_person, 8 distractor, 12 reflection) are
    removed; then only gt rows with class 1 (pedestrian) and consider flag != 0 are evaluated.

Zero denominators give NaN (e.g. MOTP or precision without any match or hyp), never an exception;
an empty hypothesis set gives FN = GT and MOTA = 0.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from rolo_jax.data.boxes import pairwise_iou
from rolo_jax.data.sequence import Objects

METRIC_NAMES: Tuple[str, ...] = (
    "mota", "motp", "idf1", "idp", "idr", "recall", "precision", "num_switches",
    "num_fragmentations", "num_false_positives", "num_misses", "mostly_tracked",
    "partially_tracked", "mostly_lost", "num_unique_objects",
)
"""The MOTChallenge summary (py-motmetrics' names), in the order the CLI prints them."""

COUNT_NAMES: Tuple[str, ...] = (
    "num_frames", "num_objects", "num_predictions", "num_matches", "num_detections",
    "num_switches", "num_fragmentations", "num_false_positives", "num_misses", "mostly_tracked",
    "partially_tracked", "mostly_lost", "num_unique_objects", "idtp", "idfp", "idfn",
    "distance_sum",
)
"""Additive counts: summed over sequences, then the rates are recomputed from the sums.
num_objects = GT boxes, num_predictions = hyp boxes, num_matches = matches that are not switches,
num_detections = all matches (switches included), distance_sum = sum of 1 - IoU over them."""

INT_NAMES = frozenset(n for n in COUNT_NAMES if n != "distance_sum")

DISTRACTOR_CLASSES: Tuple[int, ...] = (2, 7, 8, 12)
"""MOTChallenge classes whose boxes absorb hypotheses without counting (person_on_vehicle,
static_person, distractor, reflection)."""

PEDESTRIAN_CLASSES: Tuple[int, ...] = (1,)


def _div(num: float, den: float) -> float:
  return float(num) / float(den) if den else float("nan")


def _max_pairs_min_cost(dist: np.ndarray, allowed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Hungarian matching: most allowed pairs first, then least total distance.

  Forbidden pairs get the cost L = 2 k (max|d| + 1) + 1 with k = min(N, M): one forbidden pair costs
  more than any k allowed ones, so the optimum uses as many allowed pairs as possible.

  Args:
    dist: [N, M] distances.  allowed: [N, M] bool.
  Returns:
    rows, cols: int arrays of the allowed pairs of the optimal assignment.
  """
  if dist.size == 0 or not allowed.any():
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  k = min(dist.shape)
  big = 2 * k * (np.abs(dist[allowed]).max() + 1) + 1
  r, c = linear_sum_assignment(np.where(allowed, dist, big))
  keep = allowed[r, c]
  return r[keep], c[keep]


def _frame_groups(frames: np.ndarray) -> Dict[int, np.ndarray]:
  """frame -> row indices (in table order)."""
  order = np.argsort(frames, kind="stable")
  uniq, start = np.unique(frames[order], return_index=True)
  return dict(zip(uniq.tolist(), np.split(order, start[1:])))


def _check_unique_ids(objs: Objects, what: str) -> None:
  if len(objs) == 0:
    return
  key = np.stack([objs.frame, objs.track_id], 1)
  uniq, counts = np.unique(key, axis=0, return_counts=True)
  if (counts > 1).any():
    f, i = uniq[np.argmax(counts > 1)]
    raise ValueError(f"{what}: frame {f} (0-based) has track id {i} more than once")


def has_class_column(gt: Objects) -> bool:
  """True for MOT16/17/20-style gt: a class column (`read_mot_file` gives label -1 without one)."""
  return len(gt) > 0 and bool((gt.label >= 0).any())


def prepare_gt(gt: Objects, hyp: Objects, *, iou_threshold: float = 0.5,
               use_classes: Optional[bool] = None,
               pedestrian_classes: Iterable[int] = PEDESTRIAN_CLASSES,
               distractor_classes: Iterable[int] = DISTRACTOR_CLASSES
               ) -> Tuple[Objects, Objects, Dict]:
  """The gt rows to evaluate and the hyps to keep, as the MOTChallenge devkits choose them.

  Args:
    gt: ground truth; `score` is the 'consider' flag (0 = ignore), `label` the class (-1 = none).
    hyp: hypotheses.
    iou_threshold: matching threshold for the distractor step.
    use_classes: apply the MOT16/17 class rules; default: when the gt has a class column.
    pedestrian_classes: gt classes that are evaluated (class rules only).
    distractor_classes: gt classes whose matched hyps are removed (class rules only).
  Returns:
    (gt kept, hyp kept, info) with info = {'gt_ignored': int, 'hyp_removed': int,
    'class_rules': bool}.
  """
  if use_classes is None:
    use_classes = has_class_column(gt)
  hyp_keep = np.ones(len(hyp), bool)
  if use_classes and len(gt) and len(hyp):
    distractor = np.isin(gt.label, np.asarray(list(distractor_classes), np.int64))
    g_groups = _frame_groups(gt.frame)
    for t, hi in _frame_groups(hyp.frame).items():
      gi = g_groups.get(t)
      if gi is None or not distractor[gi].any():
        continue
      dist = 1.0 - pairwise_iou(gt.box[gi], hyp.box[hi])
      r, c = _max_pairs_min_cost(dist, dist <= 1.0 - iou_threshold)
      hyp_keep[hi[c[distractor[gi][r]]]] = False
  gt_keep = gt.score != 0
  if use_classes:
    gt_keep &= np.isin(gt.label, np.asarray(list(pedestrian_classes), np.int64))
  info = {"gt_ignored": int((~gt_keep).sum()), "hyp_removed": int((~hyp_keep).sum()),
          "class_rules": bool(use_classes)}
  return gt.select(gt_keep), hyp.select(hyp_keep), info


def match_frames(gt: Objects, hyp: Objects, *, iou_threshold: float = 0.5) -> Dict[str, np.ndarray]:
  """The CLEAR MOT frame-by-frame matching (see the module docstring); no rows are filtered.

  Args:
    gt: ground-truth boxes with track ids (unique per frame).
    hyp: hypothesis boxes with track ids (unique per frame).
    iou_threshold: pairs need IoU >= this.
  Returns:
    dict with
      gt_match: int [len(gt)], the hyp row matched to each gt row, -1 when missed.
      gt_switch: bool [len(gt)], the match is an ID switch.
      gt_dist: float [len(gt)], 1 - IoU of the match (NaN when missed).
      hyp_matched: bool [len(hyp)].
      pair_frames: int [num gt ids, num hyp ids], frames in which the two may pair (for IDF1).
      gt_ids, hyp_ids: the sorted unique ids indexing pair_frames.
      frames: sorted frames that have a gt or a hyp box.
  """
  _check_unique_ids(gt, "gt")
  _check_unique_ids(hyp, "hyp")
  max_dist = 1.0 - iou_threshold
  gt_ids, g_idx = np.unique(gt.track_id, return_inverse=True)
  hyp_ids, h_idx = np.unique(hyp.track_id, return_inverse=True)
  pair_frames = np.zeros((len(gt_ids), len(hyp_ids)), np.int64)
  gt_match = np.full(len(gt), -1, np.int64)
  gt_switch = np.zeros(len(gt), bool)
  gt_dist = np.full(len(gt), np.nan)
  hyp_matched = np.zeros(len(hyp), bool)
  g_groups, h_groups = _frame_groups(gt.frame), _frame_groups(hyp.frame)
  frames = np.array(sorted(set(g_groups) | set(h_groups)), np.int64)
  last: Dict[int, int] = {}  # gt id -> hyp id of its last match
  empty = np.zeros(0, np.int64)
  for t in frames.tolist():
    gi, hi = g_groups.get(t, empty), h_groups.get(t, empty)
    if len(gi) == 0 or len(hi) == 0:
      continue
    dist = 1.0 - pairwise_iou(gt.box[gi], hyp.box[hi])
    allowed = dist <= max_dist
    ar, ac = np.nonzero(allowed)
    np.add.at(pair_frames, (g_idx[gi[ar]], h_idx[hi[ac]]), 1)
    oids, hids = gt.track_id[gi], hyp.track_id[hi]
    g_done = np.zeros(len(gi), bool)
    h_done = np.zeros(len(hi), bool)

    def match(r: int, c: int, switch: bool):
      g_done[r] = h_done[c] = True
      gt_match[gi[r]] = hi[c]
      gt_switch[gi[r]] = switch
      gt_dist[gi[r]] = dist[r, c]
      hyp_matched[hi[c]] = True
      last[int(oids[r])] = int(hids[c])

    # 1. Correspondences kept from earlier frames.
    for r in range(len(gi)):
      prev = last.get(int(oids[r]))
      if prev is None:
        continue
      cand = np.nonzero(~h_done & (hids == prev))[0]
      if len(cand) and allowed[r, cand[0]]:
        match(r, int(cand[0]), False)
    # 2. Hungarian on the rest.
    rows, cols = np.nonzero(~g_done)[0], np.nonzero(~h_done)[0]
    sub = np.ix_(rows, cols)
    r, c = _max_pairs_min_cost(dist[sub], allowed[sub])
    for rr, cc in zip(rows[r].tolist(), cols[c].tolist()):
      prev = last.get(int(oids[rr]))
      match(rr, cc, prev is not None and prev != int(hids[cc]))
  return dict(gt_match=gt_match, gt_switch=gt_switch, gt_dist=gt_dist, hyp_matched=hyp_matched,
              pair_frames=pair_frames, gt_ids=gt_ids, hyp_ids=hyp_ids, frames=frames)


def _track_stats(gt: Objects, matched: np.ndarray) -> Tuple[int, int, int, int]:
  """(mostly tracked, partially tracked, mostly lost, fragmentations) of the gt tracks."""
  mt = pt = ml = frag = 0
  order = np.lexsort((gt.frame, gt.track_id))
  ids, m = gt.track_id[order], matched[order]
  start = np.nonzero(np.r_[True, ids[1:] != ids[:-1]])[0]
  for f in np.split(m, start[1:]) if len(m) else []:
    ratio = f.mean()
    if ratio >= 0.8:
      mt += 1
    elif ratio >= 0.2:
      pt += 1
    else:
      ml += 1
    on = np.nonzero(f)[0]
    if len(on):
      seg = f[on[0]:on[-1] + 1]
      frag += int(np.sum(seg[:-1] & ~seg[1:]))
  return mt, pt, ml, frag


def counts_to_metrics(c: Mapping[str, float]) -> Dict[str, float]:
  """Counts (`COUNT_NAMES`) and the rates of `METRIC_NAMES` computed from them."""
  out: Dict[str, float] = {k: (int(c[k]) if k in INT_NAMES else float(c[k])) for k in COUNT_NAMES}
  gt, pred, det = c["num_objects"], c["num_predictions"], c["num_detections"]
  out["mota"] = (1.0 - _div(c["num_misses"] + c["num_false_positives"] + c["num_switches"], gt)
                 if gt else float("nan"))
  out["motp"] = _div(c["distance_sum"], det)
  out["recall"] = _div(det, gt)
  out["precision"] = _div(det, det + c["num_false_positives"])
  out["idp"] = _div(c["idtp"], c["idtp"] + c["idfp"])
  out["idr"] = _div(c["idtp"], c["idtp"] + c["idfn"])
  out["idf1"] = _div(2 * c["idtp"], gt + pred)
  return out


def evaluate_sequence(gt: Objects, hyp: Objects, *, iou_threshold: float = 0.5,
                      use_classes: Optional[bool] = None) -> Dict[str, float]:
  """MOTChallenge metrics of one sequence.

  Args:
    gt: ground truth (e.g. `read_mot_file(gt.txt, 'gt')`); rows are filtered by `prepare_gt`.
    hyp: tracker output (e.g. `read_mot_file(res.txt, 'results')`); may be empty.
    iou_threshold: a gt and a hyp box may match when IoU >= this.
    use_classes: MOT16/17 class rules (default: when the gt has a class column).
  Returns:
    dict: the `METRIC_NAMES` rates and the `COUNT_NAMES` counts (ints), plus 'gt_ignored' and
    'hyp_removed' from `prepare_gt`.
  Raises:
    ValueError: a track id occurs twice in one frame.
  """
  gt, hyp, info = prepare_gt(gt, hyp, iou_threshold=iou_threshold, use_classes=use_classes)
  m = match_frames(gt, hyp, iou_threshold=iou_threshold)
  matched = m["gt_match"] >= 0
  mt, pt, ml, frag = _track_stats(gt, matched)
  pf = m["pair_frames"]
  if pf.size:
    r, c = linear_sum_assignment(pf, maximize=True)
    idtp = int(pf[r, c].sum())
  else:
    idtp = 0
  sw = int(m["gt_switch"].sum())
  counts = dict(
      num_frames=len(m["frames"]), num_objects=len(gt), num_predictions=len(hyp),
      num_matches=int(matched.sum()) - sw, num_detections=int(matched.sum()), num_switches=sw,
      num_fragmentations=frag, num_false_positives=int((~m["hyp_matched"]).sum()),
      num_misses=int((~matched).sum()), mostly_tracked=mt, partially_tracked=pt, mostly_lost=ml,
      num_unique_objects=len(m["gt_ids"]), idtp=idtp, idfp=len(hyp) - idtp, idfn=len(gt) - idtp,
      distance_sum=float(np.sum(m["gt_dist"][matched])))
  out = counts_to_metrics(counts)
  out["gt_ignored"] = info["gt_ignored"]
  out["hyp_removed"] = info["hyp_removed"]
  return out


def accumulate(per_sequence: Iterable[Mapping[str, float]]) -> Dict[str, float]:
  """Overall metrics of several sequences: counts summed, rates recomputed from the sums (not an
  average of per-sequence rates), as py-motmetrics' overall row."""
  total = {k: 0 for k in COUNT_NAMES}
  total["distance_sum"] = 0.0
  extra = {"gt_ignored": 0, "hyp_removed": 0}
  for r in per_sequence:
    for k in total:
      total[k] += r[k]
    for k in extra:
      extra[k] += int(r.get(k, 0))
  return dict(counts_to_metrics(total), **extra)


def evaluate_many(pairs: Mapping[str, Tuple[Objects, Objects]], *, iou_threshold: float = 0.5,
                  use_classes: Optional[bool] = None
                  ) -> Tuple[Dict[str, Dict[str, float]], Dict[str, float]]:
  """Evaluates several sequences.

  Args:
    pairs: sequence name -> (gt, hyp).
  Returns:
    (per_sequence: name -> `evaluate_sequence` dict, overall: `accumulate` of them).
  """
  per = {name: evaluate_sequence(g, h, iou_threshold=iou_threshold, use_classes=use_classes)
         for name, (g, h) in pairs.items()}
  return per, accumulate(per.values())


__all__ = [
    "METRIC_NAMES", "COUNT_NAMES", "INT_NAMES", "DISTRACTOR_CLASSES", "PEDESTRIAN_CLASSES",
    "has_class_column",
    "prepare_gt", "match_frames", "counts_to_metrics", "evaluate_sequence", "accumulate",
    "evaluate_many",
]
