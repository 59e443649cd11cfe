"""Re3 model: exact parameter counts, encoder sizes, layer semantics, step/apply consistency."""
import rolo_jax  # noqa: F401

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.cells import lstm
from rolo_jax.models import re3

TINY = re3.CONFIGS["tiny"]


def abstract_params(cfg):
  return jax.eval_shape(lambda k: re3.init(k, cfg), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def tiny_params():
  return re3.init(jax.random.PRNGKey(0), TINY)


def tiny_pairs(shape, seed=0):
  rng = np.random.RandomState(seed)
  return re3.preprocess(rng.randint(0, 256, shape + (TINY.crop_size, TINY.crop_size, 3)).astype(np.uint8))


# ---------------------------------------------------------------- sizes and counts (no allocation)

def test_exact_parameter_counts_of_published_models():
  assert re3.count_params(abstract_params(re3.CONFIGS["paper"])) == 190_004_324
  assert re3.count_params(abstract_params(re3.CONFIGS["small"])) == 85_699_684


def test_paper_param_shapes():
  table = {n: s for n, s, _ in re3.param_table(abstract_params(re3.CONFIGS["paper"]))}
  assert table["conv1/w"] == (11, 11, 3, 96)
  assert table["conv2/w"] == (5, 5, 48, 256)      # groups 2
  assert table["conv3/w"] == (3, 3, 256, 384)     # groups 1
  assert table["conv4/w"] == (3, 3, 192, 384)
  assert table["conv5/w"] == (3, 3, 192, 256)
  assert table["skip1/w"] == (1, 1, 96, 16) and table["skip1/prelu"] == (16,)
  assert table["skip2/w"] == (1, 1, 256, 32)
  assert table["skip5/w"] == (1, 1, 256, 64)
  assert table["fc6/w"] == (74_208, 2048)
  assert table["lstm1/block_input/w"] == (2048 + 1024, 1024)
  assert table["lstm1/forget_gate/w"] == (2048 + 2 * 1024, 1024)
  assert table["lstm2/output_gate/w"] == (3072 + 2 * 1024, 1024)
  assert table["fc_out/w"] == (1024, 4)
  small = {n: s for n, s, _ in re3.param_table(abstract_params(re3.CONFIGS["small"]))}
  assert small["fc6/w"] == (74_208, 1024)
  assert small["lstm2/w"] == (1024 + 512 + 512, 4 * 512) and small["lstm2/p_o"] == (512,)


def test_paper_encoder_sizes_per_layer():
  cfg = re3.CONFIGS["paper"]
  feat, aux = jax.eval_shape(lambda p, x: re3.encode(p, x, cfg=cfg), abstract_params(cfg),
                             jax.ShapeDtypeStruct((2, 227, 227, 3), jnp.float32))
  expected = {"conv1": (55, 55, 96), "pool1": (27, 27, 96), "lrn1": (27, 27, 96), "skip1": (27, 27, 16),
              "conv2": (27, 27, 256), "pool2": (13, 13, 256), "lrn2": (13, 13, 256),
              "skip2": (13, 13, 32), "conv3": (13, 13, 384), "conv4": (13, 13, 384),
              "conv5": (13, 13, 256), "skip5": (13, 13, 64), "pool5": (6, 6, 256)}
  assert {k: v.shape[1:] for k, v in aux.items()} == expected
  assert feat.shape == (2, 37_104) == (2, 11_664 + 5_408 + 10_816 + 9_216)
  assert re3.layer_shapes(cfg) == expected and re3.feature_dim(cfg) == 37_104


def test_paper_step_shapes():
  cfg = re3.CONFIGS["paper"]
  state = jax.eval_shape(lambda: re3.initial_state(cfg, 3))
  new, (boxes, aux) = jax.eval_shape(lambda p, s, x: re3.step(p, s, x, cfg=cfg), abstract_params(cfg),
                                     state, jax.ShapeDtypeStruct((3, 2, 227, 227, 3), jnp.float32))
  assert boxes.shape == (3, 4) and boxes.dtype == jnp.float32
  assert aux["fc6"].shape == (3, 2048) and new.lstm2.c.shape == (3, 1024)


@pytest.mark.parametrize("name", list(re3.CONFIGS))
def test_config_layer_shapes_match_the_encoder(name):
  cfg = re3.CONFIGS[name]
  _, aux = jax.eval_shape(lambda p, x: re3.encode(p, x, cfg=cfg), abstract_params(cfg),
                          jax.ShapeDtypeStruct((1, cfg.crop_size, cfg.crop_size, 3), jnp.float32))
  assert {k: v.shape[1:] for k, v in aux.items()} == re3.layer_shapes(cfg)
  # paper and small (the published weights): every pooling is exact (no row/column dropped by VALID
  # pooling), so Caffe's ceil-mode pooling agrees. tiny (83 px, trained here only): pool5 takes 1 of
  # conv5's 4 rows, as the CONFIGS comment says; Caffe's ceil mode would give 2.
  shp = re3.layer_shapes(cfg)
  for src, dst in (("conv1", "pool1"), ("conv2", "pool2"), ("conv5", "pool5")):
    exact = (shp[dst][0] - 1) * 2 + 3 == shp[src][0]
    assert exact == (name != "tiny" or src != "conv5"), (src, dst, shp[src], shp[dst])
  if name == "tiny":
    assert (shp["conv1"], shp["pool1"], shp["pool2"], shp["conv5"], shp["pool5"]) == (
        (19, 19, 16), (9, 9, 16), (4, 4, 64), (4, 4, 64), (1, 1, 64))


def test_configs_are_hashable_and_validated():
  assert hash(re3.CONFIGS["paper"]) == hash(re3.Re3Config())
  assert len({re3.CONFIGS[n] for n in re3.CONFIGS}) == 3
  with pytest.raises(ValueError, match="cell"):
    re3.Re3Config(cell="gru")
  with pytest.raises(ValueError, match="groups"):
    re3.Re3Config(conv_groups=(1, 3, 1, 2, 2))
  with pytest.raises(ValueError, match="too small"):
    re3.Re3Config(crop_size=31)
  with pytest.raises(ValueError, match="compute_dtype"):
    re3.Re3Config(compute_dtype="float16")


# ---------------------------------------------------------------- layers against numpy

def np_lrn(x, size=5, alpha=1e-4, beta=0.75, bias=1.0):
  out = np.empty_like(x)
  c_n = x.shape[-1]
  for c in range(c_n):
    lo, hi = max(0, c - size // 2), min(c_n - 1, c + size // 2)
    s = np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
    out[..., c] = x[..., c] / (bias + alpha / size * s) ** beta
  return out


def test_lrn_matches_numpy():
  x = np.random.RandomState(0).randn(2, 3, 4, 9).astype(np.float32) * 60.0  # large: LRN matters
  ref = np_lrn(x.astype(np.float64))
  got = np.asarray(re3.lrn(jnp.asarray(x)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  assert np.max(np.abs(ref - x) / np.abs(x)) > 0.05
  ref2 = np_lrn(x.astype(np.float64), size=3, alpha=2e-4, beta=0.5, bias=2.0)
  np.testing.assert_allclose(np.asarray(re3.lrn(jnp.asarray(x), size=3, alpha=2e-4, beta=0.5, bias=2.0)),
                             ref2, rtol=1e-5)


def np_group_norm(x, groups, eps=1e-5):
  """Loops over samples and channel blocks: each block's H·W·(C/groups) values to mean 0, var 1."""
  out = np.empty_like(x)
  c_g = x.shape[-1] // groups
  for n in range(x.shape[0]):
    for g in range(groups):
      block = x[n, ..., g * c_g:(g + 1) * c_g]
      out[n, ..., g * c_g:(g + 1) * c_g] = (block - block.mean()) / np.sqrt(block.var() + eps)
  return out


def test_group_norm_matches_numpy():
  rng = np.random.RandomState(0)
  # blocks with very different scales and offsets, so a per-channel or per-sample norm would differ
  x = (rng.randn(2, 5, 4, 12) * np.repeat([1.0, 30.0, 0.2], 4) + np.repeat([5.0, -40.0, 0.0], 4))
  got = np.asarray(re3.group_norm(jnp.asarray(x, jnp.float32), 3))
  np.testing.assert_allclose(got, np_group_norm(x, 3), rtol=1e-4, atol=1e-4)
  assert np.max(np.abs(got - np_group_norm(x, 12))) > 0.05   # the grouping matters
  blocks = got.reshape(2, 5, 4, 3, 4)
  np.testing.assert_allclose(blocks.mean(axis=(1, 2, 4)), 0.0, atol=1e-5)
  # variance var / (var + eps): the 0.2-scale block (var ~0.04) ends 2.5e-4 short of 1
  np.testing.assert_allclose(blocks.var(axis=(1, 2, 4)), 1.0, rtol=1e-3)
  assert re3.group_norm(jnp.asarray(x, jnp.bfloat16), 3).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="12 channels do not split into 5 groups"):
    re3.group_norm(jnp.asarray(x, jnp.float32), 5)


def test_norm_choice_sets_the_encoder_layers(tiny_params):
  """tiny normalises with group norm (gn1, gn2); 'lrn' and 'none' give the other layer sets, from
  the same params (the norms have none)."""
  x = tiny_pairs((2,))
  assert TINY.norm == "group" and re3.CONFIGS["paper"].norm == re3.CONFIGS["small"].norm == "lrn"
  feats = {}
  for norm, names in (("group", {"gn1", "gn2"}), ("lrn", {"lrn1", "lrn2"}), ("none", set())):
    cfg = TINY.replace(norm=norm)
    feats[norm], aux = re3.encode(tiny_params, x, cfg=cfg)
    assert {k for k in aux if k[:-1] in ("gn", "lrn")} == names
    assert set(aux) == set(re3.layer_shapes(cfg))
  _, aux = re3.encode(tiny_params, x, cfg=TINY)
  for n in (1, 2):   # each norm layer with its own group count
    np.testing.assert_allclose(np.asarray(aux[f"gn{n}"]),
                               np_group_norm(np.asarray(aux[f"pool{n}"]), TINY.norm_groups[n - 1]),
                               rtol=1e-4, atol=1e-4)
  assert np.max(np.abs(np.asarray(feats["group"]) - np.asarray(feats["none"]))) > 0.1
  with pytest.raises(ValueError, match="norm='batch'"):
    TINY.replace(norm="batch")
  with pytest.raises(ValueError, match=r"norm_groups\[1\]=7 must be >= 1 and divide conv2's 64 channels"):
    TINY.replace(norm_groups=(4, 7))
  for bad in ((4,), (4.0, 8), (4, 8, 2)):
    with pytest.raises(ValueError, match="norm_groups needs 2 ints"):
      TINY.replace(norm_groups=bad)


def np_conv_valid(x, w, stride):
  n, hh, ww, _ = x.shape
  k = w.shape[0]
  ho, wo = (hh - k) // stride + 1, (ww - k) // stride + 1
  out = np.zeros((n, ho, wo, w.shape[3]))
  for i in range(ho):
    for j in range(wo):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
  return out


def test_conv2d_is_cross_correlation_hwio():
  rng = np.random.RandomState(1)
  x, w, b = rng.randn(2, 9, 9, 3), rng.randn(3, 3, 3, 5), rng.randn(5)
  got = re3.conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32),
                   stride=2, padding="VALID")
  np.testing.assert_allclose(np.asarray(got), np_conv_valid(x, w, 2) + b, rtol=1e-4, atol=1e-4)
  # SAME, stride 1 with a 3x3 kernel = VALID on a zero-padded input
  got = re3.conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32))
  ref = np_conv_valid(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), w, 1) + b
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)


