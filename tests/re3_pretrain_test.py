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


def test_response_cells_look_where_the_labels_say():
  # With 1×1 kernels after conv1 (SAME padding then changes nothing) and no normalisation, the
  # trunk is exactly shift-equivariant in steps of the total stride: an exemplar cut out of a search
  # crop at (16 i, 16 j) has the conv5 map of the search map's cells (i..i+3, j..j+3), so response
  # cell (i, j) compares the exemplar with the search crop's window whose centre is
  # (E/2 + 16 j, E/2 + 16 i) -- the point `labels` gives cell (i, j).
  cfg = re3.CONFIGS["tiny"].replace(conv_kernels=(11, 1, 1, 1, 1), norm="none")
  g = P.geometry(cfg, 3)
  params = re3.init(jax.random.PRNGKey(0), cfg)
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, g.search, g.search, 3), minval=-100, maxval=100)
  fx, _ = re3.conv_maps(params, x, cfg=cfg)
  assert fx.shape[1:3] == (10, 10)
  for i, j in ((0, 0), (3, 3), (6, 2), (1, 5)):
    z = x[:, 16 * i:16 * i + g.exemplar, 16 * j:16 * j + g.exemplar]
    fz, _ = re3.conv_maps(params, z, cfg=cfg)
    np.testing.assert_allclose(np.asarray(fz[0]), np.asarray(fx[0, i:i + 4, j:j + 4]), rtol=1e-5, atol=1e-5)
    assert g.centres[j] == 16 * j + g.exemplar / 2 and g.centres[i] == 16 * i + g.exemplar / 2
    # ... and `labels` makes that cell positive for a target centred in that window.
    lab, _ = P.labels(jnp.array([[16 * j + g.exemplar / 2, 16 * i + g.exemplar / 2]]), g, 0.5)
    assert np.argwhere(np.asarray(lab[0])).tolist() == [[i, j]]


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
  # One lock with the Re3Sampler: they share its frame cache, and the pretraining's last prefetched
  # batch can still be running when the curriculum draws its first.
  assert pairs._lock is sampler._lock


