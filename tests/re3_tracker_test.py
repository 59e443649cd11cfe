"""The online Re3 tracker: batching over targets, the 32-frame reset, box decoding and sanitising
(with output layers whose prediction is known by hand), checkpoint loading and the CLI end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rolo_jax import trackers  # (first: rolo_jax picks the JAX platform before jax is imported)
from rolo_jax.data import crops
from rolo_jax.errors import DataError
from rolo_jax.models import re3
from rolo_jax.trackers import re3 as re3_tracker
from rolo_jax.trackers.base import CoreTracker
from rolo_jax.train.checkpoint import save_params

import jax
import jax.numpy as jnp

CFG = re3.CONFIGS["tiny"]
H, W = 72, 96
BOXES = np.array([[10.0, 12.0, 20.0, 16.0], [50.0, 30.0, 14.0, 22.0], [70.0, 50.0, 18.0, 12.0]])


def video(T=36, seed=0):
  """Noise frames with a slowly drifting pattern (so consecutive frames are related)."""
  rng = np.random.default_rng(seed)
  big = rng.integers(0, 256, (H + T, W + T, 3), dtype=np.uint8)
  return np.stack([big[t // 2:t // 2 + H, t:t + W] for t in range(T)])


@pytest.fixture(scope="module")
def params():
  """Random tiny params whose box output is the "keep the box" prediction plus the network term,
  so boxes move differently per target and frame without collapsing to the clamps. fc6 is scaled
  to O(1) outputs (raw-pixel inputs give O(25) at init) so the LSTM gates are not saturated."""
  p = re3.init(jax.random.PRNGKey(0), CFG)
  p["fc6"] = {"w": p["fc6"]["w"] * 0.04, "b": p["fc6"]["b"]}
  p["fc_out"] = {"w": p["fc_out"]["w"], "b": jnp.array([2.5, 2.5, 7.5, 7.5])}
  return p


def with_output(params, bias):
  """params whose output is exactly `bias` (fc_out.w = 0): a hand-known prediction every frame."""
  p = dict(params)
  p["fc_out"] = {"w": jnp.zeros_like(params["fc_out"]["w"]), "b": jnp.asarray(bias, jnp.float32)}
  return p


def track(params, frames, boxes, **kw):
  t = CoreTracker(re3_tracker.Re3Core(params, CFG, **kw))
  t.init(frames[0], boxes)
  return np.stack([np.asarray(boxes, np.float64)] + [t.update(f) for f in frames[1:]])


def _slice(st, k):
  """Target k of a batched tracker state, as a K = 1 state."""
  take = lambda tree: jax.tree_util.tree_map(lambda a: a[k:k + 1], tree)
  return st._replace(lstm=take(st.lstm), saved=take(st.saved), boxes=st.boxes[k:k + 1])


def test_k_targets_batched_step_equals_single_steps(params):
  """At every frame (resets included: every 4 updates here) one batched step for K = 3 targets gives
  what three K = 1 steps give from the same per-target states (to float32 rounding: batch sizes 3
  and 1 sum in different orders)."""
  frames = video(10)
  core = re3_tracker.Re3Core(params, CFG, reset_every=4)
  st = core.init_state(frames[0], BOXES)
  for k in range(3):
    alone = core.init_state(frames[0], BOXES[k:k + 1])
    for a, b in zip(jax.tree_util.tree_leaves(alone.lstm), jax.tree_util.tree_leaves(_slice(st, k).lstm)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  for t in range(1, 10):
    singles = [core.step(_slice(st, k), frames[t]) for k in range(3)]
    st, boxes = core.step(st, frames[t])
    assert st.count == t
    for k, (st_k, box_k) in enumerate(singles):
      np.testing.assert_allclose(np.asarray(boxes)[k], np.asarray(box_k)[0], atol=1e-3)
      for a, b in zip(jax.tree_util.tree_leaves(st_k.lstm), jax.tree_util.tree_leaves(_slice(st, k).lstm)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # The boxes really moved (the comparison is not between constant boxes).
  assert np.abs(np.asarray(boxes) - BOXES).max() > 1.0
  # ... and the two sides ran with different weight layouts: [out, in] for one target, [in, out]
  # for three (Re3Core.params_for), so this also checks that the layouts agree.
  assert "w_t" in core.params_for(1)["fc6"] and "w" in core.params_for(3)["fc6"]
  assert core.params_for(1) is core.params_for(1)   # made once


def test_multi_tracker_equals_single_trackers(params):
  """The object interfaces: [K, 4] in, [K, 4] out, equal to K single-target trackers. Over a few frames
  only: the tracking loop feeds boxes back into the crops, so float32 rounding differences between a
  batch of 3 and a batch of 1 grow over long runs (the per-step test above covers every frame)."""
  frames = video(5)
  together = track(params, frames, BOXES)
  assert together.shape == (5, 3, 4)
  for k in range(3):
    alone = track(params, frames, BOXES[k])
    assert alone.shape == (5, 4)
    np.testing.assert_allclose(together[:, k], alone, rtol=0, atol=1e-3)


def test_reset_every_32_updates(params):
  frames = video(36)
  core = re3_tracker.Re3Core(params, CFG)
  free = re3_tracker.Re3Core(params, CFG, reset_every=0)
  st, st_free = core.init_state(frames[0], BOXES), free.init_state(frames[0], BOXES)

  def pair(prev, cur, boxes_xyxy):
    win = crops.context_window(jnp.asarray(boxes_xyxy, jnp.float32), 2.0)
    cut = lambda f: jnp.stack([crops.crop(f, w, CFG.crop_size) for w in win])
    return re3.preprocess(jnp.stack([cut(prev), cut(cur)], axis=1))

  # Saved state = one pass on (frame 0, frame 0) at the given boxes from the zero state.
  xyxy0 = np.concatenate([BOXES[:, :2], BOXES[:, :2] + BOXES[:, 2:]], axis=1)
  step = jax.jit(lambda p, s, x: re3.step(p, s, x, cfg=CFG))
  first, _ = step(params, re3.initial_state(CFG, 3), pair(frames[0], frames[0], xyxy0))
  for a, b in zip(jax.tree_util.tree_leaves(st.saved), jax.tree_util.tree_leaves(first)):
    np.testing.assert_allclose(a, b, atol=1e-5)

  for t in range(1, 34):
    if t == 1:  # frame 1 by the spec: crops (frame 0, frame 1) at the given boxes, decoded in the window
      s1, (out1, _) = step(params, st.lstm, pair(frames[0], frames[1], xyxy0))
      win = crops.context_window(xyxy0, 2.0)
      b1 = crops.from_crop(np.asarray(out1, np.float64) / 10.0, win)
      b1 = np.concatenate([b1[:, :2], b1[:, 2:] - b1[:, :2]], axis=1)
    st, boxes = core.step(st, frames[t])
    st_free, boxes_free = free.step(st_free, frames[t])
    if t == 1:
      np.testing.assert_allclose(boxes, b1, atol=1e-3)
      np.testing.assert_allclose(st.lstm.lstm2.c, s1.lstm2.c, rtol=1e-4, atol=1e-5)
    if t <= 32:  # the reset comes after frame 32's box: identical boxes up to there
      np.testing.assert_allclose(boxes, boxes_free, atol=1e-4)
    if t == 32:
      expect, _ = step(params, st.saved, pair(frames[32], frames[32], st.boxes))
      for a, b in zip(jax.tree_util.tree_leaves(st.lstm), jax.tree_util.tree_leaves(expect)):
        np.testing.assert_allclose(a, b, atol=1e-5)
      assert not np.allclose(st.lstm.lstm2.c, st_free.lstm.lstm2.c, atol=1e-3)
  # After the reset the two runs diverge.
  assert np.abs(np.asarray(boxes) - np.asarray(boxes_free)).max() > 1e-3


def test_keep_box_prediction_is_a_fixed_point(params):
  """Output (2.5, 2.5, 7.5, 7.5)/10 of a window twice the box about its centre is the box itself."""
  out = track(with_output(params, [2.5, 2.5, 7.5, 7.5]), video(35), BOXES)
  np.testing.assert_allclose(out, np.broadcast_to(BOXES, out.shape), atol=1e-3)


def test_box_moving_out_of_the_frame_is_clamped(params):
  """Output (7.5, 2.5, 12.5, 7.5): the box moves right by its own width each frame until its centre
  reaches the right edge plus half a box (W + w/2), where it stays."""
  out = track(with_output(params, [7.5, 2.5, 12.5, 7.5]), video(12), BOXES)
  x0, w = BOXES[:, 0], BOXES[:, 2]
  for t in range(12):
    cx = np.minimum(x0 + 0.5 * w + t * w, W + 0.5 * w)
    np.testing.assert_allclose(out[t, :, 0] + 0.5 * out[t, :, 2], cx, atol=1e-3)
  np.testing.assert_allclose(out[:, :, 1:], np.broadcast_to(BOXES[:, 1:], out[:, :, 1:].shape), atol=1e-3)
  assert np.all(np.isfinite(out))


def test_growing_and_vanishing_boxes_are_clamped(params):
  # (0, 0, 10, 10): the prediction is the whole window, twice the box: sizes double up to 2x the frame.
  out = track(with_output(params, [0.0, 0.0, 10.0, 10.0]), video(8), BOXES)
  for t in range(8):
    np.testing.assert_allclose(out[t, :, 2], np.minimum(BOXES[:, 2] * 2.0 ** t, 2 * W), rtol=1e-5)
    np.testing.assert_allclose(out[t, :, 3], np.minimum(BOXES[:, 3] * 2.0 ** t, 2 * H), rtol=1e-5)
  np.testing.assert_allclose(out[..., :2] + out[..., 2:] / 2, np.broadcast_to(
      BOXES[:, :2] + BOXES[:, 2:] / 2, out[..., :2].shape), atol=1e-3)
  # (5, 5, 5, 5): a point at the window centre: 2 x 2 px boxes at the same centre.
  out = track(with_output(params, [5.0, 5.0, 5.0, 5.0]), video(5), BOXES)
  np.testing.assert_allclose(out[1:, :, 2:], 2.0, atol=1e-5)
  np.testing.assert_allclose(out[1:, :, :2] + 1.0, np.broadcast_to(
      BOXES[:, :2] + BOXES[:, 2:] / 2, out[1:, :, :2].shape), atol=1e-3)


def test_non_finite_prediction_keeps_previous_box(params):
  out = track(with_output(params, [np.nan, 2.5, 7.5, np.inf]), video(5), BOXES)
  np.testing.assert_allclose(out, np.broadcast_to(BOXES, out.shape), atol=1e-4)


def test_random_params_targets_leaving_and_tiny_boxes_stay_finite():
  p = re3.init(jax.random.PRNGKey(3), CFG)
  p["fc_out"] = {"w": p["fc_out"]["w"] * 30.0, "b": p["fc_out"]["b"]}   # wild predictions
  boxes = np.array([[-15.0, 5.0, 20.0, 20.0], [90.0, 65.0, 30.0, 30.0], [40.0, 30.0, 0.5, 0.5]])
  out = track(p, video(34), boxes)
  assert np.all(np.isfinite(out))
  assert np.all(out[1:, :, 2:] >= 2.0 - 1e-4)
  assert np.all(out[1:, :, 2] <= 2 * W + 1e-3) and np.all(out[1:, :, 3] <= 2 * H + 1e-3)
  cx, cy = out[1:, :, 0] + out[1:, :, 2] / 2, out[1:, :, 1] + out[1:, :, 3] / 2
  assert np.all((cx >= -out[1:, :, 2] / 2 - 1e-3) & (cx <= W + out[1:, :, 2] / 2 + 1e-3))
  assert np.all((cy >= -out[1:, :, 3] / 2 - 1e-3) & (cy <= H + out[1:, :, 3] / 2 + 1e-3))


def test_zero_targets(params):
  t = CoreTracker(re3_tracker.Re3Core(params, CFG))
  frames = video(3)
  t.init(frames[0], np.zeros((0, 4)))
  assert t.update(frames[1]).shape == (0, 4)


# --------------------------------------------------------------------------------------------------
# Registry and checkpoints


def test_needs_checkpoint():
  with pytest.raises(ValueError, match="needs --checkpoint"):
    trackers.make_tracker("re3")


def test_checkpoint_with_config_name(tmp_path, params):
  save_params(tmp_path / "ck", params, {"model": "re3", "config": "tiny"})
  t = trackers.make_tracker("re3", checkpoint=str(tmp_path / "ck"))
  assert isinstance(t, CoreTracker) and t.name == "re3"
  assert trackers.make_multi_tracker("re3", checkpoint=str(tmp_path / "ck")).name == "re3"
  frames = video(4)
  np.testing.assert_allclose(track(params, frames, BOXES[0])[-1],
                             _run(t, frames, BOXES[0])[-1], atol=1e-4)


def _run(t, frames, box):
  t.init(frames[0], box)
  return np.stack([box] + [t.update(f) for f in frames[1:]])


def test_checkpoint_errors(tmp_path, params):
  save_params(tmp_path / "rolo", params, {"model": "rolo", "config": "tiny"})
  with pytest.raises(DataError, match="'rolo' model, not 're3'"):
    trackers.make_tracker("re3", checkpoint=str(tmp_path / "rolo"))
  save_params(tmp_path / "mismatch", params, {"model": "re3", "config": "paper"})
  with pytest.raises(DataError, match="do not match re3 config 'paper'"):
    trackers.make_tracker("re3", checkpoint=str(tmp_path / "mismatch"))


# --------------------------------------------------------------------------------------------------
# End to end: published-layout .pth -> convert -> python -m rolo_jax.track


CAFFE = re3.Re3Config(name="e2e", crop_size=67, conv_channels=(8, 16, 16, 16, 16), skip_channels=(4, 4, 4),
                      fc6_units=32, lstm_hidden=16, cell="caffe")


def to_published(p):
  """rolo_jax params -> the authors' PyTorch state_dict names and layouts (OIHW, [out, in])."""
  sd = {}
  hwio = lambda w: np.asarray(w).transpose(3, 2, 0, 1)
  for n in range(5):
    sd[f"conv.{n}.weight"], sd[f"conv.{n}.bias"] = hwio(p[f"conv{n + 1}"]["w"]), p[f"conv{n + 1}"]["b"]
  for j, name in enumerate(("skip1", "skip2", "skip5")):
    sd[f"conv_skip.{j}.weight"], sd[f"conv_skip.{j}.bias"] = hwio(p[name]["w"]), p[name]["b"]
    sd[f"prelu_skip.{j}.weight"] = p[name]["prelu"]
  sd["fc6.weight"], sd["fc6.bias"] = np.asarray(p["fc6"]["w"]).T, p["fc6"]["b"]
  for layer in ("lstm1", "lstm2"):
    for g, v in p[layer].items():
      sd[f"{layer}.{g}.weight"], sd[f"{layer}.{g}.bias"] = np.asarray(v["w"]).T, v["b"]
  sd["fc_output_out.weight"], sd["fc_output_out.bias"] = np.asarray(p["fc_out"]["w"]).T, p["fc_out"]["b"]
  return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def test_convert_then_track_cli(tmp_path):
  from PIL import Image

  from rolo_jax import convert
  from rolo_jax.io import pth

  p = re3.init(jax.random.PRNGKey(5), CAFFE)
  p["fc_out"] = {"w": p["fc_out"]["w"], "b": jnp.array([2.5, 2.5, 7.5, 7.5])}
  pth_file = tmp_path / "re3.pth"
  pth.save_state_dict(pth_file, to_published(p))
  cfg_file = tmp_path / "e2e.json"
  cfg_file.write_text(json.dumps({"name": "e2e", "crop_size": 67, "conv_channels": [8, 16, 16, 16, 16],
                                  "skip_channels": [4, 4, 4], "fc6_units": 32, "lstm_hidden": 16}))
  ckpt = tmp_path / "ckpt"
  assert convert.main(["re3", "--config", str(cfg_file), "--pth", str(pth_file), "--out", str(ckpt)]) == 0

  frames = video(12)
  folder = tmp_path / "frames"
  folder.mkdir()
  for t, f in enumerate(frames):
    Image.fromarray(f).save(folder / f"{t + 1}.png")
  out = tmp_path / "boxes.txt"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  res = subprocess.run([sys.executable, "-m", "rolo_jax.track", "--frames", str(folder),
                        "--init", "10,12,20,16", "--tracker", "re3", "--checkpoint", str(ckpt),
                        "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr
  got = np.loadtxt(out, delimiter=",")
  assert got.shape == (12, 4)
  # The same tracking in-process from the original (unconverted) params.
  t = CoreTracker(re3_tracker.Re3Core(p, CAFFE))
  expect = _run(t, frames, np.array([10.0, 12.0, 20.0, 16.0]))
  np.testing.assert_allclose(got, expect, atol=2e-3)
  assert np.abs(expect[-1] - expect[0]).max() > 0.5


def test_track_cli_without_checkpoint(tmp_path, capsys):
  from PIL import Image

  from rolo_jax import track
  folder = tmp_path / "frames"
  folder.mkdir()
  for t, f in enumerate(video(2)):
    Image.fromarray(f).save(folder / f"{t}.png")
  with pytest.raises(SystemExit) as e:
    track.main(["--frames", str(folder), "--init", "1,1,5,5", "--tracker", "re3", "--out",
                str(tmp_path / "o.txt")])
  assert e.value.code == 2
  assert "needs --checkpoint" in capsys.readouterr().err
