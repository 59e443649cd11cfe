"""Association LSTM (Lu, Lu & Tang, "Online Video Object Detection using Association LSTM",
ICCV 2017): a stacked LSTM over time that, per detected object, outputs class scores, a refined
box and an association feature phi.

Input: τ frames of up to N detections each, as D-vectors (`rolo_jax.mot.detections`:
D = K class scores + 4 box values (cx/W, cy/H, w/W, h/H) + A appearance values), zero-padded to N
with a mask: x [τ, B, N, D], mask [τ, B, N].

Per frame t and slot j (all slots share the weights; B·N objects run as one LSTM batch)::

  u_j   = [x_j, sin(pi 2^k b_j), cos(pi 2^k b_j) for k < F]     b_j = x_j's 4 box values
  e_j   = relu(relu(u_j W_e1 + b_e1) W_e2 + b_e2)               encoder           [E]
  psi_j = normalise(e_j W_q + b_q)                              query             [P]

  Per-object recurrence.  Detection slots are not the same object from frame to frame, so the
  LSTM state a detection continues is gathered from the previous frame's objects by association
  (soft during training, the same formula online, where the previous objects are the tracks):

  l_ji  = cos(psi_j, phi_{t-1,i}) / T_g     for valid previous slots i (padded: -1e9, weight 0)
  l_j0  = null_logit                          (a learned scalar: "a new object", zero state)
  a_j   = softmax([l_j0, l_j1 .. l_jN])
  s~_j  = sum_i a_ji s_{t-1,i}                (per layer, h and c; the null share adds zeros)
  s_j, h_j = stacked LSTM(s~_j, e_j)          layer-normalised cells (`rolo_jax.cells.lstm`;
                                              the paper cites a batch-normalised LSTM)

  heads on the top layer's h_j:
  cls_j  = h_j W_c + b_c                      K + 1 logits (the last one: background)
  d_j    = h_j W_b + b_b                      box refinement (dx, dy, dw, dh), dw, dh clipped to
                                              [-2, 2]; refined = (cx + w dx, cy + h dy, w e^dw, h e^dh)
  phi_j  = normalise(h_j W_phi + b_phi)       association feature [P], unit length

Padded slots: their state, phi and outputs are zero, and they never receive weight in the next
frame's gather (the -1e9 logit underflows to an exact 0 after the softmax).  Valid slots do not
depend on padded slots' inputs.

`apply` unrolls `step` over τ with `rolo_jax.cells.unroll.unroll` (one lax.scan).  `step` also
runs online (one frame at a time) with the previous objects given as an explicit `SlotState`,
where the previous and current numbers of slots may differ (tracks vs detections).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from rolo_jax.cells import lstm
from rolo_jax.cells.unroll import unroll
from rolo_jax.summary import count_params, param_table  # noqa: F401  (re-exported model API)

Params = Dict[str, Any]
NEG = -1e9   # logit of a padded slot: exp underflows to exactly 0 after the softmax


@dataclass(frozen=True)
class AssociationConfig:
  """Architecture (frozen, hashable: a static jit argument).

  Attributes:
    num_classes: K, class-score inputs; the class head has K + 1 outputs (background last).
    appearance_dim: A of the D-vector (0: boxes only).
    embed_dim: E.  hidden: H per LSTM layer.  num_layers: stacked LSTM layers.
    phi_dim: P, the association feature's size.
    fourier_bands: F frequencies of the box's Fourier features (0: none).
    cell: LSTM cell kind ('layernorm' or 'plain').
    gather_temperature: T_g of the state gather.
    null_logit_init: initial null_logit (cos = null_logit_init * T_g is the break-even similarity).
  """
  name: str = "small"
  num_classes: int = 6
  appearance_dim: int = 48
  embed_dim: int = 64
  hidden: int = 64
  num_layers: int = 2
  phi_dim: int = 32
  fourier_bands: int = 4
  cell: str = "layernorm"
  gather_temperature: float = 0.1
  null_logit_init: float = 5.0

  def __post_init__(self):
    if self.num_classes < 1 or self.appearance_dim < 0 or self.num_layers < 1:
      raise ValueError(f"bad AssociationConfig: {self}")
    if self.cell not in ("layernorm", "plain", "peephole"):
      raise ValueError(f"cell must be 'layernorm', 'plain' or 'peephole', got {self.cell!r}")

  @property
  def input_dim(self) -> int:
    """D = K + 4 + A."""
    return self.num_classes + 4 + self.appearance_dim

  def replace(self, **kw) -> "AssociationConfig":
    return dataclasses.replace(self, **kw)


CONFIGS: Dict[str, AssociationConfig] = {
    # Synthetic videos with appearance: 6 classes, 4x4 RGB ROI pool (A = 48).
    "small": AssociationConfig(),
    # A det.txt without images: the detection score and the box (D = 5).
    "boxes": AssociationConfig(name="boxes", num_classes=1, appearance_dim=0),
    # Tests.
    "tiny": AssociationConfig(name="tiny", num_classes=2, appearance_dim=12, embed_dim=16,
                              hidden=16, phi_dim=8, fourier_bands=2),
}


class SlotState(NamedTuple):
  """The objects of the previous frame (training) or the tracks (online)."""
  lstm: Tuple[lstm.LSTMState, ...]  # per layer, h and c [B, N, H]
  phi: jax.Array                    # [B, N, P] (0 for padded slots)
  mask: jax.Array                   # [B, N] bool


def init_state(batch: int, slots: int, cfg: AssociationConfig) -> SlotState:
  """No previous objects: zero states, every slot padded."""
  z = jnp.zeros((batch, slots, cfg.hidden), jnp.float32)
  return SlotState(tuple(lstm.LSTMState(z, z) for _ in range(cfg.num_layers)),
                   jnp.zeros((batch, slots, cfg.phi_dim), jnp.float32),
                   jnp.zeros((batch, slots), bool))


# ------------------------------------------------------------------------------------------ params

def _dense(key, n_in: int, n_out: int, scale: float = 1.0) -> Params:
  lim = scale * (6.0 / (n_in + n_out)) ** 0.5
  return {"w": jax.random.uniform(key, (n_in, n_out), jnp.float32, -lim, lim),
          "b": jnp.zeros((n_out,), jnp.float32)}


def _encoder_in(cfg: AssociationConfig) -> int:
  return cfg.input_dim + 8 * cfg.fourier_bands


def init(key: jax.Array, cfg: AssociationConfig) -> Params:
  """Params: encoder {dense1, dense2}, query, lstm0..lstm{L-1}, heads {cls, box, phi}, null_logit.

  Dense layers Glorot-uniform with zero biases (the box head starts at 1/10 scale, so the first
  refinements are small); LSTM cells as `rolo_jax.cells.lstm`.
  """
  init_cell, _ = lstm.make_cell(cfg.cell)
  ks = jax.random.split(key, 6 + cfg.num_layers)
  E, H, P = cfg.embed_dim, cfg.hidden, cfg.phi_dim
  p: Params = {
      "encoder": {"dense1": _dense(ks[0], _encoder_in(cfg), E), "dense2": _dense(ks[1], E, E)},
      "query": _dense(ks[2], E, P),
      "heads": {"cls": _dense(ks[3], H, cfg.num_classes + 1), "box": _dense(ks[4], H, 4, 0.1),
                "phi": _dense(ks[5], H, P)},
      "null_logit": jnp.asarray(cfg.null_logit_init, jnp.float32),
  }
  for layer in range(cfg.num_layers):
    p[f"lstm{layer}"] = init_cell(ks[6 + layer], E if layer == 0 else H, H)
  return p


# ------------------------------------------------------------------------------------------ model

def _normalise(v: jax.Array, eps: float = 1e-6) -> jax.Array:
  return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + eps)


def box_part(x: jax.Array, cfg: AssociationConfig) -> jax.Array:
  """The 4 box values (cx/W, cy/H, w/W, h/H) of D-vectors [..., D]."""
  return x[..., cfg.num_classes:cfg.num_classes + 4]


def refine_box(box: jax.Array, delta: jax.Array) -> jax.Array:
  """(cx + w dx, cy + h dy, w exp(dw), h exp(dh)) of normalised boxes [..., 4]."""
  cx, cy, w, h = jnp.moveaxis(box, -1, 0)
  dx, dy, dw, dh = jnp.moveaxis(delta, -1, 0)
  return jnp.stack([cx + w * dx, cy + h * dy, w * jnp.exp(dw), h * jnp.exp(dh)], axis=-1)


def encode_delta(box: jax.Array, target: jax.Array, eps: float = 1e-6) -> jax.Array:
  """The inverse of `refine_box`: the delta that takes `box` to `target` (normalised boxes)."""
  cx, cy, w, h = jnp.moveaxis(box, -1, 0)
  tx, ty, tw, th = jnp.moveaxis(target, -1, 0)
  w, h = jnp.maximum(w, eps), jnp.maximum(h, eps)
  return jnp.stack([(tx - cx) / w, (ty - cy) / h, jnp.log(jnp.maximum(tw, eps) / w),
                    jnp.log(jnp.maximum(th, eps) / h)], axis=-1)


def _encode(params: Params, x: jax.Array, cfg: AssociationConfig) -> jax.Array:
  u = [x]
  if cfg.fourier_bands:
    b = box_part(x, cfg)
    f = jnp.pi * (2.0 ** jnp.arange(cfg.fourier_bands, dtype=x.dtype))
    ang = (b[..., :, None] * f).reshape(b.shape[:-1] + (4 * cfg.fourier_bands,))
    u += [jnp.sin(ang), jnp.cos(ang)]
  u = jnp.concatenate(u, axis=-1)
  enc = params["encoder"]
  e = jax.nn.relu(u @ enc["dense1"]["w"] + enc["dense1"]["b"])
  return jax.nn.relu(e @ enc["dense2"]["w"] + enc["dense2"]["b"])


def step(params: Params, prev: SlotState, inputs: Tuple[jax.Array, jax.Array], *,
         cfg: AssociationConfig) -> Tuple[SlotState, Dict[str, jax.Array]]:
  """One frame (see the module docstring).

  Args:
    params: from `init`.
    prev: the previous objects, [B, Np, ...].
    inputs: (x [B, N, D] D-vectors, mask [B, N] bool); N may differ from Np.
    cfg: the config.
  Returns:
    (state of this frame's objects [B, N, ...], outputs) with outputs
      cls_logits [B, N, K + 1], box_delta [B, N, 4], box [B, N, 4] (refined, normalised cx, cy,
      w, h), phi [B, N, P], psi [B, N, P], gather_logits [B, N, 1 + Np] (null first, padded
      previous slots NEG), gather [B, N, 1 + Np] (the softmax), mask [B, N].
    Every output of a padded slot is 0 (gather_logits: NEG).
  """
  x, mask = inputs
  if x.shape[-1] != cfg.input_dim:
    raise ValueError(f"association.step: D-vectors have {x.shape[-1]} values, config "
                     f"{cfg.name!r} expects {cfg.input_dim} (K={cfg.num_classes} + 4 + "
                     f"A={cfg.appearance_dim})")
  B, N = mask.shape
  m = mask[..., None].astype(x.dtype)
  x = x * m
  _, cell_step = lstm.make_cell(cfg.cell)
  with jax.named_scope("encoder"):
    e = _encode(params, x, cfg)
    psi = _normalise(e @ params["query"]["w"] + params["query"]["b"])
  with jax.named_scope("gather"):
    sim = jnp.einsum("bnp,bmp->bnm", psi, prev.phi) / cfg.gather_temperature
    sim = jnp.where(prev.mask[:, None, :], sim, NEG)
    null = jnp.broadcast_to(params["null_logit"], (B, N, 1)).astype(sim.dtype)
    logits = jnp.concatenate([null, sim], axis=-1)
    a = jax.nn.softmax(logits, axis=-1)
    w = a[..., 1:]
    gathered = [lstm.LSTMState(jnp.einsum("bnm,bmh->bnh", w, s.h), jnp.einsum("bnm,bmh->bnh", w, s.c))
                for s in prev.lstm]
  with jax.named_scope("cell"):
    h_in = e.reshape(B * N, -1)
    states = []
    for layer, s in enumerate(gathered):
      s2, h_in = cell_step(params[f"lstm{layer}"], lstm.LSTMState(s.h.reshape(B * N, -1),
                                                                  s.c.reshape(B * N, -1)), h_in)
      states.append(lstm.LSTMState(s2.h.reshape(B, N, -1) * m, s2.c.reshape(B, N, -1) * m))
    h = h_in.reshape(B, N, -1)
  with jax.named_scope("heads"):
    hd = params["heads"]
    cls = (h @ hd["cls"]["w"] + hd["cls"]["b"]) * m
    raw = h @ hd["box"]["w"] + hd["box"]["b"]
    delta = jnp.concatenate([raw[..., :2], jnp.clip(raw[..., 2:], -2.0, 2.0)], axis=-1) * m
    box = refine_box(box_part(x, cfg), delta) * m
    phi = _normalise(h @ hd["phi"]["w"] + hd["phi"]["b"]) * m
  new = SlotState(tuple(states), phi, mask)
  out = {"cls_logits": cls, "box_delta": delta, "box": box, "phi": phi, "psi": psi * m,
         "gather_logits": jnp.where(mask[..., None], logits, NEG), "gather": a * m, "mask": mask}
  return new, out


def apply(params: Params, x: jax.Array, mask: jax.Array, *, cfg: AssociationConfig,
          state0: Optional[SlotState] = None, remat: bool = False
          ) -> Tuple[Dict[str, jax.Array], Dict[str, Any]]:
  """Runs `step` over τ frames (one lax.scan).

  Args:
    params: from `init`.
    x: [τ, B, N, D] D-vectors (time-major).  mask: [τ, B, N] bool.
    state0: the objects before the first frame (default: none).
    remat: `jax.checkpoint` each step (BPTT memory).
  Returns:
    (outputs: each of `step`'s outputs stacked to [τ, B, N, ...], aux {'state': final SlotState}).
  """
  T, B, N = mask.shape
  if state0 is None:
    state0 = init_state(B, N, cfg)
  fn = lambda p, s, xs: step(p, s, xs, cfg=cfg)
  final, outs = unroll(fn, params, state0, (x, mask), checkpoint=remat)
  return outs, {"state": final}


__all__ = ["AssociationConfig", "CONFIGS", "SlotState", "init_state", "init", "step", "apply",
           "box_part", "refine_box", "encode_delta", "NEG"]
