"""LSTM cells as pure functions: ``init_<kind>(key, in_dim, hidden) -> params`` and
``<kind>_step(params, state, x) -> (state, h)``.

Every step has the carry-first signature ``lax.scan`` wants (see ``rolo_jax.cells.unroll``). Params are
plain dicts of arrays; state is an ``LSTMState(h, c)``. Notation: x [B, in], h, c [B, H], σ the logistic
function, ⊙ the elementwise product, ``[a, b]`` concatenation along the feature axis, ``@`` a matrix
product with weights stored ``[in, out]``.

Kinds (``make_cell(kind) -> (init, step)``):

* ``'caffe'`` — the Re3 paper cell (Caffe LSTM with *full-matrix* peepholes)::

      z  = tanh([x, h_prev] @ Wz + bz)                  block input
      i  = σ([x, h_prev, c_prev] @ Wi + bi)             input gate
      f  = σ([x, h_prev, c_prev] @ Wf + bf)             forget gate
      c  = i ⊙ z + f ⊙ c_prev
      o  = σ([x, h_prev, c] @ Wo + bo)                  output gate (reads the NEW cell)
      h  = o ⊙ tanh(c)

  params: ``block_input``, ``input_gate``, ``forget_gate``, ``output_gate``, each ``{'w': [rows, H],
  'b': [H]}`` with rows = in + H for block_input and in + 2H for the gates. Row order is exactly the
  concatenation order above: first the ``in`` rows for x, then H rows for h_prev, then (gates only) H
  rows for c_prev (input/forget) or c_new (output). These names mirror the authors' PyTorch port
  (``lstmN.<name>.weight`` is ``[H, rows]``, i.e. the transpose of ``w``).

* ``'peephole'`` — standard LSTM with *diagonal* peepholes (Re3 ``small`` model, the seed's equations)::

      [a_i, a_z, a_f, a_o] = [x, h_prev] @ W + b        W: [in + H, 4H], b: [4H]
      i = σ(a_i + p_i ⊙ c_prev);  z = tanh(a_z);  f = σ(a_f + p_f ⊙ c_prev)
      c = i ⊙ z + f ⊙ c_prev;     o = σ(a_o + p_o ⊙ c);  h = o ⊙ tanh(c)

  params: ``{'w', 'b', 'p_i', 'p_f', 'p_o'}``. Gate blocks along the 4H axis are ordered (i, z, f, o),
  TensorFlow's ``LSTMCell`` order (TF calls z "j").

* ``'plain'`` — the same without peepholes (ROLO): params ``{'w', 'b'}``, i = σ(a_i), f = σ(a_f),
  o = σ(a_o).

* ``'layernorm'`` — layer-normalised LSTM (Ba et al. 2016, as TF's ``LayerNormBasicLSTMCell``)::

      [a_i, a_z, a_f, a_o] = [x, h_prev] @ W             (no bias; the LN shifts act as biases)
      g_k = LN(a_k) * gate_scale[k] + gate_bias[k]       each gate normalised separately over H
      c~  = σ(g_i) ⊙ tanh(g_z) + σ(g_f) ⊙ c_prev
      c   = LN(c~) * cell_scale + cell_bias              (only when the params hold 'cell_scale')
      h   = σ(g_o) ⊙ tanh(c)

  params: ``{'w', 'gate_scale' [4, H], 'gate_bias' [4, H]}`` plus optionally ``'cell_scale'``,
  ``'cell_bias'`` [H]. LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the last axis.

Forget bias: every cell starts with its forget-gate bias at ``forget_bias`` (default 1) in the params.
TensorFlow's cells instead add a constant ``forget_bias`` at run time with the stored bias at 0; when
importing such weights add that constant to the stored forget bias.

Initialisation: weight matrices are Glorot-uniform per gate block (fan_in = rows, fan_out = H);
diagonal peepholes Glorot-uniform on a length-H vector (limit sqrt(3/H), as TF's default for
``w_*_diag``); biases 0 except the forget gate; LN scales 1, shifts 0 (forget shift ``forget_bias``).

Weight layout: every matrix is stored ``'w'`` = [in, out] (training and checkpoints).
``transposed(params)`` stores each matrix as ``'w_t'`` = [out, in] instead; every step (and ``dense``)
accepts either. Same numbers, different speed: for a batch of one, XLA:CPU's matrix-vector product
streams an [out, in] matrix ~1.6x faster than an [in, out] one (the contraction axis contiguous),
and such steps are memory-bound; for batches of 2 and more its matrix-matrix product is faster with
[in, out]. So the Re3 tracker uses the transposed layout for one target only (WORKSPACE.md, #7).

Dtypes: a step computes in the dtype of its weights (cast params to bfloat16 for mixed precision) and
returns the new state in the dtype of the incoming state, so a float32 carry stays float32 inside
``lax.scan``; the returned h (the step output) is in the compute dtype.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Params = Dict[str, object]

CELL_KINDS = ("caffe", "peephole", "plain", "layernorm")
LN_EPS = 1e-5


class LSTMState(NamedTuple):
  """Recurrent state of one LSTM layer."""
  h: jax.Array  # [B, H] output
  c: jax.Array  # [B, H] cell


def zeros_state(batch: int, hidden: int, dtype=jnp.float32) -> LSTMState:
  """All-zero state: h = c = 0, each [batch, hidden]."""
  z = jnp.zeros((batch, hidden), dtype)
  return LSTMState(h=z, c=z)


# --------------------------------------------------------------------------------------------------
# helpers

def _glorot_limit(rows: int, cols: int) -> float:
  return (6.0 / (rows + cols)) ** 0.5


def _glorot_gates(key, rows: int, hidden: int, n: int, dtype) -> jax.Array:
  """n gate blocks [rows, hidden], each Glorot-uniform, side by side: [rows, n * hidden].

  One random draw (every block has the same fan_in/fan_out, hence the same limit): each random call
  costs XLA compile time, so the inits keep them few.
  """
  limit = _glorot_limit(rows, hidden)
  return jax.random.uniform(key, (rows, n * hidden), dtype, -limit, limit)


def _diag(key, n: int, hidden: int, dtype) -> jax.Array:
  """n diagonal peephole vectors [n, hidden], uniform(±sqrt(3 / hidden))."""
  limit = (3.0 / hidden) ** 0.5
  return jax.random.uniform(key, (n, hidden), dtype, -limit, limit)


def dense(x: jax.Array, layer: Params) -> jax.Array:
  """``x @ W`` (no bias) for a layer holding ``'w'`` [in, out] or ``'w_t'`` [out, in]; x: [..., in]."""
  if "w_t" in layer:
    return jax.lax.dot_general(x, layer["w_t"], (((x.ndim - 1,), (1,)), ((), ())))
  return x @ layer["w"]


def weight_shape(layer: Params) -> Tuple[int, int]:
  """(in, out) of a layer's matrix in either layout."""
  if "w_t" in layer:
    return tuple(layer["w_t"].shape[::-1])
  return tuple(layer["w"].shape)


