"""MemTrack model: the asserted parameter count, map sizes, layer semantics, step/apply consistency,
and the online tracker's batching."""
import rolo_jax  # noqa: F401

import dataclasses
import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.cells import lstm
from rolo_jax.models import memtrack

TINY = memtrack.CONFIGS["tiny"]


def abstract(cfg):
  return jax.eval_shape(lambda k: memtrack.init(k, cfg), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def tiny():
  return memtrack.init(jax.random.PRNGKey(0), TINY), memtrack.init_batch_stats(TINY)


def images(shape, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8))


# ---------------------------------------------------------------- sizes and counts (no allocation)

def test_paper_parameter_count_layer_by_layer():
  rows = memtrack.param_table(abstract(memtrack.CONFIGS["paper"]))
  total = sum(n for _, _, n in rows)
  assert total == memtrack.PAPER_PARAMS == 6_052_935
  group = lambda g: sum(n for name, _, n in rows if name.startswith(g + "/"))
  # The derivation in the module docstring, group by group.
  convs = [(11, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)]
  conv_total = sum(k * k * i * o + o for k, i, o in convs)
  assert conv_total == 3_747_200
  assert group("extractor") == conv_total + 2 * (96 + 256 + 384 + 384) == 3_749_440
  assert group("attention") == 256 * 256 + (512 * 256 + 256) + 256 == 197_120
  assert group("init_state") == 2 * (256 * 512 + 512) == 263_168
  assert group("controller") == (256 + 512) * 4 * 512 + 2 * 4 * 512 + 2 * 512 == 1_577_984
  assert group("heads") == (512 * 3 + 3) + 513 + 2 * (512 * 256 + 256) + 513 == 265_221
  assert group("response_bn") == 2


def test_paper_shapes_of_templates_searches_and_response():
  cfg = memtrack.CONFIGS["paper"]
  assert (cfg.template_side, cfg.search_side, cfg.response_side, cfg.total_stride) == (6, 22, 17, 8)
  p = abstract(cfg)
  stats = memtrack.init_batch_stats(cfg)
  z = jax.eval_shape(lambda p, x: memtrack.extract(p, stats, x, cfg=cfg)[0], p,
                     jax.ShapeDtypeStruct((2, 127, 127, 3), jnp.uint8))
  x = jax.eval_shape(lambda p, x: memtrack.extract(p, stats, x, cfg=cfg)[0], p,
                     jax.ShapeDtypeStruct((2, 255, 255, 3), jnp.uint8))
  assert z.shape == (2, 6, 6, 256) and x.shape == (2, 22, 22, 256)
  table = {n: s for n, s, _ in memtrack.param_table(p)}
  assert table["extractor/conv1/w"] == (11, 11, 3, 96)
  assert table["extractor/conv2/w"] == (5, 5, 96, 256)   # no groups
  assert "extractor/bn5/scale" not in table and "extractor/bn4/scale" in table
  assert table["controller/w"] == (256 + 512, 4 * 512)
  assert table["heads/read_key/w"] == (512, 256)
  assert table["response_bn/scale"] == (1,)


def test_cpu_configs_keep_the_map_sides_and_the_ablation_has_no_memory():
  for name in ("cpu", "cpu_nomem"):
    cfg = memtrack.CONFIGS[name]
    assert (cfg.template_side, cfg.search_side, cfg.response_side, cfg.total_stride) == (6, 22, 17, 4)
  assert set(abstract(memtrack.CONFIGS["cpu_nomem"])) == {"extractor", "response_bn"}
  # Same extractor either way: the ablation changes only the template.
  a = memtrack.param_table(abstract(memtrack.CONFIGS["cpu"])["extractor"])
  b = memtrack.param_table(abstract(memtrack.CONFIGS["cpu_nomem"])["extractor"])
  assert a == b


def test_bad_configs_are_rejected():
  with pytest.raises(ValueError, match="too small"):
    TINY.replace(exemplar_size=15)
  with pytest.raises(ValueError, match="pools"):
    TINY.replace(pools=(True, False, False, False, True))
  with pytest.raises(ValueError, match="keep_prob"):
    TINY.replace(keep_prob=0.0)
  assert memtrack.config_from_meta(memtrack.CONFIGS["cpu"].__dict__ | {"conv_channels": [16, 32, 48, 48, 32]}) \
      == memtrack.CONFIGS["cpu"]
  with pytest.raises(ValueError, match="unknown"):
    memtrack.config_from_meta({"bogus": 1})


def test_summary_cli_prints_the_paper_total_last():
  out = subprocess.run([sys.executable, "-m", "rolo_jax.summary", "memtrack"], capture_output=True,
                       text=True, check=True).stdout.strip().splitlines()
  assert out[-1] == "total_params=6052935"
  assert "--config paper" in out[0]


