"""D-vectors (ROI pooling by hand, layout), simulated detections, ground-truth matching, and the
Association LSTM tracker: life cycle, phi deciding a crossing, padded slots, empty frames, det.txt
input (TUD-Campus), bad input."""
import os

import jax
import numpy as np
import pytest

from rolo_jax.data import paths
from rolo_jax.data.sequence import Objects
from rolo_jax.models import association as A
from rolo_jax.mot import association_tracker as at
from rolo_jax.mot import detections as D
from rolo_jax.mot import run_mot

DATA = paths.shared_data()
TUD = os.path.join(DATA or "", "mot", "TUD-Campus")
needs_tud = pytest.mark.skipif(
    DATA is None or not os.path.isfile(os.path.join(TUD, "det.txt")),
    reason="needs ../shared/data: mot/TUD-Campus (det.txt, gt.txt)")

BOX_CFG = A.CONFIGS["tiny"].replace(num_classes=1, appearance_dim=0)
BOX_DVEC = D.DVectorConfig("boxes", num_classes=1)


# ------------------------------------------------------------------------------------ D-vectors

def test_roi_pool_hand_numbers():
  # Map value = column index (x), 2 channels: x and 10 y.
  H, W = 6, 8
  fm = np.stack(np.meshgrid(np.arange(W), 10 * np.arange(H)), -1).astype(float)  # [H, W, 2]
  out = D.roi_pool(fm, np.array([[2.0, 1.0, 4.0, 4.0]]), 2)   # x 2..5, y 1..4 -> 2x2 bins
  # bin (0, 0): columns 2, 3 (mean 2.5), rows 1, 2 (mean 15); bin (1, 1): columns 4, 5, rows 3, 4.
  np.testing.assert_allclose(out[0, 0, 0], [2.5, 15.0])
  np.testing.assert_allclose(out[0, 0, 1], [4.5, 15.0])
  np.testing.assert_allclose(out[0, 1, 1], [4.5, 35.0])
  # A box smaller than a bin per pixel still gives non-empty bins; outside the map gives 0.
  tiny = D.roi_pool(fm, np.array([[3.2, 2.2, 0.5, 0.5]]), 2)
  np.testing.assert_allclose(tiny[0, :, :, 0], 3.0)
  np.testing.assert_array_equal(D.roi_pool(fm, np.array([[20.0, 20.0, 4.0, 4.0]]), 2), 0.0)
  assert D.roi_pool(fm, np.zeros((0, 4)), 3).shape == (0, 3, 3, 2)


def test_dvector_layout():
  img = np.zeros((10, 20, 3), np.uint8)
  img[:, :10] = 255                                   # left half white
  cfg = D.DVectorConfig("pixels", num_classes=3, pool=2)
  v = D.build_dvectors(np.array([[0.0, 0.0, 20.0, 10.0]]), np.array([0.8]), np.array([2]),
                       (20, 10), cfg, image=img)
  assert v.shape == (1, cfg.dim) == (1, 3 + 4 + 12)
  np.testing.assert_allclose(v[0, :3], [0, 0, 0.8], rtol=1e-6)
  np.testing.assert_allclose(v[0, 3:7], [0.5, 0.5, 1.0, 1.0])
  app = v[0, 7:].reshape(2, 2, 3)
  np.testing.assert_allclose(app[:, 0], 1.0)     # left bins white -> 2*1 - 1
  np.testing.assert_allclose(app[:, 1], -1.0)    # right bins black -> -1
  # Unknown label spreads the score; K = 1 is the score alone; boxes mode has no appearance.
  np.testing.assert_allclose(D.class_scores([0.9], [-1], 3), [[0.3, 0.3, 0.3]])
  b = D.build_dvectors(np.array([[1.0, 2.0, 3.0, 4.0]]), [0.5], None, (10, 10), BOX_DVEC)
  np.testing.assert_allclose(b, [[0.5, 0.25, 0.4, 0.3, 0.4]], rtol=1e-6)
  with pytest.raises(ValueError, match="need the frame"):
    D.build_dvectors(np.zeros((1, 4)), [1.0], None, (10, 10), cfg)


def test_match_to_gt_is_one_to_one_with_threshold():
  gt = np.array([[0, 0, 10, 10], [20, 0, 10, 10]], float)
  det = np.array([[1, 0, 10, 10], [0, 1, 10, 10], [21, 0, 10, 10], [50, 50, 5, 5]], float)
  m = D.match_to_gt(det, gt)
  assert m[2] == 1 and m[3] == -1 and sorted(m[:2].tolist()) == [-1, 0]
  assert D.match_to_gt(np.zeros((0, 4)), gt).shape == (0,)


