"""ROLO training pieces: protocols, scoring, baselines, windows (the LAST frame is the target), the
masked loss, exact resume, NaN guards, bad inputs, online trackers equal to the cached pipeline,
the detector's task and AP, heatmap pictures."""
import json
import os

import numpy as np
import pytest

import rolo_jax  # noqa: F401
import jax
import jax.numpy as jnp

from rolo_jax.data import synthetic
from rolo_jax.data.formats import rolo_features
from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.errors import DataError
from rolo_jax.eval import heatmaps
from rolo_jax.models import rolo, yolo
from rolo_jax.train import checkpoint as ck
from rolo_jax.train import rolo_task, yolo_task
from rolo_jax.trackers import base, rolo as rolo_tracker, yolo_sort

# A detector small enough to compile in a second: 28×28 input, 7×7 grid, 16-d features.
MINI_YOLO = yolo.YoloConfig(name="mini_test", input_size=28, grid=7, num_classes=6, feature_dim=16,
                            dropout=0.0, layers=(("conv", 3, 4, 2), ("pool", 2, 2), ("conv", 3, 8, 1)),
                            rescore=False)
MINI_ROLO = rolo.RoloConfig(name="mini", window=3, feature_dim=16)
SYN = synthetic.SyntheticConfig(height=40, width=48, num_frames=10, target_size=(0.3, 0.4))


@pytest.fixture(scope="module")
def mini_detector():
  params = yolo.init(jax.random.PRNGKey(0), MINI_YOLO)
  return yolo_task.Detector(params, MINI_YOLO, conf_thresh=0.0, nms_iou=0.5, chunk=8)


def fake_cache(T=8, F=16, seed=0, missing=(), name="fake"):
  """A cached sequence with random features and detections = ground truth + noise."""
  rng = np.random.default_rng(seed)
  gt = np.stack([10 + np.arange(T), 8 + 0.5 * np.arange(T), np.full(T, 12.0), np.full(T, 10.0)], 1)
  dets = [np.concatenate([gt[t] + rng.normal(0, 0.5, 4), [0.9, 0]])[None] if t not in missing
          else np.zeros((0, 6)) for t in range(T)]
  seq = Sequence(name, ArrayFrames(np.zeros((T, 40, 48, 3), np.uint8)), gt)
  return rolo_task.cache_from_detections(seq, rng.normal(0, 1, (T, F)).astype(np.float32), dets)


# --------------------------------------------------------------------------- protocols and scores


def test_protocol_masks_hand_computed():
  lab, sc = rolo_task.protocol_masks(7, "first_third", "test")
  assert lab.tolist() == [1, 1, 1, 0, 0, 0, 0] and sc.tolist() == [0, 0, 0, 1, 1, 1, 1]
  lab, sc = rolo_task.protocol_masks(7, "third_labels", "test")
  assert np.nonzero(lab)[0].tolist() == [0, 3, 6] and np.nonzero(sc)[0].tolist() == [1, 2, 4, 5]
  lab, sc = rolo_task.protocol_masks(5, "sequences", "train")
  assert lab.all() and not sc.any()
  lab, sc = rolo_task.protocol_masks(5, "sequences", "test")
  assert not lab.any() and sc.tolist() == [0, 1, 1, 1, 1]
  for p in rolo_task.PROTOCOLS:   # never train and score the same frame; frame 0 never scored
    for role in ("train", "test"):
      lab, sc = rolo_task.protocol_masks(10, p, role)
      assert not np.any(lab & sc) and not sc[0]
  with pytest.raises(ValueError):
    rolo_task.protocol_masks(5, "nope", "test")


def test_split_sequences_last_fraction_is_test():
  assert rolo_task.split_sequences(7) == ([0, 1, 2, 3, 4], [5, 6])      # ceil(7 · 8/30) = 2
  assert rolo_task.split_sequences(30) == (list(range(22)), list(range(22, 30)))
  with pytest.raises(ValueError):
    rolo_task.split_sequences(1)


