"""Checkpoints: one orbax CheckpointManager per directory, at ``<dir>/checkpoints/<step>/``.

Two kinds share the layout, so `load_params` reads either:

  params-only (`save_params`, used by ``python -m rolo_jax.convert``): items
      params  -- the parameter pytree (orbax StandardSave)
      meta    -- JSON: {'model': 're3', 'config': {...}, ...}
  training (`Checkpointer.save`, used by rolo_jax.train.loop): items
      params, meta, plus
      opt_state -- the optax state (StandardSave; restored into the structure of a fresh state)
      train     -- JSON: step, curriculum state, data-sampler position, RNG key data, anything
                   else the loop needs for an exact resume
      ema_params -- only in runs that average their parameters (`optim.params_ema`): the
                   average, with the params' structure, so that readers of the model need not
                   know the optimiser's state layout.  `load_params` returns it instead of
                   `params` (the raw training weights, which a resume continues from) unless
                   asked for the raw ones.  The average is stored once: when it is the one in
                   the optimiser state, `opt_state` is written without it (its
                   `optim.ParamsEmaState` holds None) and `train` records
                   ``"opt_state_ema": "ema_params"``; `Checkpointer.restore` puts it back.
                   Checkpoints written before that (session 15) hold it in both items and
                   restore as they are.

Atomicity: orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>``
only after every item is written (and a ``commit_success.txt`` marker).  A process killed
(SIGKILL) mid-save leaves only the temporary folder, which `latest_step` ignores and the next
manager removes; the previous checkpoint stays the latest.  Saves are synchronous (no background
thread), so a save that returned is on disk.

A checkpoint is never written with a non-finite parameter or optimiser value:
`Checkpointer.save` / `save_params` raise `NonFiniteCheckpointError` instead.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np

import orbax.checkpoint as ocp

from rolo_jax.errors import DataError, NonFiniteCheckpointError  # (the latter re-exported here)
from rolo_jax.train import optim

PyTree = Any

CHECKPOINT_SUBDIR = "checkpoints"

# orbax logs every save at INFO/WARNING; keep the console for the progress bar.
logging.getLogger("absl").setLevel(logging.ERROR)


def _manager_dir(directory: str) -> str:
  """The CheckpointManager root for a workdir (or the root itself when given)."""
  directory = os.fspath(directory)
  sub = os.path.join(directory, CHECKPOINT_SUBDIR)
  if os.path.basename(os.path.normpath(directory)) == CHECKPOINT_SUBDIR:
    return directory
  return sub


def _finite_or_raise(tree: PyTree, what: str):
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
      raise NonFiniteCheckpointError(
          f"refusing to save a checkpoint: {what}{jax.tree_util.keystr(path)} holds a non-finite value")


def to_jsonable(x: Any) -> Any:
  """Dataclasses / tuples / numpy scalars -> plain JSON values (for `meta`)."""
  if dataclasses.is_dataclass(x) and not isinstance(x, type):
    return {f.name: to_jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return x


def _to_numpy(tree: PyTree) -> PyTree:
  return jax.tree_util.tree_map(np.asarray, tree)


def _first_line(e: BaseException) -> str:
  """'Type: the first line of the message' (at most 300 characters of it)."""
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _orbax_restore(mgr, step: int, items: Dict[str, Any], step_dir: str, what: str, expected: str):
  """mgr.restore of `items` at `step`; whatever orbax raises (JSON, tensorstore, missing files, a
  structure mismatch) becomes one DataError naming `step_dir`: "cannot <what> (<error>); expected
  <expected>". Running out of memory is the machine's, not the checkpoint's: it passes through."""
  try:
    return mgr.restore(step, args=ocp.args.Composite(**items))
  except MemoryError:
    raise
  except Exception as e:
    raise DataError(step_dir, f"cannot {what} ({_first_line(e)}); expected {expected}") from None


