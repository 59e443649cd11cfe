"""SORT baseline: the Kalman filter on hand numbers, track identities through a crossing, missed
frames, confirmation, empty inputs, the results writer, and a run on TUD-Campus det.txt."""
import os

import numpy as np
import pytest

from rolo_jax.data import paths
from rolo_jax.data.formats.mot import read_mot_file
from rolo_jax.data.sequence import Objects
from rolo_jax.eval import mot as mot_eval
from rolo_jax.mot import MultiObjectTracker, as_detections, io, kalman, run_mot, sort

DATA = paths.shared_data()
TUD = os.path.join(DATA or "", "mot", "TUD-Campus")
needs_tud = pytest.mark.skipif(
    DATA is None or not os.path.isfile(os.path.join(TUD, "det.txt")),
    reason="needs ../shared/data: mot/TUD-Campus (det.txt, gt.txt)")


# ----------------------------------------------------------------------------- Kalman filter

def test_box_state_conversions():
  z = kalman.box_to_z(np.array([10.0, 20.0, 30.0, 40.0]))
  np.testing.assert_allclose(z, [25.0, 40.0, 1200.0, 0.75])
  np.testing.assert_allclose(kalman.x_to_box(np.r_[z, 0, 0, 0]), [10, 20, 30, 40], atol=1e-12)
  assert np.isnan(kalman.x_to_box(np.array([1.0, 1.0, -5.0, 1.0]))).all()


def test_kalman_predict_update_hand_numbers():
  """Every coordinate is its own filter (F, Q, R, P0 are block diagonal), so the numbers are 2x2
  (position, velocity) or 1x1 (aspect) Kalman steps by hand."""
  st = kalman.init(np.array([10.0, 20.0, 30.0, 40.0]))
  np.testing.assert_allclose(st.x, [25, 40, 1200, 0.75, 0, 0, 0])
  np.testing.assert_allclose(np.diag(st.P), [10, 10, 10, 10, 1e4, 1e4, 1e4])

  st = kalman.predict(st)
  np.testing.assert_allclose(st.x, [25, 40, 1200, 0.75, 0, 0, 0])  # zero velocity
  # P_uu = 10 + 1e4 + 1 (Q), P_uu' = 1e4, P_u'u' = 1e4 + 0.01; aspect: 10 + 1;
  # area velocity: 1e4 + 1e-4.
  assert st.P[0, 0] == pytest.approx(10011.0) and st.P[0, 4] == pytest.approx(1e4)
  assert st.P[4, 4] == pytest.approx(10000.01) and st.P[3, 3] == pytest.approx(11.0)
  assert st.P[6, 6] == pytest.approx(1e4 + 1e-4) and st.P[0, 1] == 0.0

  st = kalman.update(st, np.array([12.0, 20.0, 30.0, 40.0]))  # u measured 27: innovation 2
  # u: S = 10011 + 1, K = (10011, 10000) / 10012.
  assert st.x[0] == pytest.approx(25 + 2 * 10011 / 10012, rel=1e-12)
  assert st.x[4] == pytest.approx(2 * 10000 / 10012, rel=1e-12)
  np.testing.assert_allclose(st.x[[1, 2, 3, 5, 6]], [40, 1200, 0.75, 0, 0], atol=1e-12)
  assert st.P[0, 0] == pytest.approx(10011 / 10012, rel=1e-9)
  assert st.P[0, 4] == pytest.approx(10000 / 10012, rel=1e-9)
  assert st.P[4, 4] == pytest.approx(10000.01 - 10000 ** 2 / 10012, rel=1e-9)
  # area (R = 10): P = 10011 * 10 / 10021; aspect (R = 10): 11 * 10 / 21.
  assert st.P[2, 2] == pytest.approx(10011 * 10 / 10021, rel=1e-9)
  assert st.P[3, 3] == pytest.approx(11 * 10 / 21, rel=1e-9)
  np.testing.assert_allclose(st.P, st.P.T, atol=1e-9)

  st = kalman.predict(st)  # constant velocity: u += u'
  assert st.x[0] == pytest.approx(25 + 2 * 10011 / 10012 + 2 * 10000 / 10012, rel=1e-12)


def test_kalman_area_never_predicted_negative():
  st = kalman.init(np.array([0.0, 0.0, 10.0, 10.0]))
  st = kalman.KalmanState(st.x.copy(), st.P)
  st.x[6] = -150.0  # s + s' = -50 <= 0 -> s' set to 0 before the step
  out = kalman.predict(st)
  assert out.x[2] == 100.0 and out.x[6] == 0.0


