"""The MemTrack memory: write, read, allocation and usage, as small pure functions.

Spec: ``/work/shared/specs/memtrack.md`` ("One time step", items 4-7). Notation: B batch, N memory
slots, each slot a template-sized feature map [h, w, C]; ⊙ elementwise; Σ_i a sum over slots.

State between steps (`MemoryState`): the memory M [B, N, h, w, C], the previous step's read weight
w^r, write weight w^w and usage u (each [B, N]), the previous step's write gates g = (g^n, g^r, g^a)
(no-write share, read-overwrite, allocate; [B, 3], a softmax) and decay d [B].

Write (with the previous step's gates, before reading; Z = the exemplar feature of the previous
frame)::

    ε   = d · g^r + g^a                                  write strength            [B]
    M_i ← M_i ⊙ (1 − w^w_i ε) + w^w_i ε Z                erase, then add           [B, N, h, w, C]

Read (with this step's read key k [B, C] and read strength β [B])::

    key_i = mean_{h, w} M_i                              slot keys                 [B, N, C]
    cos_i = k · key_i / (|k| |key_i| + eps)              cosine similarity         [B, N]
    w^r   = softmax_i(β cos_i)                           read weight               [B, N]
    T_retr = Σ_i w^r_i M_i                               retrieved template        [B, h, w, C]

Residual template (r [B, C] a channel-wise gate in (0, 1))::

    T = T_0 + r ⊙ T_retr

Allocation and the next write weight (this step's gates g)::

    w^a   = one_hot(argmin_i u_i)                        least used slot, no gradient
    w^w'  = g^r w^r + g^a w^a
    u'    = 0.99 u + w^w' + w^r

Initial state (`init_state`): M = 0, w^w = u = one_hot(slot 0), w^r = 0, g = one_hot(allocate),
d = 0 -- so the first write puts Z (= T_0 at the first step) into slot 0 with ε = 1, and the first
allocation picks slot 1.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Indices into the write gates g (a softmax over three shares).
NO_WRITE, READ_OVERWRITE, ALLOCATE = 0, 1, 2
COS_EPS = 1e-6
USAGE_DECAY = 0.99


class MemoryState(NamedTuple):
  """The memory and its bookkeeping after a step (what the next step's write uses)."""
  memory: jax.Array        # [B, N, h, w, C]
  read_weight: jax.Array   # [B, N]   w^r of the last read
  write_weight: jax.Array  # [B, N]   w^w for the next write
  usage: jax.Array         # [B, N]   u
  gates: jax.Array         # [B, 3]   (no-write, read-overwrite, allocate) for the next write
  decay: jax.Array         # [B]      d for the next write


def init_state(batch: int, slots: int, slot_shape, dtype=jnp.float32) -> MemoryState:
  """Empty memory: M = 0, w^w = u = one_hot(0), w^r = 0, g = one_hot(ALLOCATE), d = 0.

  Args:
    batch: B.  slots: N.  slot_shape: (h, w, C) of one slot.
  """
  h, w, c = slot_shape
  first = jax.nn.one_hot(jnp.zeros((batch,), jnp.int32), slots, dtype=dtype)
  return MemoryState(
      memory=jnp.zeros((batch, slots, h, w, c), dtype),
      read_weight=jnp.zeros((batch, slots), dtype),
      write_weight=first,
      usage=first,
      gates=jax.nn.one_hot(jnp.full((batch,), ALLOCATE, jnp.int32), 3, dtype=dtype),
      decay=jnp.zeros((batch,), dtype))


def write_strength(gates: jax.Array, decay: jax.Array) -> jax.Array:
  """ε = d · g^r + g^a.  gates [B, 3], decay [B] -> [B]."""
  return decay * gates[..., READ_OVERWRITE] + gates[..., ALLOCATE]


def write(memory: jax.Array, write_weight: jax.Array, strength: jax.Array, z: jax.Array) -> jax.Array:
  """M_i ← M_i (1 − w_i ε) + w_i ε Z.

  Args:
    memory: [B, N, h, w, C].  write_weight: [B, N].  strength: ε [B].  z: [B, h, w, C].
  Returns:
    [B, N, h, w, C].
  """
  a = (write_weight * strength[:, None])[:, :, None, None, None]  # [B, N, 1, 1, 1]
  return memory * (1.0 - a) + a * z[:, None]


def slot_keys(memory: jax.Array) -> jax.Array:
  """Spatial mean of every slot: [B, N, h, w, C] -> [B, N, C]."""
  return jnp.mean(memory, axis=(2, 3))


def _norm(x: jax.Array) -> jax.Array:
  """|x| over the last axis with a finite gradient at 0 (an empty slot's key is the zero vector;
  the gradient of sqrt there would be NaN)."""
  return jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1), 1e-30))


