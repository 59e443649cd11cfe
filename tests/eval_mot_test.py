"""MOTChallenge metrics: the TUD-Campus reference values, hand-computed toys (ID switch,
fragmentation, FP, FN, MOTP, IDF1), the devkit's matching rules and the MOT17 gt rules."""
import os

import numpy as np
import pytest

from rolo_jax.data import paths
from rolo_jax.data.formats.mot import read_mot_file
from rolo_jax.data.sequence import Objects
from rolo_jax.eval import mot

DATA = paths.shared_data()
TUD = os.path.join(DATA or "", "mot", "TUD-Campus")
needs_tud = pytest.mark.skipif(
    DATA is None or not os.path.isfile(os.path.join(TUD, "tracker_output.txt")),
    reason="needs ../shared/data: mot/TUD-Campus (gt.txt, tracker_output.txt)")

# The spec's reference (py-motmetrics on TUD-Campus, IoU >= 0.5).
TUD_REFERENCE = dict(idf1=0.557659, idp=0.729730, idr=0.451253, recall=0.582173,
                     precision=0.941441, num_unique_objects=8, mostly_tracked=1,
                     partially_tracked=6, mostly_lost=1, num_false_positives=13, num_misses=150,
                     num_switches=7, num_fragmentations=7, mota=0.526462, motp=0.277201)

A = (0.0, 0.0, 10.0, 10.0)
A_SHORT = (0.0, 0.0, 10.0, 8.0)      # IoU with A = 80 / 100 = 0.8  -> distance 0.2
B = (100.0, 0.0, 10.0, 10.0)
B_SHORT = (100.0, 0.0, 10.0, 8.0)    # IoU with B = 0.8
FAR = (200.0, 200.0, 10.0, 10.0)


def objs(rows):
  """rows of (frame, id, box) -> Objects."""
  if not rows:
    return Objects.empty()
  f, i, b = zip(*rows)
  return Objects.from_arrays(f, i, np.array(b, np.float64))


@needs_tud
def test_tud_campus_reference():
  gt = read_mot_file(os.path.join(TUD, "gt.txt"), "gt")
  hyp = read_mot_file(os.path.join(TUD, "tracker_output.txt"), "results")
  r = mot.evaluate_sequence(gt, hyp)
  for k, v in TUD_REFERENCE.items():
    assert r[k] == pytest.approx(v, abs=1e-6), k
  for k in mot.INT_NAMES:
    assert isinstance(r[k], int), k
  assert r["num_objects"] == len(gt) == 359 and r["num_predictions"] == len(hyp) == 222
  assert r["gt_ignored"] == 0 and r["hyp_removed"] == 0  # MOT15 file: every gt row counts
  # Consistency of the counts.
  assert r["num_detections"] + r["num_misses"] == r["num_objects"]
  assert r["num_detections"] + r["num_false_positives"] == r["num_predictions"]
  assert r["idtp"] + r["idfn"] == r["num_objects"] and r["idtp"] + r["idfp"] == r["num_predictions"]


@needs_tud
def test_tud_campus_gt_against_itself_is_perfect():
  gt = read_mot_file(os.path.join(TUD, "gt.txt"), "gt")
  r = mot.evaluate_sequence(gt, gt)
  assert r["mota"] == 1.0 and r["idf1"] == 1.0 and r["motp"] == 0.0
  assert r["num_switches"] == r["num_fragmentations"] == r["num_false_positives"] == 0
  assert r["mostly_tracked"] == 8 and r["mostly_lost"] == 0


def toy_switch_frag_fp_fn():
  """3 frames, two gt objects.
  o1 at A in frames 0-2: h1 (dist 0, then 0.2), then h2 in frame 2 -> one ID switch.
  o2 at B in frames 0-2: h3 in frames 0 (dist 0.2) and 2 (dist 0), nothing in frame 1 -> one miss,
  one fragmentation.  h4 far away in frame 1 -> one false positive."""
  gt = objs([(0, 1, A), (1, 1, A), (2, 1, A), (0, 2, B), (1, 2, B), (2, 2, B)])
  hyp = objs([(0, 1, A), (1, 1, A_SHORT), (2, 2, A), (0, 3, B_SHORT), (2, 3, B), (1, 4, FAR)])
  return gt, hyp