def test_kalman_batched_equals_single():
  boxes = np.array([[0.0, 0.0, 10.0, 20.0], [50.0, 60.0, 30.0, 30.0]])
  meas = boxes + np.array([[3.0, -1.0, 1.0, 2.0], [-2.0, 4.0, 0.0, -3.0]])
  batch = kalman.update(kalman.predict(kalman.init(boxes)), meas)
  for i in range(2):
    one = kalman.update(kalman.predict(kalman.init(boxes[i])), meas[i])
    np.testing.assert_allclose(batch.x[i], one.x, rtol=1e-12)
    np.testing.assert_allclose(batch.P[i], one.P, rtol=1e-12)


def test_kalman_tracks_constant_velocity():
  st = kalman.init(np.array([0.0, 0.0, 20.0, 40.0]))
  for t in range(1, 30):
    st = kalman.update(kalman.predict(st), np.array([5.0 * t, -2.0 * t, 20.0, 40.0]))
  np.testing.assert_allclose(st.x[4:6], [5.0, -2.0], atol=1e-2)
  np.testing.assert_allclose(kalman.x_to_box(kalman.predict(st).x), [150, -60, 20, 40], atol=0.1)


# ----------------------------------------------------------------------------- SORT

def _video(tracks, num_frames):
  """tracks: list of (first frame, last frame, box0, velocity (vx, vy)); frames without a box
  listed in the optional 5th element are skipped.  Returns (gt Objects, detections Objects)."""
  f, ids, b = [], [], []
  for k, tr in enumerate(tracks):
    first, last, box0, vel = tr[:4]
    skip = tr[4] if len(tr) > 4 else ()
    for t in range(first, min(last, num_frames - 1) + 1):
      if t in skip:
        continue
      f.append(t)
      ids.append(k + 1)
      b.append([box0[0] + vel[0] * (t - first), box0[1] + vel[1] * (t - first), box0[2], box0[3]])
  gt = Objects.from_arrays(f, ids, np.array(b).reshape(-1, 4))
  det = Objects.from_arrays(f, -np.ones(len(f)), np.array(b).reshape(-1, 4), score=np.ones(len(f)))
  return gt, det


def test_crossing_targets_keep_their_ids():
  """Two people 40x80 walking towards each other at 10 px / frame (10 px apart vertically) cross
  at frame 15 (IoU 0.78 there); SORT must not swap their identities."""
  gt, det = _video([(0, 29, (0.0, 100.0, 40.0, 80.0), (10.0, 0.0)),
                    (0, 29, (300.0, 110.0, 40.0, 80.0), (-10.0, 0.0))], 30)
  hyp = run_mot(sort.Sort(), det, 30)
  assert set(hyp.track_ids().tolist()) == {1, 2}
  assert len(hyp) == 60  # both reported in every frame (the first 3 frames are not held back)
  r = mot_eval.evaluate_sequence(gt, hyp)
  assert r["num_switches"] == 0 and r["idf1"] == 1.0 and r["mota"] == 1.0
  for i, start_x in ((1, 0.0), (2, 300.0)):
    sel = hyp.select(hyp.track_id == i)
    end_x = start_x + (290.0 if i == 1 else -290.0)
    assert sel.box[0, 0] == start_x and sel.box[-1, 0] == pytest.approx(end_x, abs=1.0)


def test_frames_without_detections_and_track_death():
  """One target moving 4 px / frame.  With max_age=1 a one-frame gap keeps the id; the track is then
  re-confirmed (hit streak restarts, so it is hidden for 2 frames); a two-frame gap kills it."""
  box0, vel = (0.0, 0.0, 40.0, 80.0), (4.0, 0.0)
  _, det = _video([(0, 14, box0, vel, (5,))], 15)
  trk = sort.Sort(max_age=1, min_hits=3)
  out = run_mot(trk, det, 15)
  shown = {t: out.track_id[out.frame == t].tolist() for t in range(15)}
  assert shown[5] == [] and shown[6] == [] and shown[7] == []
  assert all(shown[t] == [1] for t in (0, 1, 2, 3, 4, 8, 9, 14))
  _, det = _video([(0, 14, box0, vel, (5, 6))], 15)
  out = run_mot(sort.Sort(max_age=1, min_hits=3), det, 15)
  assert set(out.track_ids().tolist()) == {1, 2}
  assert out.track_id[out.frame == 14].tolist() == [2]
  # A tracker fed empty frames directly.
  trk = sort.Sort(max_age=2)
  trk.update((np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([1.0])))
  for k in range(3):
    b, i = trk.update((np.zeros((0, 4)), np.zeros(0)))
    assert b.shape == (0, 4) and i.shape == (0,)
    assert trk.num_tracks() == (1 if k < 2 else 0)


def test_new_tracks_wait_for_min_hits():
  """A target appearing at frame 10 (after the first min_hits frames) is reported from its
  (min_hits + 1)-th consecutive detection: birth + min_hits matches."""
  _, det = _video([(0, 19, (0.0, 0.0, 30.0, 60.0), (2.0, 0.0)),
                   (10, 19, (200.0, 0.0, 30.0, 60.0), (0.0, 2.0))], 20)
  out = run_mot(sort.Sort(min_hits=3), det, 20)
  frames_2 = sorted(out.frame[out.track_id == 2].tolist())
  assert frames_2 == list(range(13, 20))
  assert sorted(out.frame[out.track_id == 1].tolist()) == list(range(20))


