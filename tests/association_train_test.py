"""Association LSTM training: the contrastive loss by hand (padded slots never match), ground-truth
matching of a video's detections, deterministic windows, and a smoke run of the experiment that is
interrupted and resumed from its orbax checkpoint to the same parameters."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.data.sequence import Objects
from rolo_jax.mot import detections as D
from rolo_jax.train import association_task as task


def test_contrastive_ce_hand_numbers():
  sim = jnp.array([[0.9, 0.1, 0.95], [0.2, 0.3, 0.99]])
  theta = jnp.array([[True, False, False], [False, False, False]])
  mask_c = jnp.array([True, True])
  mask_p = jnp.array([True, True, False])      # the third previous slot is padding
  total, n, ok = task.contrastive_ce(sim, theta, mask_c, mask_p, temperature=0.1, margin=0.5)
  # row 0: logits [null 5, 9, 1] (padded slot dropped), target 9;  row 1: [5, 2, 3], target null.
  r0 = math.log(math.exp(5) + math.exp(9) + math.exp(1)) - 9
  r1 = math.log(math.exp(5) + math.exp(2) + math.exp(3)) - 5
  assert float(total) == np.float32(r0 + r1) or abs(float(total) - (r0 + r1)) < 1e-5
  assert int(n) == 2 and int(ok) == 2
  # A target on a padded slot is ignored (padding never matches): row 0 then wants "no match".
  theta2 = jnp.array([[False, False, True], [False, False, False]])
  total2, _, _ = task.contrastive_ce(sim, theta2, mask_c, mask_p, 0.1, 0.5)
  r0b = math.log(math.exp(5) + math.exp(9) + math.exp(1)) - 5
  assert abs(float(total2) - (r0b + r1)) < 1e-4
  # Padded current rows do not count.
  total3, n3, _ = task.contrastive_ce(sim, theta, jnp.array([True, False]), mask_p, 0.1, 0.5)
  assert int(n3) == 1 and abs(float(total3) - r0) < 1e-5


def test_prepare_video_matches_detections_to_ground_truth():
  gt = Objects.from_arrays([0, 0, 1], [7, 9, 9], [[0, 0, 10, 10], [50, 0, 10, 20], [52, 0, 10, 20]],
                           label=[1, 2, 2])
  cfg = D.DVectorConfig("boxes", num_classes=3)
  dets = Objects.from_arrays([0, 0, 0, 1], [-1] * 4,
                             [[51, 1, 10, 20], [1, 0, 10, 10], [30, 30, 5, 5], [52, 1, 10, 18]],
                             score=[0.9, 0.8, 0.4, 0.7], label=[2, 1, 0, 2])
  enc = D.encode_video(dets, 3, (100, 50), cfg)
  v = task.prepare_video(enc, gt, (100, 50), num_classes=3, max_dets=4)
  assert v.x.shape == (3, 4, 3 + 4)
  np.testing.assert_array_equal(v.mask, [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(v.gid[0], [9, 7, -1, -1])        # sorted by score
  np.testing.assert_array_equal(v.label[0], [2, 1, 3, -1])       # false positive: background 3
  np.testing.assert_array_equal(v.gid[1, :1], [9])
  np.testing.assert_allclose(v.gbox[0, 1], [0.05, 0.1, 0.1, 0.2])  # gt 7: centre (5, 5), 10 x 10


def test_window_sampler_is_deterministic():
  rng = np.random.default_rng(0)
  vids = [task.VideoArrays(rng.normal(size=(10, 3, 5)).astype(np.float32), np.ones((10, 3), bool),
                           np.zeros((10, 3), np.int32), np.zeros((10, 3), np.int32),
                           np.zeros((10, 3, 4), np.float32)) for _ in range(3)]
  s = task.WindowSampler(vids, window=4, batch=6, seed=1)
  a, b, c = s.batch(5), s.batch(5), s.batch(6)
  assert a.x.shape == (4, 6, 3, 5) and a.mask.shape == (4, 6, 3)
  np.testing.assert_array_equal(a.x, b.x)
  assert not np.array_equal(a.x, c.x)


def test_smoke_training_resumes_exactly(tmp_path):
  from experiments import association_lstm as exp_lib
  from rolo_jax.mot import association_tracker as at

  exp = exp_lib.CONFIGS["smoke_boxes"].replace(steps=4, checkpoint_every=2)
  quiet = lambda *a, **k: None
  full, cfg, dvec, s_full = exp_lib.train(exp, str(tmp_path / "a"), progress=False, log=quiet)
  assert s_full["steps"] == 4
  part, *_ = exp_lib.train(exp, str(tmp_path / "b"), progress=False, stop_after=2, log=quiet)
  rest, _, _, s_rest = exp_lib.train(exp, str(tmp_path / "b"), progress=False, log=quiet)
  assert s_rest["resumed_from"] == 2 and s_rest["steps"] == 4
  for x, y in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(rest)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert any(not np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(part)))
  # The workdir is a tracker checkpoint.
  tr = at.from_checkpoint(str(tmp_path / "b"), frame_size=(160, 128))
  b, i = tr.update((np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([0.9])))
  assert i.tolist() == [1]