# ---------------------------------------------------------------- layers

def test_xcorr_matches_a_direct_sum():
  rng = np.random.RandomState(1)
  s = rng.randn(2, 6, 7, 3).astype(np.float32)
  t = rng.randn(2, 3, 2, 3).astype(np.float32)
  out = np.asarray(memtrack.xcorr(jnp.asarray(s), jnp.asarray(t)))
  assert out.shape == (2, 4, 6)
  for b in range(2):
    for i in range(4):
      for j in range(6):
        np.testing.assert_allclose(out[b, i, j], np.sum(s[b, i:i + 3, j:j + 2] * t[b]), rtol=1e-4, atol=1e-4)


def test_batch_norm_train_and_eval():
  x = jnp.asarray(np.random.RandomState(2).randn(4, 5, 5, 3) * 3 + 7, jnp.float32)
  p = {"scale": jnp.asarray([1.0, 2.0, 1.0]), "bias": jnp.asarray([0.0, 0.0, 5.0])}
  y, (m, v) = memtrack.batch_norm(x, p, None, train=True, eps=0.0)
  np.testing.assert_allclose(np.mean(y, axis=(0, 1, 2)), [0, 0, 5], atol=1e-4)
  np.testing.assert_allclose(np.std(y, axis=(0, 1, 2)), [1, 2, 1], rtol=1e-4)
  np.testing.assert_allclose(m, np.mean(x, axis=(0, 1, 2)), rtol=1e-5)
  run = {"mean": jnp.asarray([1.0, 2.0, 3.0]), "var": jnp.asarray([4.0, 4.0, 4.0])}
  y, _ = memtrack.batch_norm(jnp.full((1, 3), 5.0), p, run, train=False, eps=0.0)
  np.testing.assert_allclose(y, [[2.0, 3.0, 6.0]])   # (5 − μ)/2 · γ + β
  new = memtrack.update_stats({"a": run}, {"a": (jnp.zeros(3), jnp.zeros(3))}, 0.9)
  np.testing.assert_allclose(new["a"]["mean"], [0.9, 1.8, 2.7], rtol=1e-6)


def test_controller_without_dropout_is_the_layernorm_cell():
  p = lstm.init_layernorm(jax.random.PRNGKey(3), 5, 4)
  s = lstm.LSTMState(h=jnp.ones((2, 4)) * 0.3, c=jnp.ones((2, 4)) * -0.2)
  x = jnp.asarray(np.random.RandomState(3).randn(2, 5), jnp.float32)
  ref, h_ref = lstm.layernorm_step(p, s, x)
  for mask in (None, jnp.ones((2, 4))):
    got, h = memtrack.controller_step(p, s, x, mask)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.c, ref.c, rtol=1e-5, atol=1e-6)
  # A zero mask drops the block input: c~ = σ(g_f) c_prev before the cell LN; compare with a cell
  # whose block-input weights give tanh(g_z) = 0 (scale 0, shift 0 on the z gate).
  p0 = dict(p, gate_scale=p["gate_scale"].at[1].set(0.0), gate_bias=p["gate_bias"].at[1].set(0.0))
  ref0, _ = lstm.layernorm_step(p0, s, x)
  got0, _ = memtrack.controller_step(p, s, x, jnp.zeros((2, 4)))
  np.testing.assert_allclose(got0.c, ref0.c, rtol=1e-5, atol=1e-6)