def test_simulated_detections_deterministic_and_noisy():
  from rolo_jax.data import synthetic
  ms = synthetic.make_multi_sequence(3, synthetic.SyntheticConfig(num_frames=40))
  W, H = ms.size()
  a = D.simulate_detections(ms.gt, 40, (W, H), num_classes=6, seed=(3, 0))
  b = D.simulate_detections(ms.gt, 40, (W, H), num_classes=6, seed=(3, 0))
  c = D.simulate_detections(ms.gt, 40, (W, H), num_classes=6, seed=(3, 1))
  np.testing.assert_array_equal(a.box, b.box)
  assert not (len(a) == len(c) and np.array_equal(a.box, c.box))
  assert np.all(a.track_id == -1) and np.all(np.diff(a.frame) >= 0)
  assert np.all((a.box[:, 0] >= 0) & (a.box[:, 0] + a.box[:, 2] <= W + 1e-9))
  # No noise at all reproduces the ground truth exactly.
  clean = D.DetectionNoise(p_miss=0, p_miss_occluded=0, centre_jitter=0, size_jitter=0,
                           fp_per_frame=0, label_error=0)
  e = D.simulate_detections(ms.gt, 40, (W, H), num_classes=6, seed=0, noise=clean)
  assert len(e) == len(ms.gt)
  o = np.lexsort((ms.gt.box[:, 0], ms.gt.frame))
  o2 = np.lexsort((e.box[:, 0], e.frame))
  np.testing.assert_allclose(e.box[o2], ms.gt.box[o], atol=1e-9)
  np.testing.assert_array_equal(e.label[o2], ms.gt.label[o])


def test_yolo_feature_maps_shape():
  from rolo_jax.models import yolo
  ycfg = yolo.CONFIGS["tiny"]
  params = yolo.init(jax.random.PRNGKey(0), ycfg)
  maps = D.yolo_feature_maps(params, ycfg, np.zeros((2, 64, 80, 3), np.uint8))
  assert maps.shape == (2, 7, 7, 64) and np.all(np.isfinite(maps))


# ------------------------------------------------------------------------------------ tracker

def _tracker(**kw):
  params = A.init(jax.random.PRNGKey(0), BOX_CFG)
  kw.setdefault("use_phi", False)
  return at.AssociationTracker(params, BOX_CFG, BOX_DVEC, at.TrackerConfig(**kw), (200.0, 100.0))


def _frame(*boxes):
  b = np.array(boxes, float).reshape(-1, 4)
  return b, np.full(len(b), 0.9)


def test_birth_confirmation_and_death():
  tr = _tracker(min_hits=2, max_age=2)
  out = [tr.update(_frame([10 + 2 * t, 10, 20, 20])) for t in range(3)]
  # First min_hits frames of the video: shown at once (as SORT); then a stable id.
  assert [o[1].tolist() for o in out] == [[1], [1], [1]]
  np.testing.assert_allclose(out[2][0], [[14, 10, 20, 20]])
  for _ in range(2):                      # missed twice: still alive (max_age 2), not reported
    b, i = tr.update(_frame())
    assert len(i) == 0 and tr.num_tracks() == 1
  b, i = tr.update(_frame([22, 10, 20, 20]))   # back near its prediction: same id
  assert i.tolist() == [1]
  for _ in range(3):
    tr.update(_frame())
  assert tr.num_tracks() == 0             # dead after max_age misses
  b, i = tr.update(_frame([22, 10, 20, 20]))
  assert i.tolist() == [] and tr.num_tracks() == 1   # a new, tentative track (id 2), not shown
  tr.update(_frame())
  assert tr.num_tracks() == 0             # tentative tracks die at their first miss


def test_tentative_track_needs_min_hits_after_warmup():
  tr = _tracker(min_hits=2)
  for t in range(3):
    tr.update(_frame([10, 10, 20, 20]))
  shown = [tr.update(_frame([10, 10, 20, 20], [100, 50, 20, 20]))[1].tolist() for _ in range(3)]
  # Born in frame 4 (hit streak 0), matched in 5 (1) and 6 (2 = min_hits): shown from frame 6.
  assert shown == [[1], [1], [1, 2]]


def test_phi_decides_an_ambiguous_crossing(monkeypatch):
  """Two tracks meet; the detections are equally close to both predictions, so only phi can
  tell them apart.  The model step is replaced by one returning chosen phi."""
  cfg, dvec = BOX_CFG, BOX_DVEC
  e1, e2 = np.eye(cfg.phi_dim)[0], np.eye(cfg.phi_dim)[1]
  plan = {"phi": None}

  def fake_step(params, prev, x, mask, cfg):
    n = x.shape[1]
    phi = np.zeros((1, n, cfg.phi_dim), np.float32)
    phi[0, :len(plan["phi"])] = plan["phi"]
    z = np.zeros((1, n, cfg.hidden), np.float32)
    new = A.SlotState(tuple(A.lstm.LSTMState(z, z) for _ in range(cfg.num_layers)), phi, mask)
    return new, {"phi": phi, "prob": np.zeros((1, n, cfg.num_classes + 1), np.float32),
                 "box": np.zeros((1, n, 4), np.float32)}

  monkeypatch.setattr(at, "_step", fake_step)
  for use_phi, expect_x in ((True, 44.0), (False, 40.0)):
    tr = at.AssociationTracker(A.init(jax.random.PRNGKey(0), cfg), cfg, dvec,
                               at.TrackerConfig(min_hits=0, use_phi=use_phi, iou_weight=0.1),
                               (200.0, 100.0))
    plan["phi"] = np.stack([e1, e2])
    tr.update(_frame([40, 40, 20, 20], [44, 40, 20, 20]))   # id 1 (phi e1), id 2 (phi e2)
    plan["phi"] = np.stack([e2, e1])                        # same boxes, identities swapped
    b, ids = tr.update(_frame([40, 40, 20, 20], [44, 40, 20, 20]))
    assert sorted(ids.tolist()) == [1, 2]
    assert b[ids == 1][0, 0] == expect_x, use_phi   # id 1 follows its phi (or, without, IoU)


