"""ROLO tracking module: parameter counts, faithful read-out units, last-frame targets (not the
authors' off-by-one), carried state, losses by hand, heatmap masks."""
import rolo_jax  # noqa: F401

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax import summary
from rolo_jax.cells import lstm
from rolo_jax.models import rolo

PAPER = rolo.CONFIGS["paper"]
HEAT = rolo.CONFIGS["heatmap"]
SMALL = rolo.RoloConfig(name="small", window=3, feature_dim=4)   # D = H = 10


def abstract_params(cfg):
  return jax.eval_shape(lambda k: rolo.init(k, cfg), jax.random.PRNGKey(0))


# ---------------------------------------------------------------- sizes (no allocation)

def test_parameter_counts_by_hand():
  # plain LSTM: W [D + H, 4H] and b [4H] -> 4H(D + H + 1)
  assert rolo.count_params(abstract_params(PAPER)) == 4 * 4102 * (4102 + 4102 + 1) == 134_627_640
  assert rolo.count_params(abstract_params(HEAT)) == 4 * 5120 * (5120 + 5120 + 1) == 209_735_680
  out = rolo.CONFIGS["output_layer"]
  assert rolo.count_params(abstract_params(out)) == 4 * 512 * (4102 + 512 + 1) + 512 * 4 + 4
  table = {n: s for n, s, _ in rolo.param_table(abstract_params(PAPER))}
  assert table == {"lstm/w": (8204, 16408), "lstm/b": (16408,)}
  assert (PAPER.input_dim, PAPER.lstm_hidden, PAPER.window) == (4102, 4102, 6)
  assert (HEAT.input_dim, HEAT.lstm_hidden, HEAT.window, HEAT.out_dim) == (5120, 5120, 3, 1024)


def test_summary_cli_rolo(capsys):
  assert summary.main(["rolo", "--config", "paper"]) == 0
  assert capsys.readouterr().out.rstrip().split("\n")[-1] == "total_params=134627640"


def test_paper_shapes():
  pred, aux = jax.eval_shape(lambda p, w: rolo.apply(p, w, cfg=PAPER), abstract_params(PAPER),
                             jax.ShapeDtypeStruct((2, 6, 4102), jnp.float32))
  assert pred.shape == (2, 4) and aux["hidden"].shape == (2, 6, 4102) and aux["steps"].shape == (2, 6, 4)
  pred, _ = jax.eval_shape(lambda p, w: rolo.apply(p, w, cfg=HEAT), abstract_params(HEAT),
                           jax.ShapeDtypeStruct((1, 3, 5120), jnp.float32))
  assert pred.shape == (1, 1024)


def test_faithful_readout_units_are_the_input_location_slots():
  h = jnp.arange(4102.0)
  np.testing.assert_array_equal(rolo.readout({}, h, cfg=PAPER), [4097, 4098, 4099, 4100])
  np.testing.assert_array_equal(rolo.readout({}, jnp.arange(5120.0), cfg=HEAT), np.arange(4096, 5120))
  # in the input vector (features, 0, x, y, w, h, 0) the box occupies exactly those positions
  loc = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.0]])
  x = rolo.frame_inputs(np.zeros((1, 4096)), loc, cfg=PAPER)
  assert x.shape == (1, 4102)
  np.testing.assert_allclose(x[0, 4097:4101], [0.1, 0.2, 0.3, 0.4])


def test_config_validation():
  with pytest.raises(ValueError, match="mode"):
    rolo.RoloConfig(mode="box")
  with pytest.raises(ValueError, match="hidden"):
    rolo.RoloConfig(hidden_from="output_layer")
  with pytest.raises(ValueError, match=r"\[B, N, 10\]"):
    rolo.apply(rolo.init(jax.random.PRNGKey(0), SMALL), jnp.zeros((1, 3, 11)), cfg=SMALL)


# ---------------------------------------------------------------- windows and targets

def test_windows_end_at_the_frame_they_predict():
  x = jnp.arange(5.0)[:, None]                                 # frame t holds the value t
  w = rolo.make_windows(x, 3, pad_first=False)
  np.testing.assert_array_equal(w[..., 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
  np.testing.assert_array_equal(rolo.window_targets(np.arange(5), 3, pad_first=False), [2, 3, 4])
  w = rolo.make_windows(x, 3)                                  # one window per frame, frame 0 repeated
  np.testing.assert_array_equal(w[..., 0], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]])
  np.testing.assert_array_equal(rolo.window_targets(np.arange(5), 3), np.arange(5))
  with pytest.raises(ValueError, match="fewer"):
    rolo.make_windows(x[:2], 3, pad_first=False)


