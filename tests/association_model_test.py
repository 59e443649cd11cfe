"""Association LSTM model: parameter count, scan == Python loop, padded slots (never matched, never
read), slot-permutation equivariance, unit phi, box refinement round trip."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.models import association as A

CFG = A.CONFIGS["tiny"]   # K=2, A=12 -> D=18, E=16, H=16, P=8, F=2, 2 layernorm layers
STEP = jax.jit(functools.partial(A.step, cfg=CFG))
APPLY = jax.jit(functools.partial(A.apply, cfg=CFG))


def _inputs(key, T=5, B=2, N=4, n_valid=(3, 2)):
  x = jax.random.normal(key, (T, B, N, CFG.input_dim))
  # Plausible box part: cx, cy in (0, 1), w, h in (0.05, 0.3).
  b = jax.random.uniform(jax.random.fold_in(key, 1), (T, B, N, 4))
  b = b.at[..., 2:].set(0.05 + 0.25 * b[..., 2:])
  x = x.at[..., CFG.num_classes:CFG.num_classes + 4].set(b)
  mask = np.zeros((T, B, N), bool)
  for bi, n in enumerate(n_valid):
    mask[:, bi, :n] = True
  if T > 2 and B > 0 and N > 1:
    mask[2, 0, 1] = False   # a hole in the middle of a frame
  return x, jnp.asarray(mask)


def test_parameter_count_by_hand():
  p = A.init(jax.random.PRNGKey(0), CFG)
  D, E, H, P, F, K = 18, 16, 16, 8, 2, 2
  assert CFG.input_dim == D
  enc_in = D + 8 * F                          # 4 box values x F bands x (sin, cos)
  dense = lambda i, o: i * o + o
  lstm_ln = lambda i, h: (i + h) * 4 * h + 8 * h + 2 * h   # w, gate scale/bias, cell scale/bias
  expected = (dense(enc_in, E) + dense(E, E) + dense(E, P) + dense(H, K + 1) + dense(H, 4)
              + dense(H, P) + 1 + lstm_ln(E, H) + lstm_ln(H, H))
  assert A.count_params(p) == expected == 5640


def test_summary_lists_the_model():
  from rolo_jax import summary
  params = summary.abstract_params("association", "small")
  assert summary.count_params(params) > 0


def test_scan_equals_python_loop():
  params = A.init(jax.random.PRNGKey(1), CFG)
  x, mask = _inputs(jax.random.PRNGKey(2))
  outs, aux = APPLY(params, x, mask)
  state = A.init_state(x.shape[1], x.shape[2], CFG)
  for t in range(x.shape[0]):
    state, o = STEP(params, state, (x[t], mask[t]))
    for k in ("phi", "cls_logits", "box", "gather"):
      np.testing.assert_allclose(outs[k][t], o[k], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(aux["state"]), jax.tree_util.tree_leaves(state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_padded_slots_never_match_and_are_never_read():
  params = A.init(jax.random.PRNGKey(3), CFG)
  # Make gathering likely: a null logit far below any similarity.
  params["null_logit"] = jnp.asarray(-50.0)
  x, mask = _inputs(jax.random.PRNGKey(4))
  outs, _ = APPLY(params, x, mask)
  m = np.asarray(mask)
  g = np.asarray(outs["gather"])                       # [T, B, N, 1 + N]
  prev_pad = ~np.concatenate([np.zeros_like(m[:1]), m[:-1]], 0)   # no previous objects at t = 0
  for t in range(m.shape[0]):
    for b in range(m.shape[1]):
      # a padded previous slot gets weight exactly 0 from every current slot
      assert np.all(g[t, b][:, 1:][:, prev_pad[t, b]] == 0.0)
      # valid rows are distributions
      np.testing.assert_allclose(g[t, b][m[t, b]].sum(-1), 1.0, rtol=1e-5)
  for k in ("phi", "cls_logits", "box", "box_delta", "gather"):
    assert np.all(np.asarray(outs[k])[~m] == 0.0), k
  # Garbage (large, finite) in padded inputs changes nothing in the valid slots.
  x2 = jnp.where(mask[..., None], x, 1e4)
  outs2, _ = APPLY(params, x2, mask)
  for k in ("phi", "cls_logits", "box", "gather"):
    np.testing.assert_allclose(np.asarray(outs2[k])[m], np.asarray(outs[k])[m], rtol=1e-5, atol=1e-6)
  # With no previous objects at all, everything goes to the null option.
  np.testing.assert_array_equal(g[0][m[0]][:, 0], 1.0)


def test_slot_permutation_equivariance():
  params = A.init(jax.random.PRNGKey(5), CFG)
  params["null_logit"] = jnp.asarray(0.0)
  x, mask = _inputs(jax.random.PRNGKey(6), n_valid=(4, 4))
  mask = jnp.ones_like(mask)
  perm = np.array([2, 0, 3, 1])
  outs, _ = APPLY(params, x, mask)
  outs_p, _ = APPLY(params, x[:, :, perm], mask[:, :, perm])
  for k in ("phi", "cls_logits", "box"):
    np.testing.assert_allclose(outs_p[k], np.asarray(outs[k])[:, :, perm], rtol=1e-4, atol=1e-5)


def test_phi_is_unit_and_prev_count_may_differ():
  params = A.init(jax.random.PRNGKey(7), CFG)
  x, mask = _inputs(jax.random.PRNGKey(8), T=1, B=1, N=5, n_valid=(5,))
  prev = A.init_state(1, 3, CFG)._replace(
      phi=A._normalise(jax.random.normal(jax.random.PRNGKey(9), (1, 3, CFG.phi_dim))),
      mask=jnp.array([[True, True, False]]))
  new, out = STEP(params, prev, (x[0], mask[0]))
  assert out["gather_logits"].shape == (1, 5, 4) and new.phi.shape == (1, 5, CFG.phi_dim)
  np.testing.assert_allclose(jnp.linalg.norm(out["phi"], axis=-1), 1.0, rtol=1e-4)
  assert np.all(np.asarray(out["gather"])[0, :, 3] == 0.0)


def test_refine_box_hand_numbers_and_round_trip():
  box = jnp.array([0.5, 0.4, 0.2, 0.1])
  out = A.refine_box(box, jnp.array([0.1, -0.2, np.log(2.0), 0.0]))
  np.testing.assert_allclose(out, [0.52, 0.38, 0.4, 0.1], rtol=1e-6)
  tgt = jnp.array([0.45, 0.5, 0.3, 0.05])
  np.testing.assert_allclose(A.refine_box(box, A.encode_delta(box, tgt)), tgt, rtol=1e-5)


def test_wrong_input_width_is_a_clear_error():
  params = A.init(jax.random.PRNGKey(0), CFG)
  with pytest.raises(ValueError, match="expects 18"):
    A.step(params, A.init_state(1, 2, CFG), (jnp.zeros((1, 2, 7)), jnp.ones((1, 2), bool)), cfg=CFG)