def test_score_threshold_and_invalid_boxes():
  boxes = np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 10.0, 10.0], [90.0, 0.0, 0.0, 10.0],
                    [120.0, 0.0, np.nan, 10.0]])
  scores = np.array([0.9, 0.2, 0.9, 0.9])
  b, i = sort.Sort(min_score=0.5).update((boxes, scores))
  np.testing.assert_allclose(b, boxes[:1])
  assert i.tolist() == [1]
  b, i = sort.Sort().update((boxes, scores))
  assert i.tolist() == [1, 2]


def test_associate_gates_and_maximises_iou():
  dets = np.array([[0.0, 0.0, 10.0, 10.0], [100.0, 0.0, 10.0, 10.0]])
  trks = np.array([[101.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0], [300.0, 0.0, 10.0, 10.0]])
  d, k = sort.associate(dets, trks, 0.3)
  assert sorted(zip(d.tolist(), k.tolist())) == [(0, 1), (1, 0)]
  d, k = sort.associate(dets, trks, 0.9)  # IoU 9/11 = 0.82 < 0.9
  assert len(d) == 0
  assert len(sort.associate(np.zeros((0, 4)), trks)[0]) == 0


def test_empty_detections_give_empty_results(tmp_path):
  assert len(run_mot(sort.Sort(), Objects.empty())) == 0
  assert len(run_mot(sort.Sort(), Objects.empty(), 5)) == 0
  det_file = tmp_path / "det.txt"
  det_file.write_text("")
  out = tmp_path / "out" / "res.txt"
  assert sort.main(["--det", str(det_file), "--out", str(out)]) == 0
  assert out.read_text() == ""
  assert len(read_mot_file(out, "results")) == 0


def test_interface_and_reset():
  trk = sort.Sort()
  assert isinstance(trk, MultiObjectTracker)
  trk.update((np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([1.0])))
  trk.reset()
  assert trk.num_tracks() == 0
  _, ids = trk.update(Objects.from_arrays([0], [-1], np.array([[5.0, 5.0, 10.0, 10.0]])))
  assert ids.tolist() == [1]  # ids restart after reset; an Objects frame is accepted
  with pytest.raises(ValueError):
    as_detections((np.zeros((2, 3)), np.zeros(2)))
  with pytest.raises(ValueError):
    as_detections((np.zeros((2, 4)), np.zeros(3)))


def test_write_mot_results_round_trip(tmp_path):
  objs = Objects.from_arrays([3, 0, 0], [2, 7, 1],
                             np.array([[1.5, 2.25, 30.0, 40.125], [0.0, 0.0, 1.0, 2.0],
                                       [10.123456, 5.0, 6.0, 7.0]]), score=[0.5, 1.0, 0.25])
  path = io.write_mot_results(tmp_path / "a" / "res.txt", objs)
  lines = open(path).read().splitlines()
  assert lines == ["1,1,10.123456,5,6,7,0.25,-1,-1,-1", "1,7,0,0,1,2,1,-1,-1,-1",
                   "4,2,1.5,2.25,30,40.125,0.5,-1,-1,-1"]
  back = read_mot_file(path, "results")
  order = np.lexsort((objs.track_id, objs.frame))
  np.testing.assert_array_equal(back.frame, objs.frame[order])
  np.testing.assert_array_equal(back.track_id, objs.track_id[order])
  np.testing.assert_allclose(back.box, objs.box[order], atol=1e-12)
  np.testing.assert_allclose(back.score, objs.score[order])
  with pytest.raises(ValueError, match="not finite"):
    io.write_mot_results(tmp_path / "b.txt",
                         Objects.from_arrays([0], [1], np.array([[np.nan, 0, 1, 1]])))


@needs_tud
def test_sort_on_tud_campus_det(tmp_path):
  det = read_mot_file(os.path.join(TUD, "det.txt"), "det")
  gt = read_mot_file(os.path.join(TUD, "gt.txt"), "gt")
  hyp = run_mot(sort.Sort(), det, int(gt.frame.max()) + 1)
  assert len(hyp) > 0 and np.isfinite(hyp.box).all() and (hyp.box[:, 2:] > 0).all()
  path = io.write_mot_results(tmp_path / "sort.txt", hyp)
  r = mot_eval.evaluate_sequence(gt, read_mot_file(path, "results"))
  assert np.isfinite(r["mota"]) and np.isfinite(r["idf1"])
  assert -1.0 < r["mota"] <= 1.0 and 0.0 <= r["idf1"] <= 1.0
