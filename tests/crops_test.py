"""Tests for rolo_jax.data.crops: crop geometry, fill and padding, jit/vmap, host version, windows."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.data import boxes, crops


def _ref_crop(image, window, size, fill=0.0, valid_hw=None):
  """Independent float64 reference: 4-neighbour bilinear at (x - 0.5, y - 0.5), fill outside."""
  image = np.asarray(image, np.float64)
  h_arr, w_arr, ch = image.shape
  vh, vw = (h_arr, w_arr) if valid_hw is None else valid_hw
  hc, wc = (size, size) if isinstance(size, int) else size
  x1, y1, x2, y2 = np.asarray(window, np.float64)
  fill = np.broadcast_to(np.asarray(fill, np.float64), (ch,))
  u = x1 + (np.arange(wc) + 0.5) * (x2 - x1) / wc - 0.5
  v = y1 + (np.arange(hc) + 0.5) * (y2 - y1) / hc - 0.5
  uu, vv = np.meshgrid(u, v)  # [hc, wc]
  j0, i0 = np.floor(uu).astype(int), np.floor(vv).astype(int)
  fx, fy = uu - j0, vv - i0
  out = np.zeros((hc, wc, ch))
  for di, wy in ((0, 1 - fy), (1, fy)):
    for dj, wx in ((0, 1 - fx), (1, fx)):
      ii, jj = i0 + di, j0 + dj
      ok = (ii >= 0) & (ii < vh) & (jj >= 0) & (jj < vw)
      val = np.where(ok[..., None], image[np.clip(ii, 0, h_arr - 1), np.clip(jj, 0, w_arr - 1)], fill)
      out += (wy * wx)[..., None] * val
  return out


def _smooth_random_image(h, w, seed=0):
  """Random uint8 image with moderate gradients (noise on a coarse grid, bilinearly upsampled)."""
  import cv2
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
  return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- geometry of crop


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_whole_image_window_reproduces_image(dtype):
  img = np.random.default_rng(0).integers(0, 256, (17, 23, 3)).astype(dtype)
  out = crops.crop(img, jnp.array([0.0, 0.0, 23.0, 17.0]), (17, 23), fill=77.0)
  assert out.dtype == jnp.float32 and out.shape == (17, 23, 3)
  np.testing.assert_array_equal(np.asarray(out), img.astype(np.float32))


def test_bilinear_hand_values():
  img = np.array([[0.0, 10.0], [20.0, 30.0]])[..., None]
  # Window [0.5, 0.5, 1.5, 1.5] at size 1 samples x = y = 1.0 -> array (0.5, 0.5): mean of 4 pixels.
  out = crops.crop(img, jnp.array([0.5, 0.5, 1.5, 1.5]), 1)
  assert float(out[0, 0, 0]) == pytest.approx(15.0)
  # x = 0.25 + 0.5 = 0.75, y = 1.0 -> u = 0.25, v = 0.5: (0.75*0 + 0.25*10 + 0.75*20 + 0.25*30)/2.
  out = crops.crop(img, jnp.array([0.25, 0.5, 1.25, 1.5]), 1)
  assert float(out[0, 0, 0]) == pytest.approx((2.5 + 15 + 7.5) / 2)
  # Border: x = 0, y = 0.5 -> u = -0.5, v = 0: half pixel (0, 0) = 0, half fill = 100 -> 50.
  out = crops.crop(img, jnp.array([-0.5, 0.0, 0.5, 1.0]), 1, fill=100.0)
  assert float(out[0, 0, 0]) == pytest.approx(50.0)
  # Corner: u = v = -0.5: a quarter of pixel (0, 0) and three quarters fill.
  out = crops.crop(img, jnp.array([-0.5, -0.5, 0.5, 0.5]), 1, fill=100.0)
  assert float(out[0, 0, 0]) == pytest.approx(75.0)
  # Downscaling 2x2 -> 1x1 over the whole image samples its centre: the mean.
  out = crops.crop(img, jnp.array([0.0, 0.0, 2.0, 2.0]), 1)
  assert float(out[0, 0, 0]) == pytest.approx(15.0)


def test_whole_pixel_shift_with_fill_from_border():
  img = np.random.default_rng(1).integers(0, 256, (12, 15, 3)).astype(np.uint8)
  fill = np.array([5.0, 6.0, 7.0], np.float32)
  kx, ky = 3, -2  # window moved right by 3 and up by 2
  out = np.asarray(crops.crop(img, jnp.array([kx, ky, kx + 15.0, ky + 12.0]), (12, 15), fill=fill))
  expected = np.broadcast_to(fill, (12, 15, 3)).copy()
  # out[r, c] = img[r + ky, c + kx] where that pixel exists.
  expected[2:, :12] = img[:10, 3:]
  np.testing.assert_array_equal(out, expected)


def test_window_fully_outside_is_fill():
  img = np.full((10, 10, 3), 200, np.uint8)
  for win in ([20.0, 0, 30, 10], [-30.0, -30, -12, -11], [0.0, 11, 10, 40], [1e7, 1e7, 2e7, 2e7]):
    out = np.asarray(crops.crop(img, jnp.array(win), 8, fill=jnp.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(out, np.broadcast_to([1.0, 2.0, 3.0], (8, 8, 3)))


def test_random_windows_match_reference():
  img = np.random.default_rng(2).integers(0, 256, (30, 40, 3)).astype(np.uint8)
  rng = np.random.default_rng(3)
  for _ in range(6):
    x1, y1 = rng.uniform(-15, 35), rng.uniform(-15, 25)
    win = np.array([x1, y1, x1 + rng.uniform(2, 40), y1 + rng.uniform(2, 30)])
    size = (int(rng.integers(3, 25)), int(rng.integers(3, 25)))
    out = crops.crop(img, jnp.asarray(win, jnp.float32), size, fill=(9.0, 99.0, 199.0))
    ref = _ref_crop(img, win.astype(np.float32), size, fill=(9.0, 99.0, 199.0))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=2e-3)


def test_gather_and_matmul_implementations_agree():
  img = np.random.default_rng(4).integers(0, 256, (24, 32, 3)).astype(np.uint8)
  gather = jax.jit(lambda w: crops._crop_gather(img, w, (9, 13), 4.0, (20, 30)))
  matmul = jax.jit(lambda w: crops._crop_matmul(img, w, (9, 13), 4.0, (20, 30)))
  for win in ([3.3, -4.1, 29.7, 20.2], [-10.0, 5.0, 50.0, 30.0], [10.2, 10.9, 12.0, 12.5]):
    a, b = gather(jnp.array(win)), matmul(jnp.array(win))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)


def test_valid_hw_masks_padding():
  rng = np.random.default_rng(5)
  img = rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)
  padded = np.full((20, 24, 3), 255, np.uint8)  # padding that is not the fill value
  padded[:13, :17] = img
  win = jnp.array([-3.5, 2.25, 21.0, 16.0])
  want = crops.crop(img, win, (11, 14), fill=10.0)
  got = crops.crop(padded, win, (11, 14), fill=10.0, valid_hw=(13, 17))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)
  # The padding would show without valid_hw.
  assert np.abs(np.asarray(crops.crop(padded, win, (11, 14), fill=10.0)) - np.asarray(want)).max() > 50
  # valid_hw as a traced array.
  f = jax.jit(lambda im, w, v: crops.crop(im, w, (11, 14), fill=10.0, valid_hw=v))
  np.testing.assert_allclose(np.asarray(f(padded, win, jnp.array([13, 17]))), np.asarray(want), atol=1e-4)


def test_context_crop_centres_box():
  # Bright 32x16 box (xyxy 40, 30, 72, 46) on a dark 100x120 image.
  img = np.zeros((100, 120, 3), np.uint8)
  img[30:46, 40:72] = 255
  box = np.array([40.0, 30.0, 72.0, 46.0])
  win = crops.context_window(box, 2.0)
  np.testing.assert_array_equal(win, [24.0, 22.0, 88.0, 54.0])  # 64 x 32 around centre (56, 38)
  np.testing.assert_array_equal(crops.to_crop(box, win), [0.25, 0.25, 0.75, 0.75])
  # At one crop pixel per image pixel the box fills exactly the central half.
  out = np.asarray(crops.crop(img, jnp.asarray(win), (32, 64)))[..., 0]
  expected = np.zeros((32, 64))
  expected[8:24, 16:48] = 255
  np.testing.assert_array_equal(out, expected)
  # Warped to a square 32 x 32 crop (aspect not kept): bright in the central half, dark outside,
  # with at most one blended pixel at each edge.
  out = np.asarray(crops.crop(img, jnp.asarray(win), 32))[..., 0]
  assert np.all(out[9:23, 9:23] == 255)
  assert np.all(out[:7] == 0) and np.all(out[25:] == 0)
  assert np.all(out[:, :7] == 0) and np.all(out[:, 25:] == 0)
  bright = out > 127.5
  rows, cols = np.nonzero(bright)
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 23, 8, 23)


def test_jit_vmap_batch_equals_per_item():
  rng = np.random.default_rng(6)
  imgs = rng.integers(0, 256, (3, 20, 26, 3)).astype(np.uint8)
  wins = jnp.array([[2.0, 3.0, 18.0, 15.0], [-5.5, 4.25, 30.0, 12.0], [10.0, -8.0, 22.0, 40.0]])
  per_item = np.stack([np.asarray(crops.crop(imgs[i], wins[i], (7, 9), fill=3.0)) for i in range(3)])
  batch = crops.crop_batch(imgs, wins, (7, 9), fill=3.0)
  assert batch.shape == (3, 7, 9, 3)
  np.testing.assert_allclose(np.asarray(batch), per_item, atol=1e-4)
  # Plain vmap of crop, and crop inside an outer jit with the window traced.
  vm = jax.vmap(lambda im, w: crops.crop(im, w, (7, 9), fill=3.0))(imgs, wins)
  np.testing.assert_allclose(np.asarray(vm), per_item, atol=1e-4)
  outer = jax.jit(lambda im, w: crops.crop(im, w * 1.0, (7, 9), fill=3.0).sum())
  assert float(outer(imgs[1], wins[1])) == pytest.approx(per_item[1].sum(), rel=1e-5)
  # Per-item valid_hw.
  vhw = jnp.array([[20, 26], [15, 20], [10, 26]])
  per_item = np.stack([np.asarray(crops.crop(imgs[i], wins[i], (7, 9), fill=3.0, valid_hw=vhw[i]))
                       for i in range(3)])
  np.testing.assert_allclose(np.asarray(crops.crop_batch(imgs, wins, (7, 9), 3.0, vhw)), per_item,
                             atol=1e-4)


def test_crop_inside_scan():
  imgs = np.random.default_rng(7).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
  wins = jnp.array([[0.0, 0, 16, 16], [1.0, 1, 9, 9], [-4.0, 2, 12, 14], [3.0, 3, 4, 4]])

  def step(carry, x):
    im, w = x
    return carry + 1, crops.crop(im, w, 5)

  _, out = jax.jit(lambda a, b: jax.lax.scan(step, 0, (a, b)))(imgs, wins)
  for i in range(4):
    np.testing.assert_allclose(np.asarray(out[i]), np.asarray(crops.crop(imgs[i], wins[i], 5)), atol=1e-4)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[H, W, C\]"):
    crops.crop(np.zeros((5, 5)), jnp.zeros(4), 3)
  with pytest.raises(ValueError, match=r"\[4\]"):
    crops.crop(np.zeros((5, 5, 3)), jnp.zeros((2, 4)), 3)


# ----------------------------------------------------------------- host crop


@pytest.mark.parametrize("win", [
    [40.3, 30.7, 140.2, 110.9],    # inside, downscale
    [-30.5, -20.25, 60.0, 50.0],   # overlapping the top-left border, upscale
    [150.0, 100.0, 260.0, 190.0],  # overlapping the bottom-right border
    [300.0, 300.0, 400.0, 380.0],  # fully outside
])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_crop_np_agrees_with_crop(win, dtype):
  img = _smooth_random_image(160, 200).astype(dtype)
  fill = (10.0, 128.0, 250.0)
  host = crops.crop_np(img, np.array(win), (48, 64), fill=fill)
  dev = np.asarray(crops.crop(img, jnp.array(win), (48, 64), fill=jnp.array(fill)))
  assert host.shape == dev.shape == (48, 64, 3) and host.dtype == np.float32
  err = np.abs(host - dev)
  assert err.max() <= 1.0, err.max()
  assert err.mean() <= 0.1, err.mean()


def test_crop_np_whole_image_and_shift():
  img = np.random.default_rng(8).integers(0, 256, (12, 15, 3)).astype(np.uint8)
  np.testing.assert_array_equal(crops.crop_np(img, [0, 0, 15, 12], (12, 15)), img.astype(np.float32))
  out = crops.crop_np(img, [3, -2, 18, 10], (12, 15), fill=7.0)
  np.testing.assert_array_equal(out[2:, :12], img[:10, 3:])
  assert np.all(out[:2] == 7.0) and np.all(out[:, 12:] == 7.0)
  # More than 4 channels (cv2's border value holds 4) and a single channel.
  img6 = np.random.default_rng(9).integers(0, 256, (12, 15, 6)).astype(np.uint8)
  fill6 = np.arange(6.0)
  np.testing.assert_allclose(crops.crop_np(img6, [-2.5, 1.5, 9.0, 13.0], (6, 7), fill=fill6),
                             _ref_crop(img6, [-2.5, 1.5, 9.0, 13.0], (6, 7), fill=fill6), atol=4.0)
  out1 = crops.crop_np(img[..., :1], [1.0, 1.0, 9.0, 9.0], 4)
  assert out1.shape == (4, 4, 1)


# ----------------------------------------------------------------- window maths


def test_context_window_aspect_not_kept():
  np.testing.assert_array_equal(crops.context_window(np.array([10.0, 20.0, 30.0, 60.0])), [0, 0, 40, 80])
  np.testing.assert_array_equal(crops.context_window(np.array([10.0, 20.0, 30.0, 60.0]), 3.0),
                                [-10, -20, 50, 100])
  wj = crops.context_window(jnp.array([[10.0, 20.0, 30.0, 60.0]] * 2))
  assert wj.shape == (2, 4)
  np.testing.assert_array_equal(np.asarray(wj[1]), [0, 0, 40, 80])


def test_to_from_crop_round_trip():
  rng = np.random.default_rng(10)
  b = boxes.xywh_to_xyxy(np.concatenate([rng.uniform(-50, 500, (20, 2)), rng.uniform(1, 200, (20, 2))], 1))
  w = crops.context_window(b + rng.uniform(-10, 10, (20, 4)), 2.0)
  np.testing.assert_allclose(crops.from_crop(crops.to_crop(b, w), w), b, rtol=0, atol=1e-12)
  n = crops.to_crop(b, w)
  np.testing.assert_allclose(crops.to_crop(crops.from_crop(n, w), w), n, rtol=0, atol=1e-12)
  # Hand value: window [10, 20, 110, 70]: x -> (x - 10)/100, y -> (y - 20)/50.
  np.testing.assert_array_equal(crops.to_crop([35, 45, 60, 70], [10, 20, 110, 70]), [0.25, 0.5, 0.5, 1.0])
  np.testing.assert_array_equal(crops.from_crop([0.25, 0.5, 0.5, 1.0], [10, 20, 110, 70]), [35, 45, 60, 70])
  # float32 jax, and under jit/vmap.
  bj, wj = jnp.asarray(b, jnp.float32), jnp.asarray(w, jnp.float32)
  rt = jax.jit(jax.vmap(lambda x, y: crops.from_crop(crops.to_crop(x, y), y)))(bj, wj)
  np.testing.assert_allclose(np.asarray(rt), np.asarray(bj), rtol=1e-5, atol=1e-3)


def test_siamfc_window():
  # w = 30, h = 10: p = 0.5 * 40 = 20; s_z = sqrt(50 * 30) = sqrt(1500); s_x = s_z * 255 / 127.
  z, x = crops.siamfc_window(np.array([5.0, 15.0, 30.0, 10.0]))
  s_z = np.sqrt(1500.0)
  s_x = s_z * 255 / 127
  np.testing.assert_allclose(z, [20 - s_z / 2, 20 - s_z / 2, 20 + s_z / 2, 20 + s_z / 2], rtol=1e-14)
  np.testing.assert_allclose(x, [20 - s_x / 2, 20 - s_x / 2, 20 + s_x / 2, 20 + s_x / 2], rtol=1e-14)
  zj, xj = crops.siamfc_window(jnp.array([[5.0, 15.0, 30.0, 10.0]]))
  np.testing.assert_allclose(np.asarray(zj[0]), z, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(np.asarray(xj[0]), x, rtol=1e-6, atol=1e-5)


def test_reversed_window_mirrors_and_list_size():
  img = np.random.default_rng(11).integers(0, 256, (9, 14, 3)).astype(np.uint8)
  out = crops.crop(img, jnp.array([14.0, 0.0, 0.0, 9.0]), [9, 14])
  np.testing.assert_array_equal(np.asarray(out), img[:, ::-1].astype(np.float32))
  out = crops.crop_batch(img[None], jnp.array([[0.0, 9.0, 14.0, 0.0]]), [9, 14])
  np.testing.assert_array_equal(np.asarray(out[0]), img[::-1].astype(np.float32))