def check_items_readable(step_dir: str, items) -> None:
  """DataError naming `step_dir` unless every array item's stored bytes can all be read.

  Why a check of our own before orbax reads: orbax restores an item's arrays concurrently and
  gives up at the first failed read, closing its event loop while tensorstore still completes the
  other reads; each of those then reports "RuntimeError: Event loop is closed" on stderr. A damaged
  checkpoint (a missing or cut data file) thus printed tens to hundreds of traceback lines after
  the one-line error (session 18). This reads every key of each item's OCDBT store with
  tensorstore's own futures (no event loop), one key at a time (so at most one stored chunk is
  held), and stops at the first failure, so orbax only ever opens a checkpoint whose bytes are all there. (It checks that
  the bytes can be read, not what they hold; orbax still decodes them.) Reading the data twice
  costs ~30 ms for a tiny Re3 training checkpoint (16 MB of optimiser state) and ~1 s for the
  paper config's 760 MB of params (`load_params` 2.3-2.6 s instead of 1.4 s, peak memory +130 MB;
  orbax stores each array as one chunk, so the largest, fc6's 608 MB, is held once); a resume
  reads ~3 GB (params, Adam's two moments, the average). Measured in session 18.

  An item folder that holds no OCDBT manifest (a layout orbax wrote without OCDBT) is left to orbax.
  """
  import tensorstore as ts

  for item in items:
    folder = os.path.join(step_dir, item)
    if not os.path.isdir(folder):
      raise DataError(step_dir, f"no {item}/ folder; expected the {item}/ written by rolo_jax")
    if not os.path.isfile(os.path.join(folder, "manifest.ocdbt")):
      if os.path.isdir(os.path.join(folder, "d")):
        raise DataError(folder, "its manifest.ocdbt is missing; expected an orbax OCDBT item")
      continue
    try:
      # The base as a spec, not a file:// URL: a '#', '?' or '%xx' in the path would be read as
      # URL syntax (a valid checkpoint refused, or another folder checked).
      kv = ts.KvStore.open({"driver": "ocdbt",
                            "base": {"driver": "file", "path": os.path.abspath(folder) + "/"}}).result()
      for key in kv.list().result():
        # A value stored in a data file that is gone reads as empty rather than failing (an
        # indirect value of the per-process sub-database); nothing orbax stores is empty.
        if not len(kv.read(key).result().value):
          raise ValueError(f"{key.decode(errors='replace')}: no bytes where the manifest lists a value")
    except Exception as e:  # tensorstore raises ValueError with the path and byte range
      raise DataError(folder, f"cannot read its stored arrays ({_first_line(e)}); the checkpoint is "
                              "damaged (a data file missing or cut short)") from None


# `train` JSON key of a checkpoint whose opt_state was written without its parameter average.
EMA_MARKER = "opt_state_ema"
_is_ema_state = lambda x: isinstance(x, optim.ParamsEmaState)


def _with_ema(opt_state: PyTree, ema: Optional[PyTree]) -> PyTree:
  """opt_state with every `optim.ParamsEmaState`'s average replaced by `ema` (None: left out)."""
  return jax.tree_util.tree_map(lambda x: optim.ParamsEmaState(ema) if _is_ema_state(x) else x,
                                opt_state, is_leaf=_is_ema_state)


def _same_tree(a: PyTree, b: PyTree) -> bool:
  """Equal structure and values; the same object (the loop's default hook) without a comparison."""
  if a is b:
    return True
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  return ta == tb and all(np.array_equal(x, y) for x, y in zip(la, lb))