def test_masked_score_hand_computed():
  gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [0, 0, 10, 10]], float)
  res = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10], [50, 50, 5, 5]], float)
  mask = np.array([False, True, True, True, False])
  s = rolo_task.masked_score(gt, res, mask)
  # inclusive-pixel IoU of the shifted box: iw = min(14, 9) - 5 + 1 = 5 -> 50 / 150
  np.testing.assert_allclose(s.iou, [1.0, 1 / 3, -1.0])
  assert s.n == 3
  assert s.average_overlap == pytest.approx((1 + 1 / 3) / 3)
  assert s.success[0] == pytest.approx(2 / 3)        # IoU > 0
  assert s.success[10] == pytest.approx(1 / 3)       # IoU > 0.5


def test_hold_boxes_keeps_previous_box():
  init = np.array([1, 2, 3, 4.0])
  a = np.array([[9, 9, 9, 9], [5, 5, 5, 5], [np.nan] * 4, [np.nan] * 4, [7, 7, 2, 2]], float)
  out = yolo_sort.hold_boxes(a, init)
  np.testing.assert_array_equal(out, [[1, 2, 3, 4], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [7, 7, 2, 2]])


def test_kalman_boxes_follow_motion_through_a_gap():
  T = 30
  boxes = np.stack([10 + 3.0 * np.arange(T), np.full(T, 20.0), np.full(T, 10.0), np.full(T, 10.0)], 1)
  a = boxes.copy()
  a[20:25] = np.nan   # missed detections: the filter predicts
  out = yolo_sort.kalman_boxes(a, boxes[0])
  np.testing.assert_array_equal(out[0], boxes[0])
  assert np.all(np.isfinite(out))
  # After 20 detections on a straight line the velocity is learnt: predictions keep moving.
  assert np.all(np.diff(out[19:26, 0]) > 2.0)
  np.testing.assert_allclose(out[24, 0], boxes[24, 0], atol=3.0)
  # With constant detections the box converges onto them.
  still = np.tile([[5, 6, 7, 8.0]], (40, 1))
  np.testing.assert_allclose(yolo_sort.kalman_boxes(still, [6, 6, 7, 8])[-1], [5, 6, 7, 8], atol=0.05)


# --------------------------------------------------------------------------- caches and windows


def test_cache_no_detection_gives_zero_location_and_finite_outputs():
  c = fake_cache(missing=(3, 4))
  assert np.all(c.locations[3:5] == 0) and np.all(np.isnan(c.assigned[3:5]))
  assert np.all(c.locations[[1, 2, 5]][:, 1:5] > 0)
  params = rolo.init(jax.random.PRNGKey(0), MINI_ROLO)
  boxes, raw = rolo_task.predict_cache(params, MINI_ROLO, c)
  assert np.all(np.isfinite(boxes)) and np.all(np.isfinite(raw))
  np.testing.assert_array_equal(boxes[0], c.gt[0])
  assert np.all(boxes[:, 2:] >= 1.0)


def test_assignment_uses_no_ground_truth_after_frame_0():
  c = fake_cache()
  seq = Sequence("moved", ArrayFrames(np.zeros((8, 40, 48, 3), np.uint8)), c.gt.copy())
  seq.boxes[1:] += 15.0   # different ground truth after frame 0: same assignment
  c2 = rolo_task.cache_from_detections(seq, c.features, c.detections)
  np.testing.assert_array_equal(c2.assigned, c.assigned)


def test_windows_target_the_last_frame():
  c = fake_cache(T=8)
  lab = np.ones(8, bool)
  lab[5] = False
  c = c._replace(gt=np.where(np.arange(8)[:, None] == 6, np.nan, c.gt))   # target absent at 6
  d = rolo_task.window_data([c], [lab], MINI_ROLO)
  rel = rolo_task.relative_gt(c)
  ends = [0, 1, 2, 3, 4, 7]                     # 5 unlabelled, 6 absent
  assert len(d.index) == len(ends)
  for k, e in enumerate(ends):
    assert d.index[k].tolist() == [max(e - 2, 0), max(e - 1, 0), e]
    np.testing.assert_allclose(d.targets[k, 0], rel[e], rtol=1e-6)
  x = rolo_task.sequence_inputs(c, MINI_ROLO)
  np.testing.assert_array_equal(d.inputs, x)


