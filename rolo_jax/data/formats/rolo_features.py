"""Precomputed per-frame ROLO input vectors, in the authors' format.

The ROLO authors shipped, per sequence, a folder with one ``.npy`` file per frame (files in natural
order = frame order), each holding F + 6 = 4102 floats::

    v[0 : F]      the detector's visual features (YOLO v1's 4096-unit fully connected layer)
    v[F : F + 6]  (class, x, y, w, h, confidence) of the detection: (x, y) the box centre and (w, h)
                  its size, all relative to the image width / height (in [0, 1])

The array may be stored flat [F + 6] or with singleton axes ([1, F + 6]). ``read_feature_folder``
returns the values as stored; ROLO's LSTM input nulls class and confidence, B_t = (0, x, y, w, h, 0)
(``location_vectors``). ``write_feature_folder`` writes the same format (the project caches its own
detector's outputs with it).
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from rolo_jax.data.images import natural_key
from rolo_jax.errors import DataError

DET_FIELDS = ("class", "x", "y", "w", "h", "confidence")


def list_feature_files(folder: str | os.PathLike) -> List[str]:
  """The ``.npy`` files of ``folder`` in natural order; DataError when the folder is missing or has none."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    if os.path.exists(folder):
      raise DataError(folder, "expected a folder of per-frame .npy feature files, found a file")
    raise DataError(folder, "feature folder does not exist")
  names = [n for n in os.listdir(folder) if n.lower().endswith(".npy") and not n.startswith(".")]
  if not names:
    raise DataError(folder, "no .npy files in this folder (expected one per frame)")
  return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def read_feature_file(path: str | os.PathLike, feature_dim: int = 4096) -> np.ndarray:
  """One frame's vector: float64 [feature_dim + 6]; DataError naming the file for anything else."""
  path = os.fspath(path)
  expected = feature_dim + len(DET_FIELDS)
  try:
    a = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise DataError(path, f"not a readable .npy array ({e})") from None
  if not isinstance(a, np.ndarray) or not (np.issubdtype(a.dtype, np.floating)
                                           or np.issubdtype(a.dtype, np.integer)):
    raise DataError(path, f"expected a numeric array of {expected} values, found dtype "
                          f"{getattr(a, 'dtype', type(a).__name__)}")
  if a.size != expected or sum(d != 1 for d in a.shape) > 1:
    raise DataError(path, f"expected {expected} values ({feature_dim} features + class, x, y, w, h, "
                          f"confidence), found {a.size} (shape {a.shape})")
  v = a.reshape(expected).astype(np.float64)
  bad = np.nonzero(~np.isfinite(v))[0]
  if len(bad):
    i = int(bad[0])
    what = f"feature {i}" if i < feature_dim else f"'{DET_FIELDS[i - feature_dim]}'"
    raise DataError(path, f"non-finite value {v[i]} at index {i} ({what}); {len(bad)} non-finite "
                          f"value(s) in all")
  return v


def read_feature_folder(folder: str | os.PathLike, feature_dim: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a folder of per-frame vectors.

  Args:
    folder: one ``.npy`` per frame (natural order).
    feature_dim: F (4096 for the authors' YOLO features).
  Returns:
    (features float32 [T, F], dets float64 [T, 6] = (class, x, y, w, h, confidence) as stored).
  Raises:
    DataError: missing folder, no .npy files, unreadable file, wrong length (file, length found vs
      expected), non-numeric or non-finite values (file, index).
  """
  files = list_feature_files(folder)
  rows = np.stack([read_feature_file(f, feature_dim) for f in files])
  return rows[:, :feature_dim].astype(np.float32), rows[:, feature_dim:]


def location_vectors(dets) -> np.ndarray:
  """ROLO's location input B_t = (0, x, y, w, h, 0): ``dets`` [..., 6] with class and confidence set
  to 0."""
  out = np.array(dets, np.float64, copy=True)
  out[..., 0] = 0.0
  out[..., 5] = 0.0
  return out


def write_feature_folder(folder: str | os.PathLike, features, dets, *, start: int = 0,
                         digits: int = 5) -> List[str]:
  """Writes one float32 ``.npy`` [F + 6] per frame, named ``{start + t:0{digits}d}.npy``.

  Args:
    features: [T, F].  dets: [T, 6] (class, x, y, w, h, confidence).
  Returns:
    the paths written, in frame order.
  """
  features = np.asarray(features, np.float32)
  dets = np.asarray(dets, np.float32)
  if features.ndim != 2 or dets.shape != (features.shape[0], len(DET_FIELDS)):
    raise ValueError(f"write_feature_folder: need features [T, F] and dets [T, 6], got {features.shape} "
                     f"and {dets.shape}")
  os.makedirs(folder, exist_ok=True)
  paths = []
  for t in range(features.shape[0]):
    p = os.path.join(os.fspath(folder), f"{start + t:0{digits}d}.npy")
    np.save(p, np.concatenate([features[t], dets[t]]))
    paths.append(p)
  return paths


__all__ = ["DET_FIELDS", "list_feature_files", "read_feature_file", "read_feature_folder",
           "location_vectors", "write_feature_folder"]
