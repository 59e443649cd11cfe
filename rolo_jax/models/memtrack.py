"""MemTrack: dynamic memory networks for object tracking (Yang & Chan, ECCV 2018; arXiv 1803.07268).

Spec: ``/work/shared/specs/memtrack.md``. A Siamese (SiamFC) matcher whose template is read from an
external memory that an LSTM controller writes and reads every frame.

Feature extractor (``extract``; shared by exemplar and search crops; input RGB scaled to [0, 1];
all convolutions VALID with a bias, no groups)::

    conv1 k1×k1 s2 → BN → ReLU → [maxpool 3×3 s2] → conv2 → BN → ReLU → [maxpool 3×3 s2]
    → conv3 → BN → ReLU → conv4 → BN → ReLU → conv5            (no BN, no ReLU after conv5)

    BN(v) = γ (v − μ) / sqrt(σ² + eps) + β,  per channel; μ, σ² the batch statistics over
    (N, H, W) in training, the running averages r ← m r + (1 − m) batch in evaluation.

``paper``: kernels 11, 5, 3, 3, 3, channels 96, 256, 384, 384, 256, pools after conv1 and conv2,
total stride 8: exemplar 127 → template 6×6×256, search 255 → 22×22×256, response 17×17.

One time step (``step(params, state, x)``, x = (search features S_t, exemplar feature Z_{t-1}, key);
state = LSTM (h, c), `memory.MemoryState`, first template T_0)::

    1. attention  P = avgpool_{h×w, stride 1}(S_t)                      [B, R, R, C] (R = response side)
                  e = tanh(P W_p + h_{t-1} W_h + b_h) w_e               [B, R, R]   (1×1 convs, no bias)
                  α = softmax over the R² positions;  a_t = Σ α P       [B, C]
    2. controller h_t, c_t = LN-LSTM(a_t; h_{t-1}, c_{t-1})  (lstm.py 'layernorm' cell: LN on each
                  gate and on the cell, forget bias +1; training: recurrent dropout on the block
                  input, tanh(g_z) ⊙ mask / keep, mask ~ Bernoulli(keep) per step)
    3. heads on h_t:  g = softmax(Dense3)    (no-write, read-overwrite, allocate)
                      d = σ(Dense1)          decay
                      r = σ(Dense_C)         channel-wise residual gate
                      k = Dense_C            read key
                      β = softplus(Dense1)   read strength (bias initialised to 1)
    4-7. memory (``rolo_jax.models.memory.step``): write Z_{t-1} with the previous gates and decay,
                  read with (k, β) by cosine similarity, T_t = T_0 + r ⊙ T_retr, allocate the least
                  used slot, next write weight and usage.
    8. response  c_t = S_t ⋆ T_t (cross-correlation, [B, R, R]); y_t = BN_1(c_t) with one channel
                  (scalar γ, β); training: batch statistics of the step's B·R² values.

Initial state (``initial_state``): k_0 = mean_{h,w} T_0; c_0 = tanh(k_0 W_c + b_c),
h_0 = tanh(k_0 W_h0 + b_h0) (separate weights); empty memory (``memory.init_state``).

``use_memory=False`` (the ablation, a plain SiamFC): no attention, controller or memory; the
template is T_0 at every step, y_t = BN_1(S_t ⋆ T_0).

Parameter count of ``paper`` (6,052,935; asserted by ``tests/memtrack_model_test.py``)::

    extractor  conv1 11·11·3·96 + 96        =    34,944     bn1 2·96   =   192
               conv2 5·5·96·256 + 256       =   614,656     bn2 2·256  =   512
               conv3 3·3·256·384 + 384      =   885,120     bn3 2·384  =   768
               conv4 3·3·384·384 + 384      = 1,327,488     bn4 2·384  =   768
               conv5 3·3·384·256 + 256      =   884,992                          3,749,440
    attention  W_p 256·256 (1×1 conv, no bias) 65,536; W_h 512·256 + 256 = 131,328;
               w_e 256 (1×1 conv, no bias)                                          197,120
    init state 2 · (256·512 + 512)                                                  263,168
    controller LN-LSTM: W (256 + 512)·4·512 = 1,572,864 (no bias: the LN shifts are the biases),
               gate LN γ, β 2·4·512 = 4,096, cell LN γ, β 2·512 = 1,024            1,577,984
    heads      g 512·3 + 3 = 1,539; d 513; r 512·256 + 256 = 131,328;
               k 131,328; β 513                                                     265,221
    response BN γ, β                                                                      2
    total                                                                         6,052,935

``cpu`` (the CPU-trainable configuration, 160,391 parameters): exemplar 63, search 127, kernels
5, 3, 3, 3, 3, channels 16, 32, 48, 48, 32, one pool (after conv1), so the total stride is 4 and
the feature maps keep the paper's sides (template 6×6, search 22×22, response 17×17) at 36 M
multiply-adds per search crop instead of 4.3 G; controller 128 units, attention 32, 8 slots.
``cpu_nomem`` (54,658 parameters: the same extractor and response BN) is the ablation without
memory. ``tiny`` is for tests.

Params (nested dicts, float32)::

    extractor   conv1..conv5 {'w': [k, k, C_in, C_out] (HWIO), 'b': [C_out]}; bn1..bn4 {'scale', 'bias'} [C]
    attention   {'search_proj': [C, A], 'hidden_proj': {'w': [H, A], 'b': [A]}, 'score': [A, 1]}
    init_state  {'c': {'w': [C, H], 'b': [H]}, 'h': {...}}
    controller  lstm 'layernorm' params for input C, hidden H
    heads       gates [H, 3], decay [H, 1], residual [H, C], read_key [H, C], read_strength [H, 1]
                (each {'w', 'b'})
    response_bn {'scale': [1], 'bias': [1]}

Running statistics (``init_batch_stats``; not trainable, kept beside the params in training and
tracking state): {'extractor': {'bn1'..'bn4': {'mean', 'var'} [C]}, 'response_bn': {'mean', 'var'} [1]}.

Initialisation: convolutions followed by BN/ReLU He-uniform (variance 2 / fan_in); conv5, dense
layers and the LSTM Glorot-uniform; biases 0 except the read strength (1) and the LSTM forget gate
shift (1); BN γ = 1, β = 0; running means 0, variances 1.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from rolo_jax.cells import lstm
from rolo_jax.cells.lstm import LSTMState
from rolo_jax.cells.unroll import unroll
from rolo_jax.models import memory as mem
from rolo_jax.summary import count_params, param_table  # noqa: F401  (re-exported model API)

Params = Dict[str, Any]

PAPER_PARAMS = 6_052_935


@dataclass(frozen=True)
class MemTrackConfig:
  """MemTrack architecture. Frozen and hashable: pass it as a static argument to ``jax.jit``."""
  name: str = "paper"
  exemplar_size: int = 127
  instance_size: int = 255
  conv_channels: Tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)
  conv_kernels: Tuple[int, int, int, int, int] = (11, 5, 3, 3, 3)
  conv_strides: Tuple[int, int, int, int, int] = (2, 1, 1, 1, 1)
  pools: Tuple[bool, bool, bool, bool, bool] = (True, True, False, False, False)  # maxpool after conv n
  pool_size: int = 3
  pool_stride: int = 2
  bn_eps: float = 1e-3
  bn_momentum: float = 0.99          # running statistics r ← m r + (1 − m) batch
  attention_dim: int = 256           # A
  hidden: int = 512                  # H, the controller's units
  slots: int = 8                     # N
  keep_prob: float = 0.8             # recurrent dropout keep probability (training only)
  forget_bias: float = 1.0
  usage_decay: float = mem.USAGE_DECAY
  read_strength_bias: float = 1.0
  cos_eps: float = mem.COS_EPS
  use_memory: bool = True            # False: plain SiamFC with the first-frame template
  context: float = 0.5               # SiamFC crop context (crops.siamfc_window)

  def __post_init__(self):
    for f in ("conv_channels", "conv_kernels", "conv_strides", "pools"):
      if len(getattr(self, f)) != 5:
        raise ValueError(f"MemTrackConfig.{f} needs 5 entries, got {getattr(self, f)}")
    if self.pools[4]:
      raise ValueError("MemTrackConfig.pools: conv5 is the output layer and takes no pooling")
    t, s = self.template_side, self.search_side
    if t < 1:
      raise ValueError(f"exemplar_size={self.exemplar_size} is too small: the template would be {t}×{t}")
    if s < t:
      raise ValueError(f"instance_size={self.instance_size} gives a {s}×{s} search map, smaller than "
                       f"the {t}×{t} template")
    if not 0.0 < self.keep_prob <= 1.0:
      raise ValueError(f"keep_prob must be in (0, 1], got {self.keep_prob}")

  def replace(self, **kw) -> "MemTrackConfig":
    return dataclasses.replace(self, **kw)

  @property
  def channels(self) -> int:
    """C: channels of the template and search features."""
    return self.conv_channels[-1]

  @property
  def total_stride(self) -> int:
    s = 1
    for n in range(5):
      s *= self.conv_strides[n] * (self.pool_stride if self.pools[n] else 1)
    return s

  def feature_side(self, size: int) -> int:
    """Side of the conv5 map for a size×size crop."""
    for n in range(5):
      size = (size - self.conv_kernels[n]) // self.conv_strides[n] + 1
      if self.pools[n]:
        size = (size - self.pool_size) // self.pool_stride + 1
    return size

  @property
  def template_side(self) -> int:
    return self.feature_side(self.exemplar_size)

  @property
  def search_side(self) -> int:
    return self.feature_side(self.instance_size)

  @property
  def response_side(self) -> int:
    """R: side of the response (and of the attention grid)."""
    return self.search_side - self.template_side + 1

  @property
  def template_shape(self) -> Tuple[int, int, int]:
    return (self.template_side, self.template_side, self.channels)


CONFIGS: Dict[str, MemTrackConfig] = {
    # The spec's sizes: 6,052,935 trainable parameters (derivation in the module docstring).
    "paper": MemTrackConfig(name="paper"),
    # CPU-trainable (module docstring): 63/127 crops, stride 4, same 6 / 22 / 17 map sides.
    "cpu": MemTrackConfig(name="cpu", exemplar_size=63, instance_size=127,
                          conv_channels=(16, 32, 48, 48, 32), conv_kernels=(5, 3, 3, 3, 3),
                          pools=(True, False, False, False, False), attention_dim=32, hidden=128),
    "cpu_nomem": MemTrackConfig(name="cpu_nomem", exemplar_size=63, instance_size=127,
                                conv_channels=(16, 32, 48, 48, 32), conv_kernels=(5, 3, 3, 3, 3),
                                pools=(True, False, False, False, False), attention_dim=32, hidden=128,
                                use_memory=False),
    # Tests: 47/79 crops → template 3×3, search 11×11, response 9×9.
    "tiny": MemTrackConfig(name="tiny", exemplar_size=47, instance_size=79,
                           conv_channels=(4, 8, 8, 8, 8), conv_kernels=(3, 3, 3, 3, 3),
                           pools=(True, False, False, False, False), attention_dim=8, hidden=16,
                           slots=4),
}


def config_from_meta(c) -> MemTrackConfig:
  """The config a checkpoint's meta['config'] describes: a CONFIGS name or a dict of fields."""
  if isinstance(c, str):
    if c not in CONFIGS:
      raise ValueError(f"unknown MemTrack config {c!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[c]
  if not isinstance(c, dict):
    raise ValueError(f"no MemTrack config in the checkpoint meta (found {c!r})")
  names = {f.name for f in dataclasses.fields(MemTrackConfig)}
  unknown = sorted(set(c) - names)
  if unknown:
    raise ValueError(f"unknown MemTrackConfig field(s) {unknown}")
  from rolo_jax.models import mistyped_fields
  bad = mistyped_fields(CONFIGS.get(c.get("name"), MemTrackConfig()), c)
  if bad:
    raise ValueError(f"MemTrackConfig field {bad[0]}")
  return MemTrackConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})


