"""LSTM cells: hand-computed single steps, numpy references, parameter counts, init, gradients."""
import math

import rolo_jax  # noqa: F401  (picks the JAX backend before jax is imported)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.cells import lstm
from rolo_jax.cells.lstm import LSTMState


def sig(v):
  return 1.0 / (1.0 + math.exp(-v))


def state1(h, c):
  return LSTMState(h=jnp.array([[h]], jnp.float32), c=jnp.array([[c]], jnp.float32))


def col(*vals):
  return jnp.array([[v] for v in vals], jnp.float32)


# ---------------------------------------------------------------- hand-computed steps, in = H = 1

def test_caffe_step_hand_computed():
  params = {
      "block_input": {"w": col(0.5, -0.3), "b": jnp.array([0.1])},         # rows x, h
      "input_gate": {"w": col(0.2, 0.4, -0.6), "b": jnp.array([0.0])},     # rows x, h, c_prev
      "forget_gate": {"w": col(-0.1, 0.3, 0.5), "b": jnp.array([1.0])},    # rows x, h, c_prev
      "output_gate": {"w": col(0.7, -0.2, 0.9), "b": jnp.array([-0.1])},   # rows x, h, c_new
  }
  x, h0, c0 = 0.8, 0.5, -0.4
  z = math.tanh(0.5 * 0.8 - 0.3 * 0.5 + 0.1)                 # tanh(0.35)
  i = sig(0.2 * 0.8 + 0.4 * 0.5 - 0.6 * -0.4)                # σ(0.60)
  f = sig(-0.1 * 0.8 + 0.3 * 0.5 + 0.5 * -0.4 + 1.0)         # σ(0.87)
  c = i * z + f * c0
  o = sig(0.7 * 0.8 - 0.2 * 0.5 + 0.9 * c - 0.1)             # output gate reads the NEW cell
  h = o * math.tanh(c)
  new, y = lstm.caffe_step(params, state1(h0, c0), jnp.array([[x]], jnp.float32))
  np.testing.assert_allclose(float(new.c[0, 0]), c, rtol=1e-6)
  np.testing.assert_allclose(float(new.h[0, 0]), h, rtol=1e-6)
  np.testing.assert_allclose(float(y[0, 0]), h, rtol=1e-6)
  # Using c_prev in the output gate would give a different h: the test can tell the two apart.
  h_wrong = sig(0.7 * 0.8 - 0.2 * 0.5 + 0.9 * c0 - 0.1) * math.tanh(c)
  assert abs(h - h_wrong) > 1e-3


def test_peephole_step_hand_computed():
  # w rows (x, h); columns gate blocks (i, z, f, o).
  params = {"w": jnp.array([[0.3, -0.5, 0.2, 0.6], [0.1, 0.4, -0.7, -0.2]], jnp.float32),
            "b": jnp.array([0.05, -0.1, 1.0, 0.2], jnp.float32),
            "p_i": jnp.array([0.3]), "p_f": jnp.array([-0.4]), "p_o": jnp.array([0.8])}
  x, h0, c0 = -1.2, 0.3, 0.7
  i = sig(0.3 * x + 0.1 * h0 + 0.05 + 0.3 * c0)
  z = math.tanh(-0.5 * x + 0.4 * h0 - 0.1)
  f = sig(0.2 * x - 0.7 * h0 + 1.0 - 0.4 * c0)
  c = i * z + f * c0
  o = sig(0.6 * x - 0.2 * h0 + 0.2 + 0.8 * c)
  h = o * math.tanh(c)
  new, y = lstm.peephole_step(params, state1(h0, c0), jnp.array([[x]], jnp.float32))
  np.testing.assert_allclose([float(new.h[0, 0]), float(new.c[0, 0]), float(y[0, 0])], [h, c, h], rtol=1e-6)


