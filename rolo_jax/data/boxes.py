"""Bounding-box conversions, IoU and centre error, for numpy and JAX arrays alike.

Box forms (last axis of length 4, any leading dims broadcast):

* ``xywh``   — x, y, w, h: top-left corner and size in pixels (the project's storage form).
* ``xyxy``   — x1, y1, x2, y2 with x2 = x + w, y2 = y + h (continuous coordinates).
* ``cxcywh`` — cx, cy, w, h with cx = x + w/2, cy = y + h/2 (continuous centre).

Continuous convention: the image spans [0, W] x [0, H]; a box is the rectangle [x, x+w) x [y, y+h),
area w*h.  The OTB toolkit instead treats a box as the inclusive pixel set x..x+w-1; only the
evaluation functions ``iou_otb``, ``centre_otb`` and ``centre_error_otb`` use that convention.

Array namespace: if any argument is a ``jax.Array`` (tracers included) the computation uses
``jax.numpy`` (jittable, vmappable, dtype kept; integer inputs become the default float); otherwise
it uses numpy in float64 (exact for integer-valued inputs).
"""
from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*args):
  """Returns (namespace, converted args): jnp if any argument is a jax.Array, else float64 numpy."""
  if any(isinstance(a, jax.Array) for a in args):
    out = []
    for a in args:
      a = jnp.asarray(a)
      if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
      out.append(a)
    return jnp, out
  return np, [np.asarray(a, dtype=np.float64) for a in args]


def _split(b):
  return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


# --------------------------------------------------------------------------- conversions


def xywh_to_xyxy(b):
  """(x, y, w, h) -> (x, y, x + w, y + h).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  x, y, w, h = _split(b)
  return xp.stack([x, y, x + w, y + h], axis=-1)


def xyxy_to_xywh(b):
  """(x1, y1, x2, y2) -> (x1, y1, x2 - x1, y2 - y1).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  x1, y1, x2, y2 = _split(b)
  return xp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def xywh_to_cxcywh(b):
  """(x, y, w, h) -> (x + w/2, y + h/2, w, h).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  x, y, w, h = _split(b)
  return xp.stack([x + 0.5 * w, y + 0.5 * h, w, h], axis=-1)


def cxcywh_to_xywh(b):
  """(cx, cy, w, h) -> (cx - w/2, cy - h/2, w, h).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  cx, cy, w, h = _split(b)
  return xp.stack([cx - 0.5 * w, cy - 0.5 * h, w, h], axis=-1)


