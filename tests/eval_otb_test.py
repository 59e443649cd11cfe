"""Tests for rolo_jax.eval.otb: hand-computed scores, the toolkit's quirks one by one, TRE/SRE
geometry, the tracker drivers, and reproduction of the OTB toolkit's own curves for KCF, CSK and
Struck on all 100 sequences (needs ../shared/data)."""
import json
import os

import numpy as np
import pytest

from rolo_jax.data import paths
from rolo_jax.data.formats import otb as otb_format
from rolo_jax.data.formats.textrows import read_rows
from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.eval import otb
from rolo_jax.trackers import base

# ----------------------------------------------------------------- thresholds (MATLAB colon)


def test_success_thresholds_follow_matlab_colon():
  th = otb.SUCCESS_THRESHOLDS
  assert th.shape == (21,)
  for k in range(10):
    assert th[k] == k * 0.05  # lower half: a + k d
  assert th[10] == 0.5  # middle: (a + c) / 2
  for k in range(11, 21):
    assert th[k] == 1 - (20 - k) * 0.05  # upper half: from the end point
  # Where that matters: 13*0.05 == 0.65 but MATLAB's 0:0.05:1 has 1 - 7*0.05 = 0.6499999999999999.
  assert th[13] < 0.65 == 13 * 0.05
  assert th[12] == 0.6 < 12 * 0.05
  assert otb.PRECISION_THRESHOLDS.tolist() == list(range(51))
  assert otb.NORM_PRECISION_THRESHOLDS.shape == (51,)
  assert otb.NORM_PRECISION_THRESHOLDS[0] == 0 and otb.NORM_PRECISION_THRESHOLDS[-1] == 0.5


def test_matlab_colon_small_cases():
  np.testing.assert_array_equal(otb.matlab_colon(1, 1, 5), [1, 2, 3, 4, 5])
  np.testing.assert_array_equal(otb.matlab_colon(1, 2, 6), [1, 3, 5])
  assert otb.matlab_colon(3, 1, 2).size == 0
  assert otb.matlab_round(2.5) == 3 and otb.matlab_round(-2.5) == -3 and otb.matlab_round(96.5) == 97


# ----------------------------------------------------------------- per-sequence, hand computed


def test_three_frame_hand_computed():
  gt = np.array([[1, 1, 10, 10], [1, 1, 10, 10], [11, 21, 20, 10]], float)
  res = np.array([[50, 50, 5, 5],  # replaced by the ground truth: IoU 1, error 0
                  [6, 1, 10, 10],  # x 6..15 vs 1..10: 5x10 = 50 / (100+100-50) = 1/3; centres 5 px apart
                  [11, 21, 10, 10]], float)  # 100 / (200+100-100) = 1/2; centres (15.5,25.5) vs (20.5,25.5)
  sc = otb.score_sequence(gt, res)
  assert sc.n == 3 and sc.start == 0
  np.testing.assert_allclose(sc.iou, [1, 1 / 3, 0.5], rtol=0, atol=1e-15)
  np.testing.assert_allclose(sc.error, [0, 5, 5], rtol=0, atol=1e-15)
  # IoU > theta: theta 0..0.30 -> 3 frames; 0.35..0.45 -> 2; 0.5..0.95 -> 1 (strict at 0.5); 1 -> 0.
  want = [1] * 7 + [2 / 3] * 3 + [1 / 3] * 10 + [0]
  np.testing.assert_allclose(sc.success, want, rtol=1e-15)
  np.testing.assert_allclose(sc.precision, [1 / 3] * 5 + [1] * 46, rtol=1e-15)
  assert sc.auc == pytest.approx(37 / 63, abs=1e-15)
  assert sc.precision_20 == 1.0
  # Normalised error: 5/10 = 0.5 and 5/20 = 0.25; <= tau for tau = 0, 0.01, ..., 0.5.
  np.testing.assert_allclose(sc.norm_error, [0, 0.5, 0.25], atol=1e-15)
  np.testing.assert_allclose(sc.norm_precision, [1 / 3] * 25 + [2 / 3] * 25 + [1], rtol=1e-15)
  assert sc.average_overlap == pytest.approx(11 / 18, abs=1e-15)
  agg = otb.aggregate({"a": sc})
  assert agg["normalized_precision"] == pytest.approx(26 / 51, abs=1e-15)
  assert agg["auc"] == pytest.approx(37 / 63, abs=1e-15)


