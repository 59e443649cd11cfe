"""Re3 training: loss pieces, the sampler, one update, exact resume, kill -9 + resume, NaN stop."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rolo_jax  # noqa: F401
import jax
import jax.numpy as jnp

from rolo_jax.data import synthetic
from rolo_jax.data.sequence import ArrayFrames, Sequence
from rolo_jax.models import association, re3
from rolo_jax.train import checkpoint as ck
from rolo_jax.train import curriculum as cur
from rolo_jax.train import loop, optim, re3_data, re3_task
from rolo_jax.trackers.re3 import config_from_meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small model on small synthetic clips: every test here compiles in seconds.
CFG = re3.CONFIGS["tiny"].replace(name="test", conv_channels=(8, 16, 16, 16, 16), skip_channels=(4, 4, 4),
                                  fc6_units=32, lstm_hidden=16)
SYN = synthetic.SyntheticConfig(height=48, width=64, num_frames=12, target_size=(0.25, 0.35))
NO_JITTER = re3_task.TaskConfig(jitter=False)


@pytest.fixture(scope="module")
def pool():
  return synthetic.make_split("train", 4, SYN)


@pytest.fixture(scope="module")
def batch(pool):
  return tuple(re3_data.Re3Sampler(pool, seed=3).batch(0, 3, 2))


@pytest.fixture(scope="module")
def params():
  return re3.init(jax.random.PRNGKey(0), CFG)


# --------------------------------------------------------------------------- loss pieces


def test_weight_decay_term_is_half_squared_norm_times_0_0005():
  tree = {"a": {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([0.5])},
          "prelu": jnp.array([-2.0, 0.0, 1.0])}
  # sum of squares: 1 + 4 + 9 + 16 + 0.25 + 4 + 0 + 1 = 35.25
  assert float(optim.weight_decay_loss(tree)) == pytest.approx(0.0005 * 0.5 * 35.25, rel=1e-6)
  assert float(optim.weight_decay_loss(tree, 0.1)) == pytest.approx(0.1 * 0.5 * 35.25, rel=1e-6)


def eval_loss(params, batch, key, p_pred):
  # One compiled loss (jitter off: deterministic whatever the key) shared by the tests below.
  return re3_task.make_eval_loss(CFG, NO_JITTER)(params, batch, key, p_pred)


def test_loss_is_l1_plus_weight_decay_over_all_params(params, batch):
  loss, aux = eval_loss(params, batch, jax.random.PRNGKey(0), 0.5)
  wd = 0.0005 * 0.5 * sum(float(np.sum(np.asarray(v, np.float64) ** 2))
                          for v in jax.tree_util.tree_leaves(params))
  assert float(aux["wd"]) == pytest.approx(wd, rel=1e-5)
  assert float(loss) == pytest.approx(float(aux["l1"]) + wd, rel=1e-6)
  assert aux["l1_t"].shape == (3,)
  assert float(aux["l1"]) == pytest.approx(float(np.mean(aux["l1_t"])), rel=1e-6)


def test_step0_target_is_the_centre_half_of_the_crop(batch):
  # Step 0 crops frame 0 at the ground truth with context 2: the target is (2.5, 2.5, 7.5, 7.5).
  # A model that outputs exactly that (zero weights, fc_out bias) has zero step-0 loss.
  p = jax.tree_util.tree_map(jnp.zeros_like, re3.init(jax.random.PRNGKey(1), CFG))
  p["fc_out"]["b"] = jnp.array([2.5, 2.5, 7.5, 7.5])
  _, aux = eval_loss(p, batch, jax.random.PRNGKey(0), 0.0)
  assert float(aux["l1_t"][0]) == pytest.approx(0.0, abs=1e-4)
  assert float(aux["l1_t"][1]) > 0.01  # later frames: the target moved


def test_visible_fraction_and_nudge_hand_computed():
  gt = jnp.array([[0.0, 0.0, 10.0, 10.0]])
  # box [5, 0, 15, 10]: 2x window [0, -5, 20, 15] holds all of gt.
  assert float(re3_task.visible_fraction(jnp.array([[5.0, 0, 15, 10]]), gt, 2.0)[0]) == pytest.approx(1.0)
  # box [20, 0, 30, 10]: window [15, -5, 35, 15] misses gt entirely.
  assert float(re3_task.visible_fraction(jnp.array([[20.0, 0, 30, 10]]), gt, 2.0)[0]) == 0.0
  # box [12, 0, 22, 10]: window [7, -5, 27, 15] holds x in [7, 10]: 30%.
  assert float(re3_task.visible_fraction(jnp.array([[12.0, 0, 22, 10]]), gt, 2.0)[0]) == pytest.approx(0.3)
  cfg = re3_task.TaskConfig()
  boxes = jnp.array([[12.0, 0, 22, 10], [5.0, 0, 15, 10], [200.0, 300, 260, 330]])
  gts = jnp.repeat(gt, 3, axis=0)
  out = re3_task.nudge_boxes(boxes, gts, cfg)
  # 1 halving: [6, 0, 16, 10] -> window [1, -5, 21, 15] holds 90% >= 70%.
  np.testing.assert_allclose(out[0], [6.0, 0, 16, 10], atol=1e-5)
  np.testing.assert_allclose(out[1], boxes[1])                 # already fine: unchanged
  assert float(re3_task.visible_fraction(out[2:], gts[2:], 2.0)[0]) >= 0.7


def test_jitter_statistics_match_the_spec():
  gt = jnp.tile(jnp.array([[100.0, 50.0, 140.0, 70.0]]), (20000, 1))   # w 40, h 20
  j = re3_task.jitter_boxes(jax.random.PRNGKey(0), gt, re3_task.TaskConfig())
  w, h = j[:, 2] - j[:, 0], j[:, 3] - j[:, 1]
  dx = (0.5 * (j[:, 0] + j[:, 2]) - 120.0) / 40.0
  dy = (0.5 * (j[:, 1] + j[:, 3]) - 60.0) / 20.0
  # Laplace(0, b): E|X| = b = 1/5.
  assert float(jnp.mean(jnp.abs(dx))) == pytest.approx(0.2, rel=0.05)
  assert float(jnp.mean(jnp.abs(dy))) == pytest.approx(0.2, rel=0.05)
  fw = w / 40.0
  assert float(fw.min()) >= 0.6 - 1e-5 and float(fw.max()) <= 1.4 + 1e-5
  # clip(Laplace(1, 1/15)): median 1, E|f - 1| = 1/15 (the clip at +-0.4 = 6 scales is negligible).
  assert float(jnp.median(fw)) == pytest.approx(1.0, abs=0.01)
  assert float(jnp.mean(jnp.abs(h / 20.0 - 1.0))) == pytest.approx(1 / 15, rel=0.05)


def test_sanitize_boxes():
  fb = jnp.array([[1.0, 2.0, 11.0, 12.0], [0.0, 0.0, 5.0, 5.0]])
  bad = jnp.array([[jnp.nan, 0.0, 1.0, 1.0], [30.0, 20.0, 29.5, 20.5]])
  out = re3_task.sanitize_boxes(bad, fb, jnp.array([[40, 60], [40, 60]]), re3_task.TaskConfig())
  np.testing.assert_allclose(out[0], fb[0])
  # Ordered and grown to the 2-px minimum about the centre (29.75, 20.25).
  np.testing.assert_allclose(out[1], [28.75, 19.25, 30.75, 21.25], atol=1e-5)


def reference_loss(params, frames, boxes, valid_hw, key, p_pred, cfg):
  """The Re3 loss written as one plain Python loop over time (no scan, no second pass): crop both
  frames at the carried box, step, L1 against the crop-relative ground truth x10, feed back."""
  from rolo_jax.data import crops as C
  n_t, n_b = frames.shape[:2]
  state = re3.initial_state(CFG, n_b)
  box = jnp.asarray(boxes[0])
  crop = lambda f, b: C.crop_batch(jnp.asarray(f), C.context_window(b, 2.0), CFG.crop_size, 0.0, valid_hw)
  prev = crop(frames[0], box)
  keys = jax.random.split(key, n_t)
  total = 0.0
  for t in range(n_t):
    gt = jnp.asarray(boxes[t])
    k_jit, k_coin = jax.random.split(keys[t])
    cur = crop(frames[t], box)
    win = C.context_window(box, 2.0)
    state, (pred, _) = re3.step(params, state, re3.preprocess(jnp.stack([prev, cur], 1)), cfg=CFG)
    total = total + jnp.mean(jnp.sum(jnp.abs(pred - C.to_crop(gt, win) * 10.0), -1))
    dec = re3_task.sanitize_boxes(C.from_crop(jax.lax.stop_gradient(pred) / 10.0, win), gt, valid_hw, cfg)
    dec = re3_task.nudge_boxes(dec, gt, cfg)
    jit = re3_task.nudge_boxes(re3_task.jitter_boxes(k_jit, gt, cfg), gt, cfg)
    box = jnp.where(jax.random.bernoulli(k_coin, p_pred, (n_b,))[:, None], dec, jit)
    prev = crop(frames[t], box)
  return total / n_t + optim.weight_decay_loss(params)


def test_two_pass_loss_and_gradient_equal_a_plain_loop(params, batch):
  # The update runs the feedback unroll forward-only and recomputes the network on the crops it
  # saw (the fed-back boxes carry no gradient); loss and gradient must equal the direct loop's.
  cfg = re3_task.TaskConfig()
  key = jax.random.PRNGKey(11)
  f = jax.jit(jax.value_and_grad(
      lambda p, q: re3_task.unrolled_loss(p, *batch, key, q, model_cfg=CFG, cfg=cfg)[0]))
  r = jax.jit(jax.value_and_grad(lambda p, q: reference_loss(p, *batch, key, q, cfg)))
  for p_pred in (0.0, 0.5, 1.0):
    l, g = f(params, p_pred)
    lr_, gr = r(params, p_pred)
    assert float(l) == pytest.approx(float(lr_), rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(gr)):
      # float32 sums in another order: absolute slack scaled by the leaf's largest value
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3,
                                 atol=1e-5 * (1 + float(np.abs(np.asarray(b)).max())))


# --------------------------------------------------------------------------- update


def test_one_update_reduces_the_loss_on_a_fixed_batch(params, batch):
  # Adam's first step moves every weight by ~lr; 1e-4 is small next to conv1's init scale.
  opt = optim.make_optimizer(1e-4)
  state = re3_task.TrainState(params, opt.init(params), jnp.zeros((), jnp.int32))
  key = jax.random.PRNGKey(5)
  before, _ = eval_loss(params, batch, key, 0.0)
  update = re3_task.make_update(CFG, opt, None, NO_JITTER)
  state = jax.tree_util.tree_map(jnp.array, state)   # the update donates its input
  new, m = update(state, batch, key, jnp.float32(0.0))
  after, _ = eval_loss(new.params, batch, key, 0.0)
  assert float(m["loss"]) == pytest.approx(float(before), rel=1e-5)
  assert float(after) < float(before)
  assert int(new.step) == 1
  for k in ("grad_norm", "param_norm", "update_norm"):
    assert np.isfinite(float(m[k])) and float(m[k]) > 0


def test_p_pred_zero_and_one_both_run_and_differ(params, batch):
  key = jax.random.PRNGKey(2)
  l0, a0 = eval_loss(params, batch, key, 0.0)
  l1, a1 = eval_loss(params, batch, key, 1.0)
  assert float(a0["frac_pred"]) == 0.0 and float(a1["frac_pred"]) == 1.0
  assert np.isfinite(float(l0)) and np.isfinite(float(l1))
  # Step 0 is the same either way; later steps crop at different boxes.
  assert float(a0["l1_t"][0]) == pytest.approx(float(a1["l1_t"][0]), rel=1e-6)
  assert abs(float(a0["l1_t"][2]) - float(a1["l1_t"][2])) > 1e-3


# --------------------------------------------------------------------------- sampler


def coded_sequence(name, t, h, w, track_code, absent=()):
  """Frames whose pixels say (frame index, track code, column): channel 0 = index, 1 = code,
  2 = column; a 4x6 box moving 1 px per frame."""
  frames = np.zeros((t, h, w, 3), np.uint8)
  frames[..., 0] = np.arange(t)[:, None, None]
  frames[..., 1] = track_code
  frames[..., 2] = np.arange(w)[None, None, :]
  boxes = np.array([[2.0 + i, 3.0, 4.0, 6.0] for i in range(t)])
  boxes[list(absent)] = np.nan
  return Sequence(name, ArrayFrames(frames), boxes)


def test_sampler_windows_mirror_padding_and_determinism():
  a = coded_sequence("a", 10, 20, 30, 1, absent=(4,))   # labelled windows of 3: starts 0, 1, 5, 6, 7
  b = coded_sequence("b", 6, 25, 16, 2)
  s = re3_data.Re3Sampler([a], [b], seed=0, p_real=0.5, p_mirror=0.5)
  assert s.canvas_hw == (25, 30)
  seen_mirror, seen_plain, seen_src = set(), set(), set()
  for pos in range(30):
    fr, bx, vhw = s.batch(pos, 3, 4)
    assert fr.shape == (3, 4, 25, 30, 3) and fr.dtype == np.uint8
    assert bx.shape == (3, 4, 4) and np.all(np.isfinite(bx))
    for j in range(4):
      code = int(fr[0, j, 0, 0, 1]) if fr[0, j, 0, 0, 1] else int(fr[0, j, 0, -1, 1])
      h, w = vhw[j]
      assert (h, w) == ((20, 30) if code == 1 else (25, 16))
      seen_src.add(code)
      idx = fr[:, j, 0, 0, 0].astype(int) if code == 1 else fr[:, j, 0, 0, 0].astype(int)
      assert np.all(np.diff(idx) == 1)                       # consecutive frames
      if code == 1:
        assert 4 not in idx                                  # never an absent frame
      assert np.all(fr[:, j, h:] == 0) and np.all(fr[:, j, :, w:] == 0)   # zero padding
      mirrored = int(fr[0, j, 0, 0, 2]) == w - 1
      x = 2.0 + idx
      if mirrored:
        seen_mirror.add(code)
        np.testing.assert_array_equal(fr[0, j, 0, :w, 2], np.arange(w)[::-1])
        np.testing.assert_allclose(bx[:, j, 0], w - (x + 4.0))
        np.testing.assert_allclose(bx[:, j, 2], w - x)
      else:
        seen_plain.add(code)
        np.testing.assert_allclose(bx[:, j], np.stack([x, 3 + 0 * x, x + 4, 9 + 0 * x], -1))
  assert seen_src == {1, 2} and seen_mirror == {1, 2} and seen_plain == {1, 2}
  # Deterministic in (seed, position); different positions differ.
  f1, b1, _ = s.batch(7, 3, 4)
  f2, b2, _ = re3_data.Re3Sampler([a], [b], seed=0).batch(7, 3, 4)
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(b1, b2)
  assert s.sample_plan(7, 3, 4) != s.sample_plan(8, 3, 4)


def test_sampler_refuses_when_no_window_is_long_enough():
  from rolo_jax.errors import DataError
  s = re3_data.Re3Sampler([coded_sequence("a", 5, 8, 8, 1, absent=(2,))])
  with pytest.raises(DataError, match="4 consecutive labelled frames"):
    s.batch(0, 4, 1)


# --------------------------------------------------------------------------- loop: resume, NaN


def run_training(workdir, pool, **kw):
  sampler = re3_data.Re3Sampler(pool, seed=1)
  curriculum = cur.CurriculumConfig(stages=((2, 2), (3, 1)), stage_steps=(3,))
  args = dict(workdir=str(workdir), model_cfg=CFG, curriculum=curriculum, sampler=sampler,
              total_steps=6, lr=1e-3, warmup_steps=2, checkpoint_every=1, progress=False, seed=4)
  args.update(kw)
  return re3_task.train(**args)


def leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_interrupted_and_resumed_run_ends_with_identical_params(tmp_path, pool):
  full, s_full = run_training(tmp_path / "full", pool)
  part, s_part = run_training(tmp_path / "resumed", pool, stop_after=2)   # interrupted mid-stage 0
  assert s_part["steps"] == 2 and ck.Checkpointer(str(tmp_path / "resumed")).latest_step() == 2
  resumed, s_res = run_training(tmp_path / "resumed", pool)
  assert s_res["resumed_from"] == 2 and s_res["steps_this_run"] == 4
  assert s_res["stage_history"] == s_full["stage_history"] == [(0, 0), (3, 1)]
  for x, y in zip(leaves(full.params), leaves(resumed.params)):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(leaves(full.opt_state), leaves(resumed.opt_state)):
    np.testing.assert_array_equal(x, y)
  p_full, _ = ck.load_params(str(tmp_path / "full"))
  p_res, meta = ck.load_params(str(tmp_path / "resumed"))
  assert meta["step"] == 6 and meta["model"] == "re3" and meta["config"]["fc6_units"] == 32
  for x, y in zip(leaves(p_full), leaves(p_res)):
    np.testing.assert_array_equal(x, y)
  # The training moved the parameters, and a finished workdir is not trained further.
  init = re3.init(jax.random.split(jax.random.PRNGKey(4))[0], CFG)
  assert any(not np.array_equal(x, y) for x, y in zip(leaves(init), leaves(full.params)))
  again, s_again = run_training(tmp_path / "full", pool)
  assert s_again["steps_this_run"] == 0
  # A different model in the same workdir is refused.
  with pytest.raises(loop.ConfigMismatchError, match="different 'config'"):
    run_training(tmp_path / "full", pool, model_cfg=CFG.replace(lstm_hidden=8))


def test_params_ema_is_the_hand_computed_average_and_changes_no_update():
  # A toy quadratic with plain SGD: the averaged run's params must equal the plain run's, and its
  # average must equal ema <- d ema + (1 - d) params_new, started at the initial params.
  import optax
  p0 = {"a": jnp.array([1.0, -2.0]), "b": {"c": jnp.array(3.0)}}
  loss = lambda p: jnp.sum(p["a"] ** 2) + 2.0 * p["b"]["c"] ** 2
  plain, averaged = optax.sgd(0.1), optax.chain(optax.sgd(0.1), optim.params_ema(0.5))
  pp, pa, sp, sa = p0, p0, plain.init(p0), averaged.init(p0)
  assert optim.ema_params(sp) is None
  want = jax.tree_util.tree_map(np.asarray, p0)
  for _ in range(3):
    g = jax.grad(loss)(pp)
    up, sp = plain.update(g, sp, pp)
    pp = optax.apply_updates(pp, up)
    ua, sa = averaged.update(jax.grad(loss)(pa), sa, pa)
    pa = optax.apply_updates(pa, ua)
    want = jax.tree_util.tree_map(lambda w, p: 0.5 * w + 0.5 * np.asarray(p), want, pp)
  for x, y in zip(leaves(pp), leaves(pa)):
    np.testing.assert_array_equal(x, y)
  # a: 1 -> 0.8 -> 0.64 -> 0.512 under x <- 0.8 x; the average 1 -> 0.9 -> 0.77 -> 0.641.
  np.testing.assert_allclose(optim.ema_params(sa)["a"], [0.641, -1.282], rtol=1e-6)
  for x, y in zip(leaves(want), leaves(optim.ema_params(sa))):
    np.testing.assert_allclose(x, y, rtol=1e-6)
  with pytest.raises(ValueError, match="decay must be in"):
    optim.params_ema(1.0)


def test_averaged_run_resumes_exactly_and_its_checkpoint_serves_the_average(tmp_path, pool):
  full, _ = run_training(tmp_path / "full", pool, ema_decay=0.7)
  run_training(tmp_path / "resumed", pool, ema_decay=0.7, stop_after=4)
  resumed, s_res = run_training(tmp_path / "resumed", pool, ema_decay=0.7)
  assert s_res["resumed_from"] == 4
  ema_full = optim.ema_params(full.opt_state)
  p_avg, meta = ck.load_params(str(tmp_path / "resumed"))
  p_raw, meta_raw = ck.load_params(str(tmp_path / "resumed"), raw=True)
  assert meta["params_item"] == "ema_params" and meta_raw["params_item"] == "params"
  for x, y in zip(leaves(ema_full), leaves(p_avg)):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(leaves(full.params), leaves(p_raw)):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(leaves(p_avg), leaves(p_raw)))
  assert jax.tree_util.tree_structure(p_avg) == jax.tree_util.tree_structure(p_raw)
  # Averaging is part of the run's settings: resuming without it (or with another decay) is refused.
  with pytest.raises(loop.ConfigMismatchError, match="ema_decay"):
    run_training(tmp_path / "resumed", pool)
  # A run without averaging writes no such item, and load_params gives its params as before.
  run_training(tmp_path / "plain", pool, total_steps=2)
  assert ck.load_params(str(tmp_path / "plain"))[1]["params_item"] == "params"
  assert not (tmp_path / "plain" / "checkpoints" / "2" / "ema_params").exists()


def test_non_finite_loss_stops_naming_the_step_and_writes_no_checkpoint(tmp_path, pool):
  with pytest.raises(loop.NonFiniteError, match=r"non-finite loss \(nan\) at step 3"):
    run_training(tmp_path, pool, nan_at_step=3)
  assert ck.Checkpointer(str(tmp_path)).all_steps() == [1, 2]


# --------------------------------------------------------------------------- the CLI, kill -9


def cli(workdir, *flags, env=None, wait=True):
  cmd = [sys.executable, "-m", "experiments.re3_curriculum", "--smoke", "--noprogress",
         f"--workdir={workdir}", *flags]
  if wait:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)


@pytest.mark.slow
def test_cli_kill_9_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
  # Compiled executables are shared between the subprocesses through JAX's persistent cache (the
  # test session's, tests/conftest.py, when there is one).
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR",
                                                                  str(tmp_path / "jax_cache")),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  steps = ["--steps=24", "--stage_steps=12", "--checkpoint_every=1"]
  done = cli(tmp_path / "a", *steps, "--probe", env=env)   # uninterrupted, then evaluated
  assert done.returncode == 0, done.stderr[-3000:]
  metrics = json.load(open(tmp_path / "a" / "metrics.json"))
  assert metrics["checkpoint_step"] == 24 and "re3" in metrics["test"]["trackers"]
  assert metrics["params_item"] == "ema_params"   # the default run scores its weights' average
  probe = json.load(open(tmp_path / "a" / "probe.json"))   # 5 sizes x 2 offsets, finite responses
  box = probe["box_response"]
  assert len(box) == 10 and all(np.isfinite(r["size_ratio"]) and r["frames"] > 0 for r in box)
  assert [r["mode"] for r in probe["oracle_runs"]] == ["tracker", "true size", "true centre"]
  assert all(0.0 <= r["auc"] <= 1.0 for r in probe["oracle_runs"])
  # The uncorrected oracle run is the tracker itself: the same score as the evaluation's.
  assert probe["oracle_runs"][0]["auc"] == pytest.approx(metrics["test"]["trackers"]["re3"]["auc"], abs=1e-6)

  proc = cli(tmp_path / "b", *steps, "--noeval", env=env, wait=False)
  ckdir = tmp_path / "b" / "checkpoints"
  deadline = time.time() + 240

  def finished_steps():
    return [int(e) for e in os.listdir(ckdir) if e.isdigit()] if ckdir.exists() else []

  while max(finished_steps(), default=0) < 4:   # kill once step 4 or later is saved
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, "no checkpoint 4 within the time limit"
    time.sleep(0.005)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  killed_at = ck.Checkpointer(str(tmp_path / "b")).latest_step()
  assert 4 <= killed_at < 24, killed_at

  resumed = cli(tmp_path / "b", *steps, "--noeval", env=env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  summary = json.load(open(tmp_path / "b" / "train_summary.json"))
  assert summary["resumed_from"] == killed_at and summary["steps"] == 24
  pa, _ = ck.load_params(str(tmp_path / "a"))
  pb, mb = ck.load_params(str(tmp_path / "b"))
  assert mb["step"] == 24
  for x, y in zip(leaves(pa), leaves(pb)):
    np.testing.assert_array_equal(x, y)

  # A NaN loss: one line on stderr naming the step, exit status 1, no checkpoint for it.
  nan = cli(tmp_path / "c", *steps, "--inject_nan_at=4",
            env=env)
  assert nan.returncode == 1
  errors = [l for l in nan.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "non-finite loss (nan) at step 4" in errors[0], nan.stderr[-2000:]
  assert "Traceback" not in nan.stderr
  assert ck.Checkpointer(str(tmp_path / "c")).latest_step() == 3


def test_cli_task_flags_reach_the_checkpoint_and_guard_resume(tmp_path):
  r = cli(tmp_path / "w", "--nonudge_pred", "--min_visible=0.5", "--noeval")
  assert r.returncode == 0, r.stderr[-2000:]
  c = ck.Checkpointer(str(tmp_path / "w"))
  task = c.read_json(c.latest_step())["meta"]["task"]
  assert task["nudge_pred"] is False and task["min_visible"] == 0.5
  # --eval_raw scores the raw training weights instead of their average.
  ev = cli(tmp_path / "w", "--eval_only", "--eval_raw", "--baselines=", "--nogif", "--num_test_seqs=1")
  assert ev.returncode == 0, ev.stderr[-2000:]
  assert json.load(open(tmp_path / "w" / "metrics.json"))["params_item"] == "params"
  # The same workdir with the default task settings is another run: refused, nothing written.
  again = cli(tmp_path / "w", "--noeval")
  assert again.returncode == 2 and "different 'task'" in again.stderr and "Traceback" not in again.stderr


def test_cli_resume_with_other_lr_or_seed_is_refused(tmp_path):
  # An interrupted run continued with another learning rate, schedule or seed would be a mix of two
  # runs; the workdir must be resumed with its own settings or left alone.
  first = cli(tmp_path / "w", "--stop_after=2", "--noeval")
  assert first.returncode == 0, first.stderr
  # The refusal names the flags that give the checkpoint's settings back, where every difference
  # has one (a list of stages has none: then no hint).
  for flags, message, hint in (
      (["--lr=5e-3"], "different 'optimizer' than this run (lr: 0.0007 -> 0.005)", "--lr 0.0007"),
      (["--params_ema=0"], "different 'optimizer' than this run (ema_decay: 0.998 -> '<absent>')",
       "--params_ema 0.998"),
      (["--pretrain_steps=2"],
       "different 'optimizer' than this run (encoder_pretrain_steps: '<absent>' -> 2)", "--pretrain_steps 0"),
      (["--stages=2x2,2x2"], "different 'curriculum'", None),
      (["--seed=9"], "trained with a different seed than this run (seed: 0 -> 9)", "--seed 0")):
    r = cli(tmp_path / "w", "--noeval", *flags)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (r.stderr.rstrip().endswith(f"; the flags that match it: {hint}") if hint
            else "flags that match" not in r.stderr), r.stderr
  done = cli(tmp_path / "w", "--noeval")   # its own settings: resumes and finishes
  assert done.returncode == 0, done.stderr


def test_cli_pretrains_the_encoder_first_and_records_it(tmp_path):
  # --pretrain_steps runs the encoder's Siamese pretraining (rolo_jax.train.re3_pretrain) in
  # <workdir>/pretrain before the curriculum; the run's checkpoints record its steps.
  r = cli(tmp_path / "w", "--pretrain_steps=2", "--noeval")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "encoder pretraining: 2 steps" in r.stdout, r.stdout
  assert ck.latest_step(str(tmp_path / "w" / "pretrain")) == 2
  c = ck.Checkpointer(str(tmp_path / "w"))
  assert c.read_json(c.latest_step())["meta"]["optimizer"]["encoder_pretrain_steps"] == 2
  c.close()
  # The finished run again with another pretraining batch: refused, with the flag that matches
  # (the run's checkpoints record only the steps; <workdir>/pretrain records the batch).
  r = cli(tmp_path / "w", "--pretrain_steps=2", "--pretrain_batch=3", "--noeval")
  assert r.returncode == 2 and "different 'task'" in r.stderr and "batch: 2 -> 3" in r.stderr, r.stderr
  assert r.stderr.rstrip().endswith("; the flags that match it: --pretrain_batch 2"), r.stderr
  # Another learning rate as well: one refusal names both, and its hint resumes the run at once.
  r = cli(tmp_path / "w", "--pretrain_steps=2", "--pretrain_batch=3", "--lr=0.003", "--noeval")
  assert r.returncode == 2 and "different 'optimizer'" in r.stderr and "batch: 2 -> 3" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr
  hint = r.stderr.rstrip().rsplit("; the flags that match it: ", 1)[1].split()
  assert sorted(hint[::2]) == ["--lr", "--pretrain_batch"] and "--pretrain_batch 2" in " ".join(hint)
  assert cli(tmp_path / "w", "--pretrain_steps=2", "--noeval", *hint).returncode == 0


def test_resume_flags_translate_saved_settings_to_flags():
  from experiments.re3_curriculum import resume_flags
  absent = loop.ConfigMismatchError.ABSENT
  # A workdir trained before the weights' average existed stores no ema_decay: --params_ema 0.
  assert resume_flags({("optimizer", "ema_decay"): absent}) == "--params_ema 0"
  # Likewise a workdir trained before the encoder's pretraining existed: --pretrain_steps 0; and
  # the pretraining's own checkpoint (<workdir>/pretrain) names its steps and batch in 'task'.
  assert resume_flags({("optimizer", "encoder_pretrain_steps"): absent,
                       ("optimizer", "ema_decay"): absent}) == "--pretrain_steps 0 --params_ema 0"
  assert resume_flags({("task", "steps"): 400, ("task", "batch"): 16}) == \
      "--pretrain_steps 400 --pretrain_batch 16"
  assert resume_flags({("optimizer", "clip_norm"): None, ("task", "nudge_pred"): False,
                       ("task", "min_visible"): 0.5, ("config", "norm"): "lrn"}) == \
      "--clip_norm 0 --nonudge_pred --min_visible 0.5 --norm lrn"
  assert resume_flags({("task", "nudge_pred"): True}) == "--nudge_pred"
  # One difference without a flag (or with a value no flag takes) and there is no hint at all.
  assert resume_flags({("optimizer", "lr"): 0.001, ("task", "context"): 3.0}) == ""
  assert resume_flags({("optimizer", "group_lr_scales"): {"conv1": 2.0}}) == ""
  assert resume_flags({("task", "min_visible"): absent}) == ""
  assert resume_flags({}) == ""


@pytest.mark.parametrize("flag, message", [
    ("--lstm_hidden=-3", "--lstm_hidden -3: expected a positive size"),
    ("--crop_size=5", "--crop_size 5:"),
    ("--centre_noise=-1", "--centre_noise -1.0: expected a Laplace scale >= 0"),
    ("--size_noise=-0.5", "--size_noise -0.5: expected a Laplace scale >= 0"),
    ("--min_visible=1.5", "--min_visible 1.5: expected a fraction in [0, 1]"),
    ("--steps=0", "--steps 0: expected at least 1 update"),
    ("--num_test_seqs=0", "--num_test_seqs 0: expected at least 1 test sequence"),
    ("--num_train_seqs=0", "--num_train_seqs 0: expected at least 1 synthetic training sequence"),
    ("--lr=nan", "--lr nan: expected a finite learning rate > 0"),
    ("--checkpoint_every=0", "--checkpoint_every 0: expected at least 1 step"),
    ("--baselines=static,nope", "--baselines static,nope: expected comma-separated tracker names"),
    ("--stage_steps=2,2,2,2", "stage_steps has 4 lengths for 2 stages"),
    ("--centre_noise=nan", "--centre_noise nan: expected a Laplace scale >= 0"),
    ("--params_ema=1", "--params_ema 1.0: expected a decay in [0, 1) (0: off)"),
    ("--pretrain_steps=-1", "--pretrain_steps -1: expected a count >= 0 (0: no pretraining)"),
    ("--pretrain_batch=0", "--pretrain_batch 0: expected at least 1 pair"),
    ("--sequences_json=/no/such.json", "--sequences_json /no/such.json: no such file"),
])
def test_cli_bad_model_and_jitter_flags_are_usage_errors(tmp_path, flag, message):
  r = cli(tmp_path / "w", flag)
  assert r.returncode == 2 and r.stderr.startswith(f"error: ") and message in r.stderr, r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr   # no usage dump
  assert "Traceback" not in r.stderr and not (tmp_path / "w" / "checkpoints").exists()


def test_cli_norm_flag_and_workdirs_saved_before_norm_existed(tmp_path):
  # --norm lrn trains the (smoke) tiny model with the paper's LRN instead of tiny's group norm and
  # the checkpoint records it. A workdir written before `norm` existed stores use_lrn instead (made
  # here by rewriting the saved meta): resuming it with tiny's own group norm is another model and
  # refused, naming the field; with --norm lrn it is the same model and resumes to the end.
  r = cli(tmp_path / "w", "--norm=lrn", "--stop_after=2", "--noeval")
  assert r.returncode == 0, r.stderr[-3000:]
  _, meta = ck.load_params(str(tmp_path / "w"))
  assert config_from_meta(meta).norm == "lrn" and re3.CONFIGS["tiny"].norm == "group"
  metas = list((tmp_path / "w" / "checkpoints").glob("*/meta/metadata"))
  assert metas
  for f in metas:
    m = json.loads(f.read_text())
    del m["config"]["norm"], m["config"]["norm_groups"]
    m["config"]["use_lrn"] = True
    f.write_text(json.dumps(m))
  assert config_from_meta(ck.load_params(str(tmp_path / "w"))[1]).norm == "lrn"
  again = cli(tmp_path / "w", "--noeval")
  assert again.returncode == 2 and "norm: 'lrn' -> 'group'" in again.stderr, again.stderr
  assert "use_lrn" not in again.stderr and "Traceback" not in again.stderr, again.stderr
  done = cli(tmp_path / "w", "--norm=lrn", "--noeval")
  assert done.returncode == 0, done.stderr[-3000:]
  assert ck.load_params(str(tmp_path / "w"))[1]["step"] == 4


# --------------------------------------------------------------------------- --eval_only's inputs


def params_checkpoint(path, meta, cfg=CFG):
  """A params-only checkpoint (as `rolo_jax.convert` writes) of `cfg`'s freshly initialised
  params with the given meta: no training needed."""
  ck.save_params(str(path), re3.init(jax.random.PRNGKey(0), cfg), meta)
  return path


def one_error_line(r):
  """The single 'error: ...' line of a refused run (exit status 2, nothing else on stderr)."""
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
  return lines[0]


@pytest.mark.parametrize("meta, message", [
    ({"model": "re3", "config": "nonexistent"},
     "checkpoint meta names Re3 config 'nonexistent'; known: paper, small, tiny"),
    ({"model": "re3"}, "checkpoint meta has no Re3 config (meta['config'] = None)"),
    ({"model": "memtrack", "config": CFG}, "checkpoint holds a 'memtrack' model, not 're3'"),
    ({"model": "association", "config": association.CONFIGS["tiny"]},
     "checkpoint holds a 'association' model, not 're3'"),
    ({"model": "re3", "config": "tiny"}, "params do not match re3 config 'tiny': ['conv1']['b']: "
                                         "expected [16], found [8]"),
], ids=["unknown_config", "no_config", "memtrack", "association", "param_shapes"])
def test_cli_eval_only_refuses_a_checkpoint_of_another_model_or_config(tmp_path, meta, message):
  # --eval_only checks a workdir as `rolo_jax.track` does (trackers.re3.checked_config): before, an
  # unknown or missing config was an 18-line traceback (exit 1), a MemTrack checkpoint was scored as
  # Re3 (exit 0), an Association LSTM one named neither the folder nor the model, and params of
  # another shape failed inside jit.
  w = params_checkpoint(tmp_path / "w", meta)
  r = cli(w, "--eval_only", "--baselines=", "--nogif")
  line = one_error_line(r)
  assert line.startswith(f"error: {w}: ") and message in line, line
  assert not (w / "metrics.json").exists()


def make_otb(root, lengths):
  """OTB-layout folder {name: (images, boxes)}: a square moving a pixel per frame, the ground truth
  its first `boxes` boxes."""
  from PIL import Image
  for name, (n_img, n_box) in lengths.items():
    (root / name / "img").mkdir(parents=True)
    rows = []
    for t in range(n_img):
      f = np.full((48, 64, 3), 40, np.uint8)
      f[8 + t:20 + t, 10 + t:22 + t] = 200
      Image.fromarray(f).save(root / name / "img" / f"{t + 1:04d}.jpg", quality=95)
      rows.append(f"{10 + t},{8 + t},12,12")
    (root / name / "groundtruth_rect.txt").write_text("\n".join(rows[:n_box]) + "\n")
  return root


def test_cli_otb_folder_with_fewer_boxes_than_images_is_refused(tmp_path):
  # An OTB sequence with 10 boxes for 12 images: read strictly as otb_baselines and rolo read it
  # (before, both --eval_otb and --data otb cut it to 10 frames without a word, exit 0), before any
  # training or evaluation; with a sequences json giving its range (frames 1..10) it is scored.
  otb = make_otb(tmp_path / "otb", {"SeqA": (12, 10), "SeqB": (8, 8)})
  gt = otb / "SeqA" / "groundtruth_rect.txt"
  want = f"error: {gt}: img/ has 12 images but groundtruth_rect.txt has 10 boxes"
  w = params_checkpoint(tmp_path / "w", {"model": "re3", "config": CFG})
  for flags in (["--eval_only", f"--eval_otb={otb}"], [f"--eval_otb={otb}"],
                ["--noeval", "--data=otb", f"--data_dir={otb}"]):
    r = cli(tmp_path / "w" if "--eval_only" in flags else tmp_path / "t", *flags)
    assert one_error_line(r).startswith(want), r.stderr
    assert not (tmp_path / "t" / "checkpoints").exists() and not (w / "metrics.json").exists()
  ranges = tmp_path / "seqs.json"
  ranges.write_text(json.dumps([{"name": "SeqA", "start_frame": 1, "end_frame": 10},
                                {"name": "SeqB", "start_frame": 1, "end_frame": 8}]))
  ok = cli(w, "--eval_only", f"--eval_otb={otb}", f"--sequences_json={ranges}", "--baselines=",
           "--nogif")
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert json.load(open(w / "metrics.json"))["otb"]["num_sequences"] == 2
