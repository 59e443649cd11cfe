"""Re3: real-time recurrent regression tracker (Gordon, Farhadi, Fox 2018; arXiv 1705.06368).

Spec: ``/work/shared/specs/re3.md``. One tracking step sees a pair of crops, both cut at the previous
box: the previous frame (crop p) and the current frame (crop q), each ``crop_size``² RGB minus the mean.

Encoder (per crop; CaffeNet with skip connections; ``encode``), sizes for the ``paper`` config::

    conv1  11×11 s4 VALID, 96, ReLU                 55×55×96
    pool1  max 3×3 s2 → lrn1                        27×27×96
    skip1  1×1 → 16, PReLU (from lrn1)              27×27×16   = 11,664
    conv2  5×5 SAME, 256, groups 2, ReLU → pool2 → lrn2   13×13×256
    skip2  1×1 → 32, PReLU (from lrn2)              13×13×32   =  5,408
    conv3  3×3 SAME, 384, ReLU; conv4 3×3 SAME 384 groups 2 ReLU; conv5 3×3 SAME 256 groups 2 ReLU
    skip5  1×1 → 64, PReLU (from conv5)             13×13×64   = 10,816
    pool5  max 3×3 s2 (from conv5)                  6×6×256    =  9,216
    feat   = [flat(skip1), flat(skip2), flat(skip5), flat(pool5)]  37,104 per crop

``flat`` flattens channel-first, (C, H, W), as the authors' (NCHW) port does, so published fc6 weights
import without permutation. LRN is Caffe's across-channel LRN::

    lrn(a)_c = a_c / (bias + alpha / size · Σ_{|c' - c| ≤ size // 2} a_{c'}²) ^ beta

with size 5, alpha 1e-4, beta 0.75, bias 1. PReLU(v) = max(v, 0) + slope · min(v, 0), per channel.

Pooling is VALID (floor). For paper and small it equals Caffe's ceil-mode pooling; for tiny's 83-px
crops pool5 takes one of conv5's four rows and columns where ceil mode would give two (CONFIGS).

Deviation, ``tiny`` only (``norm='group'``): the two LRNs are replaced by a parameter-free group
normalisation (``group_norm``; 4 groups of pool1's 16 channels, 8 of pool2's 64). The paper's LRN is
kept for ``paper`` and ``small`` (published weights import unchanged). Why: this encoder is trained
from scratch at unit activation scale, where Caffe's LRN (alpha 1e-4) is nearly the identity (the
default run's first logged loss: 2.7549 with LRN, 2.7515 with none, 2.6132 with group norm). With
group norm the default recipe scored 0.447 ± 0.025 success AUC on 60 held-out synthetic sequences
over seeds 0-4, against 0.432 ± 0.019 with LRN (0.385 ± 0.014 against 0.373 ± 0.025 on the default
run's 20; better for 4 of the 5 seeds on each), and trained no faster (session 12, WORKSPACE.md
"Re3").

Recurrent head (``step``)::

    fc6 = ReLU([feat_p, feat_q] @ W6 + b6)              74,208 → 2048 (paper) / 1024 (small)
    s1, h1 = LSTM1(s1, fc6)
    s2, h2 = LSTM2(s2, [fc6, h1])                       "factored": fc6 feeds both layers
    out = h2 @ Wout + bout                              4 values, no activation

``out`` is (x1, y1, x2, y2) of the target in the current crop window, normalised to [0, 1] and ×10.
The LSTM cell is ``cfg.cell``: 'caffe' (paper; full-matrix peepholes) or 'peephole' (small; diagonal
peepholes); see ``rolo_jax.cells.lstm`` for the equations and forget-bias convention (stored bias 1).

Initialisation (Caffe-like, all uniform): ReLU layers (conv1-5, fc6) He-uniform (variance
2 / fan_in, fan_in = k·k·C_in/groups); 1×1 skip convs, LSTMs and fc_out Glorot/"xavier"-uniform
(variance 2 / (fan_in + fan_out)); biases 0, forget-gate biases 1, PReLU slopes 0.25. Inputs are
raw mean-free pixels (std ≈ 60), not unit-variance, so conv1's weights are further divided by
``cfg.init_input_std`` (64): activations then start at unit scale instead of ~100, which would saturate
the LSTM gates of a model trained from scratch. The arrays are cut from a few random draws because
each threefry call costs XLA compile time on a CPU.

Params (float32; ``cfg.compute_dtype`` = 'bfloat16' casts them for the forward pass, LSTM state keeps
its own dtype, boxes come out float32)::

    conv1..conv5     {'w': [k, k, C_in / groups, C_out] (HWIO), 'b': [C_out]}
    skip1/2/5        {'w': [1, 1, C_in, C_skip], 'b': [C_skip], 'prelu': [C_skip]}
    fc6              {'w': [2 · D_crop, F], 'b': [F]}
    lstm1, lstm2     cell params (input F and F + H)
    fc_out           {'w': [H, 4], 'b': [4]}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.cells import lstm
from rolo_jax.cells.lstm import LSTMState
from rolo_jax.cells.unroll import unroll
from rolo_jax.summary import count_params, param_table  # noqa: F401  (re-exported model API)

Params = Dict[str, Any]

MEAN_RGB = (123.15, 115.90, 103.06)
CONV_PADDING = ("VALID", "SAME", "SAME", "SAME", "SAME")
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")   # the trunk's params (`conv_maps`)
POOL_SIZE = 3
POOL_STRIDE = 2
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
NORMS = ("lrn", "group", "none")
_NORM_LAYER = {"lrn": "lrn", "group": "gn"}   # aux / layer_shapes names: lrn1, lrn2 or gn1, gn2


@dataclass(frozen=True)
class Re3Config:
  """Re3 architecture. Frozen and hashable: pass it as a static argument to ``jax.jit``."""
  name: str = "paper"
  crop_size: int = 227
  conv_channels: Tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)
  conv_kernels: Tuple[int, int, int, int, int] = (11, 5, 3, 3, 3)
  conv_strides: Tuple[int, int, int, int, int] = (4, 1, 1, 1, 1)
  conv_groups: Tuple[int, int, int, int, int] = (1, 2, 1, 2, 2)
  norm: str = "lrn"         # after pool1 and pool2: 'lrn' (paper) | 'group' (tiny) | 'none'
  norm_groups: Tuple[int, int] = (4, 8)   # norm='group': groups of the pool1 / pool2 channels
  lrn_size: int = 5
  lrn_alpha: float = 1e-4   # Caffe convention: divided by lrn_size inside the sum
  lrn_beta: float = 0.75
  lrn_bias: float = 1.0
  skip_channels: Tuple[int, int, int] = (16, 32, 64)  # skip1 (lrn1), skip2 (lrn2), skip5 (conv5)
  prelu_init: float = 0.25
  init_input_std: float = 64.0  # conv1's He init is divided by this (≈ pixel std of mean-free RGB)
  fc6_units: int = 2048
  lstm_hidden: int = 1024
  cell: str = "caffe"        # 'caffe' (paper) | 'peephole' (small); 'plain'/'layernorm' also build
  forget_bias: float = 1.0
  mean_rgb: Tuple[float, float, float] = MEAN_RGB
  compute_dtype: str = "float32"  # 'float32' | 'bfloat16'; params are always stored float32
  output_scale: float = 10.0      # targets are crop-normalised (x1, y1, x2, y2) × output_scale

  def __post_init__(self):
    for f in ("conv_channels", "conv_kernels", "conv_strides", "conv_groups"):
      if len(getattr(self, f)) != 5:
        raise ValueError(f"Re3Config.{f} needs 5 entries, got {getattr(self, f)}")
    if len(self.skip_channels) != 3:
      raise ValueError(f"Re3Config.skip_channels needs 3 entries, got {self.skip_channels}")
    if self.cell not in lstm.CELL_KINDS:
      raise ValueError(f"Re3Config.cell={self.cell!r}; choose from {', '.join(lstm.CELL_KINDS)}")
    if self.norm not in NORMS:
      raise ValueError(f"Re3Config.norm={self.norm!r}; choose from {', '.join(NORMS)}")
    if (len(self.norm_groups) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) for g in self.norm_groups)):
      raise ValueError(f"Re3Config.norm_groups needs 2 ints (pool1, pool2), got {self.norm_groups}")
    if self.norm == "group":
      for n, (c, g) in enumerate(zip(self.conv_channels[:2], self.norm_groups)):
        if g < 1 or c % g:
          raise ValueError(f"norm_groups[{n}]={g} must be >= 1 and divide conv{n + 1}'s {c} channels")
    if self.compute_dtype not in _DTYPES:
      raise ValueError(f"Re3Config.compute_dtype={self.compute_dtype!r}; choose from {', '.join(_DTYPES)}")
    c_in = 3
    for n, (c, g) in enumerate(zip(self.conv_channels, self.conv_groups)):
      if c_in % g or c % g:
        raise ValueError(f"conv{n + 1}: groups={g} must divide input ({c_in}) and output ({c}) channels")
      c_in = c
    for name, (h, w, c) in layer_shapes(self).items():
      if h < 1 or w < 1:
        raise ValueError(f"crop_size={self.crop_size} is too small: layer {name} would be {h}×{w}")

  def replace(self, **kw) -> "Re3Config":
    return dataclasses.replace(self, **kw)

  @staticmethod
  def upgrade_saved(fields: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict saved by an older version, in today's field names (a new dict).

    Before session 12 a config had ``use_lrn`` (bool) instead of ``norm``: true becomes 'lrn' (every
    such config, 'tiny' included, was trained with LRN), false 'none'. An explicit ``norm`` wins.
    Missing ``norm_groups`` needs nothing: it only matters for norm='group'. Raises ValueError
    for a ``use_lrn`` that is not a bool.
    """
    fields = dict(fields)
    if "use_lrn" in fields:
      use_lrn = fields.pop("use_lrn")
      if not isinstance(use_lrn, bool):
        raise ValueError(f"Re3Config field use_lrn={use_lrn!r}: expected true or false")
      fields.setdefault("norm", "lrn" if use_lrn else "none")
    return fields

  @property
  def dtype(self):
    """The compute dtype as a jnp dtype."""
    return _DTYPES[self.compute_dtype]