def xyxy_to_cxcywh(b):
  """(x1, y1, x2, y2) -> ((x1 + x2)/2, (y1 + y2)/2, x2 - x1, y2 - y1).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  x1, y1, x2, y2 = _split(b)
  return xp.stack([0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(b):
  """(cx, cy, w, h) -> (cx - w/2, cy - h/2, cx + w/2, cy + h/2).  b: [..., 4] -> [..., 4]."""
  xp, (b,) = _xp(b)
  cx, cy, w, h = _split(b)
  return xp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


# --------------------------------------------------------------------------- overlap


def _safe_div(xp, num, den):
  """num / den where den > 0, else 0 (no NaN, no warning, gradient-safe)."""
  ok = den > 0
  return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


def iou_xyxy(a, b):
  """Continuous IoU of xyxy boxes.

  inter = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
  IoU = inter / (area_a + area_b - inter), area = max(0, x2 - x1) * max(0, y2 - y1);
  0 when the union is empty (degenerate boxes).

  Args:
    a, b: [..., 4] xyxy, broadcast against each other.
  Returns:
    [...] IoU in [0, 1].
  """
  xp, (a, b) = _xp(a, b)
  ax1, ay1, ax2, ay2 = _split(a)
  bx1, by1, bx2, by2 = _split(b)
  iw = xp.maximum(0.0, xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1))
  ih = xp.maximum(0.0, xp.minimum(ay2, by2) - xp.maximum(ay1, by1))
  inter = iw * ih
  area_a = xp.maximum(0.0, ax2 - ax1) * xp.maximum(0.0, ay2 - ay1)
  area_b = xp.maximum(0.0, bx2 - bx1) * xp.maximum(0.0, by2 - by1)
  return _safe_div(xp, inter, area_a + area_b - inter)


def iou(a, b):
  """Continuous IoU of xywh boxes (see ``iou_xyxy``).  a, b: [..., 4] broadcast -> [...]."""
  return iou_xyxy(xywh_to_xyxy(a), xywh_to_xyxy(b))


def pairwise_iou(a, b):
  """IoU of every pair of xywh boxes.  a: [N, 4], b: [M, 4] -> [N, M]."""
  xp, (a, b) = _xp(a, b)
  return iou(a[..., :, None, :], b[..., None, :, :])


def iou_otb(a, b):
  """IoU with the OTB toolkit's inclusive-pixel convention (calcRectInt), on xywh boxes.

  right = x + w - 1, bottom = y + h - 1;
  iw = max(0, min(right_a, right_b) - max(x_a, x_b) + 1), ih likewise;
  inter = iw * ih;  IoU = inter / (w_a h_a + w_b h_b - inter)  (0 where that union is <= 0).

  Args:
    a, b: [..., 4] xywh, broadcast.
  Returns:
    [...] IoU.
  """
  xp, (a, b) = _xp(a, b)
  ax, ay, aw, ah = _split(a)
  bx, by, bw, bh = _split(b)
  iw = xp.maximum(0.0, xp.minimum(ax + aw - 1, bx + bw - 1) - xp.maximum(ax, bx) + 1)
  ih = xp.maximum(0.0, xp.minimum(ay + ah - 1, by + bh - 1) - xp.maximum(ay, by) + 1)
  inter = iw * ih
  return _safe_div(xp, inter, aw * ah + bw * bh - inter)


# --------------------------------------------------------------------------- centres


def centre(b):
  """Continuous centre (x + w/2, y + h/2) of xywh boxes.  b: [..., 4] -> [..., 2]."""
  xp, (b,) = _xp(b)
  x, y, w, h = _split(b)
  return xp.stack([x + 0.5 * w, y + 0.5 * h], axis=-1)


def centre_error(a, b):
  """Euclidean distance between continuous centres of xywh boxes.  [..., 4] x2 -> [...]."""
  xp, (a, b) = _xp(a, b)
  d = centre(a) - centre(b)
  return xp.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)


def centre_otb(b):
  """OTB toolkit centre (x + (w - 1)/2, y + (h - 1)/2) of xywh boxes.  [..., 4] -> [..., 2]."""
  xp, (b,) = _xp(b)
  x, y, w, h = _split(b)
  return xp.stack([x + 0.5 * (w - 1), y + 0.5 * (h - 1)], axis=-1)


def centre_error_otb(a, b):
  """Euclidean distance between OTB centres.  Equals ``centre_error`` (the -1/2 shifts cancel)."""
  xp, (a, b) = _xp(a, b)
  d = centre_otb(a) - centre_otb(b)
  return xp.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)


# --------------------------------------------------------------------------- geometry


def clip_xywh(b, width, height):
  """Clips xywh boxes to the image [0, width] x [0, height] (continuous).

  x1' = clip(x, 0, W), x2' = clip(x + w, 0, W), w' = max(0, x2' - x1'); likewise for y.
  A box fully outside becomes a zero-size box on the border.

  Args:
    b: [..., 4] xywh.  width, height: scalars or arrays broadcasting with b[..., 0].
  Returns:
    [..., 4] xywh.
  """
  xp, (b, width, height) = _xp(b, width, height)
  x, y, w, h = _split(b)
  x1 = xp.clip(x, 0.0, width)
  y1 = xp.clip(y, 0.0, height)
  x2 = xp.clip(x + w, 0.0, width)
  y2 = xp.clip(y + h, 0.0, height)
  return xp.stack([x1, y1, xp.maximum(0.0, x2 - x1), xp.maximum(0.0, y2 - y1)], axis=-1)


def scale_about_centre(b_xywh, sx, sy=None):
  """Scales xywh boxes about their continuous centre: w' = sx w, h' = sy h, centre kept.

  Args:
    b_xywh: [..., 4].  sx, sy: scalars or arrays broadcasting with b[..., 0]; sy defaults to sx.
  Returns:
    [..., 4] xywh.
  """
  if sy is None:
    sy = sx
  xp, (b, sx, sy) = _xp(b_xywh, sx, sy)
  x, y, w, h = _split(b)
  w2, h2 = w * sx, h * sy
  return xp.stack([x + 0.5 * (w - w2), y + 0.5 * (h - h2), w2, h2], axis=-1)


def area(b_xywh):
  """w * h of xywh boxes.  [..., 4] -> [...]."""
  xp, (b,) = _xp(b_xywh)
  return b[..., 2] * b[..., 3]


__all__: Tuple[str, ...] = (
    "xywh_to_xyxy", "xyxy_to_xywh", "xywh_to_cxcywh", "cxcywh_to_xywh", "xyxy_to_cxcywh",
    "cxcywh_to_xyxy", "iou", "iou_xyxy", "pairwise_iou", "iou_otb", "centre", "centre_error",
    "centre_otb", "centre_error_otb", "clip_xywh", "scale_about_centre", "area",
)
