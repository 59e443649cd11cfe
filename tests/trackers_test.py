"""The tracker interface contract, the baselines on a synthetic moving square, and the registry."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from rolo_jax import trackers
from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.errors import DataError
from rolo_jax.trackers import base
from rolo_jax.trackers.baselines import OpenCVTracker, StaticTracker, opencv_rect

BASELINES = ("static", "kcf", "csrt")


def moving_squares(T=30, H=120, W=160, size=24, starts=((30, 40),), velocities=((1.5, 1.0),), seed=0):
  """Textured squares (random-noise texture) translating over a blocky background.

  Returns (frames uint8 [T, H, W, 3], boxes float64 [K, T, 4]); square k's top-left corner at frame t
  is round(start_k + t * velocity_k).
  """
  rng = np.random.default_rng(seed)
  bg = (rng.random((H // 8 + 1, W // 8 + 1, 3)) * 120).astype(np.uint8)
  bg = np.kron(bg, np.ones((8, 8, 1), np.uint8))[:H, :W]
  textures = [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in starts]
  frames = np.repeat(bg[None], T, axis=0)
  boxes = np.zeros((len(starts), T, 4))
  for k, ((x0, y0), (vx, vy)) in enumerate(zip(starts, velocities)):
    for t in range(T):
      x, y = int(round(x0 + vx * t)), int(round(y0 + vy * t))
      xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + size, W), min(y + size, H)
      if xb > xa and yb > ya:  # the part inside the frame
        frames[t, ya:yb, xa:xb] = textures[k][ya - y:yb - y, xa - x:xb - x]
      boxes[k, t] = (x, y, size, size)
  return frames, boxes


def square_sequence(**kw):
  frames, boxes = moving_squares(**kw)
  return Sequence("square", ArrayFrames(frames), boxes[0])


# --- registry -------------------------------------------------------------------------------------


def test_registry_lists_the_baselines():
  assert set(BASELINES) <= set(trackers.available())
  for name in BASELINES:
    t = trackers.make_tracker(name)
    assert isinstance(t, trackers.Tracker)
    assert t.name == name
  assert isinstance(trackers.make_tracker("KCF"), OpenCVTracker)  # names are case-insensitive


def test_unknown_tracker_lists_available_names():
  with pytest.raises(trackers.UnknownTrackerError) as e:
    trackers.make_tracker("no_such_tracker")
  msg = str(e.value)
  assert "no_such_tracker" in msg
  for name in BASELINES:
    assert name in msg


def test_checkpoint_errors():
  with pytest.raises(DataError, match="checkpoint does not exist"):
    trackers.make_tracker("kcf", checkpoint="/nonexistent/ckpt")
  with pytest.raises(ValueError, match="no learned parameters"):
    trackers.make_tracker("static", checkpoint=__file__)


def test_register_is_lazy_and_validated():
  # A 'module:function' factory is not imported at registration time.
  trackers.register("lazy_probe_tracker", "rolo_jax_no_such_module:make", overwrite=True)
  try:
    assert "lazy_probe_tracker" in trackers.available()
    with pytest.raises(ModuleNotFoundError):
      trackers.make_tracker("lazy_probe_tracker")
  finally:
    trackers._REGISTRY.pop("lazy_probe_tracker")
  with pytest.raises(ValueError, match="module:function"):
    trackers.register("bad_probe", "no_colon_here")
  with pytest.raises(ValueError, match="already registered"):
    trackers.register("kcf", lambda checkpoint=None: StaticTracker())
  # Callables work too and receive the checkpoint keyword.
  trackers.register("callable_probe", lambda checkpoint=None, box=None: StaticTracker())
  try:
    assert isinstance(trackers.make_tracker("callable_probe", box=1), StaticTracker)
  finally:
    trackers._REGISTRY.pop("callable_probe")


def test_importing_the_registry_imports_neither_jax_nor_opencv():
  code = ("import sys, rolo_jax.trackers as t; t.available(); "
          "print('jax' in sys.modules, 'cv2' in sys.modules, 'flax' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split() == ["False", "False", "False"]


# --- baselines ------------------------------------------------------------------------------------


def test_static_returns_the_first_box_forever():
  seq = square_sequence()
  init = np.array([30.25, 40.5, 24.0, 23.5])
  boxes, fps = trackers.run_tracker(trackers.make_tracker("static"), seq, init_box=init)
  np.testing.assert_array_equal(boxes, np.tile(init, (len(seq), 1)))
  assert fps > 0


@pytest.mark.parametrize("name", ["kcf", "csrt"])
def test_opencv_trackers_follow_a_translating_square(name):
  seq = square_sequence(T=30, velocities=((1.5, 1.0),))  # moves 43.5 px right, 29 px down
  info = {}
  boxes, fps = trackers.run_tracker(trackers.make_tracker(name), seq, info=info)
  assert boxes.shape == (30, 4)
  np.testing.assert_array_equal(boxes[0], seq.boxes[0])
  err = np.abs(boxes - seq.boxes)
  assert err[:, :2].max() <= 3.0, err[:, :2].max()  # centre within a few pixels in every frame
  assert err[:, 2:].max() <= 3.0  # no scale drift on a fixed-size target
  assert info["failures"] == 0
  assert np.isfinite(fps) and fps > 0


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_gives_finite_boxes_of_at_least_one_pixel(name):
  # The target leaves the frame at the right: trackers lose it but must still return boxes.
  seq = square_sequence(T=40, W=100, starts=((50, 40),), velocities=((3.0, 0.0),))
  seq.boxes[:] = seq.boxes[0]  # boxes beyond the image are not ground truth; only init matters here
  boxes, _ = trackers.run_tracker(trackers.make_tracker(name), seq)
  assert boxes.shape == (40, 4)
  assert np.all(np.isfinite(boxes))
  assert np.all(boxes[:, 2:] >= 1)


@pytest.mark.parametrize("name", ["kcf", "csrt"])
def test_opencv_failure_keeps_the_last_box(name):
  # OpenCV's default parameters, whose failure thresholds fire on frames without texture.
  frames, boxes = moving_squares(T=10)
  blank = np.full((5,) + frames.shape[1:], 128, np.uint8)  # uniform frames: nothing to correlate
  seq = Sequence("blank", ArrayFrames(np.concatenate([frames, blank])), np.zeros((15, 4)))
  tracker = OpenCVTracker(name)
  out, _ = trackers.run_tracker(tracker, seq, init_box=boxes[0, 0])
  assert tracker.failures == 5
  np.testing.assert_array_equal(out[10:], np.tile(out[9], (5, 1)))
  assert np.abs(out[9] - boxes[0, 9]).max() <= 3


def test_opencv_params():
  assert trackers.make_tracker("kcf").params == {"detect_thresh": 0.0}
  assert trackers.make_tracker("csrt").params == {"psr_threshold": 0.0}
  assert trackers.make_tracker("kcf", detect_thresh=0.5).params == {"detect_thresh": 0.5}
  assert OpenCVTracker("csrt").params == {}
  with pytest.raises(ValueError, match="no field 'nonsense'"):
    OpenCVTracker("kcf", nonsense=1)
  with pytest.raises(ValueError, match="unknown OpenCV tracker kind"):
    OpenCVTracker("mosse")


def test_opencv_rect_rounds_and_clips():
  assert opencv_rect([10.4, 20.6, 30.2, 40.5], 100, 100) == (10, 21, 31, 40)  # far corner 41, 61
  assert opencv_rect([-5.0, -5.0, 20.0, 20.0], 100, 100) == (0, 0, 15, 15)
  assert opencv_rect([90.0, 95.0, 30.0, 30.0], 100, 100) == (90, 95, 10, 5)
  assert opencv_rect([50.0, 50.0, 0.2, 0.2], 100, 100) == (50, 50, 1, 1)


# --- MultiTracker ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["static", "csrt"])
def test_multi_tracker_three_targets(name):
  frames, gt = moving_squares(T=20, H=160, W=200, starts=((20, 20), (140, 30), (60, 110)),
                              velocities=((1.0, 1.0), (-1.5, 0.5), (1.0, -1.0)), seed=3)
  mt = trackers.make_multi_tracker(name)
  assert isinstance(mt, trackers.MultiTracker)
  mt.init(frames[0], gt[:, 0])
  out = np.stack([mt.update(frames[t]) for t in range(1, 20)], axis=1)  # [K, T-1, 4]
  assert out.shape == (3, 19, 4)
  assert np.all(np.isfinite(out))
  if name == "static":
    np.testing.assert_array_equal(out, np.repeat(gt[:, :1], 19, axis=1))
  else:
    assert np.abs(out[..., :2] - gt[:, 1:, :2]).max() <= 3.0  # each target keeps its own identity
  empty = trackers.MultiTracker(StaticTracker)
  empty.init(frames[0], np.zeros((0, 4)))
  assert empty.update(frames[1]).shape == (0, 4)


# --- CoreTracker ----------------------------------------------------------------------------------


class ConstantVelocityCore:
  """A jittable toy core: boxes move by a fixed velocity per frame; the state counts frames."""

  name = "cv_core"

  def __init__(self, velocity):
    import jax
    import jax.numpy as jnp

    self.velocity = jnp.asarray(velocity, jnp.float32)
    self.init_calls = 0

    def step(state, frame):
      boxes, t = state
      boxes = boxes.at[:, :2].add(self.velocity)
      return (boxes, t + 1), boxes

    self._step = jax.jit(step)

  def init_state(self, frame, boxes):
    import jax.numpy as jnp

    self.init_calls += 1
    return jnp.asarray(boxes, jnp.float32), jnp.zeros((), jnp.int32)

  def step(self, state, frame):
    return self._step(state, frame)


def test_core_tracker_single_and_batched():
  frame = np.zeros((20, 30, 3), np.uint8)
  ct = trackers.CoreTracker(ConstantVelocityCore([2.0, -1.0]))
  assert isinstance(ct, trackers.Tracker) and isinstance(ct, trackers.MultiTracker)
  assert ct.name == "cv_core"
  ct.init(frame, [1.0, 5.0, 4.0, 3.0])
  b1 = ct.update(frame)
  b2 = ct.update(frame)
  assert b1.shape == (4,) and b1.dtype == np.float64
  np.testing.assert_allclose(b1, [3.0, 4.0, 4.0, 3.0])
  np.testing.assert_allclose(b2, [5.0, 3.0, 4.0, 3.0])
  assert int(ct.state[1]) == 2

  ct.init(frame, [[0, 0, 2, 2], [10, 10, 5, 6], [3, 4, 1, 1]])
  out = ct.update(frame)
  assert out.shape == (3, 4)
  np.testing.assert_allclose(out, [[2, -1, 2, 2], [12, 9, 5, 6], [5, 3, 1, 1]])
  # A core is also a valid MultiTracker for make_multi_tracker.
  trackers.register("cv_core_probe", lambda checkpoint=None: trackers.CoreTracker(
      ConstantVelocityCore([1.0, 0.0])))
  try:
    mt = trackers.make_multi_tracker("cv_core_probe")
    assert isinstance(mt, trackers.CoreTracker)
  finally:
    trackers._REGISTRY.pop("cv_core_probe")


def test_core_tracker_update_before_init():
  with pytest.raises(RuntimeError, match="before init"):
    trackers.CoreTracker(ConstantVelocityCore([0.0, 0.0])).update(np.zeros((4, 4, 3), np.uint8))


# --- run_tracker ----------------------------------------------------------------------------------


class ScriptedTracker(trackers.Tracker):
  """Returns the scripted boxes in order (to test run_tracker's guards)."""

  name = "scripted"

  def __init__(self, script):
    self.script = list(script)
    self.init_args = None

  def init(self, frame, box):
    self.init_args = (frame.copy(), np.array(box))

  def update(self, frame):
    return np.asarray(self.script.pop(0), np.float64)


def test_run_tracker_shape_start_and_init_box():
  seq = square_sequence(T=12)
  tracker = ScriptedTracker([[float(i), 0, 1, 1] for i in range(20)])
  boxes, fps = trackers.run_tracker(tracker, seq, start=4)
  assert boxes.shape == (8, 4)
  np.testing.assert_array_equal(boxes[0], seq.boxes[4])
  np.testing.assert_array_equal(tracker.init_args[0], seq.frames[4])
  np.testing.assert_array_equal(boxes[1:, 0], np.arange(7))
  boxes, _ = trackers.run_tracker(ScriptedTracker([[1, 1, 1, 1]] * 11), seq, init_box=[5, 6, 7, 8])
  np.testing.assert_array_equal(boxes[0], [5, 6, 7, 8])
  # One frame: no update, fps is NaN by definition, the box is the initial one.
  one = Sequence("one", ArrayFrames(np.zeros((1, 8, 8, 3), np.uint8)), [[1, 1, 2, 2]])
  boxes, fps = trackers.run_tracker(ScriptedTracker([]), one)
  assert boxes.shape == (1, 4) and np.isnan(fps)


def test_run_tracker_replaces_invalid_boxes_and_counts_them():
  seq = square_sequence(T=7)
  script = [[1, 2, 3, 4], [np.nan, 2, 3, 4], [5, 5, 0, 4], [6, 6, 6, 6], [np.inf, 0, 1, 1], [7, 7, 7, 7]]
  info = {}
  with pytest.warns(RuntimeWarning, match="3 invalid boxes"):
    boxes, _ = trackers.run_tracker(ScriptedTracker(script), seq, info=info)
  expected = [seq.boxes[0], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [6, 6, 6, 6], [6, 6, 6, 6],
              [7, 7, 7, 7]]
  np.testing.assert_array_equal(boxes, expected)
  assert info["failures"] == 3 and info["failed_frames"] == [2, 3, 5]
  assert info["updates"] == 6
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    trackers.run_tracker(ScriptedTracker(script), seq, warn=False)


def test_run_tracker_rejects_a_bad_initial_box():
  seq = square_sequence(T=3)
  seq.boxes[0] = np.nan
  with pytest.raises(ValueError, match="initial box"):
    trackers.run_tracker(StaticTracker(), seq)
  with pytest.raises(ValueError, match="initial box"):
    trackers.run_tracker(StaticTracker(), seq, init_box=[1, 1, 0, 3])
  with pytest.raises(ValueError, match="start"):
    trackers.run_tracker(StaticTracker(), seq, init_box=[1, 1, 2, 3], start=3)


def test_valid_boxes():
  b = np.array([[0, 0, 1, 1], [0, 0, 0, 1], [np.nan, 0, 1, 1], [-5, -5, 0.5, 2]])
  np.testing.assert_array_equal(base.valid_boxes(b), [True, False, False, True])