class StepInput(NamedTuple):
  """Per-step input of ``step`` (each leaf gets a leading time axis under ``unroll``)."""
  search: jax.Array              # [B, Hs, Ws, C] search features S_t
  exemplar: jax.Array            # [B, h, w, C]   exemplar feature of the previous frame Z_{t-1}
  key: Optional[jax.Array] = None  # PRNG key for the recurrent dropout (training)


class MemTrackState(NamedTuple):
  """Recurrent state. For ``use_memory=False`` lstm and memory are None."""
  lstm: Optional[LSTMState]          # [B, H] each
  memory: Optional[mem.MemoryState]
  template0: jax.Array               # [B, h, w, C]


# --------------------------------------------------------------------------------------------------
# init

def _glorot(key, shape, fan_in, fan_out):
  lim = (6.0 / (fan_in + fan_out)) ** 0.5
  return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


def _he(key, shape, fan_in):
  lim = (6.0 / fan_in) ** 0.5
  return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


def _dense(key, n_in, n_out, bias=0.0):
  return {"w": _glorot(key, (n_in, n_out), n_in, n_out), "b": jnp.full((n_out,), bias, jnp.float32)}


def _init(key: jax.Array, cfg: MemTrackConfig) -> Params:
  keys = iter(jax.random.split(key, 20))
  ext: Params = {}
  c_in = 3
  for n in range(5):
    k, c = cfg.conv_kernels[n], cfg.conv_channels[n]
    fan_in = k * k * c_in
    w = (_he(next(keys), (k, k, c_in, c), fan_in) if n < 4
         else _glorot(next(keys), (k, k, c_in, c), fan_in, k * k * c))
    ext[f"conv{n + 1}"] = {"w": w, "b": jnp.zeros((c,), jnp.float32)}
    if n < 4:
      ext[f"bn{n + 1}"] = {"scale": jnp.ones((c,), jnp.float32), "bias": jnp.zeros((c,), jnp.float32)}
    c_in = c
  params: Params = {"extractor": ext,
                    "response_bn": {"scale": jnp.ones((1,), jnp.float32),
                                    "bias": jnp.zeros((1,), jnp.float32)}}
  if not cfg.use_memory:
    return params
  c, a, h = cfg.channels, cfg.attention_dim, cfg.hidden
  params["attention"] = {
      "search_proj": _glorot(next(keys), (c, a), c, a),
      "hidden_proj": _dense(next(keys), h, a),
      "score": _glorot(next(keys), (a, 1), a, 1)}
  params["init_state"] = {"c": _dense(next(keys), c, h), "h": _dense(next(keys), c, h)}
  params["controller"] = lstm.init_layernorm(next(keys), c, h, forget_bias=cfg.forget_bias)
  params["heads"] = {
      "gates": _dense(next(keys), h, 3),
      "decay": _dense(next(keys), h, 1),
      "residual": _dense(next(keys), h, c),
      "read_key": _dense(next(keys), h, c),
      "read_strength": _dense(next(keys), h, 1, bias=cfg.read_strength_bias)}
  return params