def test_toy_switch_fragmentation_fp_fn_by_hand():
  r = mot.evaluate_sequence(*toy_switch_frag_fp_fn())
  assert r["num_objects"] == 6 and r["num_predictions"] == 6 and r["num_frames"] == 3
  assert r["num_switches"] == 1
  assert r["num_fragmentations"] == 1
  assert r["num_false_positives"] == 1
  assert r["num_misses"] == 1
  assert r["num_detections"] == 5 and r["num_matches"] == 4
  assert r["mota"] == pytest.approx(1 - (1 + 1 + 1) / 6, abs=1e-12)       # 0.5
  assert r["motp"] == pytest.approx((0 + 0.2 + 0 + 0.2 + 0) / 5, abs=1e-12)  # 0.08
  assert r["recall"] == pytest.approx(5 / 6) and r["precision"] == pytest.approx(5 / 6)
  # o1 matched 3/3 (MT), o2 2/3 (PT).
  assert (r["mostly_tracked"], r["partially_tracked"], r["mostly_lost"]) == (1, 1, 0)
  # IDF1: pairs (o1,h1)=2, (o1,h2)=1, (o2,h3)=2 frames -> best matching o1-h1, o2-h3: IDTP = 4.
  assert (r["idtp"], r["idfp"], r["idfn"]) == (4, 2, 2)
  assert r["idf1"] == pytest.approx(2 * 4 / (6 + 6))
  assert r["idp"] == pytest.approx(4 / 6) and r["idr"] == pytest.approx(4 / 6)
  assert r["num_unique_objects"] == 2


def test_idf1_global_matching_beats_greedy():
  """o1 at A and o2 at B in frames 0-4.  h1 covers A in frames 0-2 and B in frames 3-4; h2 covers A
  in frames 3-4.  Pair frames: (o1,h1)=3, (o1,h2)=2, (o2,h1)=2.  Greedy (o1-h1) gives IDTP 3; the
  optimum o1-h2 + o2-h1 gives 4.  GT = 10, H = 7."""
  gt = objs([(t, 1, A) for t in range(5)] + [(t, 2, B) for t in range(5)])
  hyp = objs([(t, 1, A) for t in range(3)] + [(t, 1, B) for t in (3, 4)]
             + [(t, 2, A) for t in (3, 4)])
  r = mot.evaluate_sequence(gt, hyp)
  assert r["idtp"] == 4 and r["idfn"] == 6 and r["idfp"] == 3
  assert r["idf1"] == pytest.approx(8 / 17) and r["idp"] == pytest.approx(4 / 7)
  assert r["idr"] == pytest.approx(4 / 10)
  # CLEAR MOT: in frame 3 o1 loses h1 and gets h2 -> one switch; o2 is matched for the first time.
  assert r["num_switches"] == 1 and r["num_misses"] == 3 and r["num_false_positives"] == 0
  assert r["mota"] == pytest.approx(1 - (3 + 0 + 1) / 10)
  assert r["num_fragmentations"] == 0  # o2 is missed only before its first match


def test_previous_correspondence_is_kept_over_a_better_box():
  """Frame 1: o1's last match h1 still overlaps (IoU 0.8), h2 fits exactly.  CLEAR MOT keeps h1
  (no switch) and h2 is a false positive."""
  gt = objs([(0, 1, A), (1, 1, A)])
  hyp = objs([(0, 1, A), (1, 1, A_SHORT), (1, 2, A)])
  r = mot.evaluate_sequence(gt, hyp)
  assert r["num_switches"] == 0 and r["num_false_positives"] == 1
  assert r["motp"] == pytest.approx(0.1)
  # Once h1 no longer overlaps enough, o1 switches to h2.
  hyp = objs([(0, 1, A), (1, 1, FAR), (1, 2, A)])
  r = mot.evaluate_sequence(gt, hyp)
  assert r["num_switches"] == 1 and r["num_false_positives"] == 1 and r["motp"] == 0.0


def test_switch_counts_against_the_last_match_not_the_last_frame():
  """o1 matched to h1, missed in frame 1, matched to h1 again: no switch but a fragmentation;
  to h2 instead: a switch."""
  gt = objs([(0, 1, A), (1, 1, A), (2, 1, A)])
  r = mot.evaluate_sequence(gt, objs([(0, 1, A), (2, 1, A)]))
  assert r["num_switches"] == 0 and r["num_fragmentations"] == 1 and r["num_misses"] == 1
  r = mot.evaluate_sequence(gt, objs([(0, 1, A), (2, 2, A)]))
  assert r["num_switches"] == 1 and r["num_fragmentations"] == 1


def test_hungarian_maximises_the_number_of_matches():
  """o1 could take hB (exact) or hA (IoU 0.538); o2 only hA.  Both must be matched."""
  o1, o2 = (0.0, 0.0, 10.0, 10.0), (6.0, 0.0, 10.0, 10.0)
  h_a, h_b = (3.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 10.0)
  r = mot.evaluate_sequence(objs([(0, 1, o1), (0, 2, o2)]), objs([(0, 7, h_a), (0, 8, h_b)]))
  assert r["num_detections"] == 2 and r["num_false_positives"] == 0 and r["num_misses"] == 0
  assert r["motp"] == pytest.approx((0 + (1 - 70 / 130)) / 2)