def memoryless_params(cfg):
  """Plain-LSTM params with i ≈ 1, f ≈ 0, o ≈ 1 and z = tanh(x) unit by unit (D = H), no recurrence:
  h_t = tanh(tanh(x_t)), so a window's prediction depends on its last frame only."""
  D = H = cfg.input_dim
  w = np.zeros((D + H, 4 * H), np.float32)
  w[:D, H:2 * H] = np.eye(D)
  b = np.zeros((4, H), np.float32)
  b[0], b[2], b[3] = 20.0, -20.0, 20.0
  return {"lstm": {"w": jnp.asarray(w), "b": jnp.asarray(b.reshape(-1))}}


def test_window_prediction_is_scored_on_its_last_frame_not_the_one_before():
  cfg, T = SMALL, 7
  params = memoryless_params(cfg)
  t = np.arange(T)
  loc = np.stack([np.zeros(T), 0.1 * t, 0.5 - 0.05 * t, 0.2 + 0.02 * t, 0.3 * np.ones(T), np.zeros(T)], 1)
  feats = np.random.RandomState(0).normal(size=(T, 4))
  inputs = rolo.frame_inputs(feats, loc, cfg=cfg)
  expected = np.tanh(np.tanh(loc[:, 1:5]))                   # what frame t's own input produces
  preds = rolo.track_sequence(params, inputs, cfg=cfg)
  assert preds.shape == (T, 4)
  np.testing.assert_allclose(preds, expected, atol=1e-6)
  windows = rolo.make_windows(inputs, cfg.window, pad_first=False)
  right, _ = rolo.loss(params, windows, jnp.asarray(rolo.window_targets(expected, cfg.window, pad_first=False)),
                       cfg=cfg)
  wrong, _ = rolo.loss(params, windows, jnp.asarray(expected[cfg.window - 2:T - 1]), cfg=cfg)   # frame t-1
  assert float(right) < 1e-8 and float(wrong) > 1e-2


# ---------------------------------------------------------------- recurrence

@pytest.fixture(scope="module")
def small_params():
  return rolo.init(jax.random.PRNGKey(1), SMALL)


def python_loop(params, frames):
  """Reference: the plain LSTM step by step over frames [T, D] from a zero state; h per step."""
  _, step = lstm.make_cell("plain")
  s = lstm.zeros_state(1, params["lstm"]["w"].shape[1] // 4)
  hs = []
  for x in frames:
    s, h = step(params["lstm"], s, jnp.asarray(x)[None])
    hs.append(h[0])
  return jnp.stack(hs)


def test_apply_equals_a_python_loop(small_params):
  rng = np.random.RandomState(2)
  windows = jnp.asarray(rng.normal(size=(4, 3, 10)), jnp.float32)
  pred, aux = rolo.apply(small_params, windows, cfg=SMALL)
  for b in range(4):
    hs = python_loop(small_params, windows[b])
    np.testing.assert_allclose(aux["hidden"][b], hs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred[b], hs[-1, 5:9], rtol=1e-5, atol=1e-6)    # units F+1..F+4
  # zero-state tracking: row t is the window ending at frame t, run on its own
  inputs = jnp.asarray(rng.normal(size=(6, 10)), jnp.float32)
  seq = rolo.track_sequence(small_params, inputs, cfg=SMALL)
  for t in range(6):
    own, _ = rolo.apply(small_params, rolo.make_windows(inputs, 3)[t:t + 1], cfg=SMALL)
    np.testing.assert_allclose(seq[t], own[0], rtol=1e-5, atol=1e-6)


def test_carried_state_equals_one_run_over_the_sequence(small_params):
  rng = np.random.RandomState(3)
  T, N = 8, SMALL.window
  inputs = jnp.asarray(rng.normal(size=(T, 10)), jnp.float32)
  windows = rolo.make_windows(inputs, N, pad_first=False)
  state, carried = None, []
  for k in range(T - N + 1):
    pred, aux = rolo.apply(small_params, windows[k:k + 1], cfg=SMALL, state0=state)
    state = aux["next_state"]
    carried.append(pred[0])
  carried = jnp.stack(carried)
  full = python_loop(small_params, inputs)[:, 5:9]
  np.testing.assert_allclose(carried, full[N - 1:], rtol=1e-5, atol=1e-6)
  seq = rolo.track_sequence(small_params, inputs, cfg=SMALL.replace(carry_state=True))
  np.testing.assert_allclose(seq, full, rtol=1e-5, atol=1e-6)
  zero = rolo.track_sequence(small_params, inputs, cfg=SMALL)
  assert not np.allclose(zero[N:], full[N:], atol=1e-4)      # zero-state windows forget frames 0..t-N


# ---------------------------------------------------------------- losses

def test_coord_loss_by_hand_and_gradients(small_params):
  windows = jnp.asarray(np.random.RandomState(4).normal(size=(2, 3, 10)), jnp.float32)
  pred, _ = rolo.apply(small_params, windows, cfg=SMALL)
  delta = np.zeros((2, 4), np.float32)
  delta[0, 1] = 0.1
  delta[1, 3] = -0.2
  value, aux = rolo.loss(small_params, windows, pred + delta, cfg=SMALL)
  # 100 · mean over 2 × 4 values of (0.1², 0.2²)
  assert float(value) == pytest.approx(100 * (0.01 + 0.04) / 8, rel=1e-4)
  np.testing.assert_allclose(aux["pred"], pred)
  f = jax.jit(lambda p: rolo.loss(p, windows, pred + delta, cfg=SMALL)[0])
  g = jax.grad(f)(small_params)
  gn = float(jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(g))))
  assert np.isfinite(gn) and gn > 0
  with pytest.raises(ValueError, match="last frame"):
    rolo.loss(small_params, windows, jnp.zeros((2, 3, 4)), cfg=SMALL)