def test_grouped_conv_equals_two_convs_on_channel_halves():
  rng = np.random.RandomState(2)
  x = jnp.asarray(rng.randn(2, 7, 7, 6), jnp.float32)
  w = jnp.asarray(rng.randn(5, 5, 3, 8), jnp.float32)  # groups=2: each half sees 3 of 6 inputs
  b = jnp.asarray(rng.randn(8), jnp.float32)
  got = re3.conv2d(x, w, b, groups=2)
  # conv2d computes groups as separate convolutions; XLA's own grouped convolution is the reference.
  ref = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=2) + b
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)
  lo = re3.conv2d(x[..., :3], w[..., :4], b[:4])
  hi = re3.conv2d(x[..., 3:], w[..., 4:], b[4:])
  np.testing.assert_allclose(np.asarray(got), np.asarray(jnp.concatenate([lo, hi], -1)), rtol=1e-5, atol=1e-5)
  assert got.shape == (2, 7, 7, 8)


def test_max_pool_and_prelu():
  x = np.random.RandomState(3).randn(1, 7, 7, 2).astype(np.float32)
  got = np.asarray(re3.max_pool(jnp.asarray(x)))
  ref = np.array([[[x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, c].max() for c in range(2)] for j in range(3)]
                  for i in range(3)])
  np.testing.assert_array_equal(got[0], ref)
  v = jnp.array([[-2.0, 3.0], [4.0, -1.0]])
  np.testing.assert_allclose(np.asarray(re3.prelu(v, jnp.array([0.25, 0.5]))), [[-0.5, 3.0], [4.0, -0.5]])