class Re3State(NamedTuple):
  """Tracker state: the two LSTM layers' (h, c), each [B, H]."""
  lstm1: LSTMState
  lstm2: LSTMState


# --------------------------------------------------------------------------------------------------
# shapes

def _conv_out(size: int, k: int, s: int, padding: str) -> int:
  return -(-size // s) if padding == "SAME" else (size - k) // s + 1


def _pool_out(size: int) -> int:
  return (size - POOL_SIZE) // POOL_STRIDE + 1


def layer_shapes(cfg: Re3Config) -> Dict[str, Tuple[int, int, int]]:
  """(H, W, C) of every encoder activation for one crop, computed from the config alone."""
  s = cfg.crop_size
  ch, ks, st = cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides
  out = {}
  s = _conv_out(s, ks[0], st[0], CONV_PADDING[0]); out["conv1"] = (s, s, ch[0])
  s = _pool_out(s); out["pool1"] = (s, s, ch[0])
  if cfg.norm in _NORM_LAYER:
    out[_NORM_LAYER[cfg.norm] + "1"] = (s, s, ch[0])
  out["skip1"] = (s, s, cfg.skip_channels[0])
  s = _conv_out(s, ks[1], st[1], CONV_PADDING[1]); out["conv2"] = (s, s, ch[1])
  s = _pool_out(s); out["pool2"] = (s, s, ch[1])
  if cfg.norm in _NORM_LAYER:
    out[_NORM_LAYER[cfg.norm] + "2"] = (s, s, ch[1])
  out["skip2"] = (s, s, cfg.skip_channels[1])
  for n in (2, 3, 4):
    s = _conv_out(s, ks[n], st[n], CONV_PADDING[n]); out[f"conv{n + 1}"] = (s, s, ch[n])
  out["skip5"] = (s, s, cfg.skip_channels[2])
  s = _pool_out(s); out["pool5"] = (s, s, ch[4])
  return out


def feature_dim(cfg: Re3Config) -> int:
  """D_crop: length of one crop's encoder feature (37,104 for 227-px crops)."""
  shp = layer_shapes(cfg)
  return sum(int(np.prod(shp[k])) for k in ("skip1", "skip2", "skip5", "pool5"))


CONFIGS: Dict[str, Re3Config] = {
    # The paper model: Caffe LSTM (full-matrix peepholes), fc6 2048, 1024 hidden. 190,004,324 params.
    "paper": Re3Config(name="paper"),
    # The authors' later default: diagonal-peephole LSTM, fc6 1024, 512 hidden. 85,699,684 params.
    "small": Re3Config(name="small", fc6_units=1024, lstm_hidden=512, cell="peephole"),
    # CPU-trainable: 83-px crops (83 = 11 + 4·18 gives conv1 19, pools 9, 4, 1; pool5's 3x3/2 window
    # leaves conv5's last row and column out, which skip5 still reads), narrow convs without groups,
    # fc6 256, hidden 128, peephole cell. 2,175,972 params, 2,896 features per crop. Until session 13
    # the crops were 67 px (conv1 15, pools 7, 3, 1; 1,569,764 params): 83 px scores higher on the
    # held-out synthetic videos for each of three seeds (WORKSPACE.md, Re3, "Session 13"); its steps
    # cost ~1.5x those of 67 px, and the allocator settings of rolo_jax._malloc win part of that back.
    # Channel counts and groups=1 were picked by training speed on a 2-core CPU (tuned in
    # experiments/re3_curriculum.py): XLA's CPU convolutions run conv1 with 16 output channels ~5x
    # faster than with 24, and grouped-convolution gradients ~2x slower than ungrouped ones.
    # Group norm instead of LRN: see the module docstring (a measured deviation, tiny only).
    "tiny": Re3Config(name="tiny", crop_size=83, conv_channels=(16, 64, 96, 96, 64),
                      conv_groups=(1, 1, 1, 1, 1), norm="group", norm_groups=(4, 8),
                      fc6_units=256, lstm_hidden=128, cell="peephole"),
}


# --------------------------------------------------------------------------------------------------
# layers

def conv2d(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int = 1, padding: str = "SAME",
           groups: int = 1) -> jax.Array:
  """Grouped 2-D convolution. x: [N, H, W, C_in]; w: [kh, kw, C_in / groups, C_out] (HWIO); b: [C_out].

  With groups = g, input and output channels are split into g consecutive blocks and block j of the
  output sees only block j of the input (Caffe/AlexNet grouping). Computed as g separate
  convolutions concatenated on the channel axis, not with ``feature_group_count``: the same sums, but
  XLA:CPU runs the grouped form ~2–3x slower (paper encoder, batch 2: conv2 18.3 → 6.6 ms, conv4
  9.3 → 4.3 ms, conv5 5.9 → 2.9 ms; WORKSPACE.md, #7).
  """
  conv = lambda v, k: jax.lax.conv_general_dilated(v, k, (stride, stride), padding,
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if groups == 1:
    return conv(x, w) + b
  if x.shape[-1] % groups or w.shape[-1] % groups:
    raise ValueError(f"conv2d: {x.shape[-1]} input / {w.shape[-1]} output channels do not split "
                     f"into {groups} groups")
  xs, ws = jnp.split(x, groups, axis=-1), jnp.split(w, groups, axis=-1)
  return jnp.concatenate([conv(xg, wg) for xg, wg in zip(xs, ws)], axis=-1) + b


def max_pool(x: jax.Array, size: int = POOL_SIZE, stride: int = POOL_STRIDE) -> jax.Array:
  """VALID max pooling over H, W. x: [N, H, W, C] -> [N, (H - size) // stride + 1, ..., C].

  The maximum of the size² strided slices x[:, i::stride, j::stride] (i, j < size), not
  ``lax.reduce_window``: the values are the same, but XLA:CPU turns reduce_window's gradient
  (select_and_scatter) into index arrays and a second reduce_window, which cost the tiny config's
  training update ~25 ms of its ~190 (stage 2×32, profiled; WORKSPACE.md, Re3, "Session 22").
  The slices' gradient is element-wise. Where a window holds a tie, the gradient is split unevenly
  among the tied inputs (halved down the chain of maxima: 1/2 to the last slice, 1/4 to the one
  before, ...) instead of all of it going to the first maximum; both are valid subgradients and the
  total is the same. In float32 after a ReLU the common tie is at 0, where the ReLU passes none; in
  bfloat16 positive ties occur too.
  """
  _, h, w, _ = x.shape
  ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
  if ho < 1 or wo < 1:
    raise ValueError(f"max_pool: a {h}x{w} map is smaller than the {size}x{size} window")
  out = None
  for i in range(size):
    for j in range(size):
      v = jax.lax.slice(x, (0, i, j, 0), (x.shape[0], i + stride * (ho - 1) + 1,
                                          j + stride * (wo - 1) + 1, x.shape[3]), (1, stride, stride, 1))
      out = v if out is None else jnp.maximum(out, v)
  return out


def lrn(x: jax.Array, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
        bias: float = 1.0) -> jax.Array:
  """Caffe across-channel LRN: x_c / (bias + alpha/size · Σ_{c' in window(c)} x_c'²)^beta.

  The window holds channels c - size//2 .. c + (size - 1)//2, clipped at the channel range
  (zero padding). x: [..., C].
  """
  half = (size - 1) // 2
  pad = [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)]
  sq_sum = jax.lax.reduce_window(jnp.square(x), 0.0, jax.lax.add,
                                 (1,) * (x.ndim - 1) + (size,), (1,) * x.ndim, pad)
  return x * jnp.power(bias + (alpha / size) * sq_sum, -beta)


def group_norm(x: jax.Array, groups: int, eps: float = 1e-5) -> jax.Array:
  """Parameter-free group normalisation of [N, H, W, C], per sample.

  The C channels are split into ``groups`` consecutive blocks; each block of each sample is shifted
  to mean 0 and scaled to variance 1 over its H·W·(C / groups) values:
  (x - mean) / sqrt(var + eps), statistics in float32, the result in x's dtype. No learned scale or
  shift: the 1×1 skip convolution and the next conv layer that read it have their own weights and
  biases.
  """
  n, h, w, c = x.shape
  if c % groups:
    raise ValueError(f"group_norm: {c} channels do not split into {groups} groups")
  v = x.astype(jnp.float32).reshape(n, h, w, groups, c // groups)
  mean = jnp.mean(v, axis=(1, 2, 4), keepdims=True)
  var = jnp.mean(jnp.square(v - mean), axis=(1, 2, 4), keepdims=True)
  return ((v - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape).astype(x.dtype)


def prelu(x: jax.Array, slope: jax.Array) -> jax.Array:
  """PReLU with a per-channel slope [C] on the last axis."""
  return jnp.where(x >= 0, x, slope * x)


def flatten_chw(x: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [N, C·H·W] in channel-first (C, H, W) order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


# --------------------------------------------------------------------------------------------------
# init / state / preprocessing

def init(key: jax.Array, cfg: Re3Config) -> Params:
  """Float32 params for ``cfg`` (see the module docstring for layout and initialisation).

  Runs jitted (one compilation per config; eager init of ~20 arrays is slow on a CPU).
  """
  return _init_jit(key, cfg)


def _scaled_uniform(key, specs, dtype) -> list:
  """One U(-1, 1) draw cut into arrays: specs = [(shape, limit)] -> [U(-limit, limit) of shape].

  A single random call instead of one per array: every threefry call adds XLA compile time.
  """
  sizes = [int(np.prod(shape)) for shape, _ in specs]
  u = jax.random.uniform(key, (sum(sizes),), dtype, -1.0, 1.0)
  out, start = [], 0
  for (shape, limit), n in zip(specs, sizes):
    out.append(u[start:start + n].reshape(shape) * limit)
    start += n
  return out


def _init(key: jax.Array, cfg: Re3Config) -> Params:
  f32 = jnp.float32
  he = lambda fan_in: (6.0 / fan_in) ** 0.5                       # variance 2 / fan_in
  xavier = lambda fan_in, fan_out: (6.0 / (fan_in + fan_out)) ** 0.5  # variance 2 / (in + out)
  k_small, k_fc6, k_lstm1, k_lstm2 = jax.random.split(key, 4)
  hid = cfg.lstm_hidden
  specs, names = [], []
  c_in = 3
  for n in range(5):
    k, g, c = cfg.conv_kernels[n], cfg.conv_groups[n], cfg.conv_channels[n]
    scale = 1.0 / cfg.init_input_std if n == 0 else 1.0
    specs.append(((k, k, c_in // g, c), scale * he(k * k * c_in // g)))
    names.append(f"conv{n + 1}")
    c_in = c
  sources = (cfg.conv_channels[0], cfg.conv_channels[1], cfg.conv_channels[4])
  for name, c_src, c in zip(("skip1", "skip2", "skip5"), sources, cfg.skip_channels):
    specs.append(((1, 1, c_src, c), xavier(c_src, c)))
    names.append(name)
  specs.append(((hid, 4), xavier(hid, 4)))
  names.append("fc_out")
  weights = dict(zip(names, _scaled_uniform(k_small, specs, f32)))

  params: Params = {}
  for n in range(5):
    name = f"conv{n + 1}"
    params[name] = {"w": weights[name], "b": jnp.zeros((cfg.conv_channels[n],), f32)}
  for name, c in zip(("skip1", "skip2", "skip5"), cfg.skip_channels):
    params[name] = {"w": weights[name], "b": jnp.zeros((c,), f32),
                    "prelu": jnp.full((c,), cfg.prelu_init, f32)}
  d_pair = 2 * feature_dim(cfg)
  lim = he(d_pair)
  params["fc6"] = {"w": jax.random.uniform(k_fc6, (d_pair, cfg.fc6_units), f32, -lim, lim),
                   "b": jnp.zeros((cfg.fc6_units,), f32)}
  cell_init, _ = lstm.make_cell(cfg.cell)
  params["lstm1"] = cell_init(k_lstm1, cfg.fc6_units, hid, forget_bias=cfg.forget_bias, dtype=f32)
  params["lstm2"] = cell_init(k_lstm2, cfg.fc6_units + hid, hid, forget_bias=cfg.forget_bias, dtype=f32)
  params["fc_out"] = {"w": weights["fc_out"], "b": jnp.zeros((4,), f32)}
  return params


_init_jit = jax.jit(_init, static_argnums=1)


def initial_state(cfg: Re3Config, batch: int, dtype=jnp.float32) -> Re3State:
  """All-zero LSTM state for a batch."""
  return Re3State(lstm1=lstm.zeros_state(batch, cfg.lstm_hidden, dtype),
                  lstm2=lstm.zeros_state(batch, cfg.lstm_hidden, dtype))


def preprocess(crops, mean_rgb=MEAN_RGB) -> jax.Array:
  """uint8 or float RGB crops [..., 3] -> float32 crops minus the per-channel mean (no scaling)."""
  return jnp.asarray(crops).astype(jnp.float32) - jnp.asarray(mean_rgb, jnp.float32)


def cast_params(params: Params, cfg: Re3Config) -> Params:
  """Params in the compute dtype (a no-op for float32)."""
  dt = cfg.dtype
  return jax.tree_util.tree_map(lambda a: a.astype(dt) if a.dtype != dt else a, params)


# --------------------------------------------------------------------------------------------------
# forward

def _check_crops(crops: jax.Array, cfg: Re3Config, what: str):
  if crops.dtype == jnp.uint8:
    raise ValueError(f"{what}: crops are uint8; call re3.preprocess first (mean subtraction)")
  if crops.shape[-3:] != (cfg.crop_size, cfg.crop_size, 3):
    raise ValueError(f"{what}: crops must end in ({cfg.crop_size}, {cfg.crop_size}, 3) for config "
                     f"{cfg.name!r}, got shape {crops.shape}")


def encode(params: Params, crops: jax.Array, *, cfg: Re3Config) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Per-crop encoder.

  Args:
    params: model params (float32 or already cast).
    crops: [N, S, S, 3] preprocessed crops (``preprocess``), S = cfg.crop_size.
  Returns:
    feat: [N, D_crop] = [flat_chw(skip1), flat_chw(skip2), flat_chw(skip5), flat_chw(pool5)].
    aux: every intermediate activation by layer name ([N, H, W, C], see ``layer_shapes``).
  """
  _check_crops(crops, cfg, "re3.encode")
  aux = _trunk(cast_params(params, cfg), crops, cfg, skips=True)
  with jax.named_scope("encoder"):
    feat = jnp.concatenate([flatten_chw(aux[k]) for k in ("skip1", "skip2", "skip5", "pool5")], axis=-1)
  return feat, aux


def conv_maps(params: Params, crops: jax.Array, *, cfg: Re3Config) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """conv1-conv5 of the encoder (with the config's normalisation) on crops of any size.

  Reads only the conv1..conv5 params. Used by the encoder's Siamese pretraining
  (rolo_jax.train.re3_pretrain), which correlates an exemplar crop's conv5 map with a larger
  search crop's.

  Args:
    params: {'conv1': ..., ..., 'conv5': ...} (more entries are ignored).
    crops: [N, H, W, 3] preprocessed crops (``preprocess``), any H, W the VALID conv1 and the
      pools leave at least one cell of.
  Returns:
    (conv5 [N, h, w, C5], aux: the activations up to conv5 by layer name).
  """
  if crops.dtype == jnp.uint8:
    raise ValueError("re3.conv_maps: crops are uint8; call re3.preprocess first (mean subtraction)")
  if crops.ndim != 4 or crops.shape[-1] != 3:
    raise ValueError(f"re3.conv_maps: crops must be [N, H, W, 3], got shape {crops.shape}")
  p = cast_params({k: params[k] for k in CONV_LAYERS}, cfg)
  aux = _trunk(p, crops, cfg, skips=False)
  return aux["conv5"], aux


def _trunk(p: Params, crops: jax.Array, cfg: Re3Config, *, skips: bool) -> Dict[str, jax.Array]:
  """Every encoder activation by layer name; the skip branches and pool5 only with ``skips``."""
  g, st = cfg.conv_groups, cfg.conv_strides

  def norm(n, v):   # after pool1 (n = 1) / pool2 (n = 2)
    if cfg.norm == "lrn":
      return lrn(v, size=cfg.lrn_size, alpha=cfg.lrn_alpha, beta=cfg.lrn_beta, bias=cfg.lrn_bias)
    return group_norm(v, cfg.norm_groups[n - 1])

  def conv(n, v):
    q = p[f"conv{n}"]
    return jax.nn.relu(conv2d(v, q["w"], q["b"], stride=st[n - 1], padding=CONV_PADDING[n - 1],
                              groups=g[n - 1]))

  def skip(name, v):
    q = p[name]
    return prelu(conv2d(v, q["w"], q["b"], padding="VALID"), q["prelu"])

  aux = {}
  with jax.named_scope("encoder"):
    x = crops.astype(cfg.dtype)
    aux["conv1"] = x = conv(1, x)
    aux["pool1"] = x = max_pool(x)
    if cfg.norm in _NORM_LAYER:
      aux[_NORM_LAYER[cfg.norm] + "1"] = x = norm(1, x)
    if skips:
      aux["skip1"] = skip("skip1", x)
    aux["conv2"] = x = conv(2, x)
    aux["pool2"] = x = max_pool(x)
    if cfg.norm in _NORM_LAYER:
      aux[_NORM_LAYER[cfg.norm] + "2"] = x = norm(2, x)
    if skips:
      aux["skip2"] = skip("skip2", x)
    aux["conv3"] = x = conv(3, x)
    aux["conv4"] = x = conv(4, x)
    aux["conv5"] = x = conv(5, x)
    if skips:
      aux["skip5"] = skip("skip5", x)
      aux["pool5"] = max_pool(x)
  return aux


def _step(p: Params, state: Re3State, pair: jax.Array, cfg: Re3Config):
  """step() on params already in the compute dtype."""
  _check_crops(pair, cfg, "re3.step")
  if pair.ndim != 5 or pair.shape[1] != 2:
    raise ValueError(f"re3.step: pair must be [B, 2, S, S, 3] (previous, current), got {pair.shape}")
  b = pair.shape[0]
  # One encoder call for both crops: rows (b, 0) and (b, 1) are adjacent, so the [2B, D] features
  # reshape to [B, 2D] = [feat_prev, feat_cur] per sample.
  feat, _ = encode(p, pair.reshape((2 * b,) + pair.shape[2:]), cfg=cfg)
  feat = feat.reshape(b, -1)
  return _head(p, state, feat, cfg)


def _head(p: Params, state: Re3State, feat: jax.Array, cfg: Re3Config):
  """fc6 -> LSTM1 -> LSTM2 -> fc_out on pair features [B, 2 D_crop] (params in the compute dtype)."""
  return _recurrent(p, state, _fc6(p, feat), cfg)


def _fc6(p: Params, feat: jax.Array) -> jax.Array:
  """ReLU(feat @ W6 + b6) on pair features [..., 2 D_crop] (params in the compute dtype)."""
  with jax.named_scope("fc6"):
    return jax.nn.relu(lstm.dense(feat, p["fc6"]) + p["fc6"]["b"])


def _recurrent(p: Params, state: Re3State, fc6: jax.Array, cfg: Re3Config):
  """LSTM1 -> LSTM2 -> fc_out on fc6 activations [B, F]; returns what ``_head`` returns."""
  _, cell_step = lstm.make_cell(cfg.cell)
  with jax.named_scope("lstm1"):
    s1, h1 = cell_step(p["lstm1"], state.lstm1, fc6)
  with jax.named_scope("lstm2"):
    s2, h2 = cell_step(p["lstm2"], state.lstm2, jnp.concatenate([fc6, h1], axis=-1))
  with jax.named_scope("fc_out"):
    out = (lstm.dense(h2, p["fc_out"]) + p["fc_out"]["b"]).astype(jnp.float32)
  return Re3State(s1, s2), (out, {"fc6": fc6, "lstm1_h": h1, "lstm2_h": h2})


def step(params: Params, state: Re3State, pair: jax.Array, *, cfg: Re3Config):
  """One tracking step.

  Args:
    params: model params (matrices in either layout: `rolo_jax.cells.lstm.transposed`).
    state: Re3State with [B, H] leaves.
    pair: [B, 2, S, S, 3] preprocessed crops; [:, 0] previous frame, [:, 1] current frame, both cut
      at the previous box.
  Returns:
    (new_state, (boxes [B, 4] float32, aux)); boxes = (x1, y1, x2, y2) in the current crop, in
    [0, 1] · output_scale; aux = {'fc6': [B, F], 'lstm1_h': [B, H], 'lstm2_h': [B, H]}.
  """
  return _step(cast_params(params, cfg), state, pair, cfg)


def head_step(params: Params, state: Re3State, feat: jax.Array, *, cfg: Re3Config):
  """The recurrent head of ``step`` on precomputed encoder features (fc6, LSTM1, LSTM2, fc_out).

  ``step(params, s, pair) == head_step(params, s, encode(params, pair.reshape(2B, S, S, 3))[0]
  .reshape(B, 2 D_crop))``. Training runs the encoder once over all T·B crop pairs, outside the
  time loop (XLA on the CPU runs convolution gradients ~5x slower inside a loop), and splits this
  head into ``fc6`` (outside the loop too) and ``recurrent_step``.

  Args:
    feat: [B, 2 D_crop] = [features of the previous crop, features of the current crop].
  Returns:
    (new_state, (boxes [B, 4] float32, aux)) as ``step``.
  """
  return _head(cast_params(params, cfg), state, feat.astype(cfg.dtype), cfg)


def fc6(params: Params, feat: jax.Array, *, cfg: Re3Config) -> jax.Array:
  """fc6 alone on pair features [..., 2 D_crop] -> [..., F] (compute dtype).

  fc6 has no recurrence, so training applies it to all T·B pairs at once, before the time loop, and
  unrolls only ``recurrent_step``: ``head_step(params, s, f) == recurrent_step(params, s, fc6(params,
  f))``. In the loop, fc6's per-step products and the accumulation of its 1.5M-weight gradient cost
  the tiny config ~35 ms of a 32-step update (profiled; WORKSPACE.md, Re3, "Session 22").
  """
  return _fc6(cast_params(params, cfg), feat.astype(cfg.dtype))


def recurrent_step(params: Params, state: Re3State, fc6_act: jax.Array, *, cfg: Re3Config):
  """LSTM1, LSTM2 and fc_out of ``head_step`` on fc6 activations [B, F] (``fc6``).

  Returns (new_state, (boxes [B, 4] float32, aux)) as ``step``; aux's 'fc6' is the input.
  """
  return _recurrent(cast_params(params, cfg), state, fc6_act.astype(cfg.dtype), cfg)


def apply(params: Params, crops: jax.Array, state: Re3State, *, cfg: Re3Config,
          checkpoint: bool = False):
  """Unrolls ``step`` over time with ``cells.unroll.unroll``.

  Args:
    crops: [T, B, 2, S, S, 3] preprocessed crop pairs (time-major).
    state: initial Re3State ([B, H] leaves).
    checkpoint: rematerialise each step in the backward pass (BPTT memory).
  Returns:
    (boxes [T, B, 4] float32, aux) with aux = {'fc6': [T, B, F], 'lstm1_h', 'lstm2_h': [T, B, H],
    'state': final Re3State}.
  """
  p = cast_params(params, cfg)
  body = lambda q, s, x: _step(q, s, x, cfg)
  final, (boxes, aux) = unroll(body, p, state, crops, checkpoint=checkpoint)
  aux = dict(aux)
  aux["state"] = final
  return boxes, aux
