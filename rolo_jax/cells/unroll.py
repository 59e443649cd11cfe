"""The one time-unrolling helper: a ``lax.scan`` over a carry-first step function.

``unroll(step, params, state0, xs)`` computes, for t = 0 .. T-1::

    state_{t+1}, y_t = step(params, state_t, xs[t])

and returns ``(state_T, ys)`` with ys stacked time-major. ``xs`` is any pytree whose leaves share a
leading time axis T (e.g. ``{'frames': [T, B, ...], 'key': [T, 2]}``): per-step PRNG keys go in there,
made by the caller with ``jax.random.split(key, T)``. ``params`` are closed over (the same every step).
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import jax

Step = Callable[[Any, Any, Any], Tuple[Any, Any]]


def unroll(step: Step, params: Any, state0: Any, xs: Any, *, checkpoint: bool = False,
           unroll: int | bool = 1, checkpoint_policy: Callable | None = None) -> Tuple[Any, Any]:
  """Scans ``step`` over the leading (time) axis of ``xs``.

  Args:
    step: ``step(params, state, x) -> (state, y)``; state and y are pytrees of fixed shape/dtype.
    params: pytree passed unchanged to every step.
    state0: initial carry.
    xs: pytree of arrays, each [T, ...] (time-major, e.g. [T, B, ...]).
    checkpoint: wrap the step in ``jax.checkpoint`` (recompute activations in the backward pass
      instead of storing them: BPTT memory O(T · |state|) rather than O(T · |activations|)).
    unroll: passed to ``lax.scan`` (steps per loop iteration; True unrolls fully).
    checkpoint_policy: optional ``jax.checkpoint_policies`` entry used when ``checkpoint``.

  Returns:
    (final_state, ys) with every leaf of ys stacked to [T, ...].
  """
  body = step
  if checkpoint:
    # prevent_cse=False is safe and faster inside scan (the scan already blocks the CSE it guards).
    body = jax.checkpoint(step, prevent_cse=False, policy=checkpoint_policy)

  def scan_fn(state, x):
    return body(params, state, x)

  return jax.lax.scan(scan_fn, state0, xs, unroll=unroll)