def test_max_pool_values_and_gradient_equal_reduce_window():
  # max_pool takes the maximum of strided slices (its XLA:CPU gradient is cheaper); values and
  # gradient must be reduce_window's (no ties in random data), on an odd, non-square map.
  x = jnp.asarray(np.random.RandomState(4).randn(2, 11, 9, 3).astype(np.float32))
  rw = lambda v: jax.lax.reduce_window(v, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
  np.testing.assert_array_equal(np.asarray(re3.max_pool(x)), np.asarray(rw(x)))
  cot = jnp.asarray(np.random.RandomState(5).randn(2, 5, 4, 3).astype(np.float32))
  g = jax.grad(lambda v: jnp.sum(re3.max_pool(v) * cot))(x)
  g_ref = jax.grad(lambda v: jnp.sum(rw(v) * cot))(x)
  # (overlapping windows add their shares in another order: equal up to float rounding)
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-6, atol=1e-7)
  assert float(jnp.sum(jnp.abs(g))) > 0
  with pytest.raises(ValueError, match="2x5 map is smaller than the 3x3 window"):
    re3.max_pool(jnp.zeros((1, 2, 5, 1)))


def test_fc6_then_recurrent_step_equals_head_step(tiny_params):
  # Training applies fc6 to all T·B pairs before the time loop; per step it must equal head_step.
  b = 3
  feat = jnp.asarray(np.random.RandomState(6).randn(b, 2 * re3.feature_dim(TINY)).astype(np.float32))
  state = re3.initial_state(TINY, b)
  s_ref, (out_ref, aux_ref) = re3.head_step(tiny_params, state, feat, cfg=TINY)
  f6 = re3.fc6(tiny_params, feat, cfg=TINY)
  s, (out, aux) = re3.recurrent_step(tiny_params, state, f6, cfg=TINY)
  np.testing.assert_allclose(np.asarray(f6), np.asarray(aux_ref["fc6"]), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_ref), rtol=1e-6, atol=1e-6)
  for u, v in zip(jax.tree_util.tree_leaves(s), jax.tree_util.tree_leaves(s_ref)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-6)
  # fc6 takes any leading dimensions ([T, B, 2D] in training)
  f6_tb = re3.fc6(tiny_params, jnp.stack([feat, feat]), cfg=TINY)
  np.testing.assert_allclose(np.asarray(f6_tb[1]), np.asarray(f6), rtol=1e-6, atol=1e-6)