@pytest.mark.parametrize("gt_box, inside, iou, k, success_k", [
    ([1, 1, 20, 10], [1, 1, 13, 10], 0.65, 13, 1.0),  # 130/200 > 0.6499999999999999 = MATLAB's theta_13
    ([1, 1, 10, 10], [1, 1, 10, 6], 0.6, 12, 0.5),  # 60/100 > 0.6: no (strict)
    ([1, 1, 20, 10], [1, 1, 11, 10], 0.55, 11, 0.5),  # 110/200 > 0.55: no (strict)
    ([1, 1, 10, 10], [1, 1, 5, 10], 0.5, 10, 0.5),  # 50/100 > 0.5: no
])
def test_threshold_ties(gt_box, inside, iou, k, success_k):
  """A result box inside the ground-truth box whose area ratio lands exactly on a threshold."""
  gt = np.array([gt_box, gt_box], float)
  res = np.array([gt_box, inside], float)
  sc = otb.score_sequence(gt, res)
  assert sc.iou[1] == iou  # exactly: the division rounds to the same double as the literal
  assert sc.success[k] == success_k  # frame 0 is always a success (the ground truth)
  assert sc.success[k - 1] == 1.0  # the threshold below is passed
  if k == 13:  # a naive k*0.05 or linspace threshold would have said 0.5 here
    assert np.sum(sc.iou > 13 * 0.05) / 2 == 0.5


def test_nan_and_nonpositive_boxes_take_the_previous_box():
  gt = np.tile([10.0, 10.0, 20.0, 20.0], (6, 1))
  a = [15.0, 10.0, 20.0, 20.0]  # 15 columns of 20 overlap: 300 / 500 = 0.6
  res = np.array([[10, 10, 20, 20], a, [np.nan] * 4, [1, 2, 0, 5], [1, 2, 5, -3], [np.nan, 1, 1, 1]])
  sc = otb.score_sequence(gt, res)
  np.testing.assert_allclose(sc.iou, [1, 0.6, 0.6, 0.6, 0.6, 0.6], atol=1e-15)
  np.testing.assert_allclose(sc.error, [0, 5, 5, 5, 5, 5], atol=1e-15)
  # The toolkit replaces bad rows before it overwrites row 0 with the ground truth: a NaN second
  # row takes the tracker's own first row.
  res2 = np.array([[40, 40, 20, 20], [np.nan] * 4], float)
  gt2 = np.tile([40.0, 30.0, 20.0, 20.0], (2, 1))
  sc2 = otb.score_sequence(gt2, res2)
  assert sc2.iou[1] == pytest.approx(200 / 600) and sc2.error[1] == 10


def test_shorter_result_keeps_the_full_denominator():
  gt = np.tile([5.0, 5.0, 10.0, 10.0], (4, 1))
  sc = otb.score_sequence(gt, gt[:2])
  assert sc.n == 4
  np.testing.assert_array_equal(sc.success[:20], 0.5)
  assert sc.success[20] == 0
  np.testing.assert_array_equal(sc.precision, 0.5)
  assert np.isnan(sc.iou[2:]).all() and np.isnan(sc.error[2:]).all()
  assert sc.average_overlap == pytest.approx(0.5)
  # A longer result is cut to the ground truth.
  longer = otb.score_sequence(gt, np.tile(gt[0], (7, 1)))
  assert longer.n == 4 and longer.success[0] == 1.0


def test_invalid_ground_truth_is_minus_one():
  gt = np.array([[1, 1, 10, 10], [0, 5, 10, 10], [3, 3, np.nan, 10], [1, 1, 10, 10]], float)
  res = np.array([[1, 1, 10, 10], [0, 5, 10, 10], [3, 3, 10, 10], [30, 30, 10, 10]], float)
  sc = otb.score_sequence(gt, res)
  np.testing.assert_array_equal(sc.iou[1:3], -1)
  np.testing.assert_array_equal(sc.error[1:3], -1)
  assert sc.iou[3] == 0
  # Success: only frame 0 (IoU 1 > theta for theta < 1); the -1 frames fail everywhere, yet count.
  np.testing.assert_allclose(sc.success, [1 / 4] * 20 + [0])
  # Precision: the -1 frames succeed at every threshold, frame 3 (error 29*sqrt 2 = 41.01) from 42 on.
  np.testing.assert_allclose(sc.precision, [3 / 4] * 42 + [1] * 9)
  assert sc.average_overlap == pytest.approx(1 / 4)