def test_plain_step_hand_computed():
  params = {"w": jnp.array([[0.3, -0.5, 0.2, 0.6], [0.1, 0.4, -0.7, -0.2]], jnp.float32),
            "b": jnp.array([0.05, -0.1, 1.0, 0.2], jnp.float32)}
  x, h0, c0 = 0.9, -0.6, 0.25
  i = sig(0.3 * x + 0.1 * h0 + 0.05)
  z = math.tanh(-0.5 * x + 0.4 * h0 - 0.1)
  f = sig(0.2 * x - 0.7 * h0 + 1.0)
  o = sig(0.6 * x - 0.2 * h0 + 0.2)
  c = i * z + f * c0
  h = o * math.tanh(c)
  new, _ = lstm.plain_step(params, state1(h0, c0), jnp.array([[x]], jnp.float32))
  np.testing.assert_allclose([float(new.h[0, 0]), float(new.c[0, 0])], [h, c], rtol=1e-6)


def test_layernorm_step_hand_computed():
  # in = 1, H = 2: LN of a pair (u, v) is (±(u - v) / 2) / sqrt(((u - v) / 2)² + eps).
  eps = lstm.LN_EPS

  def ln2(u, v):
    d = (u - v) / 2
    s = math.sqrt(d * d + eps)
    return d / s, -d / s

  w = np.array([[0.3, -0.2, 0.5, 0.1, -0.4, 0.6, 0.2, -0.3],     # x row; blocks i, z, f, o (2 each)
                [0.7, 0.1, -0.3, 0.4, 0.2, -0.5, 0.6, 0.1],       # h_1 row
                [-0.2, 0.5, 0.3, -0.6, 0.1, 0.4, -0.1, 0.3]],     # h_2 row
               np.float32)
  gs = np.array([[1.0, 0.5], [2.0, 1.0], [0.8, 1.2], [1.0, 1.0]], np.float32)
  gb = np.array([[0.0, 0.1], [-0.2, 0.0], [1.0, 1.0], [0.3, -0.1]], np.float32)
  cs, cb = np.array([1.5, 0.5], np.float32), np.array([0.1, -0.2], np.float32)
  params = {"w": jnp.asarray(w), "gate_scale": jnp.asarray(gs), "gate_bias": jnp.asarray(gb),
            "cell_scale": jnp.asarray(cs), "cell_bias": jnp.asarray(cb)}
  x, h0, c0 = 1.1, [0.2, -0.5], [0.4, -0.3]
  a = [w[0, j] * x + w[1, j] * h0[0] + w[2, j] * h0[1] for j in range(8)]
  g = []
  for k in range(4):
    n0, n1 = ln2(a[2 * k], a[2 * k + 1])
    g.append((n0 * gs[k, 0] + gb[k, 0], n1 * gs[k, 1] + gb[k, 1]))
  c_raw = [sig(g[0][j]) * math.tanh(g[1][j]) + sig(g[2][j]) * c0[j] for j in range(2)]
  n0, n1 = ln2(*c_raw)
  c = [n0 * cs[0] + cb[0], n1 * cs[1] + cb[1]]
  h = [sig(g[3][j]) * math.tanh(c[j]) for j in range(2)]
  st = LSTMState(h=jnp.array([h0], jnp.float32), c=jnp.array([c0], jnp.float32))
  new, _ = lstm.layernorm_step(params, st, jnp.array([[x]], jnp.float32))
  np.testing.assert_allclose(np.asarray(new.c[0]), c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new.h[0]), h, rtol=1e-5, atol=1e-6)
  # Without the cell LN the carried cell is the raw one.
  p2 = {k: v for k, v in params.items() if not k.startswith("cell_")}
  new2, _ = lstm.layernorm_step(p2, st, jnp.array([[x]], jnp.float32))
  np.testing.assert_allclose(np.asarray(new2.c[0]), c_raw, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- numpy references, wider dims

def _np_sig(v):
  return 1.0 / (1.0 + np.exp(-v))


def test_caffe_matches_numpy_reference_with_separate_blocks():
  """With in=3, H=2 the rows for x, h and c are distinct blocks: checks the concatenation order."""
  in_dim, hid, b = 3, 2, 4
  params = lstm.init_caffe(jax.random.PRNGKey(1), in_dim, hid)
  rng = np.random.RandomState(0)
  x, h, c = rng.randn(b, in_dim), rng.randn(b, hid), rng.randn(b, hid)
  P = jax.tree_util.tree_map(np.asarray, params)

  def part(name, pieces):
    w, out, r = P[name]["w"], P[name]["b"].copy(), 0
    for v in pieces:
      out = out + v @ w[r:r + v.shape[1]]
      r += v.shape[1]
    assert r == w.shape[0]
    return out

  z = np.tanh(part("block_input", [x, h]))
  i = _np_sig(part("input_gate", [x, h, c]))
  f = _np_sig(part("forget_gate", [x, h, c]))
  c1 = i * z + f * c
  o = _np_sig(part("output_gate", [x, h, c1]))
  h1 = o * np.tanh(c1)
  new, _ = lstm.caffe_step(params, LSTMState(jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)),
                           jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(new.c), c1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new.h), h1, rtol=1e-5, atol=1e-6)