def test_empty_frames_bad_boxes_and_capacity():
  tr = _tracker(min_hits=0)
  b, i = tr.update(_frame())
  assert b.shape == (0, 4) and i.shape == (0,)
  boxes = np.array([[10, 10, 20, 20], [np.nan, 1, 2, 3], [5, 5, 0, 10], [60, 10, 20, 20]], float)
  b, i = tr.update((boxes, np.ones(4)))
  assert sorted(i.tolist()) == [1, 2]       # only the two valid boxes
  # More detections than the smallest slot bucket (8): 20 objects, all tracked, ids unique.
  many = np.array([[9 * k, 5 * (k % 3), 6, 6] for k in range(20)], float)
  tr.reset()
  for _ in range(2):
    b, i = tr.update((many, np.ones(20)))
  assert len(i) == 20 and len(set(i.tolist())) == 20


def test_input_errors_are_clear():
  params = A.init(jax.random.PRNGKey(0), A.CONFIGS["tiny"])
  pix = D.DVectorConfig("pixels", num_classes=2, pool=2)          # D = 2 + 4 + 12 = tiny's 18
  tr = at.AssociationTracker(params, A.CONFIGS["tiny"], pix, frame_size=(100, 100))
  with pytest.raises(ValueError, match="FrameDetections"):
    tr.update(_frame([1, 1, 5, 5]))
  with pytest.raises(ValueError, match="expects D = 18"):
    tr.update(D.FrameDetections(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5), np.float32)))
  with pytest.raises(ValueError, match="expects"):
    at.AssociationTracker(params, A.CONFIGS["tiny"], BOX_DVEC)
  no_size = at.AssociationTracker(A.init(jax.random.PRNGKey(0), BOX_CFG), BOX_CFG, BOX_DVEC)
  with pytest.raises(ValueError, match="frame size"):
    no_size.update(_frame([1, 1, 5, 5]))


def _save_box_model(tmp_path):
  from rolo_jax.train.checkpoint import save_params
  params = A.init(jax.random.PRNGKey(0), BOX_CFG)
  d = str(tmp_path / "model")
  save_params(d, params, {"model": "association", "config": BOX_CFG, "dvec": BOX_DVEC})
  return d


def test_det_txt_cli_empty_and_malformed(tmp_path, capsys):
  from experiments import association_lstm as exp
  ckpt = _save_box_model(tmp_path)
  tr = at.from_checkpoint(ckpt, frame_size=(100, 100))
  assert tr.cfg == BOX_CFG
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  out = tmp_path / "res.txt"
  assert exp.main(["--track_det", str(empty), "--checkpoint", ckpt, "--out", str(out)]) == 0
  assert out.read_text() == ""
  assert capsys.readouterr().err == f"note: {empty} holds no detections; the results are empty\n"
  bad = tmp_path / "bad.txt"
  bad.write_text("1,-1,10,10,20,20,0.9,-1,-1,-1\n2,-1,10,abc,20,20,0.9,-1,-1,-1\n")
  with pytest.raises(SystemExit) as e:
    exp.main(["--track_det", str(bad), "--checkpoint", ckpt, "--out", str(out)])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "bad.txt, line 2" in err


@needs_tud
def test_tud_campus_from_det_txt(tmp_path):
  from rolo_jax.data.formats.mot import read_mot_file
  from rolo_jax.eval import mot as mot_eval
  from rolo_jax.mot import io as mot_io
  dets = read_mot_file(os.path.join(TUD, "det.txt"), "det")
  gt = read_mot_file(os.path.join(TUD, "gt.txt"), "gt")
  tr = _tracker(min_hits=3, max_age=5)
  hyp = run_mot(tr, dets, int(gt.frame.max()) + 1)
  path = mot_io.write_mot_results(tmp_path / "tud.txt", hyp)
  back = read_mot_file(path, "results")
  assert len(back) == len(hyp) > 0
  m = mot_eval.evaluate_sequence(gt, back)
  # Untrained phi with IoU gating: a working tracker on real detections.
  assert m["mota"] > 0.3 and m["idf1"] > 0.3