def test_start_frame_skips_init_omit_and_invalid_ground_truth():
  rng = np.random.default_rng(0)
  gt = np.concatenate([rng.uniform(1, 50, (10, 2)), rng.uniform(5, 30, (10, 2))], axis=1)
  gt[3] = [0, 4, 10, 10]  # invalid: cannot start
  # Frame numbers 100..109; initOmit 100..102 -> rows 0..2; row 3 invalid -> start at row 4.
  assert otb.start_index(gt, [[100, 102]], start_frame_number=100) == 4
  assert otb.start_index(gt, [[100, 102]], start_frame_number=1) == 0  # frames 100.. not in range
  assert otb.start_index(gt, [[1, 3]], start_frame_number=1) == 4
  assert otb.start_index(gt, [100, 101, 102], start_frame_number=100) == 4  # 1-D frame list
  res = gt + rng.uniform(-3, 3, gt.shape)
  full = otb.score_sequence(gt, res, init_omit=[[100, 102]], start_frame_number=100)
  from_start = otb.score_sequence(gt, res[4:], init_omit=[[100, 102]], start_frame_number=100)
  direct = otb.score_segment(gt[4:], res[4:])
  assert full.n == from_start.n == 6 and full.start == 4
  for a, b in ((full, from_start), (full, direct)):
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.precision, b.precision)
  assert full.iou[0] == pytest.approx(1.0, abs=1e-12)  # the start frame's result is the ground truth
  with pytest.raises(ValueError, match="no frame can start"):
    otb.start_index(np.zeros((3, 4)))


def test_aggregate_weights_sequences_equally():
  gt_a = np.tile([1.0, 1.0, 10.0, 10.0], (2, 1))
  a = otb.score_sequence(gt_a, gt_a)  # perfect, n=2
  gt_b = np.tile([1.0, 1.0, 10.0, 10.0], (4, 1))
  b = otb.score_sequence(gt_b, np.array([[1, 1, 10, 10]] + [[100, 100, 10, 10]] * 3, float))
  agg = otb.aggregate([a, b])
  assert a.success[0] == 1 and b.success[0] == 0.25
  assert agg["success"][0] == pytest.approx((1 + 0.25) / 2)  # not (2 + 1) / 6 pooled
  assert agg["auc"] == pytest.approx((a.auc + b.auc) / 2)
  assert agg["precision_20"] == pytest.approx(0.625)
  assert agg["num_sequences"] == 2
  pooled = otb.pool([a, b])
  assert pooled.n == 6 and pooled.success[0] == pytest.approx(3 / 6)


# ----------------------------------------------------------------- TRE / SRE geometry


def test_tre_segments_hundred_frames():
  gt = np.tile([1.0, 1.0, 10.0, 10.0], (100, 1))
  # Idx = 1..100, e = 81 (frame 81 leaves 20 frames), starts floor(1 + k*81/19), k=0..18, then 81.
  want_1based = [1, 5, 9, 13, 18, 22, 26, 30, 35, 39, 43, 47, 52, 56, 60, 64, 69, 73, 77, 81]
  assert otb.tre_segments(gt) == [f - 1 for f in want_1based]


def test_tre_segments_skip_omitted_frames():
  gt = np.tile([1.0, 1.0, 10.0, 10.0], (100, 1))
  # Frames 1..10 omitted: Idx = 11..100 (positions 1..90), e = 71 (frame 81), d = 71/19;
  # positions floor(1 + k*71/19) = 1,4,8,12,15,19,23,27,30,34,38,42,45,49,53,57,60,64,68, then 71;
  # frame = position + 10.
  pos = [1, 4, 8, 12, 15, 19, 23, 27, 30, 34, 38, 42, 45, 49, 53, 57, 60, 64, 68, 71]
  assert otb.tre_segments(gt, [[1, 10]]) == [p + 10 - 1 for p in pos]
  # Invalid ground truth is skipped like omitted frames.
  gt2 = gt.copy()
  gt2[:10, 0] = -1
  assert otb.tre_segments(gt2) == otb.tre_segments(gt, [[1, 10]])


