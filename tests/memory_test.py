"""MemTrack memory pieces on hand-made numbers: write, erase, read, allocation, usage, a full step."""
import rolo_jax  # noqa: F401

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.models import memory as mem


def slots(*means, hw=(2, 2)):
  """A memory [1, N, h, w, C] whose slot i is the constant map means[i] (a C-vector)."""
  m = np.stack([np.broadcast_to(np.asarray(v, np.float32), hw + (len(v),)) for v in means])
  return jnp.asarray(m[None])


def test_write_into_empty_memory_fills_exactly_the_weighted_slot():
  m = jnp.zeros((1, 3, 2, 2, 1))
  z = jnp.arange(4.0).reshape(1, 2, 2, 1) + 1.0            # 1, 2, 3, 4
  gates = jnp.asarray([[0.0, 0.0, 1.0]])                   # allocate
  eps = mem.write_strength(gates, jnp.asarray([0.3]))       # ε = d·0 + 1 = 1
  assert float(eps[0]) == 1.0
  out = mem.write(m, jnp.asarray([[0.0, 1.0, 0.0]]), eps, z)
  np.testing.assert_array_equal(out[0, 1], z[0])
  np.testing.assert_array_equal(out[0, 0], 0.0)
  np.testing.assert_array_equal(out[0, 2], 0.0)


def test_erase_and_add_with_decay_and_read_overwrite_gate():
  # ε = d g^r + g^a = 0.5 · 0.4 + 0.4 = 0.6; slot 0 has write weight 0.5 → a = 0.3:
  # M_0 = 4 (1 − 0.3) + 0.3 · 10 = 5.8; slot 1 has weight 0 → unchanged (7).
  m = slots([4.0], [7.0])
  gates = jnp.asarray([[0.2, 0.4, 0.4]])
  eps = mem.write_strength(gates, jnp.asarray([0.5]))
  np.testing.assert_allclose(eps, [0.6], rtol=1e-6)
  out = mem.write(m, jnp.asarray([[0.5, 0.0]]), eps, jnp.full((1, 2, 2, 1), 10.0))
  np.testing.assert_allclose(out[0, 0], 5.8, rtol=1e-6)
  np.testing.assert_array_equal(out[0, 1], 7.0)
  # Pure erase: Z = 0, full weight and strength empties the slot.
  gone = mem.write(m, jnp.asarray([[1.0, 0.0]]), jnp.asarray([1.0]), jnp.zeros((1, 2, 2, 1)))
  np.testing.assert_array_equal(gone[0, 0], 0.0)


def test_cosine_similarity_hand_values_and_empty_slot():
  keys = jnp.asarray([[[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, 0.0]]])
  cos = mem.cosine_similarity(jnp.asarray([[0.0, 2.0]]), keys, eps=1e-6)
  # k·key / (|k||key| + 1e-6): 0; 6/(6 + 1e-6); 2/(2·√2 + 1e-6); 0 (empty slot, no NaN)
  np.testing.assert_allclose(cos[0], [0.0, 6 / (6 + 1e-6), 2 / (2 * 2 ** 0.5 + 1e-6), 0.0], rtol=1e-6)
  g = jax.grad(lambda k: jnp.sum(mem.cosine_similarity(k, keys)))(jnp.asarray([[0.0, 2.0]]))
  assert np.all(np.isfinite(g))
  gk = jax.grad(lambda ks: jnp.sum(mem.cosine_similarity(jnp.asarray([[0.0, 2.0]]), ks)))(keys)
  assert np.all(np.isfinite(gk))