def test_preprocess_subtracts_mean_without_scaling():
  crops = np.array([[[[0, 128, 255]]]], np.uint8)
  out = re3.preprocess(crops)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out)[0, 0, 0], [0 - 123.15, 128 - 115.90, 255 - 103.06], rtol=1e-6)


# ---------------------------------------------------------------- tiny model end to end

def test_init_values(tiny_params):
  p = tiny_params
  np.testing.assert_array_equal(p["skip1"]["prelu"], np.full(16, 0.25, np.float32))
  np.testing.assert_array_equal(np.asarray(p["lstm1"]["b"]).reshape(4, -1)[2], np.ones(128))
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p))
  # He-uniform: std sqrt(2 / fan_in); conv1 also divided by init_input_std (raw pixel scale)
  np.testing.assert_allclose(float(jnp.std(p["conv1"]["w"])), (2 / 363) ** 0.5 / 64, rtol=0.05)
  np.testing.assert_allclose(float(jnp.std(p["conv2"]["w"])), (2 / (25 * TINY.conv_channels[0] // TINY.conv_groups[1])) ** 0.5, rtol=0.05)
  # fc6 fan-in: 2 crops x (skip1 9·9·16 + skip2 4·4·32 + skip5 4·4·64 + pool5 64) = 2 x 2,896
  np.testing.assert_allclose(float(jnp.std(p["fc6"]["w"])), (2 / 5792) ** 0.5, rtol=0.05)
  caffe = jax.eval_shape(lambda k: re3.init(k, TINY.replace(cell="caffe")), jax.random.PRNGKey(0))
  assert "forget_gate" in caffe["lstm1"]


def test_encoder_features_are_channel_first_flattened(tiny_params):
  x = tiny_pairs((3,))
  feat, aux = jax.jit(lambda p, x: re3.encode(p, x, cfg=TINY))(tiny_params, x)
  assert feat.shape == (3, re3.feature_dim(TINY))
  # init keeps activations at unit scale on raw mean-free pixels (no saturation downstream)
  assert 0.3 < float(jnp.std(aux["conv1"])) < 3.0 and 0.3 < float(jnp.std(feat)) < 5.0
  parts, start = [], 0
  for name in ("skip1", "skip2", "skip5", "pool5"):
    a = np.asarray(aux[name])
    n = a[0].size
    np.testing.assert_array_equal(np.asarray(feat[:, start:start + n]), a.transpose(0, 3, 1, 2).reshape(3, -1))
    start += n
  assert start == feat.shape[1]


def test_step_uses_prev_then_current_crop_and_one_encoder_call(tiny_params, monkeypatch):
  p, b = tiny_params, 2
  pair = tiny_pairs((b, 2), seed=1)
  state = re3.Re3State(*(lstm.LSTMState(*(0.1 * jax.random.normal(jax.random.PRNGKey(i), (2, b, 128))))
                         for i in range(2)))
  # reference built from the pieces: fc6 reads [feat(prev), feat(cur)]
  @jax.jit
  def reference(p, state, pair):
    f_prev, _ = re3.encode(p, pair[:, 0], cfg=TINY)
    f_cur, _ = re3.encode(p, pair[:, 1], cfg=TINY)
    fc6 = jax.nn.relu(jnp.concatenate([f_prev, f_cur], -1) @ p["fc6"]["w"] + p["fc6"]["b"])
    s1, h1 = lstm.peephole_step(p["lstm1"], state.lstm1, fc6)
    s2, h2 = lstm.peephole_step(p["lstm2"], state.lstm2, jnp.concatenate([fc6, h1], -1))
    return fc6, s1, s2, h2 @ p["fc_out"]["w"] + p["fc_out"]["b"]

  fc6, s1, s2, out_ref = reference(p, state, pair)
  calls = []
  real_encode = re3.encode
  monkeypatch.setattr(re3, "encode", lambda *a, **k: calls.append(a[1].shape) or real_encode(*a, **k))
  step = jax.jit(lambda p, s, x: re3.step(p, s, x, cfg=TINY))
  new, (out, aux) = step(p, state, pair)
  assert calls == [(2 * b, TINY.crop_size, TINY.crop_size, 3)]
  close = lambda a, r: np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-4,
                                                  atol=1e-5 * (1 + float(jnp.abs(r).max())))
  close(out, out_ref)
  close(new.lstm2.c, s2.c)
  close(new.lstm1.h, s1.h)
  close(aux["fc6"], fc6)
  # swapping the crops changes the answer (order matters)
  out_sw = step(p, state, pair[:, ::-1])[1][0]
  assert not np.allclose(np.asarray(out_sw), np.asarray(out))


def test_apply_equals_loop_over_step_and_jit(tiny_params):
  t, b = 3, 2
  crops = tiny_pairs((t, b, 2), seed=2)
  state0 = re3.initial_state(TINY, b)
  boxes, aux = re3.apply(tiny_params, crops, state0, cfg=TINY)
  assert boxes.shape == (t, b, 4) and np.all(np.isfinite(np.asarray(boxes)))
  s, ref = state0, []
  for i in range(t):
    s, (o, _) = re3.step(tiny_params, s, crops[i], cfg=TINY)
    ref.append(o)
  np.testing.assert_allclose(np.asarray(boxes), np.asarray(jnp.stack(ref)), rtol=1e-4, atol=1e-5)
  for u, v in zip(jax.tree_util.tree_leaves(aux["state"]), jax.tree_util.tree_leaves(s)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)
  assert aux["lstm2_h"].shape == (t, b, 128)
  jitted = jax.jit(re3.apply, static_argnames=("cfg", "checkpoint"))
  boxes_j, aux_j = jitted(tiny_params, crops, state0, cfg=TINY, checkpoint=True)
  np.testing.assert_allclose(np.asarray(boxes_j), np.asarray(boxes), rtol=1e-4, atol=1e-5)
  assert isinstance(aux_j["state"], re3.Re3State)


def test_step_with_transposed_weights_equals_the_training_layout():
  # The tracker's inference layout (every matrix stored [out, in]) on a config that exercises the
  # Caffe cell and grouped convolutions: same outputs and state as the [in, out] training layout.
  cfg = TINY.replace(cell="caffe", conv_groups=(1, 2, 1, 2, 2))
  params = re3.init(jax.random.PRNGKey(3), cfg)
  pt = lstm.transposed(params)
  assert "w" not in pt["fc6"] and pt["fc6"]["w_t"].shape == params["fc6"]["w"].shape[::-1]
  assert pt["conv2"]["w"].shape == params["conv2"]["w"].shape           # 4-D kernels untouched
  assert pt["lstm1"]["input_gate"]["w_t"].shape == params["lstm1"]["input_gate"]["w"].shape[::-1]
  pairs = tiny_pairs((2, 2), seed=4)
  s0 = re3.initial_state(cfg, 2)
  step = jax.jit(lambda p, s, x: re3.step(p, s, x, cfg=cfg))
  s_a, (o_a, _) = step(params, s0, pairs)
  s_b, (o_b, _) = step(pt, s0, pairs)
  s_a, (o_a2, _) = step(params, s_a, pairs[::-1])
  s_b, (o_b2, _) = step(pt, s_b, pairs[::-1])
  for u, v in [(o_a, o_b), (o_a2, o_b2)] + list(zip(jax.tree_util.tree_leaves(s_a),
                                                     jax.tree_util.tree_leaves(s_b))):
    np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-4, atol=1e-5)
  assert float(jnp.max(jnp.abs(o_a2 - o_a))) > 1e-3   # the second step did something different


def test_gradients_finite_with_checkpoint(tiny_params):
  crops = tiny_pairs((2, 2, 2), seed=3)
  target = jnp.full((2, 2, 4), 5.0)

  def loss(p, ckpt):
    boxes, _ = re3.apply(p, crops, re3.initial_state(TINY, 2), cfg=TINY, checkpoint=ckpt)
    return jnp.mean(jnp.sum(jnp.abs(boxes - target), -1))

  g = jax.jit(jax.grad(loss), static_argnums=1)(tiny_params, True)
  g_ref = jax.jit(jax.grad(loss), static_argnums=1)(tiny_params, False)
  for name, a in jax.tree_util.tree_flatten_with_path(g)[0]:
    assert np.all(np.isfinite(np.asarray(a))), name
  assert float(jnp.abs(g["conv1"]["w"]).sum()) > 0 and float(jnp.abs(g["lstm1"]["w"]).sum()) > 0
  for u, v in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-3, atol=1e-6)