def _weight(layer: Params) -> jax.Array:
  return layer["w_t"] if "w_t" in layer else layer["w"]


def transposed(params):
  """The one-target inference layout of any params tree: every dict holding a 2-D ``'w'`` gets ``'w_t'`` =
  its transpose instead (other arrays, e.g. 4-D convolution kernels, unchanged). Host-side numpy
  copies, so the transposes are contiguous. ``transposed(transposed(p)) == transposed(p)``."""
  if isinstance(params, dict):
    out = {}
    for k, v in params.items():
      if k == "w" and getattr(v, "ndim", 0) == 2:
        out["w_t"] = np.ascontiguousarray(np.asarray(v).T)
      else:
        out[k] = transposed(v)
    return out
  return params


def _prepare(params_w: jax.Array, state: LSTMState, x: jax.Array):
  """Casts x and the state to the weights' (compute) dtype."""
  dt = params_w.dtype
  return x.astype(dt), state.h.astype(dt), state.c.astype(dt)


def _finish(state: LSTMState, h: jax.Array, c: jax.Array) -> Tuple[LSTMState, jax.Array]:
  return LSTMState(h=h.astype(state.h.dtype), c=c.astype(state.c.dtype)), h


def _split4(a: jax.Array):
  return jnp.split(a, 4, axis=-1)


def _check_in(w_rows: int, hidden: int, x: jax.Array, extra: int, name: str):
  if x.shape[-1] + extra * hidden != w_rows:
    raise ValueError(f"{name}: input has {x.shape[-1]} features but the weights expect "
                     f"{w_rows - extra * hidden} (hidden={hidden})")


