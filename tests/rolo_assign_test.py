"""Detection-to-target assignment (ROLO paper §2.2) on hand-made detection lists."""
import rolo_jax  # noqa: F401

import numpy as np
import pytest

from rolo_jax.data import boxes as bx
from rolo_jax.data.sequence import Objects
from rolo_jax.rolo import assign

SIZE = (100, 100)


def box_x(x, w=20.0, y=0.0, h=10.0):
  """A box that differs from the others only along x: IoU is a 1-D interval ratio."""
  return [float(x), y, w, h]


def leaky_pick(dets, gt_box):
  """What the authors' code did at test time: the detection with the best IoU against the frame's
  ground truth (a leak; only here to show that the library does not do it)."""
  return int(np.argmax(bx.pairwise_iou(np.asarray([gt_box], float), np.asarray(dets, float))[0]))


def test_location_vector_by_hand():
  np.testing.assert_allclose(assign.location_vector([10, 20, 30, 40], 100, 200),
                             [0, 25 / 100, 40 / 200, 30 / 100, 40 / 200, 0])
  # clipped to the image first: (-10, 0, 20, 20) -> (0, 0, 10, 20)
  np.testing.assert_allclose(assign.location_vector([-10, 0, 20, 20], 100, 100), [0, 0.05, 0.1, 0.1, 0.2, 0])
  np.testing.assert_array_equal(assign.location_vector(None, 100, 100), np.zeros(6))
  np.testing.assert_array_equal(assign.location_vector([np.nan] * 4, 100, 100), np.zeros(6))


def test_first_frame_takes_the_detection_closest_to_the_initial_box():
  a = assign.DetectionAssigner(box_x(10), SIZE)
  dets = np.array([box_x(50), box_x(14), box_x(8)])          # IoU 0, 16/24, 18/22
  r = a(dets)
  assert r.index == 2 and r.iou == pytest.approx(18 / 22)
  np.testing.assert_array_equal(r.reference, box_x(10))
  np.testing.assert_allclose(r.location, assign.location_vector(box_x(8), *SIZE))


def test_first_frame_below_iou_min_is_rejected_and_the_initial_box_stays_the_reference():
  a = assign.DetectionAssigner(box_x(10), SIZE, iou_min=0.3)
  r = a(np.array([box_x(26)]))                               # IoU 4 / 36 = 0.11
  assert r.index == -1 and np.all(np.isnan(r.box)) and not r.location.any()
  assert r.iou == pytest.approx(4 / 36)
  np.testing.assert_array_equal(a.reference(), box_x(10))


def test_distractor_the_leaky_version_picks_and_this_one_does_not():
  # Frames 0-1: the target sits at x ≈ 10. In frame 2 the ground truth jumps to x = 40 (say the
  # detector lost it and it reappears); a distractor stays at x = 12 next to the history.
  gt = [box_x(10), box_x(11), box_x(40)]
  dets = [np.array([box_x(10)]), np.array([box_x(11)]), np.array([box_x(38), box_x(12)])]
  assert leaky_pick(dets[2], gt[2]) == 0                     # the leak follows the ground truth
  out = assign.assign_sequence(dets, gt[0], SIZE, history=3, iou_min=0.3)
  np.testing.assert_array_equal(out.indices, [0, 0, 1])      # this one follows the history: x = 12
  np.testing.assert_allclose(out.boxes[2], box_x(12))


def test_frame_without_detections_gives_zeros_and_keeps_the_history():
  out = assign.assign_sequence([np.array([box_x(10)]), np.zeros((0, 4)), np.array([box_x(12)])],
                               box_x(10), SIZE)
  np.testing.assert_array_equal(out.indices, [0, -1, 0])
  np.testing.assert_array_equal(out.locations[1], np.zeros(6))
  assert np.all(np.isnan(out.boxes[1])) and out.ious[1] == 0
  assert out.locations[0, 1] == pytest.approx(20 / 100) and out.locations[2, 1] == pytest.approx(22 / 100)
  assert out.locations.shape == (3, 6) and out.boxes.shape == (3, 4)