def test_peephole_matches_numpy_reference():
  in_dim, hid, b = 3, 2, 4
  params = lstm.init_peephole(jax.random.PRNGKey(2), in_dim, hid)
  P = jax.tree_util.tree_map(np.asarray, params)
  rng = np.random.RandomState(1)
  x, h, c = rng.randn(b, in_dim), rng.randn(b, hid), rng.randn(b, hid)
  w, bb = P["w"], P["b"]
  a = x @ w[:in_dim] + h @ w[in_dim:] + bb
  blk = lambda k: a[:, k * hid:(k + 1) * hid]
  i = _np_sig(blk(0) + P["p_i"] * c)
  z = np.tanh(blk(1))
  f = _np_sig(blk(2) + P["p_f"] * c)
  c1 = i * z + f * c
  o = _np_sig(blk(3) + P["p_o"] * c1)
  new, _ = lstm.peephole_step(params, LSTMState(jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)),
                              jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(new.c), c1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new.h), o * np.tanh(c1), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- counts, init, gradients, API

def _count(params):
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("kind,in_dim,hid,expected", [
    # Re3 paper LSTM1 / LSTM2: (in+H)H + H + 3((in+2H)H + H)
    ("caffe", 2048, 1024, (3072 * 1024 + 1024) + 3 * (4096 * 1024 + 1024)),
    ("caffe", 3072, 1024, (4096 * 1024 + 1024) + 3 * (5120 * 1024 + 1024)),
    # Re3 small LSTM1 / LSTM2: 4H(in+H+1) + 3H
    ("peephole", 1024, 512, 4 * 512 * (1024 + 512 + 1) + 3 * 512),
    ("peephole", 1536, 512, 4 * 512 * (1536 + 512 + 1) + 3 * 512),
    ("plain", 4102, 4102, 4 * 4102 * (2 * 4102 + 1)),   # ROLO-sized
    ("layernorm", 10, 6, 4 * 6 * 16 + 8 * 6 + 2 * 6),
])
def test_param_counts(kind, in_dim, hid, expected):
  init, _ = lstm.make_cell(kind)
  shapes = jax.eval_shape(lambda k: init(k, in_dim, hid), jax.random.PRNGKey(0))
  assert _count(shapes) == expected


def test_caffe_param_shapes():
  p = lstm.init_caffe(jax.random.PRNGKey(0), 5, 3)
  assert p["block_input"]["w"].shape == (8, 3)
  for g in ("input_gate", "forget_gate", "output_gate"):
    assert p[g]["w"].shape == (11, 3) and p[g]["b"].shape == (3,)


def test_layernorm_without_cell_norm_count():
  p = lstm.init_layernorm(jax.random.PRNGKey(0), 10, 6, norm_cell=False)
  assert _count(p) == 4 * 6 * 16 + 8 * 6 and "cell_scale" not in p


def test_forget_bias_init():
  hid = 5
  p = lstm.init_caffe(jax.random.PRNGKey(0), 3, hid)
  np.testing.assert_array_equal(p["forget_gate"]["b"], np.ones(hid))
  for g in ("block_input", "input_gate", "output_gate"):
    np.testing.assert_array_equal(p[g]["b"], np.zeros(hid))
  for init in (lstm.init_peephole, lstm.init_plain):
    b = np.asarray(init(jax.random.PRNGKey(0), 3, hid)["b"]).reshape(4, hid)  # blocks i, z, f, o
    np.testing.assert_array_equal(b, [[0] * hid, [0] * hid, [1] * hid, [0] * hid])
  gb = np.asarray(lstm.init_layernorm(jax.random.PRNGKey(0), 3, hid)["gate_bias"])
  np.testing.assert_array_equal(gb, [[0] * hid, [0] * hid, [1] * hid, [0] * hid])
  b = lstm.init_plain(jax.random.PRNGKey(0), 3, hid, forget_bias=0.0)["b"]
  np.testing.assert_array_equal(b, np.zeros(4 * hid))