_init_jit = jax.jit(_init, static_argnums=1)


def init(key: jax.Array, cfg: MemTrackConfig) -> Params:
  """Trainable float32 params of ``cfg`` (layout and initialisation in the module docstring)."""
  return _init_jit(key, cfg)


def init_batch_stats(cfg: MemTrackConfig) -> Params:
  """Running BN statistics: means 0, variances 1 (see the module docstring)."""
  ext = {f"bn{n + 1}": {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}
         for n, c in enumerate(cfg.conv_channels[:4])}
  return {"extractor": ext, "response_bn": {"mean": jnp.zeros((1,), jnp.float32),
                                            "var": jnp.ones((1,), jnp.float32)}}


def init_variables(key: jax.Array, cfg: MemTrackConfig) -> Params:
  """{'params': init(key, cfg), 'batch_stats': init_batch_stats(cfg)}."""
  return {"params": init(key, cfg), "batch_stats": init_batch_stats(cfg)}


# --------------------------------------------------------------------------------------------------
# layers

def conv2d(x: jax.Array, w: jax.Array, b: jax.Array, stride: int = 1) -> jax.Array:
  """VALID convolution. x [N, H, W, C_in], w [k, k, C_in, C_out] (HWIO), b [C_out]."""
  y = jax.lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + b


