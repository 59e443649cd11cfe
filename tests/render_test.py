"""Drawing boxes and writing GIF / MP4 animations."""
import numpy as np
import pytest

from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.eval.render import GT_COLOR, render_boxes, render_sequence, write_animation


def test_render_boxes_draws_the_rectangle_edges_hand_computed():
  frame = np.zeros((100, 120, 3), np.uint8)
  out = render_boxes(frame, {"a": [10.0, 20.0, 30.0, 40.0]}, {"a": (255, 0, 0)}, thickness=1)
  assert out is not frame and out.any()  # a copy, and something was drawn
  assert not frame.any()  # the input is left alone
  red = np.all(out == (255, 0, 0), axis=-1)
  # Outer edge along pixels x = 10..39, y = 20..59.
  assert red[20, 10:40].all() and red[59, 10:40].all()
  assert red[20:60, 10].all() and red[20:60, 39].all()
  assert not red[20, 40] and not red[60, 10] and not red[19, 25]
  assert not out[21:59, 11:39].any()  # interior untouched (the label sits above the box)
  assert out[:20, 10:40, 0].any() and not out[:20, ..., 1:].any()  # the red label above the box


def test_render_boxes_skips_nan_and_empty_boxes():
  frame = np.full((30, 40, 3), 7, np.uint8)
  out = render_boxes(frame, {"gone": [np.nan] * 4, "empty": [5, 5, 0, 3]})
  np.testing.assert_array_equal(out, frame)


def test_render_boxes_default_colours():
  frame = np.zeros((60, 60, 3), np.uint8)
  out = render_boxes(frame, {"ground truth": [10, 30, 20, 20]}, thickness=1)
  assert tuple(out[30, 20]) == GT_COLOR


def _frames(T=6, H=40, W=50):
  # Each frame a different grey level so no two frames are identical.
  return [np.full((H, W, 3), 20 * t, np.uint8) for t in range(T)]


def test_write_gif_round_trip(tmp_path):
  from PIL import Image

  path = tmp_path / "sub" / "a.gif"
  n = write_animation(iter(_frames()), str(path), fps=10)
  assert n == 6
  with Image.open(path) as im:
    assert im.n_frames == 6
    assert im.size == (50, 40)
    assert im.info.get("loop") == 0
    assert im.info.get("duration") == 100
    im.seek(3)
    assert np.abs(np.asarray(im.convert("RGB")).astype(int) - 60).max() <= 2


def test_write_mp4_round_trip(tmp_path):
  import cv2

  path = str(tmp_path / "a.mp4")
  frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(5)]
  for f in frames:
    f[..., 0] = 200  # red in RGB
  assert write_animation(frames, path, fps=15) == 5
  cap = cv2.VideoCapture(path)
  got = []
  while True:
    ok, bgr = cap.read()
    if not ok:
      break
    got.append(bgr)
  cap.release()
  assert len(got) == 5
  assert got[0].shape == (48, 64, 3)
  b, g, r = (got[2][..., i].astype(int).mean() for i in range(3))
  assert r > 150 and b < 50 and g < 50  # written as BGR, so red stays red


def test_write_animation_errors(tmp_path):
  with pytest.raises(ValueError, match="unsupported animation format '.avi'"):
    write_animation(_frames(), str(tmp_path / "a.avi"))
  with pytest.raises(ValueError, match="no frames"):
    write_animation([], str(tmp_path / "a.gif"))
  with pytest.raises(ValueError, match="differs"):
    write_animation([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)],
                    str(tmp_path / "b.mp4"))


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_render_sequence(tmp_path, ext):
  import cv2
  from PIL import Image

  T = 8
  frames = np.zeros((T, 60, 80, 3), np.uint8)
  gt = np.array([[5.0 + t, 10.0, 20.0, 16.0] for t in range(T)])
  gt[3] = np.nan  # absent in one frame: skipped, not drawn
  seq = Sequence("s", ArrayFrames(frames), gt)
  tracks = {"kcf": gt + [1, 30, 0, 0], "short": gt[:2] + [3, 35, 0, 0]}  # shorter than the video: fine
  path = str(tmp_path / ("r" + ext))
  assert render_sequence(seq, tracks, path, max_frames=6) == 6
  if ext == ".gif":
    with Image.open(path) as im:
      assert im.n_frames == 6 and im.size == (80, 60)
      first = np.asarray(im.convert("RGB")).astype(int)
    # Ground truth's top edge (y = 10, x = 5..24) is drawn green.
    assert first[10, 15, 1] > 200 and first[10, 15, 0] < 60
  else:
    cap = cv2.VideoCapture(path)
    n = 0
    while cap.read()[0]:
      n += 1
    cap.release()
    assert n == 6
  assert render_sequence(seq, tracks, str(tmp_path / ("half" + ext)), scale=0.5) == T
