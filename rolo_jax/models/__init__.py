"""Model definitions (pure functions over parameter pytrees) and what they share."""
from __future__ import annotations

import dataclasses
from typing import Any, List, Mapping


def same_kind(ref: Any, v: Any) -> bool:
  """Whether the JSON value `v` can stand for a config field whose default is `ref` (a whole
  number for a float field is fine; a bool is never a number; lists stand for tuples)."""
  if ref is None or v is None:
    return True
  if isinstance(ref, bool) or isinstance(v, bool):
    return isinstance(ref, bool) and isinstance(v, bool)
  if isinstance(ref, float):
    return isinstance(v, (int, float))
  if isinstance(ref, tuple):
    return isinstance(v, (list, tuple)) and (len(ref) == 0 or len(v) == len(ref)) and all(
        same_kind(r, x) for r, x in zip(ref, v))
  return isinstance(v, type(ref))


def mistyped_fields(base: Any, fields: Mapping[str, Any]) -> List[str]:
  """"'field': expected int (like 127), got 'abc'" for each entry of `fields` (a checkpoint meta's
  config dict) whose value cannot stand for the dataclass `base`'s field; unknown names are the
  caller's to report."""
  names = {f.name for f in dataclasses.fields(base)}
  out = []
  for k, v in fields.items():
    if k in names and not same_kind(getattr(base, k), v):
      ref = getattr(base, k)
      out.append(f"{k!r}: expected {type(ref).__name__} (like {ref!r}), got {v!r}")
  return out