def cosine_similarity(key: jax.Array, keys: jax.Array, eps: float = COS_EPS) -> jax.Array:
  """k · key_i / (|k| |key_i| + eps).  key [B, C], keys [B, N, C] -> [B, N]."""
  dot = jnp.einsum("bc,bnc->bn", key, keys)
  return dot / (_norm(key)[:, None] * _norm(keys) + eps)


def read_weights(memory: jax.Array, key: jax.Array, strength: jax.Array,
                 eps: float = COS_EPS) -> jax.Array:
  """w^r = softmax_i(β cos(k, key_i)).  memory [B, N, h, w, C], key [B, C], strength [B] -> [B, N]."""
  return jax.nn.softmax(strength[:, None] * cosine_similarity(key, slot_keys(memory), eps), axis=-1)


def read(memory: jax.Array, weights: jax.Array) -> jax.Array:
  """T_retr = Σ_i w_i M_i.  memory [B, N, h, w, C], weights [B, N] -> [B, h, w, C]."""
  return jnp.einsum("bn,bnhwc->bhwc", weights, memory)


def residual_template(template0: jax.Array, gate: jax.Array, retrieved: jax.Array) -> jax.Array:
  """T = T_0 + r ⊙ T_retr, r channel-wise.  template0, retrieved [B, h, w, C], gate [B, C]."""
  return template0 + gate[:, None, None, :] * retrieved


def allocation(usage: jax.Array) -> jax.Array:
  """w^a = one_hot(argmin_i u_i) (the first least used slot), without gradient.  [B, N] -> [B, N]."""
  u = jax.lax.stop_gradient(usage)
  return jax.nn.one_hot(jnp.argmin(u, axis=-1), u.shape[-1], dtype=u.dtype)


def next_write_weight(gates: jax.Array, read_weight: jax.Array, alloc_weight: jax.Array) -> jax.Array:
  """w^w = g^r w^r + g^a w^a.  gates [B, 3], read_weight / alloc_weight [B, N] -> [B, N]."""
  return (gates[:, READ_OVERWRITE, None] * read_weight + gates[:, ALLOCATE, None] * alloc_weight)


def update_usage(usage: jax.Array, write_weight: jax.Array, read_weight: jax.Array,
                 decay: float = USAGE_DECAY) -> jax.Array:
  """u' = decay · u + w^w + w^r (all [B, N])."""
  return decay * usage + write_weight + read_weight


class ReadOut(NamedTuple):
  """What one memory step produces besides the new state."""
  template: jax.Array     # [B, h, w, C]  T = T_0 + r ⊙ T_retr
  retrieved: jax.Array    # [B, h, w, C]  T_retr
  read_weight: jax.Array  # [B, N]
  alloc_weight: jax.Array  # [B, N]


def step(state: MemoryState, z: jax.Array, template0: jax.Array, *, read_key: jax.Array,
         read_strength: jax.Array, residual_gate: jax.Array, gates: jax.Array, decay: jax.Array,
         usage_decay: float = USAGE_DECAY, eps: float = COS_EPS):
  """One memory step: write Z with the previous gates, read, residual template, allocate.

  Args:
    state: the MemoryState after the previous step.
    z: [B, h, w, C] the exemplar feature of the previous frame (written now).
    template0: [B, h, w, C] the first-frame template T_0.
    read_key: k [B, C].  read_strength: β [B].  residual_gate: r [B, C].
    gates: this step's g [B, 3] and decay: d [B] (used by the NEXT step's write).
  Returns:
    (new MemoryState, ReadOut).
  """
  with jax.named_scope("memory_write"):
    memory = write(state.memory, state.write_weight, write_strength(state.gates, state.decay), z)
  with jax.named_scope("memory_read"):
    w_r = read_weights(memory, read_key, read_strength, eps)
    retrieved = read(memory, w_r)
    template = residual_template(template0, residual_gate, retrieved)
  with jax.named_scope("memory_allocate"):
    w_a = allocation(state.usage)
    w_w = next_write_weight(gates, w_r, w_a)
    usage = update_usage(state.usage, w_w, w_r, usage_decay)
  new = MemoryState(memory=memory, read_weight=w_r, write_weight=w_w, usage=usage, gates=gates,
                    decay=decay)
  return new, ReadOut(template, retrieved, w_r, w_a)


__all__ = ("MemoryState", "ReadOut", "init_state", "write_strength", "write", "slot_keys",
           "cosine_similarity", "read_weights", "read", "residual_template", "allocation",
           "next_write_weight", "update_usage", "step", "NO_WRITE", "READ_OVERWRITE", "ALLOCATE")