def test_sre_initial_boxes_hand_made():
  boxes = dict((n, (b.tolist(), s)) for n, b, s in otb.sre_initial_boxes([101, 51, 45, 23], 640, 480))
  assert list(boxes) == list(otb.SRE_SHIFTS) and len(boxes) == 12
  # ceil(0.1*45) = 5, ceil(0.1*23) = 3.
  assert boxes["left"] == ([96, 51, 45, 23], 1.0)
  assert boxes["right"] == ([106, 51, 45, 23], 1.0)
  assert boxes["up"] == ([101, 48, 45, 23], 1.0)
  assert boxes["down"] == ([101, 54, 45, 23], 1.0)
  # br = (145, 73); round(101 - 4.5) = 97 (MATLAB rounds halves away from 0), round(51 - 2.3) = 49,
  # round(145 + 4.5) = 150, round(73 + 2.3) = 75.
  assert boxes["topLeft"][0] == [97, 49, 49, 25]
  assert boxes["topRight"][0] == [101, 49, 50, 25]
  assert boxes["bottomLeft"][0] == [97, 51, 49, 25]
  assert boxes["bottomRight"][0] == [101, 51, 50, 25]
  # centre (123.5, 62.5): round([123.5 - s*22.5, 62.5 - s*11.5, s*45, s*23]).
  assert boxes["scale_8"] == ([106, 53, 36, 18], 0.8)  # 105.5, 53.3, 36, 18.4
  assert boxes["scale_9"] == ([103, 52, 41, 21], 0.9)  # 103.25, 52.15, 40.5, 20.7
  assert boxes["scale_11"] == ([99, 50, 50, 25], 1.1)  # 98.75, 49.85, 49.5, 25.3
  assert boxes["scale_12"] == ([97, 49, 54, 28], 1.2)  # 96.5, 48.7, 54, 27.6


def test_sre_boxes_are_clipped_to_the_image():
  b = dict((n, bb.tolist()) for n, bb, _ in otb.sre_initial_boxes([50, 30, 25, 15], 64, 48))
  assert b["right"] == [53, 30, 12, 15]  # 53 + 25 - 1 = 77 > 64 -> w = 64 - 53 + 1
  assert b["down"] == [50, 32, 15, 15]  # ceil(1.5) = 2; 32 + 15 - 1 = 46 <= 48; w cut as above
  assert b["bottomRight"] == [50, 30, 15, 17]  # br (77, 46) with round(74 + 2.5), round(44 + 1.5)
  b = dict((n, bb.tolist()) for n, bb, _ in otb.sre_initial_boxes([2, 1, 25, 15], 64, 48))
  assert b["left"] == [1, 1, 25, 15]  # x = 2 - 3 < 1 -> 1
  assert b["up"] == [2, 1, 25, 15]


# ----------------------------------------------------------------- drivers with a fake tracker


class StaticTracker(base.Tracker):
  """Returns its initial box forever; logs (frame index, box) of every init call."""
  name = "static"

  def __init__(self, log):
    self.log = log

  def init(self, frame, box):
    self.box = np.asarray(box, float).copy()
    self.log.append((int(frame[0, 0, 0]), self.box.tolist()))

  def update(self, frame):
    return self.box


def _sequence(n, w, h, gt, meta=None):
  frames = np.zeros((n, h, w, 3), np.uint8)
  frames[:, 0, 0, 0] = np.arange(n)
  return Sequence("fake", ArrayFrames(frames), np.tile(gt, (n, 1)), meta=meta or {})


def test_run_ope_and_tre_with_a_fake_tracker():
  log = []
  seq = _sequence(100, 16, 8, [2.0, 2.0, 5.0, 4.0], meta={"init_omit_ranges": np.array([[1, 3]])})
  ope = otb.run_ope(lambda: StaticTracker(log), seq)
  assert log == [(3, [2, 2, 5, 4])] and ope.start == 3 and ope.n == 97
  np.testing.assert_array_equal(ope.success[:20], 1.0)
  log.clear()
  tre = otb.run_tre(lambda: StaticTracker(log), seq)
  starts = otb.tre_segments(seq.boxes, [[1, 3]])
  assert [f for f, _ in log] == starts and len(starts) == 20
  assert tre.n == sum(100 - s for s in starts)
  np.testing.assert_array_equal(tre.success[:20], 1.0)