def test_heatmap_targets_are_masks_and_carry_chunks_have_masks():
  c = fake_cache(T=8)
  hm = MINI_ROLO.replace(mode="heatmap", hidden_from="output_layer", hidden=8)
  d = rolo_task.window_data([c], [np.ones(8, bool)], hm)
  assert d.targets.shape == (8, 1, 1024) and set(np.unique(d.targets)) <= {0.0, 1.0}
  np.testing.assert_array_equal(d.targets[5, 0], rolo.box_to_mask(rolo_task.relative_gt(c)[5]))
  carry = MINI_ROLO.replace(carry_state=True)
  lab = np.arange(8) % 3 == 0
  d = rolo_task.window_data([c], [lab], carry, carry_chunk=5)
  assert d.index.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 7, 7]]
  assert d.mask.tolist() == [[1, 0, 0, 1, 0], [0, 1, 0, 0, 0]]


def test_batch_loss_equals_model_loss_when_unmasked():
  c = fake_cache(T=8)
  d = rolo_task.window_data([c], [np.ones(8, bool)], MINI_ROLO)
  params = rolo.init(jax.random.PRNGKey(1), MINI_ROLO)
  x, t, m = rolo_task.make_batch(d, 0, 4)
  got, _ = rolo_task.batch_loss(params, x, t, m, cfg=MINI_ROLO)
  want, _ = rolo.loss(params, jnp.asarray(x), jnp.asarray(t[:, 0]), cfg=MINI_ROLO)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # masking out an example removes it from the mean
  m2 = m.copy()
  m2[0] = 0
  got2, _ = rolo_task.batch_loss(params, x, t, m2, cfg=MINI_ROLO)
  want2, _ = rolo.loss(params, jnp.asarray(x[1:]), jnp.asarray(t[1:, 0]), cfg=MINI_ROLO)
  np.testing.assert_allclose(got2, want2, rtol=1e-6)


def test_decode_rejects_nan():
  with pytest.raises(FloatingPointError):
    rolo_task.decode_predictions(np.array([[0.5, np.nan, 0.1, 0.1]]), MINI_ROLO, (48, 40))


# --------------------------------------------------------------------------- training


def _data():
  caches = [fake_cache(T=10, seed=s, name=f"s{s}") for s in range(3)]
  return rolo_task.window_data(caches, [np.ones(10, bool)] * 3, MINI_ROLO)


TASK = rolo_task.RoloTaskConfig(steps=6, batch=4, lr=1e-2, warmup_steps=1, checkpoint_every=3)


