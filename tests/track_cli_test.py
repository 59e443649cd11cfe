"""`python -m rolo_jax.track`: frame folders, videos, output format and one-line errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rolo_jax import track
from rolo_jax.data.paths import PROJECT_ROOT
from rolo_jax.errors import cli_main

T, H, W, SIZE = 12, 60, 80, 16


def square_frames(seed=0):
  """A textured 16x16 square moving 2 px right and 1 px down per frame; boxes [T, 4]."""
  rng = np.random.default_rng(seed)
  bg = (rng.random((H, W, 3)) * 60).astype(np.uint8)
  tex = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
  frames, boxes = [], []
  for t in range(T):
    f = bg.copy()
    x, y = 10 + 2 * t, 12 + t
    f[y:y + SIZE, x:x + SIZE] = tex
    frames.append(f)
    boxes.append([x, y, SIZE, SIZE])
  return frames, np.array(boxes, np.float64)


@pytest.fixture
def frame_dir(tmp_path):
  d = tmp_path / "frames"
  d.mkdir()
  frames, boxes = square_frames()
  # Names that sort wrongly as plain strings: natural order must put 2 before 10.
  for t, f in enumerate(frames):
    Image.fromarray(f).save(d / f"img{t + 1}.png")
  return str(d), boxes


def run_cli(argv):
  """Runs the CLI in-process like `python -m rolo_jax.track` does; returns the exit status."""
  try:
    return cli_main(track.main)(argv) or 0
  except SystemExit as e:
    return e.code


def read_lines(path):
  with open(path) as f:
    return f.read().splitlines()


@pytest.mark.parametrize("name", ["static", "csrt"])
def test_frame_folder(frame_dir, tmp_path, capsys, name):
  folder, gt = frame_dir
  out = str(tmp_path / "res" / "boxes.txt")
  assert run_cli(["--frames", folder, "--init", "10,12,16,16", "--tracker", name, "--out", out]) == 0
  lines = read_lines(out)
  assert len(lines) == T
  assert lines[0] == "10,12,16,16"
  boxes = np.array([[float(v) for v in line.split(",")] for line in lines])
  assert np.all(np.isfinite(boxes))
  if name == "static":
    np.testing.assert_array_equal(boxes, np.tile(gt[0], (T, 1)))
  else:  # natural order: a string sort (img1, img10, img11, img12, img2, ...) would break tracking
    assert np.abs(boxes[:, :2] - gt[:, :2]).max() <= 2
  printed = capsys.readouterr().out
  assert "frames/s" in printed and f"tracked {T} frames" in printed


def test_first_line_is_the_given_box_with_fractions(frame_dir, tmp_path):
  folder, _ = frame_dir
  out = str(tmp_path / "b.txt")
  assert run_cli(["--frames", folder, "--init", "10.5,12.25,16,15.75", "--tracker", "kcf",
                  "--out", out, "--max_frames", "5"]) == 0
  lines = read_lines(out)
  assert len(lines) == 5
  assert lines[0] == "10.5,12.25,16,15.75"


def write_square_video(path, fourcc):
  """`square_frames()` as a 10 frames/s video (OpenCV writer, `fourcc` e.g. 'mp4v', 'MJPG')."""
  import cv2

  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
  for f in square_frames()[0]:
    writer.write(np.ascontiguousarray(f[..., ::-1]))
  writer.release()
  return str(path)


def test_video_and_render(frame_dir, tmp_path):
  _, gt = frame_dir
  video = write_square_video(tmp_path / "v.mp4", "mp4v")
  out = str(tmp_path / "v.txt")
  gif = str(tmp_path / "v.gif")
  assert run_cli(["--video", video, "--init", "10,12,16,16", "--tracker", "kcf", "--out", out,
                  "--render", gif, "--max_frames", "10"]) == 0
  lines = read_lines(out)
  assert len(lines) == 10 and lines[0] == "10,12,16,16"
  boxes = np.array([[float(v) for v in line.split(",")] for line in lines])
  assert np.abs(boxes[:, :2] - gt[:10, :2]).max() <= 3
  with Image.open(gif) as im:
    assert im.n_frames == 10 and im.size == (W, H)


def test_truncated_video_is_noted(tmp_path, capsys):
  video = write_square_video(tmp_path / "v.avi", "MJPG")
  with open(video, "rb") as f:
    data = f.read()
  with open(video, "wb") as f:
    f.write(data[:len(data) // 2])   # the header (with its frame count) survives, half the frames not
  out = str(tmp_path / "v.txt")
  assert run_cli(["--video", video, "--init", "10,12,16,16", "--tracker", "static", "--out", out]) == 0
  n = len(read_lines(out))
  assert 0 < n < T
  assert f"note: {video}: the video's header says {T} frames but only {n} could be decoded" in \
      capsys.readouterr().err


def test_video_frames_are_rgb_and_random_access(tmp_path):
  import cv2

  video = str(tmp_path / "red.mp4")
  writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
  for t in range(6):
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[..., 2] = 200  # red, in OpenCV's BGR order
    bgr[:4, :4] = 40 * t  # a frame marker
    writer.write(bgr)
  writer.release()
  v = track.VideoFrames(video)
  assert len(v) == 6 and v.size() == (32, 32)
  f = v[4]
  assert f.dtype == np.uint8 and f.shape == (32, 32, 3)
  assert f[16, 16, 0] > 150 and f[16, 16, 2] < 50  # RGB
  later, earlier = v[5], v[1]  # going back reopens the video
  assert abs(int(later[1, 1, 1]) - 200) < 25 and abs(int(earlier[1, 1, 1]) - 40) < 25
  assert len(track.VideoFrames(video, max_frames=3)) == 3
  v.close()


@pytest.mark.parametrize("argv_fn, expect", [
    (lambda d, o: ["--frames", d + "_missing", "--init", "1,1,5,5", "--tracker", "kcf", "--out", o],
     "does not exist"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5", "--tracker", "kcf", "--out", o], "4 finite numbers"),
    (lambda d, o: ["--frames", d, "--init", "a,b,c,d", "--tracker", "kcf", "--out", o], "4 numbers"),
    (lambda d, o: ["--frames", d, "--init", "1,1,0,5", "--tracker", "kcf", "--out", o], "positive"),
    (lambda d, o: ["--frames", d, "--init", "100,10,5,5", "--tracker", "kcf", "--out", o],
     "outside the 80x60"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "nope", "--out", o], "static"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "kcf", "--out", o,
                   "--checkpoint", d + "/no_ckpt"], "checkpoint does not exist"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "kcf", "--out", o,
                   "--render", o + ".avi"], ".gif or .mp4"),
    (lambda d, o: ["--video", d + "/garbage.mp4", "--init", "1,1,5,5", "--tracker", "kcf", "--out", o],
     "garbage.mp4: "),
    (lambda d, o: ["--video", d + "/nothing.mp4", "--init", "1,1,5,5", "--tracker", "kcf", "--out", o],
     "does not exist"),
    (lambda d, o: ["--init", "1,1,5,5", "--tracker", "kcf", "--out", o], "--frames"),
    (lambda d, o: ["--frames", d, "--init", "1,1,0.5,5", "--tracker", "static", "--out", o],
     "at least 1 px"),
    # Inside the 80x60 frame only a 1x1 corner is left, and OpenCV's CSRT asserts on that.
    (lambda d, o: ["--frames", d, "--init", "79,59,5,5", "--tracker", "csrt", "--out", o],
     "csrt: OpenCV cannot start on the box [79.0, 59.0, 5.0, 5.0] (as an integer box inside the "
     "80x60 frame: x,y,w,h = (79, 59, 1, 1)); it needs a box at least 2 px wide and high"),
    (lambda d, o: ["--frames", d, "--init", "10,10,40,1", "--tracker", "csrt", "--out", o],
     "at least 2 px wide and high"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "static", "--out", o,
                   "--render", o + ".gif", "--render_scale", "0"], "--render_scale must be a positive"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "static", "--out", o,
                   "--render", o + ".gif", "--render_fps", "nan"], "--render_fps must be a positive"),
    (lambda d, o: ["--frames", d, "--init", "1,1,5,5", "--tracker", "static", "--out", o,
                   "--render", o + "_dir.gif"], "_dir.gif: --render: this is a folder"),
])
def test_bad_input_one_line_exit_2(frame_dir, tmp_path, capsys, argv_fn, expect):
  folder, _ = frame_dir
  with open(os.path.join(folder, "garbage.mp4"), "wb") as f:
    f.write(b"this is not a video" * 100)
  out = str(tmp_path / "never.txt")
  os.makedirs(out + "_dir.gif")   # a folder where the animation should go
  os.makedirs(os.path.join(folder, "sub.png"))   # a folder is never taken for a frame
  assert run_cli(argv_fn(folder, out)) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("error: ") and expect in err, err
  assert not os.path.exists(out)


def test_unreadable_image_in_folder(tmp_path, capsys):
  d = tmp_path / "bad"
  d.mkdir()
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "0001.png")
  (d / "0002.png").write_bytes(b"not a png")
  assert run_cli(["--frames", str(d), "--init", "2,2,5,5", "--tracker", "static",
                  "--out", str(tmp_path / "o.txt")]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "0002.png" in err


def test_output_path_that_is_a_folder_fails_before_tracking(frame_dir, tmp_path, capsys):
  folder, _ = frame_dir
  out = tmp_path / "already_a_folder"
  out.mkdir()
  assert run_cli(["--frames", folder, "--init", "10,12,16,16", "--tracker", "csrt", "--out",
                  str(out)]) == 2
  err = capsys.readouterr().err
  assert err == f"error: {out}: --out: this is a folder; expected the path of a file to write\n"


def test_frame_of_another_size_is_named(tmp_path, capsys):
  d = tmp_path / "mixed"
  d.mkdir()
  for i in range(1, 4):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(d / f"{i:04d}.png")
  Image.fromarray(np.zeros((25, 30, 3), np.uint8)).save(d / "0002.png")
  out = tmp_path / "o.txt"
  assert run_cli(["--frames", str(d), "--init", "2,2,5,5", "--tracker", "static", "--out",
                  str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {d / '0002.png'}: frame 1 is 30x25 but the sequence's first frame "
                        f"({d / '0001.png'}) is 30x20"), err
  assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_module_entry_point(frame_dir, tmp_path):
  folder, _ = frame_dir
  out = str(tmp_path / "m.txt")
  cmd = [sys.executable, "-m", "rolo_jax.track", "--frames", folder, "--init", "10,12,16,16",
         "--tracker", "static", "--out", out]
  ok = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr
  assert len(read_lines(out)) == T
  bad = subprocess.run(cmd[:-4] + ["--tracker", "nope", "--out", out], cwd=PROJECT_ROOT,
                       capture_output=True, text=True)
  assert bad.returncode == 2
  assert len(bad.stderr.strip().splitlines()) == 1 and "unknown tracker 'nope'" in bad.stderr
  # FFmpeg's own log lines (written by native code, not through sys.stderr) are silenced too.
  garbage = tmp_path / "garbage.mp4"
  garbage.write_bytes(b"not a video" * 100)
  bad = subprocess.run([sys.executable, "-m", "rolo_jax.track", "--video", str(garbage), "--init",
                        "1,1,5,5", "--tracker", "static", "--out", out], cwd=PROJECT_ROOT,
                       capture_output=True, text=True)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      f"error: {garbage}: cannot open this file as a video (OpenCV VideoCapture failed)"]


def test_format_number():
  assert track.format_number(12.0) == "12"
  assert track.format_number(12.25) == "12.25"
  assert track.format_number(-0.00001) == "0"
  assert track.format_number(1 / 3) == "0.3333"


def _one_error_line(capsys):
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
  return err


def test_out_and_render_naming_one_file_are_refused(frame_dir, tmp_path, capsys):
  folder, _ = frame_dir
  same = str(tmp_path / "x.gif")
  argv = ["--frames", folder, "--init", "10,12,16,16", "--tracker", "static", "--out", same]
  assert run_cli(argv + ["--render", same]) == 2   # the GIF used to overwrite the boxes
  assert "--out and --render name one file" in _one_error_line(capsys)
  assert not os.path.exists(same)
  os.symlink(same, tmp_path / "link.gif")   # the same file by another name
  assert run_cli(argv + ["--render", str(tmp_path / "link.gif")]) == 2
  assert "--out and --render name one file" in _one_error_line(capsys)
  assert not os.path.exists(same)


def test_output_that_is_an_input_file_is_refused(frame_dir, tmp_path, capsys):
  folder, _ = frame_dir
  frame = os.path.join(folder, "img12.png")   # past --max_frames: still a frame of the folder
  before = open(frame, "rb").read()
  assert run_cli(["--frames", folder, "--init", "10,12,16,16", "--tracker", "static", "--out",
                  frame, "--max_frames", "3"]) == 2
  assert f"--out {frame}: this is an input file (--frames {frame})" in _one_error_line(capsys)
  assert open(frame, "rb").read() == before
  video = write_square_video(tmp_path / "v.mp4", "mp4v")
  size = os.path.getsize(video)
  assert run_cli(["--video", video, "--init", "10,12,16,16", "--tracker", "static", "--out",
                  video]) == 2
  assert "this is an input file (--video" in _one_error_line(capsys)
  assert os.path.getsize(video) == size


def test_render_larger_than_the_limit_is_refused_before_tracking(frame_dir, tmp_path, capsys,
                                                                 monkeypatch):
  folder, _ = frame_dir
  out, gif = tmp_path / "o.txt", tmp_path / "g.gif"
  monkeypatch.setattr("rolo_jax.trackers.run_tracker", lambda *a, **k: pytest.fail("tracked"))
  # 100 x the 80x60 frames used to write a 168 MB partial GIF of 8000x6000 frames for minutes.
  assert run_cli(["--frames", folder, "--init", "10,12,16,16", "--tracker", "static", "--out",
                  str(out), "--render", str(gif), "--render_scale", "100", "--max_frames", "2"]) == 2
  err = _one_error_line(capsys)
  assert ("--render_scale 100 would render 8000x6000 frames (from 80x60); the animation is limited "
          f"to {track.MAX_RENDER_SIDE} px on a side: use --render_scale 51.2 or less") in err
  assert not out.exists() and not gif.exists()


def test_render_size_limit_boundary():
  track.check_render_size(80, 60, 51.2)   # 4096x3072: the largest allowed
  track.check_render_size(4096, 10, None)
  with pytest.raises(track._UsageError, match="4104x3078"):
    track.check_render_size(80, 60, 51.3)
  with pytest.raises(track._UsageError,
                     match=r"--render: the 5000x100 frames exceed .* 0\.819 or less"):
    track.check_render_size(5000, 100, None)
