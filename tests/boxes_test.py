"""Tests for rolo_jax.data.boxes: hand-computed values, round trips, numpy vs jax, jit/vmap."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.data import boxes

CONVERSIONS = [
    (boxes.xywh_to_xyxy, boxes.xyxy_to_xywh),
    (boxes.xywh_to_cxcywh, boxes.cxcywh_to_xywh),
    (boxes.xyxy_to_cxcywh, boxes.cxcywh_to_xyxy),
]


def _random_xywh(n, seed=0):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(-50, 500, (n, 2))
  wh = rng.uniform(1, 200, (n, 2))
  return np.concatenate([xy, wh], axis=1)


# ----------------------------------------------------------------- conversions


def test_conversions_hand_values():
  b = np.array([10.0, 20.0, 30.0, 40.0])
  np.testing.assert_array_equal(boxes.xywh_to_xyxy(b), [10, 20, 40, 60])
  np.testing.assert_array_equal(boxes.xywh_to_cxcywh(b), [25, 40, 30, 40])
  np.testing.assert_array_equal(boxes.xyxy_to_xywh([10, 20, 40, 60]), [10, 20, 30, 40])
  np.testing.assert_array_equal(boxes.xyxy_to_cxcywh([10, 20, 40, 60]), [25, 40, 30, 40])
  np.testing.assert_array_equal(boxes.cxcywh_to_xyxy([25, 40, 30, 40]), [10, 20, 40, 60])
  np.testing.assert_array_equal(boxes.cxcywh_to_xywh([25, 40, 30, 40]), [10, 20, 30, 40])


def test_numpy_inputs_become_float64():
  out = boxes.xywh_to_xyxy(np.array([1, 2, 3, 4], np.int32))
  assert isinstance(out, np.ndarray) and out.dtype == np.float64
  out = boxes.iou(np.float32([0, 0, 1, 1]), [0, 0, 1, 1])
  assert out.dtype == np.float64


@pytest.mark.parametrize("fwd,inv", CONVERSIONS)
def test_round_trips_numpy_exact_float64(fwd, inv):
  # Dyadic values: every intermediate is exactly representable, so round trips are bit-exact.
  rng = np.random.default_rng(1)
  b = rng.integers(-1000, 1000, (5, 3, 4)) / 8.0
  np.testing.assert_array_equal(inv(fwd(b)), b)
  np.testing.assert_array_equal(fwd(inv(b)), b)
  assert fwd(b).shape == (5, 3, 4)


def test_round_trips_all_forms_random():
  b = _random_xywh(100)
  for fwd, inv in CONVERSIONS:
    np.testing.assert_allclose(inv(fwd(b)), b, rtol=0, atol=1e-12)
  # A full cycle xywh -> xyxy -> cxcywh -> xywh.
  cyc = boxes.cxcywh_to_xywh(boxes.xyxy_to_cxcywh(boxes.xywh_to_xyxy(b)))
  np.testing.assert_allclose(cyc, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fwd,inv", CONVERSIONS)
def test_numpy_and_jax_agree(fwd, inv):
  b = _random_xywh(20)
  out = fwd(jnp.asarray(b, jnp.float32))
  assert isinstance(out, jax.Array)
  np.testing.assert_allclose(np.asarray(out), fwd(b), rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(np.asarray(inv(jnp.asarray(b, jnp.float32))), inv(b), rtol=1e-6, atol=1e-4)


# ----------------------------------------------------------------- IoU


def test_iou_hand_values():
  a = np.array([0.0, 0.0, 10.0, 10.0])
  # Offset by 5 in x: intersection 5 x 10 = 50, union 100 + 100 - 50 = 150.
  assert boxes.iou(a, [5, 0, 10, 10]) == pytest.approx(50 / 150, abs=1e-15)
  # Offset by 5 in x and y: intersection 5 x 5 = 25, union 175.
  assert boxes.iou(a, [5, 5, 10, 10]) == pytest.approx(25 / 175, abs=1e-15)
  # Identical boxes, contained box, touching boxes, disjoint boxes.
  assert boxes.iou(a, a) == 1.0
  assert boxes.iou(a, [2, 2, 5, 5]) == pytest.approx(25 / 100, abs=1e-15)
  assert boxes.iou(a, [10, 0, 10, 10]) == 0.0
  assert boxes.iou(a, [30, 30, 5, 5]) == 0.0
  # The xyxy version of the 25/175 case.
  assert boxes.iou_xyxy([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175, abs=1e-15)


def test_iou_degenerate_is_zero_not_nan():
  z = np.array([[3.0, 3.0, 0.0, 0.0], [3.0, 3.0, 0.0, 5.0], [3.0, 3.0, -2.0, 5.0]])
  out = boxes.iou(z, z)
  np.testing.assert_array_equal(out, [0.0, 0.0, 0.0])
  out_j = boxes.iou(jnp.asarray(z, jnp.float32), jnp.asarray(z, jnp.float32))
  np.testing.assert_array_equal(np.asarray(out_j), [0.0, 0.0, 0.0])
  # Gradients through the zero-union branch stay finite.
  g = jax.grad(lambda b: boxes.iou(b, b).sum())(jnp.asarray(z, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g)))


def test_iou_symmetric_and_broadcasts():
  a = _random_xywh(30, seed=2)
  b = _random_xywh(30, seed=3)
  np.testing.assert_allclose(boxes.iou(a, b), boxes.iou(b, a), rtol=0, atol=1e-15)
  out = boxes.iou(a[:, None, :], b[None, :5, :])
  assert out.shape == (30, 5)
  assert np.all((out >= 0) & (out <= 1))


def test_pairwise_iou_matches_elementwise():
  a = _random_xywh(7, seed=4)
  b = np.concatenate([a[:3] + 2.0, _random_xywh(4, seed=5)])
  m = boxes.pairwise_iou(a, b)
  assert m.shape == (7, 7)
  for i in range(7):
    for j in range(7):
      assert m[i, j] == boxes.iou(a[i], b[j])
  mj = boxes.pairwise_iou(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(np.asarray(mj), m, atol=1e-5)


def test_iou_otb_hand_values():
  # Inclusive pixels: columns 1..10 and 6..15 overlap in 6..10 = 5 columns, rows likewise:
  # 25 / (100 + 100 - 25).
  assert boxes.iou_otb([1, 1, 10, 10], [6, 6, 10, 10]) == pytest.approx(25 / 175, abs=1e-15)
  # Columns 1..10 vs 11..20 share no pixel.
  assert boxes.iou_otb([1, 1, 10, 10], [11, 1, 10, 10]) == 0.0
  # One pixel (5, 5) against the 5x5 block 3..7: inter 1, union 1 + 25 - 1 = 25.
  assert boxes.iou_otb([5, 5, 1, 1], [3, 3, 5, 5]) == pytest.approx(1 / 25, abs=1e-15)
  # Fractional: right_a = 0 + 4 - 1 = 3, left_b = 2.5 -> iw = 3 - 2.5 + 1 = 1.5, ih = 4:
  # inter 6, union 16 + 16 - 6 = 26.
  assert boxes.iou_otb([0, 0, 4, 4], [2.5, 0, 4, 4]) == pytest.approx(6 / 26, abs=1e-15)
  # right_a = 3, left_b = 3.5 -> iw = 0.5, inter 2, union 30.
  assert boxes.iou_otb([0, 0, 4, 4], [3.5, 0, 4, 4]) == pytest.approx(2 / 30, abs=1e-15)
  # Disjoint boxes and an empty union give 0, not NaN.
  assert boxes.iou_otb([0, 0, 3, 3], [10, 10, 3, 3]) == 0.0
  assert boxes.iou_otb([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_iou_otb_equals_continuous_for_nonnegative_sizes():
  # min(x_a + w_a - 1, x_b + w_b - 1) - max(x_a, x_b) + 1 = min(x_a + w_a, x_b + w_b) - max(x_a, x_b):
  # the inclusive convention's -1 and +1 cancel, so the two IoUs agree for w, h >= 0 (the
  # conventions differ only in absolute centre positions).
  a, b = _random_xywh(200, seed=12), _random_xywh(200, seed=13)
  b[:100, :2] = a[:100, :2] + np.random.default_rng(14).uniform(-30, 30, (100, 2))
  np.testing.assert_allclose(boxes.iou_otb(a, b), boxes.iou(a, b), rtol=1e-12, atol=1e-15)
  assert np.count_nonzero(boxes.iou(a, b)) > 50


def test_iou_otb_matlab_formula_random():
  # Direct transcription of calcRectInt in a loop, as a reference.
  a, b = _random_xywh(50, seed=6), _random_xywh(50, seed=7)
  b[:25, :2] = a[:25, :2] + np.random.default_rng(8).uniform(-20, 20, (25, 2))
  ref = []
  for (ax, ay, aw, ah), (bx, by, bw, bh) in zip(a, b):
    ra, ta, rb, tb = ax + aw - 1, ay + ah - 1, bx + bw - 1, by + bh - 1
    inter = max(0, min(ra, rb) - max(ax, bx) + 1) * max(0, min(ta, tb) - max(ay, by) + 1)
    ref.append(inter / (aw * ah + bw * bh - inter))
  np.testing.assert_allclose(boxes.iou_otb(a, b), ref, rtol=1e-14, atol=0)
  assert np.count_nonzero(np.asarray(ref)) >= 20
  np.testing.assert_allclose(np.asarray(boxes.iou_otb(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))),
                             ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------- centres


def test_centres_hand_values():
  b = np.array([10.0, 20.0, 30.0, 41.0])
  np.testing.assert_array_equal(boxes.centre(b), [25.0, 40.5])
  np.testing.assert_array_equal(boxes.centre_otb(b), [24.5, 40.0])
  # 3-4-5 triangle.
  assert boxes.centre_error([0, 0, 10, 10], [3, 4, 10, 10]) == 5.0
  # Different sizes: continuous centres (5, 5) and (5 + 3, 5 + 4) -> 5.
  assert boxes.centre_error([0, 0, 10, 10], [2, 3, 12, 12]) == 5.0
  # OTB centres: (4.5, 4.5) and (2 + 5.5, 3 + 5.5) = (7.5, 8.5) -> 5.
  assert boxes.centre_error_otb([0, 0, 10, 10], [2, 3, 12, 12]) == 5.0


def test_centre_error_otb_equals_continuous():
  a, b = _random_xywh(40, seed=9), _random_xywh(40, seed=10)
  np.testing.assert_allclose(boxes.centre_error_otb(a, b), boxes.centre_error(a, b), rtol=1e-12)


# ----------------------------------------------------------------- geometry


def test_clip_xywh():
  out = boxes.clip_xywh(np.array([[-10, -5, 30, 20], [600, 10, 100, 50], [700, 500, 5, 5],
                                  [10, 10, 20, 20]]), 640, 480)
  np.testing.assert_array_equal(out, [[0, 0, 20, 15], [600, 10, 40, 50], [640, 480, 0, 0],
                                      [10, 10, 20, 20]])
  outj = boxes.clip_xywh(jnp.array([-10.0, -5, 30, 20]), 640, 480)
  np.testing.assert_array_equal(np.asarray(outj), [0, 0, 20, 15])


def test_scale_about_centre():
  b = np.array([10.0, 20.0, 30.0, 40.0])
  out = boxes.scale_about_centre(b, 2.0)
  np.testing.assert_array_equal(out, [-5, 0, 60, 80])
  np.testing.assert_array_equal(boxes.centre(out), boxes.centre(b))
  np.testing.assert_array_equal(boxes.scale_about_centre(b, 0.5, 2.0), [17.5, 0, 15, 80])
  # Broadcast a per-box scale.
  bb = np.stack([b, b])
  out = boxes.scale_about_centre(bb, np.array([1.0, 2.0]))
  np.testing.assert_array_equal(out, [b, [-5, 0, 60, 80]])


# ----------------------------------------------------------------- jit / vmap


def test_jit_and_vmap():
  a = jnp.asarray(_random_xywh(8, seed=11), jnp.float32)
  b = a + jnp.array([3.0, -2.0, 1.0, 0.5])
  ref_iou = boxes.iou(np.asarray(a, np.float64), np.asarray(b, np.float64))
  np.testing.assert_allclose(np.asarray(jax.jit(boxes.iou)(a, b)), ref_iou, atol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.vmap(boxes.iou)(a, b)), ref_iou, atol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(boxes.iou_otb))(a, b)),
                             boxes.iou_otb(np.asarray(a, np.float64), np.asarray(b, np.float64)), atol=1e-5)
  ce = jax.jit(boxes.centre_error)(a, b)
  np.testing.assert_allclose(np.asarray(ce), np.full(8, np.hypot(3.5, -1.75)), rtol=1e-5)
  for fwd, inv in CONVERSIONS:
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: inv(fwd(x)))(a)), np.asarray(a), atol=1e-4)
  clip = jax.jit(boxes.clip_xywh)(a, 100.0, jnp.float32(80.0))
  np.testing.assert_allclose(np.asarray(clip), boxes.clip_xywh(np.asarray(a, np.float64), 100, 80), atol=1e-4)
  pw = jax.jit(boxes.pairwise_iou)(a, b[:3])
  assert pw.shape == (8, 3)
  sc = jax.vmap(boxes.scale_about_centre)(a, jnp.arange(1.0, 9.0), jnp.ones(8))
  np.testing.assert_allclose(np.asarray(sc[:, 2]), np.asarray(a[:, 2]) * np.arange(1, 9), rtol=1e-6)