def test_run_sre_scales_results_back():
  log = []
  seq = _sequence(3, 200, 100, [101.0, 51.0, 45.0, 23.0])
  sre = otb.run_sre(lambda: StaticTracker(log), seq)
  want = otb.sre_initial_boxes([101, 51, 45, 23], 200, 100)
  assert [b for _, b in log] == [b.tolist() for _, b, _ in want]
  assert sre.n == 12 * 3
  iou = sre.iou.reshape(12, 3)
  np.testing.assert_array_equal(iou[:, 0], 1.0)  # every run's first row is the ground truth
  # scale_8 run (index 8): [106, 53, 36, 18] scaled by 1/0.8 about (124, 62) -> [101.5, 50.75, 45, 22.5];
  # inclusive overlap with [101, 51, 45, 23]: (145 - 101.5 + 1) * (72.25 - 51 + 1) = 44.5 * 22.25.
  inter = 44.5 * 22.25
  assert iou[8, 1] == pytest.approx(inter / (45 * 23 + 45 * 22.5 - inter), abs=1e-12)
  assert iou[8, 1] > 0.9 > 36 * 18 / (45 * 23)  # unscaled it would be 0.626
  # left run: [96, 51, 45, 23] -> 40 columns overlap: 920 / (2070 - 920).
  assert iou[0, 1] == pytest.approx(40 * 23 / (2 * 45 * 23 - 40 * 23))


# ----------------------------------------------------------------- the toolkit's own curves

DATA = paths.shared_data()
needs_data = pytest.mark.skipif(
    DATA is None or not os.path.isdir(os.path.join(DATA or "", "otb_reference")),
    reason="needs ../shared/data: otb_reference and otb_annotations")


def _reference(tracker):
  anno = os.path.join(DATA, "otb_annotations", "anno_TB100")
  omit = os.path.join(DATA, "otb_annotations", "initOmit")
  with open(os.path.join(DATA, "otb_annotations", "otb100_sequences.json")) as f:
    seqs = json.load(f)
  folder = os.path.join(DATA, "otb_reference", "results", tracker)
  with open(os.path.join(folder, "expected_toolkit_curves.json")) as f:
    expected = json.load(f)
  scores = {}
  for s in seqs:
    name = s["name"]
    gt = read_rows(otb_format.find_annotation(anno, name), 4)
    assert len(gt) == s["end_frame"] - s["start_frame"] + 1, name
    opath = otb_format.find_annotation(omit, name, required=False)
    init_omit = otb_format.read_init_omit(opath) if opath else ()
    res = read_rows(os.path.join(folder, name + ".txt"), 4)
    scores[name] = otb.score_sequence(gt, res, init_omit=init_omit,
                                      start_frame_number=s["start_frame"])
  return scores, expected


@needs_data
@pytest.mark.parametrize("tracker", ["KCF", "CSK", "Struck"])
def test_reproduces_toolkit_curves(tracker):
  scores, expected = _reference(tracker)
  assert set(scores) == set(expected["per_sequence"])
  for name, sc in scores.items():
    want = expected["per_sequence"][name]
    np.testing.assert_allclose(sc.success, want["success"], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(sc.precision, want["precision"], rtol=0, atol=1e-9, err_msg=name)
  agg = otb.aggregate(scores)
  assert agg["auc"] == pytest.approx(expected["auc_mean_of_21"], abs=1e-12)
  assert agg["precision_20"] == pytest.approx(expected["precision_at_20"], abs=1e-12)
  # The AUC of the success plot approximates the average overlap (mean IoU).
  assert abs(agg["average_overlap"] - agg["auc"]) < 0.01
  # tiger1: initOmit 1..5 -> the run (and the stored result) starts at frame 6.
  assert scores["tiger1"].start == 5 and scores["tiger1"].n == 349


@needs_data
def test_reference_needs_each_convention():
  """The reference data can tell the conventions apart (so the test above can fail)."""
  scores, expected = _reference("KCF")
  naive = np.arange(21) * 0.05
  sc, want = scores["carScale"], expected["per_sequence"]["carScale"]
  naive_success = np.array([np.sum(sc.iou > t) for t in naive]) / sc.n
  assert np.abs(naive_success - want["success"]).max() > 1e-3
  # Biker has 7 frames of invalid ground truth: dropping them from the denominator changes it.
  sc, want = scores["Biker"], expected["per_sequence"]["Biker"]
  ok = sc.iou >= 0
  assert ok.sum() == sc.n - 7
  dropped = np.array([np.sum(sc.iou[ok] > t) for t in otb.SUCCESS_THRESHOLDS]) / ok.sum()
  assert np.abs(dropped - want["success"]).max() > 1e-3