def test_attention_is_a_softmax_over_pooled_patches():
  rng = np.random.RandomState(4)
  search = jnp.asarray(rng.randn(2, 5, 5, 3), jnp.float32)
  p = {"search_proj": jnp.asarray(rng.randn(3, 4), jnp.float32),
       "hidden_proj": {"w": jnp.asarray(rng.randn(6, 4), jnp.float32), "b": jnp.zeros(4)},
       "score": jnp.asarray(rng.randn(4, 1), jnp.float32)}
  alpha, a = memtrack.attend(p, search, jnp.asarray(rng.randn(2, 6), jnp.float32), 2)
  assert alpha.shape == (2, 4, 4)
  np.testing.assert_allclose(np.sum(alpha, axis=(1, 2)), 1.0, rtol=1e-5)
  s = np.asarray(search)
  patches = np.array([[s[:, i:i + 2, j:j + 2].mean(axis=(1, 2)) for j in range(4)] for i in range(4)])
  patches = patches.transpose(2, 0, 1, 3)  # [B, 4, 4, C]
  np.testing.assert_allclose(a, np.einsum("bij,bijc->bc", np.asarray(alpha), patches), rtol=1e-4,
                             atol=1e-5)
  # Zero score weights: uniform attention, a = the mean patch.
  alpha0, a0 = memtrack.attend(dict(p, score=jnp.zeros((4, 1))), search, jnp.zeros((2, 6)), 2)
  np.testing.assert_allclose(alpha0, 1 / 16, rtol=1e-6)
  np.testing.assert_allclose(a0, patches.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the model

def test_initial_state_from_the_first_template(tiny):
  params, _ = tiny
  t0 = jnp.asarray(np.random.RandomState(5).randn(2, 3, 3, 8), jnp.float32)
  s = memtrack.initial_state(params, t0, cfg=TINY)
  k0 = np.asarray(t0).mean(axis=(1, 2))
  q = params["init_state"]
  np.testing.assert_allclose(s.lstm.h, np.tanh(k0 @ np.asarray(q["h"]["w"]) + np.asarray(q["h"]["b"])),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s.lstm.c, np.tanh(k0 @ np.asarray(q["c"]["w"]) + np.asarray(q["c"]["b"])),
                             rtol=1e-5, atol=1e-6)
  assert s.memory.memory.shape == (2, 4, 3, 3, 8)
  np.testing.assert_array_equal(s.memory.memory, 0.0)


def test_apply_equals_a_python_loop_of_steps_and_first_step_stores_t0(tiny):
  params, stats = tiny
  t, b = 3, 2
  ex = images((t, b, 47, 47, 3), 6)
  se = images((t, b, 79, 79, 3), 7)
  resp, aux = memtrack.apply(params, stats, ex, se, cfg=TINY)
  assert resp.shape == (t, b, 9, 9) and aux["attention"].shape == (t, b, 9, 9)
  assert aux["read_weight"].shape == (t, b, 4)
  zf, _ = memtrack.extract(params, stats, ex.reshape((t * b, 47, 47, 3)), cfg=TINY)
  xf, _ = memtrack.extract(params, stats, se.reshape((t * b, 79, 79, 3)), cfg=TINY)
  zf, xf = zf.reshape((t, b) + zf.shape[1:]), xf.reshape((t, b) + xf.shape[1:])
  s = memtrack.initial_state(params, zf[0], cfg=TINY)
  for i in range(t):
    s, (r, a) = memtrack.step(params, s, memtrack.StepInput(xf[i], zf[i]), cfg=TINY, stats=stats)
    np.testing.assert_allclose(r, resp[i], rtol=1e-4, atol=1e-4)
    if i == 0:  # the first write put T_0 into slot 0 with strength 1
      np.testing.assert_allclose(s.memory.memory[:, 0], zf[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s.memory.usage, aux["state"].memory.usage, rtol=1e-5)
  np.testing.assert_array_equal(aux["batch_stats"]["response_bn"]["mean"], stats["response_bn"]["mean"])


def test_training_mode_batch_statistics_dropout_running_stats_and_finite_gradients(tiny):
  params, stats = tiny
  ex = images((2, 2, 47, 47, 3), 8)
  se = images((2, 2, 79, 79, 3), 9)
  with pytest.raises(ValueError, match="key"):
    memtrack.apply(params, stats, ex, se, cfg=TINY, train=True)

  @jax.jit
  def fwd_grad(p, key):
    def f(p):
      r, aux = memtrack.apply(p, stats, ex, se, cfg=TINY, train=True, key=key)
      return jnp.sum(r ** 2), (r, aux)
    return jax.grad(f, has_aux=True)(p)

  g, (r1, aux) = fwd_grad(params, jax.random.PRNGKey(0))
  _, (r2, _) = fwd_grad(params, jax.random.PRNGKey(1))
  assert not np.allclose(r1[1], r2[1])                  # different dropout masks
  # Response BN with batch statistics: each step's maps have mean β = 0.
  np.testing.assert_allclose(np.mean(r1, axis=(1, 2, 3)), 0.0, atol=1e-4)
  new = aux["batch_stats"]
  m = TINY.bn_momentum
  np.testing.assert_allclose(new["response_bn"]["mean"],
                             (1 - m) * np.mean(aux["bn_mean"], axis=0), rtol=1e-5, atol=1e-7)
  assert not np.allclose(new["extractor"]["bn1"]["mean"], stats["extractor"]["bn1"]["mean"])
  # Gradients are finite, also through the empty memory slots (zero keys), and reach the heads.
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))
  assert float(jnp.sum(jnp.abs(g["heads"]["read_key"]["w"]))) > 0


def test_plain_template_model_correlates_with_t0(tiny):
  cfg = TINY.replace(use_memory=False)
  params, stats = tiny
  p = {k: params[k] for k in ("extractor", "response_bn")}
  ex = images((2, 1, 47, 47, 3), 10)
  se = images((2, 1, 79, 79, 3), 11)
  resp, _ = memtrack.apply(p, stats, ex, se, cfg=cfg)
  zf, _ = memtrack.extract(p, stats, ex[0], cfg=cfg)
  xf, _ = memtrack.extract(p, stats, se[1], cfg=cfg)
  np.testing.assert_allclose(resp[1], memtrack.xcorr(xf, zf) / np.sqrt(1 + cfg.bn_eps), rtol=1e-4,
                             atol=1e-4)


