"""Optimiser, learning-rate schedules and the L2 weight-decay term of the Re3 loss.

Re3 (paper and the authors' TF code) minimises

    L = L1(boxes) + wd * sum_v 1/2 ||v||^2        (wd = 0.0005, over ALL trainable variables,
                                                    biases and PReLU slopes included)

with Adam.  The decay term is part of the loss (its gradient wd * v goes through Adam's
normalisation), which is NOT the same as decoupled AdamW decay, so it is added to the loss here
(`weight_decay_loss`) rather than expressed as an optax transform.

The optimiser is an `optax.chain`: optional global-norm clipping, then Adam with a learning-rate
schedule (a pure ``step -> value`` function; the step is Adam's own update count, so it is saved
with the optimiser state and a resumed run continues the schedule exactly), then optionally an
exponential moving average of the parameters (`params_ema`), which changes no update: it is part
of the optimiser state only so that it is jitted with the update and checkpointed and resumed with
it.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

PyTree = Any

WEIGHT_DECAY = 0.0005  # Re3: 0.0005 * sum 1/2 ||v||^2.


def weight_decay_loss(params: PyTree, weight_decay: float = WEIGHT_DECAY) -> jax.Array:
  """wd * sum over every leaf v of 1/2 * sum(v**2) (a float32 scalar).

  Args:
    params: pytree of arrays (all of them are treated as trainable).
    weight_decay: the coefficient (Re3: 0.0005).
  Returns:
    scalar: weight_decay * 0.5 * sum_v ||v||_2^2.
  """
  leaves = jax.tree_util.tree_leaves(params)
  if not leaves:
    return jnp.zeros((), jnp.float32)
  sq = sum(jnp.sum(jnp.square(jnp.asarray(v, jnp.float32))) for v in leaves)
  return weight_decay * 0.5 * sq


def tree_norm(tree: PyTree) -> jax.Array:
  """Global L2 norm sqrt(sum_v ||v||^2) of a pytree (0 for an empty tree)."""
  return optax.tree.norm(tree) if jax.tree_util.tree_leaves(tree) else jnp.zeros(())


def lr_schedule(base_lr: float, total_steps: int, *, kind: str = "cosine", final_fraction: float = 0.1,
                warmup_steps: int = 0, drop_step: Optional[int] = None) -> optax.Schedule:
  """A learning-rate schedule ``step -> lr``.

  kinds:
    'constant': base_lr.
    'cosine':   linear warm-up over `warmup_steps`, then cosine decay from base_lr to
                base_lr * final_fraction at `total_steps`.
    'paper':    base_lr, multiplied by 0.1 from `drop_step` on (Re3: 1e-5 -> 1e-6 after ~10k).
  """
  if kind == "constant":
    return optax.constant_schedule(base_lr)
  if kind == "paper":
    drop = drop_step if drop_step is not None else 10_000
    return optax.piecewise_constant_schedule(base_lr, {int(drop): 0.1})
  if kind == "cosine":
    decay_steps = max(int(total_steps), warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=base_lr if warmup_steps == 0 else 0.0, peak_value=base_lr,
        warmup_steps=warmup_steps, decay_steps=decay_steps, end_value=base_lr * final_fraction)
  raise ValueError(f"unknown lr schedule kind {kind!r} (constant, cosine, paper)")


def scale_groups(scales: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies the updates of top-level parameter groups (e.g. {'conv1': 1/64}) by a factor.

  After Adam this is a per-layer learning-rate factor: Adam's step is ~lr in every weight whatever
  the weight's scale, so a layer initialised at a much smaller scale (Re3's conv1 on raw pixels,
  init divided by `init_input_std`) would otherwise change by ~100% of its size per step.
  """
  scales = dict(scales)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    out = {k: (jax.tree_util.tree_map(lambda u, f=scales[k]: u * f, v) if k in scales else v)
           for k, v in updates.items()}
    return out, state

  return optax.GradientTransformation(init_fn, update_fn)


class ParamsEmaState(NamedTuple):
  """State of `params_ema`: the running average, with the parameters' structure and dtypes."""
  ema: PyTree


def params_ema(decay: float) -> optax.GradientTransformation:
  """Keeps an exponential moving average of the parameters; passes the updates through unchanged.

  After each update (params_new = params + updates, with the final updates: place it last in a
  chain):

      ema <- decay * ema + (1 - decay) * params_new,      ema_0 = the initial params

  No bias correction: the start value is the initial params, whose weight after n updates is
  decay**n (Re3's default run, decay 0.998 and 3,000 updates: 0.0025).
  """
  if not 0.0 < decay < 1.0:
    raise ValueError(f"params_ema: decay must be in (0, 1), got {decay}")

  def init_fn(params):
    # A copy: the training update donates its state, and a leaf shared with params would be
    # donated twice.
    return ParamsEmaState(jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("params_ema needs the params: call optimizer.update(grads, state, params)")
    new = optax.apply_updates(params, updates)
    ema = jax.tree_util.tree_map(
        lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), state.ema, new)
    return updates, ParamsEmaState(ema)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(schedule: optax.Schedule | float, *, clip_norm: Optional[float] = None,
                   group_lr_scales: Optional[Mapping[str, float]] = None,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   ema_decay: float = 0.0) -> optax.GradientTransformation:
  """optax.chain([clip_by_global_norm(clip_norm)], adam(schedule), [scale_groups(group_lr_scales)],
  [params_ema(ema_decay)]).

  Weight decay is NOT in here: it is a loss term (`weight_decay_loss`), as in Re3.
  ema_decay 0 keeps no average (the state then has the same structure as before averaging existed).
  """
  parts = []
  if clip_norm is not None and clip_norm > 0:
    parts.append(optax.clip_by_global_norm(clip_norm))
  parts.append(optax.adam(schedule, b1=b1, b2=b2, eps=eps))
  if group_lr_scales:
    parts.append(scale_groups(group_lr_scales))
  if ema_decay:
    parts.append(params_ema(ema_decay))
  return optax.chain(*parts)


def _find_state(opt_state: PyTree, kind: type):
  """The first sub-state of type `kind` in an optax (chain) state, or None."""
  for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, kind)):
    if isinstance(s, kind):
      return s
  return None


def ema_params(opt_state: PyTree) -> Optional[PyTree]:
  """The parameter average of a `make_optimizer(..., ema_decay=d)` state; None when it keeps none."""
  s = _find_state(opt_state, ParamsEmaState)
  return None if s is None else s.ema


def adam_count(opt_state: PyTree) -> jax.Array:
  """Adam's update counter from a `make_optimizer` state (the step the lr schedule sees)."""
  s = _find_state(opt_state, optax.ScaleByAdamState)
  if s is None:
    raise ValueError("no Adam state found in the optimiser state")
  return s.count


def norms(params: PyTree, grads: PyTree, updates: PyTree) -> dict:
  """Training metrics: global norms of parameters, gradients and applied updates."""
  return {"param_norm": tree_norm(params), "grad_norm": tree_norm(grads),
          "update_norm": tree_norm(updates)}
