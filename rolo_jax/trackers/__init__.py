"""Online trackers behind one interface, made by name.

    from rolo_jax import trackers
    tracker = trackers.make_tracker("kcf")                    # baselines: 'static', 'kcf', 'csrt'
    tracker = trackers.make_tracker("re3", checkpoint="runs/re3/ckpt")   # once registered

Factories are registered as ``'module:function'`` strings (or callables) and imported only when a
tracker of that name is made, so importing this package never imports JAX models or OpenCV.
A factory is called as ``factory(checkpoint=checkpoint, **kw)`` and returns a `Tracker`.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Dict, List, Optional, Union

from rolo_jax.errors import DataError
from rolo_jax.trackers.base import (CoreTracker, MultiTracker, Tracker, TrackerCore, TrackerInitError,
                                    run_tracker, valid_boxes)

Factory = Union[str, Callable[..., Tracker]]

_REGISTRY: Dict[str, Factory] = {}


class UnknownTrackerError(ValueError):
  """`make_tracker` was given a name nobody registered; the message lists the available names."""


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
  """Registers a tracker factory under `name` (case-insensitive).

  Args:
    name: e.g. 're3'.
    factory: ``'package.module:function'`` (imported lazily) or a callable
      ``factory(checkpoint=None, **kw) -> Tracker``.
    overwrite: allow replacing an existing registration.
  """
  key = name.lower()
  if isinstance(factory, str):
    if factory.count(":") != 1 or not all(factory.split(":")):
      raise ValueError(f"factory for {name!r} must be 'module:function', got {factory!r}")
  elif not callable(factory):
    raise TypeError(f"factory for {name!r} must be a 'module:function' string or a callable")
  if key in _REGISTRY and not overwrite and _REGISTRY[key] != factory:
    raise ValueError(f"tracker {name!r} is already registered ({_REGISTRY[key]!r})")
  _REGISTRY[key] = factory


def available() -> List[str]:
  """The registered tracker names, sorted."""
  return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., Tracker]:
  key = name.lower()
  if key not in _REGISTRY:
    raise UnknownTrackerError(f"unknown tracker {name!r}; available: {', '.join(available())}")
  factory = _REGISTRY[key]
  if isinstance(factory, str):
    module, fn = factory.split(":")
    factory = getattr(importlib.import_module(module), fn)
  return factory


def unknown_names(names: str) -> List[str]:
  """The names in a comma-separated list (e.g. a --baselines flag) that no tracker is registered
  under, in order; empty when all are known."""
  known = set(available())
  return [n.strip() for n in names.split(",") if n.strip() and n.strip() not in known]


def make_tracker(name: str, checkpoint: Optional[str] = None, **kw) -> Tracker:
  """A fresh tracker of the registered kind `name`.

  Args:
    name: a registered name (see `available()`), case-insensitive.
    checkpoint: path of learned parameters for learned trackers; DataError when it does not exist.
      Baselines take none (ValueError when one is given).
    **kw: passed to the factory.
  Raises:
    UnknownTrackerError: `name` is not registered (the message lists the available names).
  """
  factory = _resolve(name)
  if checkpoint is not None:
    checkpoint = os.fspath(checkpoint)
    if not os.path.exists(checkpoint):
      raise DataError(checkpoint, "checkpoint does not exist")
  return factory(checkpoint=checkpoint, **kw)


def make_multi_tracker(name: str, checkpoint: Optional[str] = None, **kw) -> MultiTracker:
  """A `MultiTracker` of kind `name`: the tracker itself when it batches targets (a `CoreTracker`),
  else independent single trackers, one per target."""
  first = make_tracker(name, checkpoint, **kw)
  if isinstance(first, MultiTracker):
    return first
  made = [first]

  def make_single():
    return made.pop() if made else make_tracker(name, checkpoint, **kw)

  return MultiTracker(make_single)


register("static", "rolo_jax.trackers.baselines:make_static")
register("kcf", "rolo_jax.trackers.baselines:make_kcf")
register("csrt", "rolo_jax.trackers.baselines:make_csrt")
register("re3", "rolo_jax.trackers.re3:make_re3")
register("rolo", "rolo_jax.trackers.rolo:make_rolo")
register("yolo", "rolo_jax.trackers.yolo_sort:make_yolo")
register("yolo_sort", "rolo_jax.trackers.yolo_sort:make_yolo_sort")
register("memtrack", "rolo_jax.trackers.memtrack:make_memtrack")
register("siamfc", "rolo_jax.trackers.memtrack:make_siamfc")

__all__ = [
    "Tracker", "MultiTracker", "TrackerCore", "CoreTracker", "run_tracker", "valid_boxes",
    "register", "available", "make_tracker", "make_multi_tracker", "UnknownTrackerError",
    "TrackerInitError", "unknown_names",
]
