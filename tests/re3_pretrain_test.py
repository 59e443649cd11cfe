"""The Re3 encoder's Siamese pretraining (rolo_jax.train.re3_pretrain): geometry, crops, labels,
correlation, determinism, resume, and how a Re3 run starts from it."""
import numpy as np
import pytest

import rolo_jax  # noqa: F401
import jax
import jax.numpy as jnp

from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.models import re3
from rolo_jax.train import checkpoint as ck
from rolo_jax.train import optim, re3_data, re3_pretrain as P, re3_task

SMALL = re3.CONFIGS["tiny"].replace(name="tiny-pretrain-test", conv_channels=(8, 16, 16, 16, 16),
                                    skip_channels=(4, 4, 4), fc6_units=32, lstm_hidden=16)


def test_geometry_of_tiny_and_paper_and_a_config_it_cannot_serve():
  g = P.geometry(re3.CONFIGS["tiny"], 3)
  # 83 + 2·3·16 = 179 px; conv5 is 4×4 on the exemplar and 10×10 on the search crop: 7×7 cells,
  # the middle one looking at the search crop's centre.
  assert (g.exemplar, g.search, g.stride) == (83, 179, 16)
  np.testing.assert_allclose(g.centres, [41.5, 57.5, 73.5, 89.5, 105.5, 121.5, 137.5])
  assert re3.layer_shapes(re3.CONFIGS["tiny"].replace(crop_size=179))["conv5"][0] == 10
  g = P.geometry(re3.CONFIGS["paper"], 2)
  assert (g.exemplar, g.search, g.stride) == (227, 291, 16) and g.centres[2] == 291 / 2
  with pytest.raises(ValueError, match="stride 1"):
    P.geometry(re3.CONFIGS["paper"].replace(conv_strides=(4, 2, 1, 1, 1)), 3)
  with pytest.raises(ValueError, match="cells"):
    P.geometry(re3.CONFIGS["tiny"], 0)


def test_xcorr_equals_the_direct_sum():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(2, 3, 2, 5)).astype(np.float32)
  x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
  want = np.zeros((2, 4, 6), np.float64)
  for b in range(2):
    for i in range(4):
      for j in range(6):
        want[b, i, j] = np.sum(z[b] * x[b, i:i + 3, j:j + 2])
  np.testing.assert_allclose(np.asarray(P.xcorr(jnp.asarray(z), jnp.asarray(x))), want, rtol=1e-5, atol=1e-5)


def test_labels_by_hand():
  g = P.geometry(re3.CONFIGS["tiny"], 3)
  # Target on the middle cell: it and its four neighbours (16 px away) are within one stride.
  lab, w = P.labels(jnp.array([[89.5, 89.5], [41.5 + 3.0, 137.5]]), g, 1.0)
  lab, w = np.asarray(lab), np.asarray(w)
  want = np.zeros((7, 7))
  want[3, 3] = want[2, 3] = want[4, 3] = want[3, 2] = want[3, 4] = 1
  np.testing.assert_array_equal(lab[0], want)
  np.testing.assert_allclose(w[0][want > 0], 0.5 / 5)
  np.testing.assert_allclose(w[0][want == 0], 0.5 / 44)
  # Second: 3 px right of the bottom-left cell (row 6, column 0): it and column 1 (13 px) and
  # row 5 (hypot(3, 16) = 16.3 > 16: no).
  want = np.zeros((7, 7))
  want[6, 0] = want[6, 1] = 1
  np.testing.assert_array_equal(lab[1], want)
  assert abs(w[1].sum() - 1.0) < 1e-6