# --------------------------------------------------------------------------------------------------
# Caffe LSTM (full-matrix peepholes)

def init_caffe(key, in_dim: int, hidden: int, *, forget_bias: float = 1.0, dtype=jnp.float32) -> Params:
  """Params of the Caffe/Re3-paper LSTM (see module docstring).

  Count: (in + H)·H + H  +  3·((in + 2H)·H + H).
  """
  gate_rows = in_dim + 2 * hidden
  # One U(-1, 1) draw [in + 2H, 4H]; block k takes columns k·H..(k+1)·H, scaled to its Glorot limit
  # (block_input uses only its first in + H rows).
  u = jax.random.uniform(key, (gate_rows, 4 * hidden), dtype, -1.0, 1.0)
  names = ("block_input", "input_gate", "forget_gate", "output_gate")
  params = {}
  for k, name in enumerate(names):
    rows = in_dim + hidden if k == 0 else gate_rows
    params[name] = {"w": u[:rows, k * hidden:(k + 1) * hidden] * _glorot_limit(rows, hidden),
                    "b": jnp.full((hidden,), forget_bias if name == "forget_gate" else 0.0, dtype)}
  return params


def caffe_step(params: Params, state: LSTMState, x: jax.Array) -> Tuple[LSTMState, jax.Array]:
  """One step of the Caffe LSTM. x: [B, in]; returns (LSTMState [B, H] each, h [B, H])."""
  rows, hidden = weight_shape(params["block_input"])
  _check_in(rows, hidden, x, 1, "caffe_step")
  x, h, c = _prepare(_weight(params["block_input"]), state, x)
  xh = jnp.concatenate([x, h], axis=-1)
  xhc = jnp.concatenate([xh, c], axis=-1)
  lin = lambda name, v: dense(v, params[name]) + params[name]["b"]
  z = jnp.tanh(lin("block_input", xh))
  i = jax.nn.sigmoid(lin("input_gate", xhc))
  f = jax.nn.sigmoid(lin("forget_gate", xhc))
  c_new = i * z + f * c
  o = jax.nn.sigmoid(lin("output_gate", jnp.concatenate([xh, c_new], axis=-1)))
  h_new = o * jnp.tanh(c_new)
  return _finish(state, h_new, c_new)


# --------------------------------------------------------------------------------------------------
# Fused-kernel cells: plain and diagonal-peephole LSTM

def _fused_bias(hidden: int, forget_bias: float, dtype) -> jax.Array:
  b = jnp.zeros((4, hidden), dtype).at[2].set(forget_bias)  # (i, z, f, o): f is block 2
  return b.reshape(4 * hidden)


def init_plain(key, in_dim: int, hidden: int, *, forget_bias: float = 1.0, dtype=jnp.float32) -> Params:
  """Params of the plain LSTM: w [in + H, 4H] (gate blocks i, z, f, o), b [4H]. Count 4H(in + H + 1)."""
  return {"w": _glorot_gates(key, in_dim + hidden, hidden, 4, dtype),
          "b": _fused_bias(hidden, forget_bias, dtype)}


def init_peephole(key, in_dim: int, hidden: int, *, forget_bias: float = 1.0,
                  dtype=jnp.float32) -> Params:
  """Params of the diagonal-peephole LSTM: plain params plus p_i, p_f, p_o [H].

  Count 4H(in + H + 1) + 3H.
  """
  kw, kp = jax.random.split(key)
  p = init_plain(kw, in_dim, hidden, forget_bias=forget_bias, dtype=dtype)
  diag = _diag(kp, 3, hidden, dtype)
  p.update(p_i=diag[0], p_f=diag[1], p_o=diag[2])
  return p


def _fused_preact(params, state, x, name):
  rows, cols = weight_shape(params)
  hidden = cols // 4
  _check_in(rows, hidden, x, 1, name)
  x, h, c = _prepare(_weight(params), state, x)
  a = dense(jnp.concatenate([x, h], axis=-1), params)
  return a, c