# ---------------------------------------------------------------- online tracker

def test_tracker_batches_targets_like_single_runs(tiny):
  from rolo_jax.trackers.memtrack import MemTrackCore

  params, stats = tiny
  rng = np.random.RandomState(14)
  frames = rng.randint(0, 256, (4, 90, 110, 3)).astype(np.uint8)
  boxes = np.array([[20.0, 25.0, 24.0, 18.0], [50.0, 40.0, 20.0, 26.0]])
  core = MemTrackCore(params, stats, TINY, record=True)
  s = core.init_state(frames[0], boxes)
  both = []
  for f in frames[1:]:
    s, b = core.step(s, f)
    both.append(b)
  both = np.stack(both)
  assert both.shape == (3, 2, 4) and np.all(np.isfinite(both)) and np.all(both[..., 2:] > 0)
  assert len(core.records) == 3 and core.records[0]["read_weight"].shape == (4,)
  np.testing.assert_allclose(core.records[0]["read_weight"].sum(), 1.0, rtol=1e-5)
  for k in range(2):
    s1 = core.init_state(frames[0], boxes[k:k + 1])
    for t, f in enumerate(frames[1:]):
      s1, b1 = core.step(s1, f)
      np.testing.assert_allclose(b1[0], both[t, k], rtol=1e-4, atol=1e-3)
  # Scale limits: sizes stay within [0.2, 5] × the initial size, and scale changes are damped.
  ratio = both[..., 2:] / boxes[None, :, 2:]
  assert np.all(ratio >= 1.05 ** -3 - 1e-6) and np.all(ratio <= 1.05 ** 3 + 1e-6)


def test_write_at_replaces_the_pending_exemplar_and_keeps_it_for_missing_boxes(tiny):
  from rolo_jax.data import crops
  from rolo_jax.trackers.memtrack import MemTrackCore

  params, stats = tiny
  frames = np.random.RandomState(15).randint(0, 256, (2, 90, 110, 3)).astype(np.uint8)
  core = MemTrackCore(params, stats, TINY)
  s = core.init_state(frames[0], np.array([[20.0, 25.0, 24.0, 18.0], [50.0, 40.0, 20.0, 26.0]]))
  s, _ = core.step(s, frames[1])
  gt = np.array([[30.0, 20.0, 16.0, 30.0], [np.nan] * 4])
  w = core.write_at(s, frames[1], gt)
  # Row 0: the exemplar window of the given box (p = (w + h)/2, side sqrt((w + p)(h + p))), cut
  # from the frame with mean-colour padding, through the extractor.
  p = 0.5 * (16 + 30)
  side = np.sqrt((16 + p) * (30 + p))
  win = np.array([38 - side / 2, 35 - side / 2, 38 + side / 2, 35 + side / 2])
  crop = crops.crop(jnp.asarray(frames[1]), jnp.asarray(win, jnp.float32), 47,
                    fill=jnp.mean(frames[1].reshape(-1, 3).astype(np.float32), axis=0))
  want, _ = memtrack.extract(params, stats, crop[None], cfg=TINY)
  np.testing.assert_allclose(w.pending[0], want[0], rtol=1e-4, atol=1e-4)
  assert not np.allclose(s.pending[0], w.pending[0])
  # Row 1 (no box): the tracker's own pending exemplar is kept.
  np.testing.assert_array_equal(w.pending[1], s.pending[1])
  np.testing.assert_array_equal(w.centre, s.centre)
  with pytest.raises(ValueError, match="2 targets"):
    core.write_at(s, frames[1], gt[:1])


if __name__ == "__main__":
  pytest.main([__file__, "-q"])


@pytest.mark.parametrize("field,value,expect", [
    ("hidden", "x", "MemTrackConfig field 'hidden': expected int"),
    ("conv_channels", [8, 8], "MemTrackConfig field 'conv_channels': expected tuple"),
    ("use_memory", 1, "MemTrackConfig field 'use_memory': expected bool"),
])
def test_mistyped_config_in_a_checkpoint_names_the_field(field, value, expect):
  from rolo_jax.models import memtrack as mt

  fields = dataclasses.asdict(mt.CONFIGS["tiny"])
  assert mt.config_from_meta(json.loads(json.dumps(fields))) == mt.CONFIGS["tiny"]   # the saved form
  fields[field] = value
  with pytest.raises(ValueError, match=re.escape(expect)):
    mt.config_from_meta(fields)