def test_an_asymmetric_target_is_not_flipped_or_shifted():
  # The target's left half dark grey, right half white: in an unmirrored pair the bright half is on
  # the right in both crops, in a mirrored one on the left in both, and the label moves with it.
  frames = np.zeros((4, 120, 160, 3), np.uint8)
  boxes = []
  for t in range(4):
    x, y = 50 + 2 * t, 40
    frames[t, y:y + 30, x:x + 12] = 80
    frames[t, y:y + 30, x + 12:x + 24] = 255
    boxes.append((x, y, 24, 30))
  seq = Sequence("halves", ArrayFrames(frames), np.array(boxes, np.float64))
  cfg = re3.CONFIGS["tiny"]
  for p_mirror, bright_right in ((0.0, True), (1.0, False)):
    sampler = re3_data.Re3Sampler([seq], seed=0, p_mirror=p_mirror)
    b = P.PairSampler(sampler, cfg, P.PretrainConfig(batch=6, max_gap=3), seed=1).batch(0)
    for k in range(6):
      for img, centre in ((b.exemplars[k], (41.5, 41.5)), (b.searches[k], tuple(b.target[k]))):
        cx, cy = centre
        row = img[int(cy), :, 0].astype(int)
        left, right = row[int(cx) - 10], row[int(cx) + 10]
        assert (right > left) == bright_right, (p_mirror, k)
        # the bright half ends 41.5 / 2 px right (or left) of the centre, to a pixel
        edge = np.flatnonzero(row > 200)
        end = edge.max() + 1 if bright_right else edge.min()
        assert abs(end - (cx + 20.75 if bright_right else cx - 20.75)) <= 1.0, (p_mirror, k, end, cx)


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
  # The pretraining changed the encoder it started from (the loop's init key for seed 1) ...
  start = P.init_params(jax.random.split(jax.random.PRNGKey(1))[0], SMALL, pc)
  for name in P.CONVS:
    assert not np.allclose(np.asarray(enc[name]["w"]), np.asarray(start[name]["w"])), name
  # ... and a fresh Re3 state carries it (the rest re3.init's).
  init = re3.init(jax.random.PRNGKey(5), SMALL)
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

  # Stopped before the curriculum's first update: the state it starts from has the pretrained
  # conv1-conv5 (read back from the pretraining's own checkpoint).
  st0, s = run(stop_after=0)
  assert s["pretrain"]["steps"] == 2 and s["steps"] == 0
  assert lines[-1].startswith("encoder pretraining: 2 steps"), lines
  assert ck.latest_step(str(tmp_path / "w" / "pretrain")) == 2
  pre, pre_summary = P.train(workdir=str(tmp_path / "w" / "pretrain"), model_cfg=SMALL,
                             sampler=re3_data.Re3Sampler(pool, seed=0),
                             cfg=P.PretrainConfig(steps=2, batch=2), progress=False)
  assert pre_summary["steps_this_run"] == 0
  enc = P.encoder_params(pre)
  for name in P.CONVS:
    for k in ("w", "b"):
      np.testing.assert_array_equal(np.asarray(st0.params[name][k]), np.asarray(enc[name][k]))
  # Run again before any curriculum checkpoint: the finished pretraining is reused, not redone.
  _, s = run(stop_after=2)
  assert s["pretrain"]["steps_this_run"] == 0 and "reusing the finished 2 steps" in lines[-1], lines
  c = ck.Checkpointer(str(tmp_path / "w"))
  assert c.read_json(c.latest_step())["meta"]["optimizer"]["encoder_pretrain_steps"] == 2
  c.close()
  # A curriculum checkpoint exists now: the resume does not pretrain at all.
  _, s = run()
  assert s["pretrain"] is None and s["steps"] == 4 and s["resumed_from"] == 2
  # ... but it still must be the pretraining asked for: another batch, seed or set of tracks is
  # refused (read from <workdir>/pretrain); here the curriculum has finished, an unfinished
  # one takes the same path.
  from rolo_jax.errors import ConfigMismatchError

  def resume(batch=2, seed=0, tracks=pool):
    re3_task.train(workdir=str(tmp_path / "w"), model_cfg=SMALL, curriculum=curriculum,
                   sampler=re3_data.Re3Sampler(tracks, seed=0), total_steps=4, checkpoint_every=2,
                   progress=False, seed=seed, pretrain=P.PretrainConfig(steps=2, batch=batch))

  for kw, message in (({"batch": 3}, "batch: 2 -> 3"), ({"seed": 4}, "seed: 0 -> 4")):
    with pytest.raises(ConfigMismatchError, match=message) as e:
      resume(**kw)
    # (the seed differs for the curriculum too: one error names both checkpoints)
    assert str(tmp_path / "w" / "pretrain") + ":" in str(e.value), str(e.value)
    assert (str(e.value).startswith(str(tmp_path / "w") + ":")) == ("seed" in kw), str(e.value)
  with pytest.raises(ConfigMismatchError, match="pretrain: .* different 'data'"):
    resume(tracks=pool[:2])


def test_an_interrupted_pretraining_does_not_continue_on_other_tracks(tmp_path):
  from rolo_jax.data import synthetic
  from rolo_jax.errors import ConfigMismatchError
  pool = list(synthetic.make_split("train", 4, synthetic.PRESETS["train"]))
  pc = P.PretrainConfig(steps=4, batch=2)
  P.train(workdir=str(tmp_path / "p"), model_cfg=SMALL, sampler=re3_data.Re3Sampler(pool[:3], seed=0),
          cfg=pc, checkpoint_every=2, progress=False, stop_after=2, data={"data": "synthetic"})
  with pytest.raises(ConfigMismatchError, match="different 'data'"):
    P.train(workdir=str(tmp_path / "p"), model_cfg=SMALL, sampler=re3_data.Re3Sampler(pool, seed=0),
            cfg=pc, checkpoint_every=2, progress=False, data={"data": "synthetic"})
