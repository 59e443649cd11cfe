"""YOLO v1: the detection module of ROLO (Redmon, Divvala, Girshick, Farhadi, CVPR 2016).

Spec: ``/work/shared/specs/rolo.md`` (section "Detection module"). One forward pass maps an image to
an S×S grid of cells; each cell predicts B boxes (x, y, √w, √h, confidence) and C class
probabilities. The 4096-unit fully connected layer before the detection layer is ROLO's visual
feature (``aux['features']``).

Network (``yolo_v1`` config; 448×448×3 input, every conv followed by leaky ReLU 0.1, no batch norm,
as in the v1 paper). Convs pad k // 2 on every side (darknet's ``pad=1``), so a stride-1 conv keeps
the size and the 7×7/2 and 3×3/2 convs halve it; max pools are 2×2/2. Parameters per layer
(k·k·C_in·C_out weights + C_out biases)::

    layer            output        params
    conv1  7×7/2 64      224²×64        9,472   (7·7·3·64 + 64)
    pool   2×2/2         112²×64
    conv2  3×3 192       112²×192     110,784   (3·3·64·192 + 192)
    pool                 56²×192
    conv3  1×1 128       56²×128       24,704
    conv4  3×3 256       56²×256      295,168
    conv5  1×1 256       56²×256       65,792
    conv6  3×3 512       56²×512    1,180,160
    pool                 28²×512
    conv7..14  4 × (1×1 256 → 3×3 512)  4 · (131,328 + 1,180,160) = 5,245,952
    conv15 1×1 512       28²×512      262,656
    conv16 3×3 1024      28²×1024   4,719,616
    pool                 14²×1024
    conv17..20 2 × (1×1 512 → 3×3 1024) 2 · (524,800 + 4,719,616) = 10,488,832
    conv21 3×3 1024      14²×1024   9,438,208   (3·3·1024·1024 + 1024)
    conv22 3×3/2 1024    7²×1024    9,438,208
    conv23 3×3 1024      7²×1024    9,438,208
    conv24 3×3 1024      7²×1024    9,438,208
                                   ----------
    24 convs                        60,155,968
    fc1  50,176 → 4096 (features)  205,524,992   (7·7·1024·4096 + 4096); leaky ReLU, then dropout 0.5
    fc2  4096 → 7·7·30 = 1470        6,022,590   (4096·1470 + 1470); linear
                                   ==========
    total (C = 20)                 271,703,550

The conv output is flattened channel-first (C, H, W), as darknet stores it, before fc1.

Output layout (ours; darknet's flat vector orders all class maps first): ``preds[n, i, j]`` is cell
(row i, column j) and holds, for predictor b = 0..B-1, ``preds[..., 5b:5b+5] = (x, y, √w, √h, conf)``
and then ``preds[..., 5B:5B+C]`` the class probabilities. x, y are the box centre's offset inside
the cell in [0, 1] (centre = ((j + x) / S, (i + y) / S) relative to the image); √w, √h are square
roots of the width and height relative to the image (decoding squares them, as darknet does).

Loss (paper eq. 3), summed over cells i and predictors j, then averaged over the batch::

    λ_coord Σ_ij 1^obj_ij [(x_i - x̂_ij)² + (y_i - ŷ_ij)²]
  + λ_coord Σ_ij 1^obj_ij [(√w_i - √ŵ_ij)² + (√h_i - √ĥ_ij)²]
  +         Σ_ij 1^obj_ij (C_ij - Ĉ_ij)²
  + λ_noobj Σ_ij (1 - 1^obj_ij) Ĉ_ij²
  +         Σ_i 1^obj_i Σ_c (p_i(c) - p̂_i(c))²

with λ_coord = 5, λ_noobj = 0.5. 1^obj_i: an object's centre falls in cell i; 1^obj_ij: predictor j of
that cell is "responsible", i.e. its box has the highest IoU with the ground truth (ties, including
all-zero IoU, go to the lowest j). The confidence target C_ij is that IoU (held constant in the
gradient; ``cfg.rescore``), or 1 with ``rescore=False``. Predictors that are not responsible
(including the other predictors of an object's cell) are pushed to confidence 0 with λ_noobj.

Detections (``decode``): for every cell and predictor, class c* = argmax_c p(c), score =
conf · p(c*) (the class-specific confidence); boxes with score >= conf_thresh, optionally per-class
NMS. Boxes come out relative (cx, cy, w, h) in [0, 1]; ``to_pixels`` converts them to pixel xywh.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax.data import boxes as bx
from rolo_jax.summary import count_params, param_table  # noqa: F401  (re-exported model API)

Params = Dict[str, Any]

# (kind, kernel, channels, stride) for convs; (kind, size, stride) for max pools.
YOLO_V1_LAYERS: Tuple[Tuple, ...] = (
    ("conv", 7, 64, 2), ("pool", 2, 2),
    ("conv", 3, 192, 1), ("pool", 2, 2),
    ("conv", 1, 128, 1), ("conv", 3, 256, 1), ("conv", 1, 256, 1), ("conv", 3, 512, 1), ("pool", 2, 2),
    *((("conv", 1, 256, 1), ("conv", 3, 512, 1)) * 4),
    ("conv", 1, 512, 1), ("conv", 3, 1024, 1), ("pool", 2, 2),
    *((("conv", 1, 512, 1), ("conv", 3, 1024, 1)) * 2),
    ("conv", 3, 1024, 1), ("conv", 3, 1024, 2),
    ("conv", 3, 1024, 1), ("conv", 3, 1024, 1),
)

# 112 = 7 · 16: four 2×2 pools take 112 to 7.
TINY_LAYERS: Tuple[Tuple, ...] = (
    ("conv", 3, 16, 1), ("pool", 2, 2),
    ("conv", 3, 32, 1), ("pool", 2, 2),
    ("conv", 3, 64, 1), ("pool", 2, 2),
    ("conv", 3, 64, 1), ("pool", 2, 2),
    ("conv", 1, 32, 1), ("conv", 3, 64, 1),
)


@dataclass(frozen=True)
class YoloConfig:
  """YOLO v1 architecture and loss. Frozen and hashable: a static argument to ``jax.jit``."""
  name: str = "yolo_v1"
  input_size: int = 448
  layers: Tuple[Tuple, ...] = YOLO_V1_LAYERS
  grid: int = 7                 # S
  boxes_per_cell: int = 2       # B
  num_classes: int = 20         # C (VOC)
  feature_dim: int = 4096       # fc1 width = ROLO's visual feature
  dropout: float = 0.5
  leaky_slope: float = 0.1
  lambda_coord: float = 5.0
  lambda_noobj: float = 0.5
  rescore: bool = True          # confidence target = IoU of the responsible box (else 1)

  def __post_init__(self):
    for spec in self.layers:
      if spec[0] not in ("conv", "pool") or len(spec) != (4 if spec[0] == "conv" else 3):
        raise ValueError(f"YoloConfig.layers: bad entry {spec!r}; use ('conv', k, c, stride) or "
                         f"('pool', size, stride)")
    h, _ = conv_output_shape(self)
    if h != self.grid:
      raise ValueError(f"YoloConfig {self.name!r}: the convs take {self.input_size}² to {h}², "
                       f"but grid={self.grid}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"YoloConfig.dropout must be in [0, 1), got {self.dropout}")

  def replace(self, **kw) -> "YoloConfig":
    return dataclasses.replace(self, **kw)

  @property
  def cell_dim(self) -> int:
    """B·5 + C values per cell."""
    return 5 * self.boxes_per_cell + self.num_classes

  @property
  def num_convs(self) -> int:
    return sum(1 for s in self.layers if s[0] == "conv")


def conv_output_shape(cfg: YoloConfig) -> Tuple[int, int]:
  """(side, channels) after the conv stack: conv side' = (side + 2·(k//2) - k) // s + 1, pool
  side' = (side - size) // stride + 1."""
  side, ch = cfg.input_size, 3
  for spec in cfg.layers:
    if spec[0] == "conv":
      _, k, c, s = spec
      side, ch = (side + 2 * (k // 2) - k) // s + 1, c
    else:
      _, k, s = spec
      side = (side - k) // s + 1
  return side, ch


CONFIGS: Dict[str, YoloConfig] = {
    # The paper's detector: 24 convs + 2 FC, 448 input, S=7, B=2, C=20. 271,703,550 params.
    "yolo_v1": YoloConfig(),
    # CPU-trainable: 112 input, 6 convs, 256 features, C=6 (the synthetic videos' classes).
    "tiny": YoloConfig(name="tiny", input_size=112, layers=TINY_LAYERS, num_classes=6,
                       feature_dim=256, dropout=0.2),
}


# --------------------------------------------------------------------------------------------------
# network

def _flatten_chw(x: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [N, C·H·W] channel-first (darknet's order)."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class YoloNet(nn.Module):
  """The YOLO v1 network as a flax module; use ``init`` / ``apply`` below."""
  cfg: YoloConfig

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    cfg = self.cfg
    he = nn.initializers.variance_scaling(2.0 / (1.0 + cfg.leaky_slope ** 2), "fan_in", "truncated_normal")
    act = lambda v: nn.leaky_relu(v, cfg.leaky_slope)
    n = 0
    for spec in cfg.layers:
      if spec[0] == "conv":
        _, k, c, s = spec
        n += 1
        with jax.named_scope(f"conv{n}"):
          x = act(nn.Conv(c, (k, k), strides=(s, s), padding=[(k // 2, k // 2)] * 2, kernel_init=he,
                          name=f"conv{n}")(x))
      else:
        _, k, s = spec
        x = nn.max_pool(x, (k, k), strides=(s, s), padding="VALID")
    with jax.named_scope("fc1"):
      feat = act(nn.Dense(cfg.feature_dim, kernel_init=he, name="fc1")(_flatten_chw(x)))
    h = nn.Dropout(cfg.dropout, deterministic=not train)(feat) if cfg.dropout > 0 else feat
    with jax.named_scope("fc2"):
      out = nn.Dense(cfg.grid * cfg.grid * cfg.cell_dim, name="fc2")(h)
    return out.reshape(x.shape[0], cfg.grid, cfg.grid, cfg.cell_dim), feat


def init(key: jax.Array, cfg: YoloConfig) -> Params:
  """Float32 params ``{'conv1'..'convN': {'kernel' [k,k,C_in,C_out], 'bias'}, 'fc1', 'fc2': {'kernel',
  'bias'}}``. He-normal (leaky-ReLU gain) for convs and fc1, LeCun-normal for fc2, zero biases."""
  return _init_jit(key, cfg)


def _init(key, cfg):
  x = jnp.zeros((1, cfg.input_size, cfg.input_size, 3), jnp.float32)
  return YoloNet(cfg).init({"params": key}, x, train=False)["params"]


_init_jit = jax.jit(_init, static_argnums=1)


def preprocess(images) -> jax.Array:
  """uint8 RGB [..., H, W, 3] -> float32 in [0, 1] (darknet's input scaling)."""
  return jnp.asarray(images).astype(jnp.float32) / 255.0


def apply(params: Params, images: jax.Array, *, cfg: YoloConfig, train: bool = False,
          rng: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Forward pass.

  Args:
    params: from ``init``.
    images: [N, input_size, input_size, 3] float (``preprocess``).
    train: dropout on (needs ``rng``).
    rng: PRNG key for dropout.
  Returns:
    (preds [N, S, S, B·5 + C], {'features': [N, feature_dim]}) — features are fc1's activations
    (after the leaky ReLU, before dropout).
  """
  if jnp.asarray(images).dtype == jnp.uint8:
    raise ValueError("yolo.apply: images are uint8; call yolo.preprocess first")
  if images.shape[1:] != (cfg.input_size, cfg.input_size, 3):
    raise ValueError(f"yolo.apply: images must be [N, {cfg.input_size}, {cfg.input_size}, 3] for config "
                     f"{cfg.name!r}, got {images.shape}")
  rngs = None
  if train and cfg.dropout > 0:
    if rng is None:
      raise ValueError("yolo.apply: train=True with dropout needs rng")
    rngs = {"dropout": rng}
  preds, feat = YoloNet(cfg).apply({"params": params}, images, train=train, rngs=rngs)
  return preds, {"features": feat}


# --------------------------------------------------------------------------------------------------
# boxes relative to the image

def to_relative(boxes_xywh, width: float, height: float):
  """Pixel (x, y, w, h) -> relative (cx, cy, w, h): cx = (x + w/2) / W, cy = (y + h/2) / H,
  w / W, h / H.  [..., 4] -> [..., 4] (numpy or jnp, as ``rolo_jax.data.boxes``)."""
  xp, (b,) = bx._xp(boxes_xywh)
  c = bx.xywh_to_cxcywh(b)
  return c / xp.asarray([width, height, width, height], dtype=c.dtype)


def to_pixels(rel_cxcywh, width: float, height: float):
  """Relative (cx, cy, w, h) -> pixel (x, y, w, h); the inverse of ``to_relative``."""
  xp, (b,) = bx._xp(rel_cxcywh)
  return bx.cxcywh_to_xywh(b * xp.asarray([width, height, width, height], dtype=b.dtype))


# --------------------------------------------------------------------------------------------------
# targets and loss

def encode_targets(boxes, labels, S: int, C: int) -> np.ndarray:
  """Ground truth of one image as YOLO's target tensor.

  An object belongs to the cell (i, j) = (⌊cy·S⌋, ⌊cx·S⌋) (clipped to S - 1) holding its centre;
  when two centres fall in one cell, the first object (in the given order) keeps it (a v1 cell
  predicts one object).

  Args:
    boxes: [K, 4] relative (cx, cy, w, h) in [0, 1] (``to_relative``).
    labels: [K] int class indices in [0, C).
    S: grid size.  C: number of classes.
  Returns:
    float32 [S, S, 5 + C]: (x, y, √w, √h, obj, one-hot class) per cell, with (x, y) the centre's
    offset inside the cell (cx·S - j, cy·S - i); all zero in cells without an object.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  labels = np.asarray(labels).reshape(-1)
  if len(labels) != len(boxes):
    raise ValueError(f"encode_targets: {len(boxes)} boxes but {len(labels)} labels")
  if not np.all(np.isfinite(boxes)):
    raise ValueError("encode_targets: boxes must be finite")
  if np.any(boxes[:, 2:] < 0) or np.any(boxes[:, :2] < 0) or np.any(boxes[:, :2] > 1):
    raise ValueError("encode_targets: boxes must be relative (cx, cy in [0, 1], w, h >= 0)")
  if len(labels) and (labels.min() < 0 or labels.max() >= C):
    raise ValueError(f"encode_targets: labels must be in [0, {C}), got {labels.min()}..{labels.max()}")
  t = np.zeros((S, S, 5 + C), np.float32)
  for (cx, cy, w, h), lab in zip(boxes, labels):
    j = min(int(np.floor(cx * S)), S - 1)
    i = min(int(np.floor(cy * S)), S - 1)
    if t[i, j, 4]:
      continue
    t[i, j, :5] = (cx * S - j, cy * S - i, np.sqrt(w), np.sqrt(h), 1.0)
    t[i, j, 5 + int(lab)] = 1.0
  return t


def _cell_boxes_to_xyxy(xy, sqrt_wh, S, per_predictor):
  """Cell-relative (x, y) [N, S, S, (B,) 2] and (√w, √h) -> image-relative xyxy [N, S, S, (B,) 4]."""
  j = jnp.arange(S, dtype=xy.dtype)
  extra = 1 if per_predictor else 0
  col = j.reshape((1, S) + (1,) * extra)
  row = j.reshape((S, 1) + (1,) * extra)
  cx = (xy[..., 0] + col) / S
  cy = (xy[..., 1] + row) / S
  w = jnp.square(sqrt_wh[..., 0])
  h = jnp.square(sqrt_wh[..., 1])
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def loss(preds: jax.Array, targets: jax.Array, *, cfg: YoloConfig) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """YOLO v1 loss (module docstring), averaged over the batch.

  Args:
    preds: [N, S, S, B·5 + C] network output.
    targets: [N, S, S, 5 + C] from ``encode_targets`` (stacked).
  Returns:
    (loss scalar, aux) with aux = {'coord', 'obj', 'noobj', 'class': per-term batch means (weights
    included), 'responsible': [N, S, S, B] 0/1, 'iou': [N, S, S, B] IoU of every predictor with
    its cell's ground truth (0 in empty cells)}.
  """
  S, B = cfg.grid, cfg.boxes_per_cell
  n = preds.shape[0]
  pb = preds[..., :5 * B].reshape(preds.shape[:3] + (B, 5))
  p_cls = preds[..., 5 * B:]
  obj = targets[..., 4]                                    # [N, S, S]
  t_xy, t_swh, t_cls = targets[..., 0:2], targets[..., 2:4], targets[..., 5:]
  pred_xyxy = _cell_boxes_to_xyxy(pb[..., 0:2], pb[..., 2:4], S, True)          # [N, S, S, B, 4]
  gt_xyxy = _cell_boxes_to_xyxy(t_xy, t_swh, S, False)                         # [N, S, S, 4]
  iou = bx.iou_xyxy(pred_xyxy, gt_xyxy[..., None, :]) * obj[..., None]    # [N, S, S, B]
  iou = jax.lax.stop_gradient(iou)
  resp = jax.nn.one_hot(jnp.argmax(iou, axis=-1), B, dtype=preds.dtype) * obj[..., None]
  sq = lambda a: jnp.sum(jnp.square(a), axis=-1)
  coord = cfg.lambda_coord * jnp.sum(resp * (sq(pb[..., 0:2] - t_xy[..., None, :])
                                             + sq(pb[..., 2:4] - t_swh[..., None, :])))
  conf = pb[..., 4]
  conf_target = iou if cfg.rescore else jnp.ones_like(iou)
  obj_term = jnp.sum(resp * jnp.square(conf - conf_target))
  noobj = cfg.lambda_noobj * jnp.sum((1.0 - resp) * jnp.square(conf))
  cls = jnp.sum(obj * sq(p_cls - t_cls))
  terms = {"coord": coord / n, "obj": obj_term / n, "noobj": noobj / n, "class": cls / n}
  total = (coord + obj_term + noobj + cls) / n
  return total, dict(terms, responsible=resp, iou=iou)


# --------------------------------------------------------------------------------------------------
# decoding and NMS

def decode(preds, conf_thresh: float, *, B: int = 2, nms_iou: Optional[float] = None
           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Detections of one image.

  Args:
    preds: [S, S, B·5 + C] one image's output.
    conf_thresh: keep boxes with score = conf · max_c p(c) >= conf_thresh.
    B: predictors per cell.
    nms_iou: when given, per-class NMS with this IoU threshold (``nms``).
  Returns:
    boxes [K, 4] relative (cx, cy, w, h) (w = √w², h = √h²), scores [K], classes [K] int, sorted by
    descending score (ties: cell-major, then predictor order).
  """
  p = np.asarray(preds, np.float64)
  S = p.shape[0]
  if p.ndim != 3 or p.shape[1] != S or p.shape[2] <= 5 * B:
    raise ValueError(f"decode: preds must be [S, S, {5 * B} + C], got {p.shape}")
  pb = p[..., :5 * B].reshape(S, S, B, 5)
  cls_p = p[..., 5 * B:]
  cls = np.argmax(cls_p, axis=-1)                                   # [S, S]
  score = pb[..., 4] * np.take_along_axis(cls_p, cls[..., None], -1)  # [S, S, B]
  rows, cols = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
  cx = (pb[..., 0] + cols[..., None]) / S
  cy = (pb[..., 1] + rows[..., None]) / S
  out = np.stack([cx, cy, np.square(pb[..., 2]), np.square(pb[..., 3])], axis=-1).reshape(-1, 4)
  score = score.reshape(-1)
  classes = np.repeat(cls.reshape(-1), B)
  keep = np.nonzero(score >= conf_thresh)[0]
  keep = keep[np.argsort(-score[keep], kind="stable")]
  out, score, classes = out[keep], score[keep], classes[keep]
  if nms_iou is not None and len(keep):
    sel = []
    for c in np.unique(classes):
      idx = np.nonzero(classes == c)[0]
      sel.extend(idx[nms(bx.cxcywh_to_xywh(out[idx]), score[idx], nms_iou)])
    sel = np.asarray(sorted(sel, key=lambda k: (-score[k], k)), np.int64)
    out, score, classes = out[sel], score[sel], classes[sel]
  return out, score, classes.astype(np.int64)


def nms(boxes, scores, iou_thresh: float) -> np.ndarray:
  """Greedy non-maximum suppression (numpy).

  Visits boxes by descending score (ties: lower index first) and keeps a box unless its IoU with an
  already kept box is > iou_thresh.

  Args:
    boxes: [N, 4] x, y, w, h (any common unit).  scores: [N].
  Returns:
    int64 indices of the kept boxes, by descending score.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  scores = np.asarray(scores, np.float64).reshape(-1)
  order = np.argsort(-scores, kind="stable")
  iou = bx.pairwise_iou(boxes, boxes)
  kept = []
  for i in order:
    if all(iou[i, k] <= iou_thresh for k in kept):
      kept.append(i)
  return np.asarray(kept, np.int64)


def nms_fixed(boxes: jax.Array, scores: jax.Array, iou_thresh: float, max_out: int,
              score_thresh: float = -np.inf) -> Tuple[jax.Array, jax.Array]:
  """Jittable fixed-size NMS with the same rule as ``nms``.

  Boxes with score < score_thresh are never kept. O(N²) memory (fine for S·S·B = 98 boxes).

  Args:
    boxes: [N, 4] xywh.  scores: [N].  max_out: static output size.
  Returns:
    (indices [max_out] int32, valid [max_out] bool): the kept indices by descending score, padded
    with -1 (valid False).
  """
  boxes = jnp.asarray(boxes)
  scores = jnp.asarray(scores)
  n = scores.shape[0]
  order = jnp.argsort(-scores, stable=True)
  b = boxes[order]
  iou = bx.pairwise_iou(b, b)
  eligible = scores[order] >= score_thresh

  def body(i, keep):
    suppressed = jnp.any(keep & (iou[i] > iou_thresh))
    return keep.at[i].set(eligible[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, n, body, jnp.zeros((n,), bool))
  pos = jnp.nonzero(keep, size=max_out, fill_value=0)[0]
  valid = jnp.arange(max_out) < jnp.sum(keep)
  return jnp.where(valid, order[pos], -1).astype(jnp.int32), valid