def test_iou_gate_is_inclusive():
  gt = objs([(0, 1, A)])
  half = objs([(0, 1, (0.0, 0.0, 10.0, 5.0))])  # IoU exactly 0.5
  assert mot.evaluate_sequence(gt, half)["num_detections"] == 1
  assert mot.evaluate_sequence(gt, half, iou_threshold=0.6)["num_detections"] == 0


def test_mostly_tracked_boundaries():
  """5-frame tracks matched in 4 (80% -> MT), 1 (20% -> PT) and 0 frames (ML)."""
  gt = objs([(t, 1, A) for t in range(5)] + [(t, 2, B) for t in range(5)]
            + [(t, 3, FAR) for t in range(5)])
  hyp = objs([(t, 1, A) for t in range(4)] + [(0, 2, B)])
  r = mot.evaluate_sequence(gt, hyp)
  assert (r["mostly_tracked"], r["partially_tracked"], r["mostly_lost"]) == (1, 1, 1)


def test_empty_hypotheses_are_all_misses():
  gt, _ = toy_switch_frag_fp_fn()
  r = mot.evaluate_sequence(gt, Objects.empty())
  assert r["num_misses"] == 6 and r["num_false_positives"] == 0 and r["mota"] == 0.0
  assert r["recall"] == 0.0 and r["idf1"] == 0.0 and r["idr"] == 0.0
  assert np.isnan(r["motp"]) and np.isnan(r["precision"]) and np.isnan(r["idp"])
  assert r["mostly_lost"] == 2 and r["num_fragmentations"] == 0


def test_empty_ground_truth_gives_false_positives():
  _, hyp = toy_switch_frag_fp_fn()
  r = mot.evaluate_sequence(Objects.empty(), hyp)
  assert r["num_false_positives"] == 6 and r["num_objects"] == 0 and np.isnan(r["mota"])
  assert r["precision"] == 0.0 and r["num_unique_objects"] == 0


def test_frames_without_gt_count_false_positives():
  gt = objs([(0, 1, A)])
  r = mot.evaluate_sequence(gt, objs([(0, 1, A), (5, 1, A)]))
  assert r["num_false_positives"] == 1 and r["num_frames"] == 2 and r["mota"] == 0.0


def test_duplicate_ids_in_a_frame_are_rejected():
  with pytest.raises(ValueError, match="frame 0.*track id 1"):
    mot.evaluate_sequence(objs([(0, 1, A)]), objs([(0, 1, A), (0, 1, B)]))


def test_mot17_class_rules():
  """gt with a class column: a hyp on a distractor (static person, class 7) is removed, a gt row
  with consider flag 0 or a non-pedestrian class is not evaluated, a hyp on a car is still a FP."""
  car = (300.0, 0.0, 10.0, 10.0)
  ignored_ped = (400.0, 0.0, 10.0, 10.0)
  gt = Objects.from_arrays([0, 0, 0, 0], [1, 2, 3, 4], np.array([A, B, car, ignored_ped]),
                           score=[1, 0, 1, 0], label=[1, 7, 3, 1], visibility=[1, 1, 1, 0.5])
  hyp = objs([(0, 1, A), (0, 2, B_SHORT), (0, 3, car), (0, 5, FAR)])
  r = mot.evaluate_sequence(gt, hyp)
  assert r["hyp_removed"] == 1 and r["gt_ignored"] == 3
  assert r["num_objects"] == 1 and r["num_predictions"] == 3
  assert r["num_detections"] == 1 and r["num_false_positives"] == 2 and r["num_misses"] == 0
  # Without the class rules every gt row with consider != 0 counts (A and the car).
  r = mot.evaluate_sequence(gt, hyp, use_classes=False)
  assert r["num_objects"] == 2 and r["num_detections"] == 2 and r["hyp_removed"] == 0
  assert r["num_false_positives"] == 2  # the hyp on the ignored static person, FAR


def test_evaluate_many_sums_counts():
  g1, h1 = toy_switch_frag_fp_fn()
  g2 = objs([(t, 1, A) for t in range(4)])
  h2 = Objects.empty()
  per, overall = mot.evaluate_many({"a": (g1, h1), "b": (g2, h2)})
  assert list(per) == ["a", "b"]
  assert per["b"]["mota"] == 0.0 and per["a"]["mota"] == pytest.approx(0.5)
  for k in ("num_objects", "num_misses", "num_switches", "num_fragmentations", "idtp",
            "num_false_positives", "num_unique_objects", "mostly_lost"):
    assert overall[k] == per["a"][k] + per["b"][k], k
  # Rates from the summed counts (GT 10, FN 5, FP 1, IDSW 1), not the mean of 0.5 and 0.
  assert overall["mota"] == pytest.approx(1 - (5 + 1 + 1) / 10)
  assert overall["motp"] == pytest.approx(0.4 / 5)
  assert overall["idf1"] == pytest.approx(2 * 4 / (10 + 6))
