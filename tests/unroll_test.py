"""unroll (lax.scan) equals the same step in a Python loop: outputs, final state, gradients."""
import rolo_jax  # noqa: F401

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.cells import lstm
from rolo_jax.cells.unroll import unroll

T, B, IN, H = 5, 3, 4, 6


def _loop(step, params, state, xs):
  n = jax.tree_util.tree_leaves(xs)[0].shape[0]
  ys = []
  for t in range(n):
    state, y = step(params, state, jax.tree_util.tree_map(lambda a: a[t], xs))
    ys.append(y)
  return state, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys)


def _close(a, b, tol=1e-5):
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    assert u.shape == v.shape
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _setup(kind):
  init, step = lstm.make_cell(kind)
  params = init(jax.random.PRNGKey(0), IN, H)
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, IN))
  st = lstm.LSTMState(*(0.5 * jax.random.normal(jax.random.PRNGKey(2), (2, B, H))))
  return step, params, st, xs


@pytest.mark.parametrize("kind", lstm.CELL_KINDS)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_scan_equals_python_loop(kind, checkpoint):
  step, params, st, xs = _setup(kind)
  final, ys = unroll(step, params, st, xs, checkpoint=checkpoint)
  final_ref, ys_ref = _loop(step, params, st, xs)
  assert ys.shape == (T, B, H)
  _close(final, final_ref)
  _close(ys, ys_ref)
  # The final h is the last output, and the steps really differ over time.
  np.testing.assert_allclose(np.asarray(final.h), np.asarray(ys[-1]), rtol=1e-6)
  assert not np.allclose(np.asarray(ys[0]), np.asarray(ys[-1]))


@pytest.mark.parametrize("n_unroll", [2, True])
def test_unroll_factor_does_not_change_results(n_unroll):
  step, params, st, xs = _setup("caffe")
  _close(unroll(step, params, st, xs, unroll=n_unroll), unroll(step, params, st, xs))


def test_pytree_inputs_with_per_step_keys():
  """x = {'x': [T, B, IN], 'key': [T] keys}: each step draws its own noise from its key."""
  _, cell_step, = lstm.make_cell("peephole")
  params = lstm.init_peephole(jax.random.PRNGKey(0), IN, H)
  xs = {"x": jax.random.normal(jax.random.PRNGKey(1), (T, B, IN)),
        "key": jax.random.split(jax.random.PRNGKey(7), T)}

  def noisy_step(p, s, x):
    noise = 0.3 * jax.random.normal(x["key"], x["x"].shape)
    s, h = cell_step(p, s, x["x"] + noise)
    return s, {"h": h, "noise": noise}

  st = lstm.zeros_state(B, H)
  final, ys = unroll(noisy_step, params, st, xs)
  final_ref, ys_ref = _loop(noisy_step, params, st, xs)
  _close(final, final_ref)
  _close(ys, ys_ref)
  assert ys["noise"].shape == (T, B, IN)
  assert not np.allclose(np.asarray(ys["noise"][0]), np.asarray(ys["noise"][1]))   # keys differ per step
  clean_final, _ = unroll(cell_step, params, st, xs["x"])
  assert not np.allclose(np.asarray(final.h), np.asarray(clean_final.h))           # noise was used


@pytest.mark.parametrize("kind", ["caffe", "layernorm"])
def test_gradients_match_loop_and_checkpoint(kind):
  step, params, st, xs = _setup(kind)

  def loss_scan(p, ckpt):
    final, ys = unroll(step, p, st, xs, checkpoint=ckpt)
    return jnp.sum(ys ** 2) + jnp.sum(final.c)

  def loss_loop(p):
    final, ys = _loop(step, p, st, xs)
    return jnp.sum(ys ** 2) + jnp.sum(final.c)

  g_ref = jax.grad(loss_loop)(params)
  _close(jax.grad(loss_scan)(params, False), g_ref, 1e-4)
  _close(jax.jit(jax.grad(loss_scan), static_argnums=1)(params, True), g_ref, 1e-4)


def test_checkpoint_policy_is_accepted():
  step, params, st, xs = _setup("plain")
  out = unroll(step, params, st, xs, checkpoint=True,
               checkpoint_policy=jax.checkpoint_policies.nothing_saveable)
  _close(out, unroll(step, params, st, xs))