def test_read_back_one_slot_with_a_sharp_read_strength():
  m = slots([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
  # Slot keys are the spatial means: (1, 0), (0, 1), (1, 1).
  np.testing.assert_allclose(mem.slot_keys(m)[0], [[1, 0], [0, 1], [1, 1]])
  key = jnp.asarray([[0.0, 5.0]])
  w = mem.read_weights(m, key, jnp.asarray([100.0]))
  # softmax(100 · (0, ~1, 1/√2)): slot 1 wins by e^{-29.3} ≈ 2e-13.
  np.testing.assert_allclose(w[0], [0.0, 1.0, 0.0], atol=1e-9)
  np.testing.assert_allclose(mem.read(m, w)[0], m[0, 1], atol=1e-6)
  # β = 0: uniform weights and the mean of the slots.
  w0 = mem.read_weights(m, key, jnp.asarray([0.0]))
  np.testing.assert_allclose(w0[0], [1 / 3] * 3, rtol=1e-6)
  np.testing.assert_allclose(mem.read(m, w0)[0, 0, 0], [2 / 3, 2 / 3], rtol=1e-6)
  # β = 1, hand softmax of (0, 1, 1/√2) (eps negligible).
  w1 = mem.read_weights(m, key, jnp.asarray([1.0]))
  e = np.exp([0.0, 1.0, 2 ** -0.5])
  np.testing.assert_allclose(w1[0], e / e.sum(), rtol=1e-5)


def test_allocation_picks_the_least_used_slot_without_gradient():
  u = jnp.asarray([[0.5, 0.1, 0.9, 0.3], [0.2, 0.7, 0.2, 0.0]])
  np.testing.assert_array_equal(mem.allocation(u), [[0, 1, 0, 0], [0, 0, 0, 1]])
  # Ties go to the first least-used slot.
  np.testing.assert_array_equal(mem.allocation(jnp.asarray([[0.3, 0.2, 0.2]])), [[0, 1, 0]])
  g = jax.grad(lambda v: jnp.sum(mem.allocation(v) * jnp.arange(4.0)))(u)
  np.testing.assert_array_equal(g, 0.0)


def test_next_write_weight_and_usage_update():
  gates = jnp.asarray([[0.1, 0.3, 0.6]])
  w_r = jnp.asarray([[0.2, 0.8, 0.0]])
  w_a = jnp.asarray([[0.0, 0.0, 1.0]])
  w_w = mem.next_write_weight(gates, w_r, w_a)
  np.testing.assert_allclose(w_w, [[0.06, 0.24, 0.6]], rtol=1e-6)
  u = mem.update_usage(jnp.asarray([[1.0, 0.5, 0.0]]), w_w, w_r)
  np.testing.assert_allclose(u, [[0.99 + 0.06 + 0.2, 0.495 + 0.24 + 0.8, 0.6]], rtol=1e-6)


def test_residual_template_is_channelwise():
  t0 = jnp.ones((1, 2, 2, 3))
  retr = jnp.full((1, 2, 2, 3), 2.0)
  out = mem.residual_template(t0, jnp.asarray([[0.0, 0.5, 1.0]]), retr)
  np.testing.assert_array_equal(out[0, 1, 0], [1.0, 2.0, 3.0])


def test_initial_state_and_two_full_steps():
  b, n = 1, 3
  s = mem.init_state(b, n, (2, 2, 2))
  np.testing.assert_array_equal(s.write_weight, [[1, 0, 0]])
  np.testing.assert_array_equal(s.usage, [[1, 0, 0]])
  np.testing.assert_array_equal(s.gates, [[0, 0, 1]])
  t0 = jnp.broadcast_to(jnp.asarray([1.0, 0.0]), (1, 2, 2, 2))
  alloc = jnp.asarray([[0.0, 0.0, 1.0]])
  # Step 0: writes T_0 into slot 0 (ε = 1); a sharp read of key (1, 0) reads slot 0 back;
  # the empty slots have cosine 0. Allocation (least usage of (1, 0, 0)) picks slot 1.
  s1, ro = mem.step(s, t0, t0, read_key=jnp.asarray([[1.0, 0.0]]), read_strength=jnp.asarray([50.0]),
                    residual_gate=jnp.asarray([[1.0, 1.0]]), gates=alloc, decay=jnp.asarray([0.0]))
  np.testing.assert_array_equal(s1.memory[0, 0], t0[0])
  np.testing.assert_array_equal(s1.memory[0, 1:], 0.0)
  e = np.exp(50.0 * 1 / (1 + 1e-6))
  np.testing.assert_allclose(ro.read_weight[0], np.array([e, 1.0, 1.0]) / (e + 2), rtol=1e-4)
  np.testing.assert_allclose(ro.template, 2 * t0, rtol=1e-6)        # T_0 + 1 ⊙ T_0
  np.testing.assert_array_equal(ro.alloc_weight, [[0, 1, 0]])
  np.testing.assert_array_equal(s1.write_weight, [[0, 1, 0]])       # g^a = 1
  np.testing.assert_allclose(s1.usage, [[0.99 + ro.read_weight[0, 0], 1 + ro.read_weight[0, 1],
                                         ro.read_weight[0, 2]]], rtol=1e-6)
  # Step 1: Z_1 goes to slot 1 (the previous step's write weight and allocate gate).
  z1 = jnp.broadcast_to(jnp.asarray([0.0, 4.0]), (1, 2, 2, 2))
  s2, ro2 = mem.step(s1, z1, t0, read_key=jnp.asarray([[0.0, 1.0]]), read_strength=jnp.asarray([50.0]),
                     residual_gate=jnp.asarray([[0.5, 0.5]]), gates=alloc, decay=jnp.asarray([0.0]))
  np.testing.assert_array_equal(s2.memory[0, 0], t0[0])
  np.testing.assert_array_equal(s2.memory[0, 1], z1[0])
  np.testing.assert_allclose(ro2.read_weight[0, 1], 1.0, atol=1e-6)
  np.testing.assert_allclose(ro2.template, t0 + 0.5 * z1, atol=1e-5)
  # Least used after step 1 is slot 2 (usage of slot 2 only got a ~0 read weight).
  np.testing.assert_array_equal(ro2.alloc_weight, [[0, 0, 1]])


def test_no_write_gate_keeps_memory():
  s = mem.init_state(1, 2, (1, 1, 1))._replace(
      memory=jnp.asarray([[[[[3.0]]], [[[5.0]]]]]), gates=jnp.asarray([[1.0, 0.0, 0.0]]),
      write_weight=jnp.asarray([[0.5, 0.5]]), decay=jnp.asarray([1.0]))
  s1, _ = mem.step(s, jnp.full((1, 1, 1, 1), 100.0), jnp.zeros((1, 1, 1, 1)),
                   read_key=jnp.ones((1, 1)), read_strength=jnp.ones((1,)),
                   residual_gate=jnp.ones((1, 1)), gates=jnp.asarray([[1.0, 0.0, 0.0]]),
                   decay=jnp.asarray([0.0]))
  np.testing.assert_array_equal(s1.memory, s.memory)


if __name__ == "__main__":
  pytest.main([__file__, "-q"])
