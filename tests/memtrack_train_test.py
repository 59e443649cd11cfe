"""MemTrack training smoke tests: labels, sampler geometry, exact resume, the NaN stop, and the
trained model through the tracker registry and the track CLI."""
import rolo_jax  # noqa: F401

import os

import jax
import numpy as np
import pytest

from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.models import memtrack
from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import memtrack_task as mt

TINY = memtrack.CONFIGS["tiny"]
TASK = mt.TaskConfig(frames_per_sample=4, batch=2, min_track_len=20, lr=1e-3)


def square_video(n=24, h=90, w=120, size=(16, 12), seed=0):
  """A white w×h rectangle on a dark grey background moving on a known path."""
  rng = np.random.RandomState(seed)
  frames = np.full((n, h, w, 3), 40, np.uint8)
  boxes = np.zeros((n, 4))
  for t in range(n):
    x, y = 20 + 2 * t + rng.randint(0, 3), 30 + t
    frames[t, y:y + size[1], x:x + size[0]] = 255
    boxes[t] = (x, y, size[0], size[1])
  return Sequence("square", ArrayFrames(frames), boxes)


@pytest.fixture(scope="module")
def sequences():
  from rolo_jax.data import synthetic
  cfg = synthetic.PRESETS["train"].__class__(num_frames=24)
  return [square_video()] + synthetic.make_split("train", 3, cfg)


def test_labels_on_hand_computed_iou():
  # tiny: E = 47, stride 4, R = 9; cell k looks at 23.5 + 4k, the centre cell (k = 4) at S/2 = 39.5.
  np.testing.assert_allclose(mt.cell_centres(TINY), 23.5 + 4 * np.arange(9))
  labels, weights = mt.make_labels(np.array([[39.5, 39.5, 40.0, 40.0]], np.float32), TINY)
  labels, weights = np.asarray(labels[0]), np.asarray(weights[0])
  # One cell off: IoU = 36·40 / (3200 − 1440) = 0.818 > 0.7; diagonal: 1296 / 1904 = 0.68; two
  # cells: 1280 / 1920 = 0.667 -> the centre and its 4 neighbours are positive.
  expected = np.zeros((9, 9))
  expected[4, 3:6] = expected[3:6, 4] = 1
  np.testing.assert_array_equal(labels, expected)
  np.testing.assert_allclose(weights[labels > 0], 0.5 / 5)
  np.testing.assert_allclose(weights[labels == 0], 0.5 / 76)
  # A target between cells (x = 41.5): |dx| = 2 and 6 are positive (IoU 38/42, 34·40/1840 = 0.739),
  # |dx| = 10 is not (30·40/2000 = 0.6): cells 3..6 of the centre row.
  lab2, _ = mt.make_labels(np.array([41.5, 39.5, 40.0, 40.0], np.float32), TINY)
  np.testing.assert_array_equal(np.asarray(lab2)[4], [0, 0, 0, 1, 1, 1, 1, 0, 0])


def test_sampler_geometry_is_siamfc_and_deterministic(sequences):
  flat = mt.TaskConfig(frames_per_sample=4, batch=3, min_track_len=20, exemplar_stretch=0.0,
                       exemplar_shift=0.0, search_stretch=0.0, search_shift=0.0)
  s = mt.MemTrackSampler(sequences[:1], TINY, flat, seed=1)
  b = s.batch(0)
  assert b.exemplars.shape == (3, 3, 47, 47, 3) and b.searches.shape == (3, 3, 79, 79, 3)
  assert b.exemplars.dtype == np.uint8
  # Without augmentation the target sits at the crop centre, and in search-crop pixels
  # sqrt((w + p)(h + p)) = s_z · S / s_x = E (p = (w + h) / 2): the SiamFC context windows.
  np.testing.assert_allclose(b.target[..., :2], 39.5, atol=1e-4)
  w, h = b.target[..., 2], b.target[..., 3]
  p = 0.5 * (w + h)
  np.testing.assert_allclose(np.sqrt((w + p) * (h + p)), 47.0, rtol=1e-5)
  # The white rectangle is centred in every exemplar (16×12 at scale 47 / s_z).
  z = b.exemplars[..., 0].astype(float)
  for t in range(3):
    for k in range(3):
      ys, xs = np.nonzero(z[t, k] > 200)
      assert abs(xs.mean() + 0.5 - 23.5) < 1.0 and abs(ys.mean() + 0.5 - 23.5) < 1.0
  # Deterministic in (seed, position).
  r = mt.MemTrackSampler(sequences, TINY, TASK, seed=1)
  np.testing.assert_array_equal(r.batch(0).searches, r.batch(0).searches)
  np.testing.assert_array_equal(r.batch(0).target, r.batch(0).target)
  assert not np.array_equal(r.batch(1).searches, r.batch(0).searches)
  assert not np.array_equal(mt.MemTrackSampler(sequences, TINY, TASK, seed=2).batch(0).searches,
                            r.batch(0).searches)
  # Augmented: the search target moves at most 4 px (255-px units) and scales by at most 5%.
  a = mt.MemTrackSampler(sequences[:1], TINY, TASK, seed=1).batch(2)
  assert np.all(np.abs(a.target[..., :2] - 39.5) <= 4 * 79 / 255 * 1.06 + 1e-4)