class Checkpointer:
  """The one orbax CheckpointManager of a training workdir (``<workdir>/checkpoints``).

  Args:
    workdir: the run's folder (created when missing).
    max_to_keep: newest checkpoints kept (older ones are deleted after a successful save).
  """

  ITEMS = ("params", "opt_state", "train", "meta", "ema_params")

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(_manager_dir(workdir))
    os.makedirs(self.directory, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
        cleanup_tmp_directories=True)
    self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=self.ITEMS)

  def latest_step(self) -> Optional[int]:
    return self._mgr.latest_step()

  def all_steps(self):
    return list(self._mgr.all_steps())

  def save(self, step: int, *, params: PyTree, opt_state: PyTree, train: Dict[str, Any],
           meta: Dict[str, Any], ema_params: Optional[PyTree] = None) -> bool:
    """Writes checkpoint `step` (atomically). Returns False when that step already exists.

    ema_params: the run's parameter average (module docstring), or None (no such item).
    Raises NonFiniteCheckpointError (and writes nothing) when params or opt_state hold NaN/Inf.
    """
    train = dict(train)
    if ema_params is not None:
      inner = optim.ema_params(opt_state)
      if inner is not None and _same_tree(inner, ema_params):
        # The same average twice (the loop's default): keep the ema_params copy only. Decided
        # before the host copies below, so the average is copied (and checked) once.
        opt_state = _with_ema(opt_state, None)
        train[EMA_MARKER] = "ema_params"
      ema_params = _to_numpy(ema_params)
      _finite_or_raise(ema_params, "ema_params")
    params, opt_state = _to_numpy(params), _to_numpy(opt_state)
    _finite_or_raise(params, "params")
    _finite_or_raise(opt_state, "opt_state")
    items = dict(
        params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
        train=ocp.args.JsonSave(to_jsonable(train)), meta=ocp.args.JsonSave(to_jsonable(meta)))
    if ema_params is not None:
      items["ema_params"] = ocp.args.StandardSave(ema_params)
    if step in self._mgr.all_steps():
      return False
    args = ocp.args.Composite(**items)
    saved = self._mgr.save(int(step), args=args, force=True)
    self._mgr.wait_until_finished()
    return bool(saved)

  def restore(self, *, params_like: PyTree, opt_state_like: PyTree,
              step: Optional[int] = None) -> Dict[str, Any]:
    """Restores a training checkpoint (the latest when step is None) into the given structures.

    Args:
      params_like / opt_state_like: pytrees (arrays or ShapeDtypeStructs) whose structure, shapes
        and dtypes the restored values take (a fresh init gives them).
    Returns:
      {'step', 'params', 'opt_state', 'train', 'meta'} with numpy/jax arrays.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
    abstract = lambda t: jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, t)
    ema_once = self.read_json(step)["train"].get(EMA_MARKER) == "ema_params"
    ema_like = optim.ema_params(opt_state_like) if ema_once else None
    if ema_once and ema_like is None:
      raise DataError(os.path.join(self.directory, str(step)),
                      "this checkpoint's optimiser averages the parameters and this run's does not; "
                      "expected an optimiser state with an `optim.params_ema` link")
    items = dict(params=ocp.args.StandardRestore(abstract(params_like)),
                 opt_state=ocp.args.StandardRestore(abstract(
                     _with_ema(opt_state_like, None) if ema_once else opt_state_like)),
                 train=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    if ema_once:
      items["ema_params"] = ocp.args.StandardRestore(abstract(ema_like))
    step_dir = os.path.join(self.directory, str(step))
    arrays = [k for k, v in items.items() if isinstance(v, ocp.args.StandardRestore)]
    check_items_readable(step_dir, arrays)
    out = _orbax_restore(self._mgr, step, items, step_dir, "restore this checkpoint",
                         f"the {'/, '.join(items)}/ items written by rolo_jax for this model")
    opt_state = _with_ema(out["opt_state"], out["ema_params"]) if ema_once else out["opt_state"]
    train = {k: v for k, v in dict(out["train"]).items() if k != EMA_MARKER}
    return {"step": step, "params": out["params"], "opt_state": opt_state,
            "train": train, "meta": out["meta"]}

  def read_json(self, step: Optional[int] = None) -> Dict[str, Any]:
    """{'step', 'train', 'meta'} of a checkpoint (the latest by default) without its arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
    step_dir = os.path.join(self.directory, str(step))
    out = _orbax_restore(self._mgr, step, dict(train=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()),
                         step_dir, "read this checkpoint's settings",
                         "the train/ and meta/ JSON written by rolo_jax")
    for item in ("train", "meta"):
      if not isinstance(out[item], dict):
        raise DataError(os.path.join(step_dir, item), f"expected a JSON object, found {out[item]!r:.80}")
    return {"step": step, "train": out["train"], "meta": out["meta"]}

  def close(self):
    self._mgr.close()


