"""YOLO v1: exact parameter count (no allocation), targets, loss by hand, decoding, NMS."""
import rolo_jax  # noqa: F401

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rolo_jax import summary
from rolo_jax.models import yolo

V1 = yolo.CONFIGS["yolo_v1"]
TINY = yolo.CONFIGS["tiny"]


def abstract_params(cfg):
  return jax.eval_shape(lambda k: yolo.init(k, cfg), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def tiny_params():
  return yolo.init(jax.random.PRNGKey(0), TINY)


# ---------------------------------------------------------------- architecture (no allocation)

def test_yolo_v1_parameter_count_layer_by_layer():
  conv = lambda k, i, o: k * k * i * o + o
  convs = (conv(7, 3, 64) + conv(3, 64, 192) + conv(1, 192, 128) + conv(3, 128, 256)
           + conv(1, 256, 256) + conv(3, 256, 512)
           + 4 * (conv(1, 512, 256) + conv(3, 256, 512))
           + conv(1, 512, 512) + conv(3, 512, 1024)
           + 2 * (conv(1, 1024, 512) + conv(3, 512, 1024))
           + 4 * conv(3, 1024, 1024))
  assert convs == 60_155_968
  fc1 = 7 * 7 * 1024 * 4096 + 4096
  fc2 = 4096 * 7 * 7 * 30 + 7 * 7 * 30
  total = yolo.count_params(abstract_params(V1))
  assert total == convs + fc1 + fc2 == 271_703_550
  table = {n: s for n, s, _ in yolo.param_table(abstract_params(V1))}
  assert sum(1 for n in table if n.startswith("conv") and n.endswith("/kernel")) == 24 == V1.num_convs
  assert table["conv1/kernel"] == (7, 7, 3, 64)
  assert table["conv22/kernel"] == (3, 3, 1024, 1024)
  assert table["fc1/kernel"] == (50_176, 4096)
  assert table["fc2/kernel"] == (4096, 1470)


def test_yolo_v1_output_and_feature_shapes():
  preds, aux = jax.eval_shape(lambda p, x: yolo.apply(p, x, cfg=V1), abstract_params(V1),
                              jax.ShapeDtypeStruct((2, 448, 448, 3), jnp.float32))
  assert preds.shape == (2, 7, 7, 30)
  assert aux["features"].shape == (2, 4096)
  assert yolo.conv_output_shape(V1) == (7, 1024)


def test_summary_cli_totals(capsys):
  assert summary.main(["yolo", "--config", "yolo_v1"]) == 0
  assert capsys.readouterr().out.rstrip().split("\n")[-1] == "total_params=271703550"


def test_config_rejects_a_grid_the_convs_do_not_make():
  with pytest.raises(ValueError, match="grid=5"):
    yolo.YoloConfig(grid=5)
  with pytest.raises(ValueError, match="bad entry"):
    yolo.YoloConfig(layers=(("dense", 3),))


# ---------------------------------------------------------------- tiny forward

def test_tiny_forward_dropout_and_input_checks(tiny_params):
  x = yolo.preprocess(np.random.RandomState(0).randint(0, 256, (2, 112, 112, 3)).astype(np.uint8))
  assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0
  p1, a1 = yolo.apply(tiny_params, x, cfg=TINY)
  p2, _ = yolo.apply(tiny_params, x, cfg=TINY)
  assert p1.shape == (2, 7, 7, 2 * 5 + 6) and a1["features"].shape == (2, 256)
  np.testing.assert_array_equal(p1, p2)
  p3, a3 = yolo.apply(tiny_params, x, cfg=TINY, train=True, rng=jax.random.PRNGKey(3))
  # features are taken before dropout; the detection layer sees the dropped-out vector
  np.testing.assert_allclose(a3["features"], a1["features"], rtol=1e-6, atol=1e-6)
  assert not np.allclose(p3, p1)
  with pytest.raises(ValueError, match="rng"):
    yolo.apply(tiny_params, x, cfg=TINY, train=True)
  with pytest.raises(ValueError, match="uint8"):
    yolo.apply(tiny_params, jnp.zeros((1, 112, 112, 3), jnp.uint8), cfg=TINY)
  with pytest.raises(ValueError, match="112"):
    yolo.apply(tiny_params, jnp.zeros((1, 128, 128, 3)), cfg=TINY)


# ---------------------------------------------------------------- boxes and targets

def test_relative_boxes_round_trip():
  rel = yolo.to_relative(np.array([10.0, 20.0, 30.0, 40.0]), 100, 200)
  np.testing.assert_allclose(rel, [0.25, 0.2, 0.3, 0.2])
  np.testing.assert_allclose(yolo.to_pixels(rel, 100, 200), [10, 20, 30, 40])


def test_encode_targets_by_hand():
  t = yolo.encode_targets([[0.5, 0.3, 0.16, 0.25], [0.52, 0.32, 0.5, 0.5], [1.0, 1.0, 0.04, 0.09]],
                          [2, 0, 1], S=7, C=4)
  assert t.shape == (7, 7, 9) and t.dtype == np.float32
  # centre (0.5, 0.3): column ⌊3.5⌋ = 3, row ⌊2.1⌋ = 2, offsets (0.5, 0.1)
  np.testing.assert_allclose(t[2, 3], [0.5, 0.1, 0.4, 0.5, 1, 0, 0, 1, 0], atol=1e-6)
  # a centre on the far edge goes to the last cell with offset 1
  np.testing.assert_allclose(t[6, 6], [1.0, 1.0, 0.2, 0.3, 1, 0, 1, 0, 0], atol=1e-6)
  # the second object shares cell (2, 3) with the first: the first keeps it; nothing else is set
  assert np.count_nonzero(t[..., 4]) == 2
  t[2, 3] = 0
  t[6, 6] = 0
  assert not t.any()


def test_encode_targets_rejects_bad_input():
  with pytest.raises(ValueError, match="labels"):
    yolo.encode_targets([[0.5, 0.5, 0.1, 0.1]], [4], S=7, C=4)
  with pytest.raises(ValueError, match="relative"):
    yolo.encode_targets([[50, 50, 10, 10]], [0], S=7, C=4)
  with pytest.raises(ValueError, match="finite"):
    yolo.encode_targets([[np.nan, 0.5, 0.1, 0.1]], [0], S=7, C=4)


# ---------------------------------------------------------------- loss

def perfect_prediction(targets, B, seed=0):
  """Predictor 0 of every object cell = the ground truth with confidence 1, every other predictor a
  random box with confidence 0, classes one-hot."""
  rng = np.random.RandomState(seed)
  S, C = targets.shape[0], targets.shape[-1] - 5
  p = np.zeros((S, S, 5 * B + C), np.float32)
  for b in range(B):
    p[..., 5 * b:5 * b + 4] = rng.uniform(0.0, 1.0, (S, S, 4))
  obj = targets[..., 4] > 0
  p[obj, 0:4] = targets[obj, 0:4]
  p[obj, 4] = 1.0
  p[..., 5 * B:] = targets[..., 5:]
  return p


def test_loss_is_zero_for_a_perfect_prediction_and_not_otherwise():
  cfg = yolo.YoloConfig(name="t", input_size=112, layers=yolo.TINY_LAYERS, num_classes=4)
  boxes = [[0.5, 0.3, 0.16, 0.25], [0.1, 0.9, 0.2, 0.1], [0.77, 0.61, 0.3, 0.4]]
  tg = yolo.encode_targets(boxes, [2, 0, 3], S=7, C=4)
  p = perfect_prediction(tg, 2)
  total, aux = yolo.loss(jnp.asarray(p[None]), jnp.asarray(tg[None]), cfg=cfg)
  assert abs(float(total)) < 1e-10
  assert float(aux["responsible"].sum()) == 3
  np.testing.assert_allclose(aux["iou"][0][tg[..., 4] > 0, 0], 1.0, atol=1e-6)
  # one wrong confidence: (0.9 - 1)² = 0.01; one wrong class probability: 0.3² = 0.09
  p[2, 3, 4] = 0.9
  p[6, 0, 11] = 0.3                      # cell of the class-0 object, class-1 probability
  total, aux = yolo.loss(jnp.asarray(p[None]), jnp.asarray(tg[None]), cfg=cfg)
  assert float(total) == pytest.approx(0.01 + 0.09, abs=1e-6)
  assert float(aux["obj"]) == pytest.approx(0.01, abs=1e-6)


def toy_cell():
  """S=1, B=2, C=2. Ground truth centred, 0.25 × 0.25, class 0.

  Predictor 0: same size shifted right by 0.125 -> IoU = (0.125·0.25) / (2·0.0625 - 0.03125) = 1/3.
  Predictor 1: a 0.04 × 0.04 box at (0.1, 0.1), no overlap (IoU 0).
  """
  cfg = yolo.YoloConfig(name="toy", input_size=64, layers=(("conv", 3, 4, 1), ("pool", 64, 64)), grid=1,
                        num_classes=2)
  tg = yolo.encode_targets([[0.5, 0.5, 0.25, 0.25]], [0], S=1, C=2)
  p = np.array([[[0.625, 0.5, 0.5, 0.5, 0.8,   0.1, 0.1, 0.2, 0.2, 0.3,   0.6, 0.2]]], np.float32)
  return cfg, tg, p


def test_loss_by_hand_on_one_cell():
  cfg, tg, p = toy_cell()
  coord = 5 * (0.625 - 0.5) ** 2          # λ_coord · Δx²; y, √w, √h exact
  obj = (0.8 - 1 / 3) ** 2                # confidence target = IoU of the responsible predictor
  noobj = 0.5 * 0.3 ** 2                  # λ_noobj · conf² of predictor 1
  cls = (0.6 - 1) ** 2 + 0.2 ** 2
  total, aux = yolo.loss(jnp.asarray(p[None]), jnp.asarray(tg[None]), cfg=cfg)
  assert float(total) == pytest.approx(coord + obj + noobj + cls, rel=1e-5)
  for k, v in (("coord", coord), ("obj", obj), ("noobj", noobj), ("class", cls)):
    assert float(aux[k]) == pytest.approx(v, rel=1e-5), k
  np.testing.assert_allclose(aux["iou"][0, 0, 0], [1 / 3, 0.0], atol=1e-6)
  np.testing.assert_array_equal(aux["responsible"][0, 0, 0], [1, 0])
  # without rescoring the confidence target is 1
  total, _ = yolo.loss(jnp.asarray(p[None]), jnp.asarray(tg[None]), cfg=cfg.replace(rescore=False))
  assert float(total) == pytest.approx(coord + (0.8 - 1) ** 2 + noobj + cls, rel=1e-5)
  # swapping the predictors swaps responsibility and leaves the loss unchanged
  q = p.copy()
  q[..., 0:5], q[..., 5:10] = p[..., 5:10], p[..., 0:5]
  total2, aux2 = yolo.loss(jnp.asarray(q[None]), jnp.asarray(tg[None]), cfg=cfg)
  assert float(total2) == pytest.approx(coord + obj + noobj + cls, rel=1e-5)
  np.testing.assert_array_equal(aux2["responsible"][0, 0, 0], [0, 1])
  # the batch mean: two identical images give the same loss
  total3, _ = yolo.loss(jnp.asarray(np.concatenate([p[None]] * 2)), jnp.asarray(np.stack([tg] * 2)), cfg=cfg)
  assert float(total3) == pytest.approx(float(total2), rel=1e-6)


def test_loss_gradient_holds_the_iou_target_constant():
  cfg, tg, p = toy_cell()
  g = jax.grad(lambda q: yolo.loss(q, jnp.asarray(tg[None]), cfg=cfg)[0])(jnp.asarray(p[None]))
  # ∂/∂x = 2 λ_coord (x - x̂) only; a gradient through the IoU target would add to it
  assert float(g[0, 0, 0, 0]) == pytest.approx(2 * 5 * 0.125, rel=1e-5)
  assert float(g[0, 0, 0, 4]) == pytest.approx(2 * (0.8 - 1 / 3), rel=1e-5)
  assert float(g[0, 0, 0, 9]) == pytest.approx(2 * 0.5 * 0.3, rel=1e-5)
  np.testing.assert_allclose(g[0, 0, 0, 5:9], 0.0)   # predictor 1's box is not trained


# ---------------------------------------------------------------- decoding and NMS

def test_decode_hand_made_tensor():
  S, B, C = 2, 2, 2
  p = np.zeros((S, S, 5 * B + C))
  # cell (row 0, col 1), predictor 1: centre (0.5, 0.5) in the cell, √w = 0.5, √h = 0.6, conf 0.9
  p[0, 1, 5:10] = [0.5, 0.5, 0.5, 0.6, 0.9]
  p[0, 1, 10:] = [0.2, 0.8]
  # cell (row 1, col 0), predictor 0: conf 0.5, classes (0.6, 0.4) -> score 0.3, class 0
  p[1, 0, 0:5] = [0.25, 0.75, 0.2, 0.1, 0.5]
  p[1, 0, 10:] = [0.6, 0.4]
  boxes, scores, classes = yolo.decode(p, 0.25, B=B)
  np.testing.assert_allclose(scores, [0.72, 0.3])
  np.testing.assert_array_equal(classes, [1, 0])
  np.testing.assert_allclose(boxes, [[(1 + 0.5) / 2, 0.5 / 2, 0.25, 0.36],
                                     [0.25 / 2, (1 + 0.75) / 2, 0.04, 0.01]])
  boxes, scores, classes = yolo.decode(p, 0.3, B=B)      # score >= threshold is kept
  assert len(scores) == 2
  boxes, scores, classes = yolo.decode(p, 0.5, B=B)
  np.testing.assert_allclose(scores, [0.72])
  assert yolo.decode(np.zeros((S, S, 12)), 0.1, B=B)[0].shape == (0, 4)


def test_decode_applies_nms_within_a_class_only():
  S, B, C = 1, 2, 2
  p = np.zeros((S, S, 5 * B + C))
  p[0, 0, 0:5] = [0.5, 0.5, 0.5, 0.5, 0.9]
  p[0, 0, 5:10] = [0.52, 0.5, 0.5, 0.5, 0.8]   # almost the same box
  p[0, 0, 10:] = [1.0, 0.0]
  _, scores, _ = yolo.decode(p, 0.1, B=B, nms_iou=0.5)
  np.testing.assert_allclose(scores, [0.9])
  _, scores, _ = yolo.decode(p, 0.1, B=B)
  np.testing.assert_allclose(scores, [0.9, 0.8])


def test_nms_hand_made_boxes():
  boxes = np.array([[0, 0, 10, 10],     # A
                    [1, 0, 10, 10],     # B: IoU(A, B) = 9 / 11 ≈ 0.818
                    [20, 20, 10, 10],   # C: apart
                    [0, 5, 10, 10]],    # D: IoU(A, D) = 50 / 150 = 1/3, IoU(B, D) = 45 / 155
                   float)
  scores = np.array([0.9, 0.8, 0.7, 0.95])
  np.testing.assert_array_equal(yolo.nms(boxes, scores, 0.5), [3, 0, 2])
  np.testing.assert_array_equal(yolo.nms(boxes, scores, 0.3), [3, 1, 2])   # 1/3 > 0.3 drops A; B stays
  np.testing.assert_array_equal(yolo.nms(boxes, scores, 0.9), [3, 0, 1, 2])
  # ties: the lower index first
  np.testing.assert_array_equal(yolo.nms(boxes[:2], [0.5, 0.5], 0.5), [0])
  assert yolo.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_fixed_matches_nms():
  rng = np.random.RandomState(0)
  xy = rng.uniform(0, 50, (40, 2))
  boxes = np.concatenate([xy, rng.uniform(5, 25, (40, 2))], axis=1)
  scores = rng.uniform(0, 1, 40)
  fn = jax.jit(yolo.nms_fixed, static_argnums=(2, 3))
  for thr in (0.3, 0.5, 0.7):
    ref = yolo.nms(boxes, scores, thr)
    idx, valid = fn(jnp.asarray(boxes), jnp.asarray(scores), thr, 40)
    assert int(valid.sum()) == len(ref)
    np.testing.assert_array_equal(np.asarray(idx)[:len(ref)], ref)
    assert np.all(np.asarray(idx)[len(ref):] == -1)
  idx, valid = yolo.nms_fixed(jnp.asarray(boxes), jnp.asarray(scores), 0.5, 3)
  np.testing.assert_array_equal(idx, yolo.nms(boxes, scores, 0.5)[:3])
  idx, valid = yolo.nms_fixed(jnp.asarray(boxes), jnp.asarray(scores), 0.5, 40, score_thresh=0.5)
  keep = np.nonzero(scores >= 0.5)[0]
  np.testing.assert_array_equal(np.asarray(idx)[np.asarray(valid)], keep[yolo.nms(boxes[keep], scores[keep], 0.5)])


# ---------------------------------------------------------------- training

def test_tiny_overfits_two_images(tiny_params):
  rng = np.random.RandomState(1)
  x = jnp.asarray(rng.uniform(0, 1, (2, 112, 112, 3)), jnp.float32)
  tg = jnp.asarray(np.stack([yolo.encode_targets([[0.3, 0.4, 0.2, 0.3]], [1], 7, 6),
                             yolo.encode_targets([[0.7, 0.6, 0.4, 0.2], [0.2, 0.8, 0.1, 0.1]], [3, 5], 7, 6)]))
  opt = optax.adam(1e-3)

  @jax.jit
  def update(params, state):
    def f(p):
      preds, _ = yolo.apply(p, x, cfg=TINY.replace(dropout=0.0))
      return yolo.loss(preds, tg, cfg=TINY)[0]
    value, g = jax.value_and_grad(f)(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state, value

  params, state = tiny_params, opt.init(tiny_params)
  losses = []
  for _ in range(40):
    params, state, value = update(params, state)
    losses.append(float(value))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.05 * losses[0]