def test_init_is_random_but_deterministic():
  a = lstm.init_peephole(jax.random.PRNGKey(3), 4, 3)
  b = lstm.init_peephole(jax.random.PRNGKey(3), 4, 3)
  c = lstm.init_peephole(jax.random.PRNGKey(4), 4, 3)
  np.testing.assert_array_equal(a["w"], b["w"])
  assert not np.allclose(a["w"], c["w"])
  assert np.std(np.asarray(a["w"])) > 0.05


@pytest.mark.parametrize("kind", lstm.CELL_KINDS)
def test_gradients_finite_and_nonzero(kind):
  init, step = lstm.make_cell(kind)
  params = init(jax.random.PRNGKey(0), 4, 3)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
  st = LSTMState(*jax.random.normal(jax.random.PRNGKey(2), (2, 2, 3)))

  def loss(p, s, x):
    new, y = step(p, s, x)
    return jnp.sum(y ** 2) + jnp.sum(new.c ** 2)

  grads = jax.grad(loss, argnums=(0, 1, 2))(params, st, x)
  for g in jax.tree_util.tree_leaves(grads):
    assert np.all(np.isfinite(g))
  for name, g in jax.tree_util.tree_flatten_with_path(grads[0])[0]:
    assert np.any(np.asarray(g) != 0), name


@pytest.mark.parametrize("kind", lstm.CELL_KINDS)
def test_state_dtype_is_kept_under_bfloat16_compute(kind):
  init, step = lstm.make_cell(kind)
  params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), init(jax.random.PRNGKey(0), 4, 3))
  st = lstm.zeros_state(2, 3, jnp.float32)
  new, y = step(params, st, jnp.ones((2, 4), jnp.float32))
  assert new.h.dtype == jnp.float32 and new.c.dtype == jnp.float32
  assert y.dtype == jnp.bfloat16
  new32, _ = step(jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params), st, jnp.ones((2, 4)))
  np.testing.assert_allclose(np.asarray(new.h), np.asarray(new32.h), atol=2e-2)


def test_zeros_state_and_make_cell():
  st = lstm.zeros_state(3, 7)
  assert st.h.shape == st.c.shape == (3, 7) and not np.any(np.asarray(st.h))
  assert lstm.make_cell("caffe") == (lstm.init_caffe, lstm.caffe_step)
  with pytest.raises(ValueError, match="caffe, peephole, plain, layernorm"):
    lstm.make_cell("gru")


@pytest.mark.parametrize("kind", lstm.CELL_KINDS)
def test_transposed_layout_gives_the_same_step(kind):
  init, step = lstm.make_cell(kind)
  params = init(jax.random.PRNGKey(5), 6, 4)
  pt = lstm.transposed(params)
  leaves = lambda t: {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  a, b = leaves(params), leaves(pt)
  assert len(a) == len(b) and not any(k.endswith("['w']") for k in b)
  for k, shape in a.items():
    if k.endswith("['w']"):
      assert b[k[:-len("['w']")] + "['w_t']"] == shape[::-1]
    else:
      assert b[k] == shape
  assert leaves(lstm.transposed(pt)) == b and lstm.hidden_size(pt) == lstm.hidden_size(params) == 4
  rng = np.random.RandomState(6)
  s = LSTMState(h=jnp.asarray(rng.randn(3, 4), jnp.float32), c=jnp.asarray(rng.randn(3, 4), jnp.float32))
  x = jnp.asarray(rng.randn(3, 6), jnp.float32)
  (sa, ha), (sb, hb) = step(params, s, x), step(pt, s, x)
  np.testing.assert_allclose(np.asarray(hb), np.asarray(ha), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(sb.c), np.asarray(sa.c), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="features"):
    step(pt, s, x[:, :5])


def test_wrong_input_size_is_a_clear_error():
  p = lstm.init_caffe(jax.random.PRNGKey(0), 4, 3)
  with pytest.raises(ValueError, match="input has 5 features but the weights expect 4"):
    lstm.caffe_step(p, lstm.zeros_state(1, 3), jnp.ones((1, 5)))