def test_bfloat16_compute_is_close_to_float32(tiny_params):
  crops = tiny_pairs((2, 2, 2), seed=4)
  state0 = re3.initial_state(TINY, 2)
  b32, _ = re3.apply(tiny_params, crops, state0, cfg=TINY)
  b16, aux = re3.apply(tiny_params, crops, state0, cfg=TINY.replace(compute_dtype="bfloat16"))
  assert b16.dtype == jnp.float32 and aux["state"].lstm1.c.dtype == jnp.float32
  assert aux["fc6"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(b16), np.asarray(b32), atol=0.1 * (1 + float(jnp.abs(b32).max())))


def test_bad_inputs_are_clear_errors(tiny_params):
  state = re3.initial_state(TINY, 1)
  with pytest.raises(ValueError, match="preprocess"):
    re3.step(tiny_params, state, np.zeros((1, 2, 83, 83, 3), np.uint8), cfg=TINY)
  with pytest.raises(ValueError, match=r"\(83, 83, 3\)"):
    re3.step(tiny_params, state, jnp.zeros((1, 2, 64, 64, 3)), cfg=TINY)
  with pytest.raises(ValueError, match=r"\[B, 2, S, S, 3\]"):
    re3.step(tiny_params, state, jnp.zeros((1, 3, 83, 83, 3)), cfg=TINY)
