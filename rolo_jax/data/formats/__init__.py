"""Readers for real tracking benchmarks, all returning `Sequence` / `MultiSequence`.

``load_dataset(kind, root, **kw)`` dispatches on the benchmark kind:

  otb     read_otb_dataset(root, sequences_json=, init_omit_dir=, strict=, names=)  -> [Sequence]
  vot     read_vot_dataset(root, strict=, names=)                                    -> [Sequence]
  uav     read_uav_dataset(root, subset=, ranges=, strict=, names=)                  -> [Sequence]
  got10k  read_got10k_dataset(root, split=, strict=, names=)                         -> [Sequence]
  lasot   read_lasot_dataset(root, split=, classes=, names=, strict=)                -> [Sequence]
  vid     read_vid_dataset(root, split=, inclusive_max=, strict=, max_sequences=)    -> [MultiSequence]
  mot     read_mot_dataset(root, split=, strict=, names=)                            -> [MultiSequence]

Every reader raises `rolo_jax.errors.DataError` naming the file (and line) for missing or
malformed input; frames are decoded lazily (an undecodable image fails when that frame is read).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Union

from rolo_jax.data.sequence import MultiSequence, Sequence

KINDS = ("otb", "vot", "uav", "got10k", "lasot", "vid", "mot")
_ALIASES = {"otb100": "otb", "otb2015": "otb", "uav123": "uav", "got-10k": "got10k",
            "imagenet_vid": "vid", "ilsvrc_vid": "vid", "motchallenge": "mot"}


def _reader(kind: str) -> Callable:
  if kind == "otb":
    from rolo_jax.data.formats.otb import read_otb_dataset as f
  elif kind == "vot":
    from rolo_jax.data.formats.vot import read_vot_dataset as f
  elif kind == "uav":
    from rolo_jax.data.formats.uav import read_uav_dataset as f
  elif kind == "got10k":
    from rolo_jax.data.formats.got10k import read_got10k_dataset as f
  elif kind == "lasot":
    from rolo_jax.data.formats.lasot import read_lasot_dataset as f
  elif kind == "vid":
    from rolo_jax.data.formats.vid import read_vid_dataset as f
  else:
    from rolo_jax.data.formats.mot import read_mot_dataset as f
  return f


def load_dataset(kind: str, root: Union[str, os.PathLike], **kw) -> List[Union[Sequence, MultiSequence]]:
  """Reads a benchmark folder of the given kind (one of KINDS, case-insensitive; aliases such as
  'uav123', 'got-10k', 'imagenet_vid', 'motchallenge' accepted). Keyword arguments go to the
  kind's reader (see the module docstring)."""
  k = kind.lower()
  k = _ALIASES.get(k, k)
  if k not in KINDS:
    raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
  return _reader(k)(root, **kw)


__all__ = ["KINDS", "load_dataset"]