def test_heatmap_loss_is_eq5_sum_over_cells_mean_over_windows():
  cfg = rolo.RoloConfig(name="hm", window=2, feature_dim=3, mode="heatmap", hidden_from="output_layer",
                        hidden=8, heatmap_size=4)
  params = rolo.init(jax.random.PRNGKey(0), cfg)
  windows = jnp.asarray(np.random.RandomState(5).normal(size=(2, 2, 3 + 16)), jnp.float32)
  pred, aux = rolo.apply(params, windows, cfg=cfg)
  assert pred.shape == (2, 16)
  np.testing.assert_allclose(pred, aux["hidden"][:, -1] @ params["out"]["w"] + params["out"]["b"], rtol=1e-6)
  value, _ = rolo.loss(params, windows, pred + 0.1, cfg=cfg)
  assert float(value) == pytest.approx(16 * 0.01, rel=1e-4)     # (1/n) Σ_i ‖0.1·1‖² over 16 cells


# ---------------------------------------------------------------- heatmaps

def test_box_to_mask_cells():
  m = np.asarray(rolo.box_to_mask([0.375, 0.625, 0.25, 0.25], 32)).reshape(32, 32)
  expected = np.zeros((32, 32))
  expected[16:24, 8:16] = 1                                   # x in [0.25, 0.5), y in [0.5, 0.75)
  np.testing.assert_array_equal(m, expected)
  # a cell touched by the box with positive area is in; one only touched on its edge is not
  m = np.asarray(rolo.box_to_mask([(0.26 + 0.49) / 2, 0.5, 0.23, 1 / 32], 32)).reshape(32, 32)
  assert np.array_equal(np.nonzero(m.any(0))[0], np.arange(8, 16))
  assert np.array_equal(np.nonzero(m.any(1))[0], [15, 16])    # y from 0.484 to 0.516
  assert not rolo.box_to_mask(np.zeros(4), 32).any()          # no detection: empty mask
  partly_out = np.asarray(rolo.box_to_mask([0.0, 0.0, 0.25, 0.25], 8)).reshape(8, 8)
  assert partly_out.sum() == 1 and partly_out[0, 0] == 1
  assert rolo.box_to_mask(np.zeros((3, 5, 4)), 32).shape == (3, 5, 1024)


def test_heatmap_to_box_decodes_masks_and_falls_back_to_the_peak():
  box = np.array([0.375, 0.625, 0.25, 0.25])
  np.testing.assert_allclose(rolo.heatmap_to_box(rolo.box_to_mask(box, 32)), box, atol=1e-7)
  hm = np.zeros((32, 32), np.float32)
  hm[3, 5] = 0.2                                             # below the threshold: the peak cell
  np.testing.assert_allclose(rolo.heatmap_to_box(hm, 0.5), [5.5 / 32, 3.5 / 32, 1 / 32, 1 / 32], atol=1e-7)
  hm[10:12, 20:24] = 0.9
  np.testing.assert_allclose(rolo.heatmap_to_box(hm.reshape(-1), 0.5), [22 / 32, 11 / 32, 4 / 32, 2 / 32],
                             atol=1e-7)
  batch = jnp.stack([rolo.box_to_mask(box, 32), jnp.asarray(hm.reshape(-1))])
  assert jax.jit(rolo.heatmap_to_box)(batch).shape == (2, 4)
  with pytest.raises(ValueError, match="1024"):
    rolo.heatmap_to_box(np.zeros(100))