def test_training_reduces_loss_and_resume_is_exact(tmp_path):
  data = _data()
  p_full, s_full = rolo_task.train_rolo(str(tmp_path / "a"), MINI_ROLO, TASK.replace(steps=30, checkpoint_every=10),
                                        data, progress=False)
  log = [json.loads(l) for l in open(tmp_path / "a" / "train_log.jsonl")]
  assert log[-1]["loss"] < log[0]["loss"]
  # Interrupted after 3 steps (a checkpoint), resumed: same parameters as an uninterrupted run.
  p6, _ = rolo_task.train_rolo(str(tmp_path / "b"), MINI_ROLO, TASK, data, progress=False)
  rolo_task.train_rolo(str(tmp_path / "c"), MINI_ROLO, TASK, data, progress=False, stop_after=3)
  assert ck.Checkpointer(str(tmp_path / "c")).latest_step() == 3
  p6r, s = rolo_task.train_rolo(str(tmp_path / "c"), MINI_ROLO, TASK, data, progress=False)
  assert s["resumed_from"] == 3 and s["steps_this_run"] == 3
  for a, b in zip(jax.tree_util.tree_leaves(p6), jax.tree_util.tree_leaves(p6r)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Another config in the same workdir is refused.
  with pytest.raises(yolo_task.ConfigMismatchError):
    rolo_task.train_rolo(str(tmp_path / "c"), MINI_ROLO.replace(window=2), TASK, data, progress=False)


def test_nan_stops_training_without_a_checkpoint(tmp_path):
  d = _data()
  d = d._replace(targets=np.full_like(d.targets, np.nan))
  with pytest.raises(yolo_task.NonFiniteError):
    rolo_task.train_rolo(str(tmp_path), MINI_ROLO, TASK, d, progress=False)
  assert ck.Checkpointer(str(tmp_path)).latest_step() is None


def test_carry_state_training_runs(tmp_path):
  carry = MINI_ROLO.replace(carry_state=True)
  caches = [fake_cache(T=10, seed=s, name=f"s{s}") for s in range(2)]
  d = rolo_task.window_data(caches, [np.ones(10, bool)] * 2, carry, carry_chunk=6)
  p, s = rolo_task.train_rolo(str(tmp_path), carry, TASK.replace(steps=3), d, progress=False)
  assert np.isfinite(s["last"]["loss"])


# --------------------------------------------------------------------------- bad inputs


def test_feature_folder_errors(tmp_path):
  seq = Sequence("f", ArrayFrames(np.zeros((3, 20, 20, 3), np.uint8)), np.tile([[7, 7, 5, 5.0]], (3, 1)))
  feats = np.ones((3, 16), np.float32)
  dets = np.array([[0, 0.5, 0.5, 0.2, 0.2, 1], [0, 0, 0, 0, 0, 0], [0, 0.45, 0.45, 0.2, 0.2, 1]])
  rolo_features.write_feature_folder(tmp_path / "ok", feats, dets)
  c = rolo_task.cache_from_feature_folder(seq, str(tmp_path / "ok"), 16)
  assert np.isnan(c.assigned[1]).all() and np.all(c.locations[1] == 0)   # zero box = no detection
  np.testing.assert_allclose(c.assigned[0], [8, 8, 4, 4])
  rolo_features.write_feature_folder(tmp_path / "short", feats[:2], dets[:2])
  with pytest.raises(DataError, match="2 feature files for the 3 frames"):
    rolo_task.cache_from_feature_folder(seq, str(tmp_path / "short"), 16)
  os.makedirs(tmp_path / "bad")
  np.save(tmp_path / "bad" / "0.npy", np.ones(21))
  with pytest.raises(DataError, match="expected 22 values"):
    rolo_task.cache_from_feature_folder(seq, str(tmp_path / "bad"), 16)


def test_sequence_shorter_than_window_and_missing_initial_box():
  c = fake_cache(T=2)
  params = rolo.init(jax.random.PRNGKey(0), MINI_ROLO.replace(window=6))
  boxes, _ = rolo_task.predict_cache(params, MINI_ROLO.replace(window=6), c)
  assert boxes.shape == (2, 4) and np.all(np.isfinite(boxes))
  seq = Sequence("noinit", ArrayFrames(np.zeros((2, 20, 20, 3), np.uint8)), [[np.nan] * 4, [1, 1, 3, 3]])
  with pytest.raises(DataError, match="first frame needs a ground-truth box"):
    rolo_task.cache_from_detections(seq, np.zeros((2, 16)), [np.zeros((0, 6))] * 2)
  with pytest.raises(DataError, match="2 frames but features"):
    rolo_task.cache_from_detections(seq, np.zeros((3, 16)), [np.zeros((0, 6))] * 2)


# --------------------------------------------------------------------------- online == cached


@pytest.mark.parametrize("carry,residual", [(False, False), (True, False), (True, True)])
def test_online_rolo_tracker_equals_cached_pipeline(mini_detector, carry, residual):
  seq = synthetic.make_sequence(3, SYN)
  cfg = MINI_ROLO.replace(carry_state=carry)
  if residual:   # experiments.rolo's default kind: residual read-out, held detections, carried state
    cfg = cfg.replace(hidden_from="residual", hidden=8, hold_detection=True)
  params = rolo.init(jax.random.PRNGKey(2), cfg)
  cache = rolo_task.cache_sequence(seq, mini_detector)
  want, _ = rolo_task.predict_cache(params, cfg, cache, feature_scale=0.5)
  tr = rolo_tracker.RoloTracker(params, cfg, mini_detector, feature_scale=0.5)
  got, _ = base.run_tracker(tr, seq)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_online_baselines_equal_cached(mini_detector):
  seq = synthetic.make_sequence(4, SYN)
  cache = rolo_task.cache_sequence(seq, mini_detector)
  want = rolo_task.baseline_boxes(cache)
  got_y, _ = base.run_tracker(yolo_sort.make_yolo(detector=mini_detector), seq)
  got_s, _ = base.run_tracker(yolo_sort.make_yolo_sort(detector=mini_detector), seq)
  np.testing.assert_allclose(got_y, want["YOLO"])
  np.testing.assert_allclose(got_s, want["YOLO+SORT"])


def test_tracker_registry_and_export(tmp_path, mini_detector):
  from rolo_jax import trackers

  assert {"rolo", "yolo", "yolo_sort"} <= set(trackers.available())
  params = rolo.init(jax.random.PRNGKey(2), MINI_ROLO)
  rolo_task.export_tracker(str(tmp_path / "t"), params, MINI_ROLO, mini_detector, feature_scale=0.25)
  tr = trackers.make_tracker("rolo", checkpoint=str(tmp_path / "t"))
  assert tr.feature_scale == 0.25 and tr.cfg == MINI_ROLO
  seq = synthetic.make_sequence(5, SYN)
  boxes, _ = base.run_tracker(tr, seq)
  assert np.all(np.isfinite(boxes))
  with pytest.raises(ValueError, match="needs checkpoint"):
    trackers.make_tracker("rolo")


# --------------------------------------------------------------------------- detector task


def test_average_precision_hand_computed():
  g = [np.array([[0, 0, 10, 10], [20, 20, 10, 10.0]])]
  d = [np.array([[0, 0, 10, 10, 0.9], [50, 50, 5, 5, 0.8], [20, 20, 10, 10, 0.7]])]
  r = yolo_task.average_precision(d, g)
  # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: AP = 1/2 · 1 + 1/2 · 2/3
  assert r["ap"] == pytest.approx(0.5 + 1 / 3)
  assert r["recall"] == 1.0 and r["precision"] == pytest.approx(2 / 3)


def test_detector_batches_and_training_resume(tmp_path, monkeypatch):
  monkeypatch.setitem(yolo_task.DETECTOR_CONFIGS, "mini_test", MINI_YOLO)
  task = yolo_task.TASK_CONFIGS["smoke"].replace(model="mini_test", num_sequences=2, steps=4, checkpoint_every=2)
  data = yolo_task.multi_object_images(synthetic.make_split("train", 2, SYN, multi=True), 28, 3)
  imgs, tg = yolo_task.make_batch(data, 5, 3, MINI_YOLO, seed=1)
  imgs2, tg2 = yolo_task.make_batch(data, 5, 3, MINI_YOLO, seed=1)
  np.testing.assert_array_equal(imgs, imgs2)
  assert imgs.shape == (3, 28, 28, 3) and tg.shape == (3, 7, 7, 11) and tg[..., 4].sum() > 0
  p_full, _ = yolo_task.train_detector(str(tmp_path / "a"), task, data=data, progress=False)
  yolo_task.train_detector(str(tmp_path / "b"), task, data=data, progress=False, stop_after=2)
  p_res, s = yolo_task.train_detector(str(tmp_path / "b"), task, data=data, progress=False)
  assert s["resumed_from"] == 2
  for a, b in zip(jax.tree_util.tree_leaves(p_full), jax.tree_util.tree_leaves(p_res)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  det = yolo_task.Detector.load(str(tmp_path / "b"), conf_thresh=0.0)
  feats, dets = det(np.zeros((2, 40, 48, 3), np.uint8))
  assert feats.shape == (2, 16) and dets[0].shape[1] == 6


# --------------------------------------------------------------------------- heatmap pictures


def test_heat_on_target_and_pictures(tmp_path):
  size = (64, 64)
  gt = np.array([0, 0, 32, 64.0])           # left half of the image
  hm = np.zeros((32, 32))
  hm[:, :16] = 1.0
  assert heatmaps.heat_on_target(hm, gt, size) == pytest.approx(1.0)
  hm[:, 16:] = 1.0
  assert heatmaps.heat_on_target(hm, gt, size) == pytest.approx(0.5)
  assert np.isnan(heatmaps.heat_on_target(hm, [np.nan] * 4, size))
  frames = np.zeros((3, 64, 64, 3), np.uint8)
  pic = heatmaps.heatmap_panel(frames[0], hm.reshape(-1), {"ground truth": gt}, scale=1.0)
  assert pic.shape == (64, 132, 3)
  paths = heatmaps.write_heatmap_pictures(frames, np.tile(hm.reshape(1, -1), (3, 1)),
                                          {"ground truth": np.tile(gt, (3, 1))}, [0, 2], str(tmp_path))
  assert [os.path.basename(p) for p in paths] == ["frame_0000.png", "frame_0002.png", "frame.gif"]
  assert all(os.path.getsize(p) > 0 for p in paths)


def test_l1_coordinate_loss_by_hand_and_bad_name():
  cfg = rolo.RoloConfig(name="l1", window=2, feature_dim=1, hidden_from="residual", hidden=2)
  params = rolo.init(jax.random.PRNGKey(0), cfg)
  params["out"]["w"] = jnp.zeros_like(params["out"]["w"])
  # one window whose latest detection (0.5, 0.5, 0.2, 0.2) is the prediction; target differs by
  # (0.1, -0.2, 0, 0.04): L1 = 100 * (0.1 + 0.2 + 0 + 0.04) / 4 = 8.5, MSE = 100 * 0.0516 / 4 = 1.29
  x = np.asarray([[[1.0, 0, 0.5, 0.5, 0.2, 0.2, 0], [1.0, 0, 0.5, 0.5, 0.2, 0.2, 0]]], np.float32)
  t = np.asarray([[[0.6, 0.3, 0.2, 0.24]]], np.float32)
  m = np.ones((1, 1), np.float32)
  l1, _ = rolo_task.batch_loss(params, x, t, m, cfg=cfg, coord_loss="l1")
  mse, _ = rolo_task.batch_loss(params, x, t, m, cfg=cfg)
  np.testing.assert_allclose(l1, 8.5, rtol=1e-5)
  np.testing.assert_allclose(mse, 1.29, rtol=1e-5)
  with pytest.raises(ValueError, match="coord_loss"):
    rolo_task.batch_loss(params, x, t, m, cfg=cfg, coord_loss="l2")


def test_overlap_losses_by_hand():
  # pred [0,1]x[0,1]; target [0,1]x[0,0.5]: IoU 0.5, the enclosing box is the union -> GIoU 0.5.
  # target [2,3]x[0,1]: IoU 0, enclosing 3, union 2 -> GIoU = -1/3, loss 4/3.
  pred = jnp.asarray([[0.5, 0.5, 1.0, 1.0]] * 3)
  tgt = jnp.asarray([[0.5, 0.25, 1.0, 0.5], [2.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]])
  np.testing.assert_allclose(rolo_task.box_overlap_loss(pred, tgt, "iou"), [0.5, 1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(rolo_task.box_overlap_loss(pred, tgt, "giou"), [0.5, 4 / 3, 0.0], atol=1e-6)
  # through batch_loss (x100) with a residual model whose output layer is zero: pred = the detection
  cfg = rolo.RoloConfig(name="iou", window=2, feature_dim=1, hidden_from="residual", hidden=2)
  params = rolo.init(jax.random.PRNGKey(0), cfg)
  params["out"]["w"] = jnp.zeros_like(params["out"]["w"])
  x = np.asarray([[[1.0, 0, 0.5, 0.5, 1.0, 1.0, 0]] * 2], np.float32)
  t = np.asarray([[[0.5, 0.25, 1.0, 0.5]]], np.float32)
  got, _ = rolo_task.batch_loss(params, x, t, np.ones((1, 1), np.float32), cfg=cfg, coord_loss="iou")
  np.testing.assert_allclose(got, 50.0, rtol=1e-5)