def latest_step(workdir: str) -> Optional[int]:
  """The newest checkpoint step of a run folder, or None (no checkpoint; nothing is created)."""
  if not os.path.isdir(_manager_dir(workdir)):
    return None
  ck = Checkpointer(workdir)
  try:
    return ck.latest_step()
  finally:
    ck.close()


def save_params(directory: str, params: PyTree, meta: Dict[str, Any], step: int = 0) -> str:
  """Writes a params-only checkpoint ``<directory>/checkpoints/<step>/{params,meta}``.

  Args:
    directory: output folder (created when missing).
    params: the parameter pytree.
    meta: JSON-able dict; by convention {'model': 're3', 'config': <dataclass or dict>, ...}.
  Returns:
    the checkpoint step folder.
  Raises NonFiniteCheckpointError when a parameter holds NaN/Inf.
  """
  params = _to_numpy(params)
  _finite_or_raise(params, "params")
  root = os.path.abspath(_manager_dir(directory))
  os.makedirs(root, exist_ok=True)
  options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  with ocp.CheckpointManager(root, options=options, item_names=("params", "meta")) as mgr:
    mgr.save(int(step), args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(to_jsonable(meta))), force=True)
    mgr.wait_until_finished()
  return os.path.join(root, str(int(step)))


def load_params(directory: str, step: Optional[int] = None, *,
                raw: bool = False) -> Tuple[PyTree, Dict[str, Any]]:
  """(params, meta) from a params-only checkpoint folder or a training workdir (latest step).

  Args:
    directory: a folder holding ``checkpoints/`` (workdir or `save_params` output), or the
      ``checkpoints`` folder itself.
    step: a specific step (default: the latest).
    raw: return the raw training weights even when the checkpoint holds a parameter average.
  Returns:
    params as a pytree of numpy arrays in the saved structure (nested dicts): the checkpoint's
    `ema_params` when it has them (a run that averages its parameters; module docstring) and `raw`
    is False, else its `params`; and meta (a dict; meta['step'] is set to the step read and
    meta['params_item'] to the item read, 'ema_params' or 'params').
  Raises:
    FileNotFoundError when there is no finished checkpoint there; DataError naming the step folder
    when it cannot be read (a damaged meta JSON, missing parameter files).
  """
  root = os.path.abspath(_manager_dir(directory))
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{directory}: no '{CHECKPOINT_SUBDIR}' folder (not a checkpoint or workdir)")
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  with ocp.CheckpointManager(root, options=options, item_names=("params", "meta", "ema_params")) as mgr:
    step = mgr.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"{root}: no finished checkpoint")
    item = "params"
    if not raw and os.path.isdir(os.path.join(root, str(step), "ema_params")):
      item = "ema_params"
    step_dir = os.path.join(root, str(step))
    check_items_readable(step_dir, [item])
    out = _orbax_restore(mgr, step, {item: ocp.args.StandardRestore(), "meta": ocp.args.JsonRestore()},
                         step_dir, "read this checkpoint",
                         f"the {item}/ and meta/ folders written by rolo_jax")
  if not isinstance(out["meta"], (dict, type(None))):
    raise DataError(os.path.join(root, str(step), "meta"), "expected a JSON object")
  params = _to_numpy(out[item])
  meta = dict(out["meta"] or {})
  meta["step"] = step
  meta["params_item"] = item
  return params, meta