def test_heatmap_frame_inputs():
  cfg = rolo.RoloConfig(name="h", window=3, feature_dim=5, mode="heatmap")
  loc = np.array([[0, 0.375, 0.625, 0.25, 0.25, 0], [0, 0, 0, 0, 0, 0]])
  x = np.asarray(rolo.frame_inputs(np.ones((2, 5)), loc, cfg=cfg))
  assert x.shape == (2, 5 + 1024)
  assert x[0, 5:].sum() == 64 and x[1, 5:].sum() == 0         # no detection: empty mask
  np.testing.assert_array_equal(x[:, :5], 1)
  with pytest.raises(ValueError, match="features"):
    rolo.frame_inputs(np.ones((2, 4)), loc, cfg=cfg)


# ---------------------------------------------------------------- residual read-out

RES = rolo.RoloConfig(name="res", window=4, feature_dim=2, hidden_from="residual", hidden=3)   # D = 8


def test_residual_config_limits():
  with pytest.raises(ValueError, match="hidden"):
    rolo.RoloConfig(hidden_from="residual")
  with pytest.raises(ValueError, match="coordinate"):
    rolo.RoloConfig(hidden_from="residual", hidden=4, mode="heatmap")
  with pytest.raises(ValueError, match="hold_detection"):
    rolo.RoloConfig(hidden_from="residual", hidden=4, carry_state=True)
  rolo.RoloConfig(hidden_from="residual", hidden=4, carry_state=True, hold_detection=True)   # allowed


def test_hold_locations_by_hand():
  # detections in frames 1 and 4 only; frame 0 has none yet
  a, b = [0.5, 0.4, 0.1, 0.2], [0.6, 0.7, 0.2, 0.1]
  z = [0.0] * 4
  loc = np.asarray([[0, *z, 0], [0, *a, 0], [0, *z, 0], [0, *z, 0], [0, *b, 0], [0, *z, 0]], np.float32)
  want = np.asarray([[0, *z, 0], [0, *a, 1], [0, *a, 0], [0, *a, 0], [0, *b, 1], [0, *b, 0]], np.float32)
  np.testing.assert_array_equal(rolo.hold_locations(loc), want)
  # with held rows the residual anchor of a zero-state window is the last box even after a gap
  # longer than the window (RES: N = 4; the window ending at frame 3 of [a, z, z, z, z] has no
  # detection of its own)
  cfg = RES.replace(hold_detection=True)
  seq = np.concatenate([np.zeros((5, 2)), rolo.hold_locations([[0, *a, 0]] + [[0, *z, 0]] * 4)], 1)
  params = rolo.init(jax.random.PRNGKey(0), cfg)
  params["out"]["w"] = jnp.zeros_like(params["out"]["w"])
  np.testing.assert_allclose(rolo.track_sequence(params, seq, cfg=cfg), [a] * 5, atol=1e-7)


def test_residual_with_a_zero_output_layer_is_the_latest_detection_of_the_window():
  # Hand-made window of 4 frames: detections at steps 0 and 1, none at 2 and 3 (zeros), then a
  # second window whose only detection is at step 2, and one with none at all.
  def frame(loc):
    return [0.3, -0.2, 0.0, *loc, 0.0]
  a, b, c = [0.5, 0.4, 0.1, 0.2], [0.55, 0.42, 0.12, 0.2], [0.2, 0.7, 0.05, 0.1]
  z = [0.0] * 4
  windows = jnp.asarray([[frame(a), frame(b), frame(z), frame(z)],
                         [frame(z), frame(z), frame(c), frame(z)],
                         [frame(z)] * 4], jnp.float32)
  params = rolo.init(jax.random.PRNGKey(0), RES)
  params["out"]["w"] = jnp.zeros_like(params["out"]["w"])
  pred, aux = rolo.apply(params, windows, cfg=RES)
  np.testing.assert_allclose(pred, [b, c, z], atol=1e-7)
  np.testing.assert_allclose(aux["steps"][0], [a, b, b, b], atol=1e-7)
  np.testing.assert_allclose(aux["steps"][1], [z, z, c, c], atol=1e-7)
  # a non-zero output layer adds h @ W + b on top of that anchor
  params["out"]["b"] = jnp.asarray([0.01, -0.02, 0.0, 0.03])
  pred2, _ = rolo.apply(params, windows, cfg=RES)
  np.testing.assert_allclose(pred2, np.asarray([b, c, z]) + [0.01, -0.02, 0.0, 0.03], atol=1e-6)