def test_sampler_pads_with_the_mean_colour(sequences):
  seq = square_video()
  # Put the target at the top-left corner: most of the exemplar window is outside the frame.
  seq.boxes[:] = (0.0, 0.0, 16.0, 12.0)
  flat = mt.TaskConfig(frames_per_sample=4, batch=1, min_track_len=20, exemplar_stretch=0.0,
                       exemplar_shift=0.0, search_stretch=0.0, search_shift=0.0)
  b = mt.MemTrackSampler([seq], TINY, flat, seed=0).batch(0)
  mean = np.asarray(seq.frames[0]).reshape(-1, 3).mean(0)
  corner = b.searches[0, 0, 0, 0].astype(float)
  np.testing.assert_allclose(corner, np.rint(mean), atol=1.0)


def test_too_short_tracks_are_a_clear_error(sequences):
  from rolo_jax.errors import DataError
  with pytest.raises(DataError, match="no training track"):
    mt.MemTrackSampler(sequences, TINY, mt.TaskConfig(min_track_len=100))


def test_train_resume_exactly_then_track(sequences, tmp_path):
  sampler = mt.MemTrackSampler(sequences, TINY, TASK, seed=0)
  full, s_full = mt.train(TINY, TASK, sampler, workdir=str(tmp_path / "full"), total_steps=4,
                          checkpoint_every=2, progress=False)
  assert s_full["steps"] == 4 and np.isfinite(s_full["last"]["loss"])
  part = str(tmp_path / "part")
  _, s1 = mt.train(TINY, TASK, sampler, workdir=part, total_steps=4, checkpoint_every=2,
                   progress=False, stop_after=2)
  assert s1["steps"] == 2
  resumed, s2 = mt.train(TINY, TASK, sampler, workdir=part, total_steps=4, checkpoint_every=2,
                         progress=False)
  assert s2["resumed_from"] == 2 and s2["steps_this_run"] == 2
  for a, b in zip(jax.tree_util.tree_leaves((full.params, full.batch_stats, full.opt_state)),
                  jax.tree_util.tree_leaves((resumed.params, resumed.batch_stats, resumed.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert ckpt_lib.Checkpointer(part).all_steps() == [2, 4]
  assert os.path.isfile(os.path.join(part, "train_log.jsonl")) and os.path.isdir(os.path.join(part, "tb"))
  # Another config in the same workdir is refused.
  with pytest.raises(mt.ConfigMismatchError, match="config"):
    mt.train(TINY.replace(slots=3), TASK, sampler, workdir=part, total_steps=5, progress=False)
  # The trained model through the registry and the track CLI.
  from rolo_jax import trackers, track
  tr = trackers.make_tracker("memtrack", checkpoint=part)
  boxes, _ = trackers.run_tracker(tr, sequences[0])
  assert boxes.shape == (24, 4) and np.all(np.isfinite(boxes))
  siam = trackers.make_tracker("siamfc", checkpoint=part)
  assert siam.name == "siamfc" and np.all(np.isfinite(trackers.run_tracker(siam, sequences[0])[0]))
  frames_dir = tmp_path / "frames"
  frames_dir.mkdir()
  import cv2
  for t in range(5):
    cv2.imwrite(str(frames_dir / f"{t:04d}.png"), np.asarray(sequences[0].frames[t])[..., ::-1])
  out = tmp_path / "boxes.txt"
  assert track.main(["--frames", str(frames_dir), "--init", "20,30,16,12", "--tracker", "memtrack",
                     "--checkpoint", part, "--out", str(out)]) == 0
  rows = np.loadtxt(out, delimiter=",")
  assert rows.shape == (5, 4) and np.all(np.isfinite(rows))


def test_non_finite_values_stop_training_without_a_checkpoint(sequences, tmp_path):
  sampler = mt.MemTrackSampler(sequences, TINY, TASK, seed=0)
  wd = str(tmp_path / "nan")
  # A NaN target (bad annotation) makes the peak-error metric NaN: the run stops at that step.
  with pytest.raises(mt.NonFiniteError, match="non-finite .* at step 2"):
    mt.train(TINY, TASK, sampler, workdir=wd, total_steps=4, checkpoint_every=1, progress=False,
             nan_at_step=2)
  assert ckpt_lib.Checkpointer(wd).all_steps() == [1]


if __name__ == "__main__":
  pytest.main([__file__, "-q"])