def _painted_track(n=12, seed=0):
  """Black frames with the target a white box moving right and growing, and nothing else."""
  rng = np.random.default_rng(seed)
  frames = np.zeros((n, 120, 160, 3), np.uint8)
  boxes = []
  for t in range(n):
    x, y, w, h = 40 + 3 * t + rng.uniform(0, 1), 30 + rng.uniform(0, 1), 20 + t, 30 + 0.5 * t
    frames[t, int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = 255
    boxes.append((x, y, w, h))
  return Sequence("painted", ArrayFrames(frames), np.array(boxes))


def _centroid(img):
  m = img[..., 0].astype(np.float64)
  ys, xs = np.mgrid[:m.shape[0], :m.shape[1]]
  return np.array([(xs * m).sum() / m.sum() + 0.5, (ys * m).sum() / m.sum() + 0.5])


def test_pairs_put_the_target_where_the_label_says():
  # The exemplar holds the target in its middle half; the search crop holds it at the label's
  # centre, at the same scale per box size (Re3's 2x window = E pixels); mirrored pairs too.
  cfg = re3.CONFIGS["tiny"]
  sampler = re3_data.Re3Sampler([_painted_track()], seed=0, p_mirror=0.5)
  pc = P.PretrainConfig(batch=16, max_gap=5)
  pairs = P.PairSampler(sampler, cfg, pc, seed=3)
  b = pairs.batch(7)
  assert b.exemplars.shape == (16, 83, 83, 3) and b.searches.shape == (16, 179, 179, 3)
  assert b.exemplars.dtype == np.uint8 and b.target.dtype == np.float32
  for k in range(16):
    np.testing.assert_allclose(_centroid(b.exemplars[k]), [41.5, 41.5], atol=1.0)
    np.testing.assert_allclose(_centroid(b.searches[k]), b.target[k], atol=1.0)
    # the target spans half of an E-pixel window in each direction: ~41.5 px wide in both crops
    cols = np.flatnonzero(b.searches[k][..., 0].max(axis=0) > 127)
    assert abs(len(cols) - 41.5) <= 2
  assert np.all(np.abs(b.target - 89.5) <= 48 + 1e-4)
  # Deterministic in (seed, position); another position, another batch.
  again = pairs.batch(7)
  for u, v in zip(b, again):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(pairs.batch(8).target, b.target)


def test_pretraining_resumes_to_the_same_encoder_and_a_fresh_re3_run_starts_from_it(tmp_path):
  from rolo_jax.data import synthetic
  pool = list(synthetic.make_split("train", 3, synthetic.PRESETS["train"]))
  pc = P.PretrainConfig(steps=4, batch=2)

  def run(workdir, stop_after=None):
    sampler = re3_data.Re3Sampler(pool, seed=1)
    return P.train(workdir=str(workdir), model_cfg=SMALL, sampler=sampler, cfg=pc, seed=1,
                   checkpoint_every=2, progress=False, stop_after=stop_after)

  full, summary = run(tmp_path / "full")
  assert summary["steps"] == 4 and np.isfinite(summary["last"]["loss"])
  first, s1 = run(tmp_path / "cut", stop_after=2)
  assert s1["steps"] == 2
  resumed, s2 = run(tmp_path / "cut")
  assert s2["resumed_from"] == 2 and s2["steps"] == 4
  for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  enc = P.encoder_params(full)
  assert sorted(enc) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
  # The pretraining changed the encoder, and a fresh Re3 state carries it (the rest re3.init's).
  init = re3.init(jax.random.PRNGKey(5), SMALL)
  assert not np.allclose(np.asarray(enc["conv3"]["w"]), np.asarray(init["conv3"]["w"]))
  opt = optim.make_optimizer(1e-3)
  st = re3_task.init_train_state(jax.random.PRNGKey(5), SMALL, opt, encoder=enc)
  for name in P.CONVS:
    for k in ("w", "b"):
      np.testing.assert_array_equal(np.asarray(st.params[name][k]), np.asarray(enc[name][k]))
  np.testing.assert_array_equal(np.asarray(st.params["fc6"]["w"]), np.asarray(init["fc6"]["w"]))
  with pytest.raises(ValueError, match=r"encoder conv1\.b has shape \(8,\), the model \(4,\)"):
    re3_task.init_train_state(jax.random.PRNGKey(5), SMALL.replace(conv_channels=(4, 16, 16, 16, 16)),
                              opt, encoder=enc)


def test_re3_train_pretrains_a_fresh_run_only(tmp_path):
  # A fresh run pretrains in <workdir>/pretrain and records the steps with the optimiser's
  # settings; its resume does not pretrain again.
  from rolo_jax.data import synthetic
  from rolo_jax.train import curriculum as cur
  pool = list(synthetic.make_split("train", 3, synthetic.PRESETS["train"]))
  curriculum = cur.CurriculumConfig(stages=((2, 2),), stage_steps=())
  lines = []

  def run(stop_after=None):
    sampler = re3_data.Re3Sampler(pool, seed=0)
    return re3_task.train(workdir=str(tmp_path / "w"), model_cfg=SMALL, curriculum=curriculum,
                          sampler=sampler, total_steps=4, checkpoint_every=2, progress=False,
                          stop_after=stop_after, pretrain=P.PretrainConfig(steps=2, batch=2),
                          log=lines.append)

  _, s = run(stop_after=2)
  assert s["pretrain"]["steps"] == 2 and any(l.startswith("encoder pretraining: 2 steps") for l in lines)
  assert ck.Checkpointer(str(tmp_path / "w" / "pretrain")).latest_step() == 2
  c = ck.Checkpointer(str(tmp_path / "w"))
  assert c.read_json(c.latest_step())["meta"]["optimizer"]["encoder_pretrain_steps"] == 2
  _, s = run()
  assert s["pretrain"] is None and s["steps"] == 4 and s["resumed_from"] == 2