def plain_step(params: Params, state: LSTMState, x: jax.Array) -> Tuple[LSTMState, jax.Array]:
  """One step of the plain LSTM (no peepholes). x: [B, in]; returns (state, h [B, H])."""
  a, c = _fused_preact(params, state, x, "plain_step")
  a_i, a_z, a_f, a_o = _split4(a + params["b"])
  c_new = jax.nn.sigmoid(a_i) * jnp.tanh(a_z) + jax.nn.sigmoid(a_f) * c
  h_new = jax.nn.sigmoid(a_o) * jnp.tanh(c_new)
  return _finish(state, h_new, c_new)


def peephole_step(params: Params, state: LSTMState, x: jax.Array) -> Tuple[LSTMState, jax.Array]:
  """One step of the diagonal-peephole LSTM. x: [B, in]; returns (state, h [B, H])."""
  a, c = _fused_preact(params, state, x, "peephole_step")
  a_i, a_z, a_f, a_o = _split4(a + params["b"])
  i = jax.nn.sigmoid(a_i + params["p_i"] * c)
  f = jax.nn.sigmoid(a_f + params["p_f"] * c)
  c_new = i * jnp.tanh(a_z) + f * c
  o = jax.nn.sigmoid(a_o + params["p_o"] * c_new)
  h_new = o * jnp.tanh(c_new)
  return _finish(state, h_new, c_new)


# --------------------------------------------------------------------------------------------------
# Layer-normalised LSTM

def _ln(v: jax.Array, eps: float) -> jax.Array:
  mean = jnp.mean(v, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(v - mean), axis=-1, keepdims=True)
  return (v - mean) * jax.lax.rsqrt(var + eps)


def init_layernorm(key, in_dim: int, hidden: int, *, forget_bias: float = 1.0, norm_cell: bool = True,
                   dtype=jnp.float32) -> Params:
  """Params of the layer-normalised LSTM: w [in + H, 4H] (no bias), gate_scale/gate_bias [4, H] and,
  when ``norm_cell``, cell_scale/cell_bias [H]. Count 4H(in + H) + 8H (+ 2H)."""
  p = {"w": _glorot_gates(key, in_dim + hidden, hidden, 4, dtype),
       "gate_scale": jnp.ones((4, hidden), dtype),
       "gate_bias": jnp.zeros((4, hidden), dtype).at[2].set(forget_bias)}
  if norm_cell:
    p.update(cell_scale=jnp.ones((hidden,), dtype), cell_bias=jnp.zeros((hidden,), dtype))
  return p


def layernorm_step(params: Params, state: LSTMState, x: jax.Array, *,
                   eps: float = LN_EPS) -> Tuple[LSTMState, jax.Array]:
  """One step of the layer-normalised LSTM. x: [B, in]; returns (state, h [B, H])."""
  a, c = _fused_preact(params, state, x, "layernorm_step")
  hidden = a.shape[-1] // 4
  g = _ln(a.reshape(a.shape[:-1] + (4, hidden)), eps) * params["gate_scale"] + params["gate_bias"]
  g_i, g_z, g_f, g_o = (g[..., k, :] for k in range(4))
  c_new = jax.nn.sigmoid(g_i) * jnp.tanh(g_z) + jax.nn.sigmoid(g_f) * c
  if "cell_scale" in params:
    c_new = _ln(c_new, eps) * params["cell_scale"] + params["cell_bias"]
  h_new = jax.nn.sigmoid(g_o) * jnp.tanh(c_new)
  return _finish(state, h_new, c_new)


# --------------------------------------------------------------------------------------------------

_CELLS: Dict[str, Tuple[Callable, Callable]] = {
    "caffe": (init_caffe, caffe_step),
    "peephole": (init_peephole, peephole_step),
    "plain": (init_plain, plain_step),
    "layernorm": (init_layernorm, layernorm_step),
}


def make_cell(kind: str) -> Tuple[Callable, Callable]:
  """Returns ``(init, step)`` for ``kind`` in CELL_KINDS.

  ``init(key, in_dim, hidden, **kw) -> params``; ``step(params, state, x) -> (state, h)``.
  """
  try:
    return _CELLS[kind]
  except KeyError:
    raise ValueError(f"unknown LSTM cell kind {kind!r}; choose from {', '.join(CELL_KINDS)}") from None


def hidden_size(params: Params) -> int:
  """H of any cell's params."""
  if "block_input" in params:
    return weight_shape(params["block_input"])[1]
  return weight_shape(params)[1] // 4
