"""The constant-velocity Kalman filter of SORT (Bewley et al., ICIP 2016), batched over tracks.

State and measurement (u, v = box centre, s = area, r = aspect ratio w / h, assumed constant):

  x = [u, v, s, r, u', v', s']            z = [u, v, s, r]
  x_t = F x_{t-1} + w,  w ~ N(0, Q)        z_t = H x_t + e,  e ~ N(0, R)
  F = I_7 with F[0, 4] = F[1, 5] = F[2, 6] = 1;   H = [I_4 | 0]

Predict:  if s + s' <= 0 then s' = 0 (the area must stay positive);  x = F x;  P = F P F^T + Q.
Update:   y = z - H x;  S = H P H^T + R;  K = P H^T S^-1;  x = x + K y;
          P = (I - K H) P (I - K H)^T + K R K^T   (Joseph form: the same as (I - K H) P in exact
          arithmetic, and stays symmetric positive definite in floating point).

Noise settings (the SORT authors' reference settings; the paper describes the model but gives no
numbers; unit matrices scaled):
  R  = diag(1, 1, 10, 10)                          measurement noise (area and aspect are noisier)
  P0 = diag(10, 10, 10, 10, 1e4, 1e4, 1e4)         initial covariance: velocities unknown
  Q  = diag(1, 1, 1, 1, 0.01, 0.01, 1e-4)          process noise
A new track starts at x = [z, 0, 0, 0] with P = P0.

All functions take any leading batch shape: x [..., 7], P [..., 7, 7], boxes [..., 4].
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

DIM_X, DIM_Z = 7, 4

F = np.eye(DIM_X)
F[0, 4] = F[1, 5] = F[2, 6] = 1.0
H = np.eye(DIM_Z, DIM_X)
R = np.diag([1.0, 1.0, 10.0, 10.0])
P0 = np.diag([10.0, 10.0, 10.0, 10.0, 1e4, 1e4, 1e4])
Q = np.diag([1.0, 1.0, 1.0, 1.0, 1e-2, 1e-2, 1e-4])


class KalmanState(NamedTuple):
  x: np.ndarray  # [..., 7] mean
  P: np.ndarray  # [..., 7, 7] covariance


def box_to_z(box: np.ndarray) -> np.ndarray:
  """x, y, w, h -> z = (u, v, s, r) = (x + w/2, y + h/2, w h, w / h).  [..., 4] -> [..., 4]."""
  b = np.asarray(box, np.float64)
  x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
  return np.stack([x + 0.5 * w, y + 0.5 * h, w * h, w / h], axis=-1)


def x_to_box(x: np.ndarray) -> np.ndarray:
  """State -> x, y, w, h with w = sqrt(s r), h = s / w.  [..., >=4] -> [..., 4].

  A state with s <= 0 or r <= 0 (no valid box) gives a NaN row.
  """
  x = np.asarray(x, np.float64)
  u, v, s, r = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
  ok = (s > 0) & (r > 0)
  w = np.sqrt(np.where(ok, s * r, np.nan))
  h = np.where(ok, s, np.nan) / w
  return np.stack([u - 0.5 * w, v - 0.5 * h, w, h], axis=-1)


def init(box: np.ndarray, p0: np.ndarray = P0) -> KalmanState:
  """A new track at `box` ([..., 4] x, y, w, h with w, h > 0): x = [z, 0, 0, 0], P = P0."""
  z = box_to_z(box)
  x = np.concatenate([z, np.zeros(z.shape[:-1] + (DIM_X - DIM_Z,))], axis=-1)
  P = np.broadcast_to(p0, z.shape[:-1] + (DIM_X, DIM_X)).copy()
  return KalmanState(x, P)


def predict(state: KalmanState, q: np.ndarray = Q) -> KalmanState:
  """One step of the constant-velocity model (see the module docstring)."""
  x = np.array(state.x, np.float64, copy=True)
  shrink = x[..., 2] + x[..., 6] <= 0
  x[..., 6] = np.where(shrink, 0.0, x[..., 6])
  x = x @ F.T
  P = F @ state.P @ F.T + q
  return KalmanState(x, P)


def update(state: KalmanState, box: np.ndarray, r: np.ndarray = R) -> KalmanState:
  """Corrects the state with measured boxes ([..., 4] x, y, w, h) (see the module docstring)."""
  z = box_to_z(box)
  y = z - state.x @ H.T
  PHt = state.P @ H.T                                     # [..., 7, 4]
  S = H @ PHt + r                                         # [..., 4, 4]
  K = np.swapaxes(np.linalg.solve(S, np.swapaxes(PHt, -1, -2)), -1, -2)  # P H^T S^-1 (S symmetric)
  x = state.x + (K @ y[..., None])[..., 0]
  IKH = np.eye(DIM_X) - K @ H
  P = IKH @ state.P @ np.swapaxes(IKH, -1, -2) + K @ r @ np.swapaxes(K, -1, -2)
  return KalmanState(x, P)


__all__ = ["KalmanState", "F", "H", "R", "P0", "Q", "box_to_z", "x_to_box", "init", "predict",
           "update"]