def max_pool(x: jax.Array, size: int, stride: int) -> jax.Array:
  """VALID max pooling over H, W of [N, H, W, C]."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1),
                               "VALID")


def avg_pool(x: jax.Array, size: int) -> jax.Array:
  """Mean over every size×size window, stride 1, VALID: [N, H, W, C] -> [N, H-size+1, W-size+1, C]."""
  s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "VALID")
  return s / (size * size)


def batch_norm(x: jax.Array, p: Params, running: Optional[Params], *, train: bool, eps: float):
  """BN over every axis but the last.

  Args:
    x: [..., C].  p: {'scale', 'bias'} [C].  running: {'mean', 'var'} [C] (used when not train).
  Returns:
    (y, (mean, var)): the statistics used (batch statistics in training, biased variance).
  """
  if train:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
  else:
    mean, var = running["mean"], running["var"]
  y = (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
  return y, (mean, var)


def xcorr(search: jax.Array, template: jax.Array) -> jax.Array:
  """Per-sample cross-correlation (no kernel flip), VALID.

  out[b, i, j] = Σ_{u, v, c} search[b, i + u, j + v, c] · template[b, u, v, c].

  Args:
    search: [B, Hs, Ws, C].  template: [B, h, w, C].
  Returns:
    [B, Hs - h + 1, Ws - w + 1].
  """
  def one(s, t):
    y = jax.lax.conv_general_dilated(s[None], t[..., None], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[0, :, :, 0]

  return jax.vmap(one)(search, template)


def _layer_norm(v: jax.Array, eps: float) -> jax.Array:
  mean = jnp.mean(v, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(v - mean), axis=-1, keepdims=True)
  return (v - mean) * jax.lax.rsqrt(var + eps)


def controller_step(p: Params, state: LSTMState, x: jax.Array,
                    keep_mask: Optional[jax.Array] = None) -> Tuple[LSTMState, jax.Array]:
  """The 'layernorm' LSTM step of ``rolo_jax.cells.lstm`` with recurrent dropout on the block input.

  Equations as ``lstm.layernorm_step`` except c~ = σ(g_i) ⊙ (tanh(g_z) ⊙ keep_mask) + σ(g_f) ⊙ c_prev
  (Semeniuta et al. 2016, TensorFlow's LayerNormBasicLSTMCell ``dropout_keep_prob``); keep_mask
  [B, H] holds 0 or 1 / keep. With keep_mask None it is exactly ``lstm.layernorm_step``.
  """
  if keep_mask is None:
    return lstm.layernorm_step(p, state, x)
  w = p["w"]
  hidden = w.shape[1] // 4
  a = jnp.concatenate([x, state.h], axis=-1) @ w
  g = _layer_norm(a.reshape(a.shape[:-1] + (4, hidden)), lstm.LN_EPS) * p["gate_scale"] + p["gate_bias"]
  g_i, g_z, g_f, g_o = (g[..., k, :] for k in range(4))
  c_new = jax.nn.sigmoid(g_i) * (jnp.tanh(g_z) * keep_mask) + jax.nn.sigmoid(g_f) * state.c
  if "cell_scale" in p:
    c_new = _layer_norm(c_new, lstm.LN_EPS) * p["cell_scale"] + p["cell_bias"]
  h_new = jax.nn.sigmoid(g_o) * jnp.tanh(c_new)
  return LSTMState(h=h_new, c=c_new), h_new


def dropout_mask(key: jax.Array, shape, keep: float) -> jax.Array:
  """Bernoulli(keep) / keep."""
  return jax.random.bernoulli(key, keep, shape).astype(jnp.float32) / keep


def _dense_apply(p: Params, x: jax.Array) -> jax.Array:
  return x @ p["w"] + p["b"]


# --------------------------------------------------------------------------------------------------
# the model

def extract(params: Params, stats: Optional[Params], images: jax.Array, *, cfg: MemTrackConfig,
            train: bool = False) -> Tuple[jax.Array, Params]:
  """Feature extractor.

  Args:
    params: the full model params (uses params['extractor']).
    stats: running statistics (``init_batch_stats`` layout; used when not train).
    images: [N, S, S, 3] RGB in 0..255 (uint8 or float); scaled to [0, 1] here.
  Returns:
    (features [N, s, s, C], {'bn1'..'bn4': (mean, var)} the statistics used).
  """
  p = params["extractor"]
  run = None if stats is None else stats["extractor"]
  if not train and run is None:
    raise ValueError("memtrack.extract: evaluation mode needs the running statistics (stats)")
  used = {}
  with jax.named_scope("extractor"):
    x = jnp.asarray(images).astype(jnp.float32) * (1.0 / 255.0)
    for n in range(5):
      q = p[f"conv{n + 1}"]
      x = conv2d(x, q["w"], q["b"], cfg.conv_strides[n])
      if n < 4:
        name = f"bn{n + 1}"
        x, used[name] = batch_norm(x, p[name], None if run is None else run[name], train=train,
                                   eps=cfg.bn_eps)
        x = jax.nn.relu(x)
        if cfg.pools[n]:
          x = max_pool(x, cfg.pool_size, cfg.pool_stride)
  return x, used


def initial_state(params: Params, template0: jax.Array, *, cfg: MemTrackConfig) -> MemTrackState:
  """The state before the first step: LSTM from the mean of T_0, empty memory.

  Args:
    template0: [B, h, w, C] first-frame template features.
  """
  if not cfg.use_memory:
    return MemTrackState(None, None, template0)
  with jax.named_scope("init_state"):
    k0 = jnp.mean(template0, axis=(1, 2))
    q = params["init_state"]
    s = LSTMState(h=jnp.tanh(_dense_apply(q["h"], k0)), c=jnp.tanh(_dense_apply(q["c"], k0)))
  m = mem.init_state(template0.shape[0], cfg.slots, template0.shape[1:], template0.dtype)
  return MemTrackState(s, m, template0)


def attend(p: Params, search: jax.Array, h_prev: jax.Array, template_side: int):
  """Attention over the search features from the previous hidden state.

  Args:
    p: params['attention'].  search: [B, Hs, Ws, C].  h_prev: [B, H].
  Returns:
    (alpha [B, R, R] summing to 1, a [B, C]).
  """
  patches = avg_pool(search, template_side)                               # [B, R, R, C]
  proj = patches @ p["search_proj"] + _dense_apply(p["hidden_proj"], h_prev)[:, None, None, :]
  logits = (jnp.tanh(proj) @ p["score"])[..., 0]                          # [B, R, R]
  b, r1, r2 = logits.shape
  alpha = jax.nn.softmax(logits.reshape(b, r1 * r2), axis=-1).reshape(b, r1, r2)
  a = jnp.einsum("bij,bijc->bc", alpha, patches)
  return alpha, a


def heads(p: Params, h: jax.Array) -> Dict[str, jax.Array]:
  """Gates g [B, 3], decay d [B], residual gate r [B, C], read key k [B, C], read strength β [B]."""
  return {"gates": jax.nn.softmax(_dense_apply(p["gates"], h), axis=-1),
          "decay": jax.nn.sigmoid(_dense_apply(p["decay"], h))[:, 0],
          "residual": jax.nn.sigmoid(_dense_apply(p["residual"], h)),
          "read_key": _dense_apply(p["read_key"], h),
          "read_strength": jax.nn.softplus(_dense_apply(p["read_strength"], h))[:, 0]}


def response_bn(params: Params, corr: jax.Array, stats: Optional[Params], *, train: bool,
                eps: float):
  """One-channel BN of the correlation maps [B, R, R]; returns (y, (mean [1], var [1]))."""
  run = None if stats is None else stats["response_bn"]
  if not train and run is None:
    raise ValueError("memtrack: evaluation mode needs the running statistics (stats)")
  y, used = batch_norm(corr[..., None], params["response_bn"], run, train=train, eps=eps)
  return y[..., 0], used


def step(params: Params, state: MemTrackState, x: StepInput, *, cfg: MemTrackConfig,
         train: bool = False, stats: Optional[Params] = None):
  """One MemTrack time step (module docstring, items 1-8).

  Args:
    params: model params.
    state: MemTrackState ([B, ...] leaves).
    x: StepInput: search features S_t [B, Hs, Ws, C], exemplar feature Z_{t-1} [B, h, w, C]
      (ignored without memory), and in training a PRNG key for the recurrent dropout.
    train: batch statistics in the response BN, recurrent dropout.
    stats: running BN statistics (required when not train).
  Returns:
    (new_state, (response [B, R, R], aux)) with aux: 'corr' [B, R, R] (before BN), 'bn_mean',
    'bn_var' [1] (statistics used) and with memory 'attention' [B, R, R], 'read_weight',
    'write_weight', 'usage', 'alloc_weight' [B, N], 'gates' [B, 3], 'decay', 'read_strength' [B],
    'residual_gate' [B, C].
  """
  aux: Dict[str, jax.Array] = {}
  if cfg.use_memory:
    with jax.named_scope("attention"):
      alpha, a = attend(params["attention"], x.search, state.lstm.h, cfg.template_side)
    mask = None
    if train and cfg.keep_prob < 1.0:
      if x.key is None:
        raise ValueError("memtrack.step: training with recurrent dropout needs StepInput.key")
      mask = dropout_mask(x.key, state.lstm.h.shape, cfg.keep_prob)
    with jax.named_scope("controller"):
      lstm_state, h = controller_step(params["controller"], state.lstm, a, mask)
    with jax.named_scope("heads"):
      hd = heads(params["heads"], h)
    memory, ro = mem.step(state.memory, x.exemplar, state.template0, read_key=hd["read_key"],
                          read_strength=hd["read_strength"], residual_gate=hd["residual"],
                          gates=hd["gates"], decay=hd["decay"], usage_decay=cfg.usage_decay,
                          eps=cfg.cos_eps)
    template = ro.template
    new_state = MemTrackState(lstm_state, memory, state.template0)
    aux.update(attention=alpha, read_weight=ro.read_weight, write_weight=memory.write_weight,
               usage=memory.usage, alloc_weight=ro.alloc_weight, gates=hd["gates"],
               decay=hd["decay"], read_strength=hd["read_strength"], residual_gate=hd["residual"])
  else:
    template = state.template0
    new_state = state
  with jax.named_scope("response"):
    corr = xcorr(x.search, template)
    response, (m, v) = response_bn(params, corr, stats, train=train, eps=cfg.bn_eps)
  aux.update(corr=corr, bn_mean=m, bn_var=v)
  return new_state, (response, aux)


def update_stats(stats: Params, used: Params, momentum: float) -> Params:
  """r ← m r + (1 − m) batch for every (mean, var) pair; ``used`` mirrors ``stats`` with
  (mean, var) tuples at the leaves' parents."""
  out = {}
  for k, v in stats.items():
    if isinstance(v, dict) and "mean" in v:
      mean, var = used[k]
      out[k] = {"mean": momentum * v["mean"] + (1 - momentum) * mean,
                "var": momentum * v["var"] + (1 - momentum) * var}
    else:
      out[k] = update_stats(v, used[k], momentum)
  return out


def apply(params: Params, stats: Params, exemplars: jax.Array, searches: jax.Array, *,
          cfg: MemTrackConfig, train: bool = False, key: Optional[jax.Array] = None,
          remat: bool = False):
  """Unrolls ``step`` over time (the training/evaluation forward pass).

  Args:
    params: model params.  stats: running BN statistics.
    exemplars: [T, B, E, E, 3] RGB 0..255, E = cfg.exemplar_size; exemplars[t] is Z_{t-1} of step t
      (the previous frame's exemplar); exemplars[0] also gives T_0.
    searches: [T, B, S, S, 3], S = cfg.instance_size; searches[t] is frame t's search crop.
    train: batch statistics everywhere (and the running statistics are updated in aux), dropout.
    key: PRNG key for the recurrent dropout (training).
    remat: ``jax.checkpoint`` each step (BPTT memory).
  Returns:
    (responses [T, B, R, R], aux) with the step aux stacked over time ([T, ...]), 'state' (final
    MemTrackState) and 'batch_stats' (the updated running statistics in training, else ``stats``).
  """
  n_t, n_b = searches.shape[:2]
  if exemplars.shape[:2] != (n_t, n_b):
    raise ValueError(f"memtrack.apply: exemplars {exemplars.shape[:2]} and searches {(n_t, n_b)} "
                     "must share [T, B]")
  zf, z_used = extract(params, stats, exemplars.reshape((n_t * n_b,) + exemplars.shape[2:]), cfg=cfg,
                       train=train)
  xf, x_used = extract(params, stats, searches.reshape((n_t * n_b,) + searches.shape[2:]), cfg=cfg,
                       train=train)
  zf = zf.reshape((n_t, n_b) + zf.shape[1:])
  xf = xf.reshape((n_t, n_b) + xf.shape[1:])
  state0 = initial_state(params, zf[0], cfg=cfg)
  keys = None
  if train and cfg.use_memory and cfg.keep_prob < 1.0:
    if key is None:
      raise ValueError("memtrack.apply: train=True needs a key for the recurrent dropout")
    keys = jax.random.split(key, n_t)
  body = lambda p, s, x: step(p, s, x, cfg=cfg, train=train, stats=stats)
  final, (responses, aux) = unroll(body, params, state0, StepInput(xf, zf, keys), checkpoint=remat)
  aux = dict(aux)
  aux["state"] = final
  if train:
    new = update_stats(stats["extractor"], z_used, cfg.bn_momentum)
    new = update_stats(new, x_used, cfg.bn_momentum)
    resp_used = {"response_bn": (jnp.mean(aux["bn_mean"], axis=0), jnp.mean(aux["bn_var"], axis=0))}
    aux["batch_stats"] = {"extractor": new,
                          **update_stats({"response_bn": stats["response_bn"]}, resp_used,
                                         cfg.bn_momentum)}
  else:
    aux["batch_stats"] = stats
  return responses, aux


__all__ = ("MemTrackConfig", "CONFIGS", "MemTrackState", "StepInput", "init", "init_batch_stats",
           "init_variables", "extract", "initial_state", "step", "apply", "attend", "heads",
           "controller_step", "xcorr", "batch_norm", "update_stats", "count_params", "param_table",
           "PAPER_PARAMS")