def test_rejection_below_iou_min_later_in_the_sequence():
  dets = [np.array([box_x(10)]), np.array([box_x(22)])]      # IoU(x=10, x=22) = 8 / 32 = 0.25
  out = assign.assign_sequence(dets, box_x(10), SIZE, iou_min=0.3)
  np.testing.assert_array_equal(out.indices, [0, -1])
  assert out.ious[1] == pytest.approx(0.25)
  out = assign.assign_sequence(dets, box_x(10), SIZE, iou_min=0.25)   # IoU == iou_min is accepted
  np.testing.assert_array_equal(out.indices, [0, 0])


def test_reference_is_the_mean_of_the_last_validated_detections():
  # validated at x = 0, 10, 20; frame 3 offers x = 8 and x = 24
  dets = [np.array([box_x(0)]), np.array([box_x(10)]), np.array([box_x(20)]),
          np.array([box_x(8), box_x(24)])]
  # history 1: reference x = 20 -> x = 24 (IoU 16/24) beats x = 8 (8/32)
  out1 = assign.assign_sequence(dets, box_x(0), SIZE, history=1, iou_min=0.1)
  # history 3: reference x = mean(0, 10, 20) = 10 -> x = 8 (18/22) beats x = 24 (6/34)
  out3 = assign.assign_sequence(dets, box_x(0), SIZE, history=3, iou_min=0.1)
  np.testing.assert_array_equal(out1.indices, [0, 0, 0, 1])
  np.testing.assert_array_equal(out3.indices, [0, 0, 0, 0])
  assert out3.ious[3] == pytest.approx(18 / 22)
  a = assign.DetectionAssigner(box_x(0), SIZE, history=2, iou_min=0.1)
  for d in dets[:3]:
    a(d)
  np.testing.assert_allclose(a.reference(), box_x(15))       # mean of x = 10 and x = 20 only


def test_match_iou_is_hungarian_not_greedy():
  refs = np.array([[0, 0, 10, 10], [4, 0, 10, 10]], float)
  dets = np.array([[1, 0, 10, 10], [-2, 0, 10, 10]], float)
  # IoU: r0-d0 9/11, r0-d1 8/12, r1-d0 7/13, r1-d1 4/16. Greedy takes r0-d0 (best) and is left with
  # r1-d1 (0.25, rejected); the assignment maximising the total IoU is r0-d1 + r1-d0.
  pairs, iou = assign.match_iou(refs, dets, iou_min=0.3)
  np.testing.assert_allclose(iou, [[9 / 11, 8 / 12], [7 / 13, 4 / 16]])
  np.testing.assert_array_equal(pairs, [[0, 1], [1, 0]])
  pairs, _ = assign.match_iou(refs, dets, iou_min=0.6)      # r1-d0 (0.54) now rejected
  np.testing.assert_array_equal(pairs, [[0, 1]])
  pairs, iou = assign.match_iou(refs, np.zeros((0, 4)), 0.3)
  assert pairs.shape == (0, 2) and iou.shape == (2, 0)


def test_input_checks_and_extra_columns():
  a = assign.DetectionAssigner(box_x(10), SIZE)
  r = a(np.array([box_x(10) + [0.9, 3]]))                   # score, label columns are ignored
  assert r.index == 0
  with pytest.raises(ValueError, match="finite"):
    a(np.array([[np.nan, 0, 10, 10]]))
  with pytest.raises(ValueError, match=">=4"):
    a(np.array([[1.0, 2.0]]))
  with pytest.raises(ValueError, match="history"):
    assign.DetectionAssigner(box_x(10), SIZE, history=0)


def test_detections_by_frame():
  objs = Objects.from_arrays(frame=[0, 2, 0, 2], track_id=[-1] * 4,
                             box=[box_x(1), box_x(2), box_x(3), box_x(4)], score=[0.9, 0.2, 0.5, 0.8])
  per = assign.detections_by_frame(objs, 3)
  assert [len(d) for d in per] == [2, 0, 2]
  np.testing.assert_array_equal(per[0][:, 0], [1, 3])
  per = assign.detections_by_frame(objs, 3, min_score=0.5)
  assert [len(d) for d in per] == [2, 0, 1]
