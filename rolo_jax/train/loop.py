"""The training loop of every task: curriculum stages, checkpoint/resume, non-finite guard, logging,
profiling.  Re3 and the association LSTM call `train` directly; MemTrack (`memtrack_task.train`)
and the detector / ROLO runs (`yolo_task.fit`) through a one-stage curriculum (`fixed_stage`) and
their `TaskHooks` (how their state is checkpointed, what a NaN batch is, which metrics are checked
and shown).

    state = restore(workdir) or init(key_init)
    for step in [state.step, total_steps):
        stage  = curriculum stage (T, B)                # host-side, pure `curriculum.advance`
        batch  = batch_fn(position, stage)              # deterministic in (seed, position)
        state, metrics = update(state, batch, key_train, p_pred(stage))   # one jit per stage shape
        stop with NonFiniteError if loss or gradient norm is NaN/Inf (no checkpoint written)
        curriculum = advance(curriculum, loss)
        checkpoint every `checkpoint_every` steps, when the stage changes, and at the end

Everything the next update depends on is in the checkpoint (params, optimiser state, step,
curriculum state, data position, RNG key), so running the same workdir again resumes, and a run
interrupted at any checkpoint and resumed ends with the same parameters as an uninterrupted one.

Logging: a tqdm bar per stage (loss, IoU, frames/s); TensorBoard scalars in ``<workdir>/tb``
(tensorboardX): loss, l1, wd, iou, stage, unroll, batch, lr, p_pred, grad/param/update norms,
frames/s; the same rows as JSON lines in ``<workdir>/train_log.jsonl``.  ``profile_dir`` records a jax.profiler trace of a few steps (default steps 5..8 of
the run).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rolo_jax import errors
from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import curriculum as cur_lib
from rolo_jax.train import optim

PyTree = Any


# Defined in rolo_jax.errors (command-line entry points print them without a traceback).
NonFiniteError = errors.NonFiniteError
ConfigMismatchError = errors.ConfigMismatchError


@dataclasses.dataclass
class LoopConfig:
  """Loop settings.

  Attributes:
    workdir: checkpoints in <workdir>/checkpoints, TensorBoard in <workdir>/tb.
    total_steps: the run ends after this many updates (resumed runs included).
    checkpoint_every: steps between periodic checkpoints.
    log_every: steps between TensorBoard writes.
    seed: seeds the parameter init and the training RNG of a fresh run (a resumed run uses
      the key stored in its checkpoint).
    profile_dir: when set, a jax.profiler trace of steps profile_steps[0] .. profile_steps[1]-1
      (counted from the start of this process's run) is written there.
    stop_after: end this process after this many updates without finishing the run (tests:
      an interruption at a checkpoint); None = run to total_steps.
    nan_at_step: test hook: the ground truth of that step's batch is replaced by NaN.
    progress: show tqdm bars.
    max_to_keep: checkpoints kept.
  """
  workdir: str
  total_steps: int
  checkpoint_every: int = 200
  log_every: int = 10
  seed: int = 0
  profile_dir: Optional[str] = None
  profile_steps: Tuple[int, int] = (5, 9)
  stop_after: Optional[int] = None
  nan_at_step: Optional[int] = None
  progress: bool = True
  max_to_keep: int = 3


def _key_data(key) -> list:
  return np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                    else key).astype(np.uint32).tolist()


def open_writer(workdir: str):
  """A tensorboardX SummaryWriter on <workdir>/tb, or None when tensorboardX is not installed."""
  try:
    from tensorboardX import SummaryWriter
  except ImportError:  # logging is optional
    return None
  return SummaryWriter(os.path.join(workdir, "tb"))


def write_scalars(writer, log_file, scalars: Dict[str, float], step: int):
  """One log row: TensorBoard scalars train/<name> (when a writer exists) and a JSON line."""
  if writer is not None:
    for k, v in scalars.items():
      writer.add_scalar(f"train/{k}", v, step)
  log_file.write(json.dumps(dict(scalars, step=step)) + "\n")
  log_file.flush()


def check_meta(saved: Dict[str, Any], meta: Dict[str, Any], workdir: str):
  """ConfigMismatchError when a checkpoint's model/config/task differ from this run's."""
  _check_meta(saved, meta, workdir)


def check_workdir(workdir: str, meta: Dict[str, Any], seed: int) -> None:
  """ConfigMismatchError when `workdir`'s newest checkpoint was written with another run
  description or seed than `meta` / `seed` (the check `train` makes on resume); nothing without a
  checkpoint. Reads JSON only and creates nothing."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(ckpt_lib._manager_dir(workdir)):   # (as checkpoint.latest_step: creates nothing)
    return
  ckpt = ckpt_lib.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    saved = None if step is None else ckpt.read_json(step)
  finally:
    ckpt.close()
  if saved is not None:
    _check_meta(saved["meta"], meta, workdir, saved["train"].get("seed"), seed)


def _same_setting(current: Any, saved: Any) -> bool:
  """Whether a saved 'model' / 'config' / 'task' entry describes the current one.

  A dataclass field added after the checkpoint was written is absent from the saved entry; it
  matches when the current value is the field's default (the convention for new fields: their
  default reproduces the old behaviour), so old workdirs keep resuming and re-evaluating."""
  cur = ckpt_lib.to_jsonable(current)
  if cur == saved:
    return True
  if not (dataclasses.is_dataclass(current) and isinstance(cur, dict) and isinstance(saved, dict)):
    return False
  if set(saved) - set(cur):
    return False
  defaults = {f.name: f.default for f in dataclasses.fields(current)
              if f.default is not dataclasses.MISSING}
  for k, v in cur.items():
    if k in saved:
      if saved[k] != v:
        return False
    elif k not in defaults or ckpt_lib.to_jsonable(defaults[k]) != v:
      return False
  return True


# The run-description entries a resumed (or re-run) workdir must agree on. 'optimizer' and
# 'curriculum' (Re3) and 'data' (MemTrack) were written but not compared before session 7, so a
# re-run with another learning rate, schedule or training set silently continued the old run.
CHECKED_META = ("model", "config", "task", "optimizer", "curriculum", "data")


_ABSENT = ConfigMismatchError.ABSENT


def _differing_keys(cur: Dict[str, Any], saved: Dict[str, Any]) -> List[str]:
  return [k for k in sorted(set(cur) | set(saved)) if cur.get(k, _ABSENT) != saved.get(k, _ABSENT)]


def _differing(cur: Any, saved: Any) -> str:
  """'a: 1 -> 2, b: ...' for the fields of two JSON dicts that differ (or the whole values)."""
  if isinstance(cur, dict) and isinstance(saved, dict):
    return ", ".join(f"{k}: {saved.get(k, _ABSENT)!r} -> {cur.get(k, _ABSENT)!r}"
                     for k in _differing_keys(cur, saved))
  return f"{saved!r} -> {cur!r}"


def _upgraded(current: Any, saved: Any) -> Any:
  """`saved` in today's field names when `current`'s dataclass can translate an older version's
  (a staticmethod `upgrade_saved(dict) -> dict`, e.g. Re3Config's use_lrn -> norm); else as saved."""
  upgrade = getattr(type(current), "upgrade_saved", None)
  if dataclasses.is_dataclass(current) and isinstance(saved, dict) and upgrade is not None:
    try:
      return upgrade(saved)
    except ValueError:
      return saved
  return saved


def _saved_values(section: str, cur: Any, saved: Any) -> Dict[Any, Any]:
  """{(section, field): saved value} for the fields of two JSON dicts that differ ({} otherwise)."""
  if not (isinstance(cur, dict) and isinstance(saved, dict)):
    return {}
  return {(section, k): saved.get(k, _ABSENT) for k in _differing_keys(cur, saved)}


def _check_meta(saved: Dict[str, Any], meta: Dict[str, Any], workdir: str,
                saved_seed: Any = None, seed: Any = None):
  """One ConfigMismatchError naming every section that differs (and the seed, when both are
  given and differ), so that the flags it hints at resume the run at once: raising at the first
  section made a hint that the next run refused again for the next section (session 18)."""
  names, texts, values = [], [], {}
  for k in CHECKED_META:
    if k not in meta or k not in saved:
      continue
    old = _upgraded(meta[k], saved[k])
    if not _same_setting(meta[k], old):
      cur = ckpt_lib.to_jsonable(meta[k])
      names.append(f"'{k}'")
      texts.append(_differing(cur, old))
      values.update(_saved_values(k, cur, old))
  if saved_seed is not None and seed is not None and int(saved_seed) != int(seed):
    names.append("seed")
    texts.append(f"seed: {saved_seed} -> {seed}")
    values[("train", "seed")] = saved_seed
  if names:
    what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    raise ConfigMismatchError(
        f"{workdir}: its checkpoint was trained with a different {what} than this run "
        f"({'; '.join(texts)}); use another --workdir, or the checkpoint's settings to resume it",
        values)


def close_run(bar, writer, log_file, pool) -> None:
  """Closes what a training loop opened: progress bar and TensorBoard writer (either may be None),
  the JSON-lines log and the prefetch pool (a pending batch is dropped)."""
  if bar is not None:
    bar.close()
  if writer is not None:
    writer.close()
  log_file.close()
  pool.shutdown(wait=False, cancel_futures=True)


class TrainState(NamedTuple):
  """The state of a run without extra statistics (Re3, association LSTM, detector, ROLO); MemTrack
  has its own with BatchNorm statistics (and its TaskHooks)."""
  params: PyTree
  opt_state: PyTree
  step: jax.Array  # int32 scalar: updates applied so far


def _inject_nan(batch):
  frames, boxes, valid_hw = batch
  return frames, np.full_like(boxes, np.nan), valid_hw


def _params_opt(state) -> Tuple[PyTree, PyTree]:
  return state.params, state.opt_state


def _restore_params_opt(state, params: PyTree, opt_state: PyTree, step: jax.Array):
  return type(state)(params=params, opt_state=opt_state, step=step)


def _ema_params(state) -> Optional[PyTree]:
  return optim.ema_params(state.opt_state)


@dataclasses.dataclass(frozen=True)
class TaskHooks:
  """What the loop needs to know about one task beyond its update and batches.

  Attributes:
    to_ckpt: state -> (params tree, optimiser state) written to the checkpoint (default: a
      NamedTuple's .params and .opt_state).
    from_ckpt: (fresh state, params tree, optimiser state, step) -> the restored state.
    ema_params: state -> the parameter average to write beside the params (checkpoint item
      `ema_params`, which `load_params` prefers), or None (default: the average an
      `optim.params_ema` in the optimiser keeps, if any).  A task whose checkpoint `params` tree
      is not its optimiser's params (MemTrack's adds BatchNorm statistics) must not use the
      default with an averaging optimiser.
    inject_nan: batch -> the batch with its ground truth NaN (LoopConfig.nan_at_step; default:
      Re3's (frames, boxes, valid_hw) batches).
    finite: metrics that must be finite after every update; None: every scalar metric.
    postfix: metrics shown on the progress bar (besides frames/s).
    desc: progress-bar title; None: the curriculum stage, "stage i (T=.., B=..)".
  """
  to_ckpt: Callable[[Any], Tuple[PyTree, PyTree]] = _params_opt
  from_ckpt: Callable[[Any, PyTree, PyTree, jax.Array], Any] = _restore_params_opt
  ema_params: Callable[[Any], Optional[PyTree]] = _ema_params
  inject_nan: Callable[[Any], Any] = _inject_nan
  finite: Optional[Tuple[str, ...]] = ("loss", "grad_norm")
  postfix: Tuple[str, ...] = ("loss", "iou")
  desc: Optional[str] = None


def fixed_stage(unroll: int = 1, batch: int = 1) -> cur_lib.CurriculumConfig:
  """A one-stage curriculum for runs without one (the stage only names the batch shape, which
  the loop uses for its frames/s figure)."""
  return cur_lib.CurriculumConfig(stages=((unroll, batch),), stage_steps=(), p_pred=0.0)


def _to_device(tree: PyTree) -> PyTree:
  # Through numpy: orbax hands back device-committed arrays, which would make a jitted update
  # that already ran in this process compile a second time (its cache keys on shardings).
  return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), tree)


def train(*, init_fn: Callable[[jax.Array], Any], update_fn: Callable, batch_fn: Callable,
          curriculum: cur_lib.CurriculumConfig, config: LoopConfig, meta: Dict[str, Any],
          lr_fn: Optional[Callable[[int], float]] = None,
          place_state: Optional[Callable[[Any], Any]] = None, hooks: TaskHooks = TaskHooks(),
          log: Optional[Callable[[str], None]] = None) -> Tuple[Any, Dict[str, Any]]:
  """Runs (or resumes) a curriculum training run.

  Args:
    init_fn: key -> TrainState(params, opt_state, step) of a fresh run.
    update_fn: (state, batch, key, p_pred) -> (state, metrics); jitted, state donated; metrics
      must hold 'loss' and 'grad_norm' (scalars).
    batch_fn: (position, Stage) -> batch (numpy arrays; batch[0] frames [T, B, ...]).
    curriculum: the stages and their advance rule.
    config: LoopConfig.
    meta: JSON-able run description saved with every checkpoint ({'model', 'config', ...});
      resuming with a different 'model'/'config'/'task' raises ConfigMismatchError.
    lr_fn: step -> learning rate, for logging.
    place_state: state -> state on the devices the update expects (data parallel:
      `parallel.DataParallel.replicate`), applied after the init or the restore.
    hooks: TaskHooks (checkpoint layout of the state, NaN injection, checked and shown metrics).
    log: called with a line when a run resumes.
  Returns:
    (final TrainState, summary) with summary: steps, steps_this_run, resumed_from,
    stage_history [(step, stage)], per_stage {frames_per_s, steps, first_step_s}, final_stage,
    seconds, cpu_seconds, steps_per_s (without the first step of each stage: compilation),
    last (the scalar metrics of the last update).
  Raises:
    NonFiniteError when a checked metric (hooks.finite) is not finite (no checkpoint written for it).
  """
  workdir = os.path.abspath(config.workdir)
  os.makedirs(workdir, exist_ok=True)
  ckpt = ckpt_lib.Checkpointer(workdir, max_to_keep=config.max_to_keep)
  base = jax.random.PRNGKey(config.seed)
  init_key, train_key = jax.random.split(base)
  cstate = cur_lib.CurriculumState()
  position = 0
  resumed_from = ckpt.latest_step()
  stage_history = []
  if resumed_from is not None:
    # JSON only: a workdir of another run is refused before any array is initialised or restored
    # (for the paper config the initialisation alone takes seconds).
    saved = ckpt.read_json(resumed_from)
    _check_meta(saved["meta"], meta, workdir, saved["train"].get("seed"), config.seed)
  state = init_fn(init_key)   # a fresh run's state, or the restore's template
  if resumed_from is not None:
    params_like, opt_like = hooks.to_ckpt(state)
    r = ckpt.restore(params_like=params_like, opt_state_like=opt_like, step=resumed_from)
    tr = r["train"]
    state = hooks.from_ckpt(state, _to_device(r["params"]), _to_device(r["opt_state"]),
                            jnp.asarray(tr["step"], jnp.int32))
    # Checkpoints written before the tasks shared this loop hold only step (and seed, rng_key).
    if "curriculum" in tr:
      cstate = cur_lib.CurriculumState.from_json(tr["curriculum"])
    position = int(tr.get("data_position", tr["step"]))
    if "rng_key" in tr:
      train_key = jnp.asarray(np.asarray(tr["rng_key"], np.uint32))
    stage_history = [tuple(x) for x in tr.get("stage_history", [])]
    if log is not None:
      log(f"resuming {workdir} from step {int(tr['step'])}")
  if place_state is not None:
    state = place_state(state)
  step = int(state.step)
  if not stage_history:
    stage_history = [(step, cstate.stage)]
  p_pred_fn = cur_lib.p_pred_schedule(curriculum.p_pred)

  def train_json():
    return {"step": step, "seed": config.seed, "curriculum": cstate.to_json(), "data_position": position,
            "rng_key": _key_data(train_key), "stage_history": [list(x) for x in stage_history]}

  def save():
    params, opt_state = hooks.to_ckpt(state)
    ckpt.save(step, params=params, opt_state=opt_state, train=train_json(), meta=dict(meta, step=step),
              ema_params=hooks.ema_params(state))

  # Multi-process runs: every process trains and joins the checkpoint saves (orbax synchronises
  # them; process 0 writes), only process 0 writes logs and the summary.
  main_process = jax.process_index() == 0
  writer = None
  if main_process:
    writer = open_writer(workdir)

  log_file = open(os.path.join(workdir, "train_log.jsonl") if main_process else os.devnull, "a")
  bar = None
  fps_by_stage: Dict[int, list] = {}
  t_start, c_start = time.time(), time.process_time()
  steps_this_run = 0
  last: Dict[str, float] = {}
  profiling = False
  pool = concurrent.futures.ThreadPoolExecutor(1)
  pending = None  # (position, stage, future) of a prefetched batch

  def fetch(pos, stage):
    nonlocal pending
    if pending is not None and pending[0] == pos and pending[1] == stage:
      b = pending[2].result()
    else:
      b = batch_fn(pos, stage)
    pending = (pos + 1, stage, pool.submit(batch_fn, pos + 1, stage))
    return b

  try:
    while step < config.total_steps:
      if config.stop_after is not None and steps_this_run >= config.stop_after:
        break
      stage_idx = cstate.stage
      stage = curriculum.stages[stage_idx]
      if bar is None and config.progress and main_process:   # one bar per stage
        from tqdm import tqdm
        length = config.total_steps - step + cstate.steps   # the last stage / plateau rule
        if curriculum.stage_steps is not None and stage_idx < len(curriculum.stage_steps):
          length = min(length, curriculum.stage_steps[stage_idx])
        desc = hooks.desc or f"stage {stage_idx} (T={stage.unroll}, B={stage.batch})"
        bar = tqdm(total=length, initial=cstate.steps, unit="step", file=sys.stderr, dynamic_ncols=True,
                   desc=desc, leave=True)
      if config.profile_dir and steps_this_run == config.profile_steps[0]:
        jax.profiler.start_trace(config.profile_dir)
        profiling = True
      t0 = time.time()
      batch = fetch(position, stage)
      if config.nan_at_step is not None and step + 1 == config.nan_at_step:
        batch = hooks.inject_nan(batch)
      p_pred = p_pred_fn(stage_idx)
      state, metrics = update_fn(state, batch, train_key, np.float32(p_pred))
      m = jax.device_get(metrics)
      dt = time.time() - t0
      if profiling and steps_this_run + 1 >= config.profile_steps[1]:
        jax.profiler.stop_trace()
        profiling = False
      scalar_m = {k: float(v) for k, v in m.items() if np.ndim(v) == 0}
      checked = hooks.finite if hooks.finite is not None else (
          ("loss", "grad_norm") + tuple(sorted(k for k in scalar_m if k not in ("loss", "grad_norm"))))
      for what in checked:
        if what in scalar_m and not math.isfinite(scalar_m[what]):
          raise NonFiniteError(step + 1, what, scalar_m[what])
      loss = scalar_m["loss"]
      last = scalar_m
      step += 1
      steps_this_run += 1
      position += 1
      frames = stage.unroll * stage.batch
      first_of_shape = len(fps_by_stage.get(stage_idx, [])) == 0
      fps_by_stage.setdefault(stage_idx, []).append((frames, dt, first_of_shape))
      cstate = cur_lib.advance(curriculum, cstate, loss)
      changed = cstate.stage != stage_idx
      if step % config.log_every == 0 or changed or step == config.total_steps:
        scalars = {"loss": loss, "stage": stage_idx, "unroll": stage.unroll, "batch": stage.batch,
                   "p_pred": p_pred, "frames_per_s": frames / dt,
                   "smoothed_loss": cur_lib.smoothed(curriculum, cstate) if not changed else loss}
        for k, v in scalar_m.items():   # the task's own scalar metrics (vectors are not logged)
          scalars.setdefault(k, v)
        if lr_fn is not None and "lr" not in scalars:
          scalars["lr"] = float(lr_fn(step - 1))
        write_scalars(writer, log_file, scalars, step)
      if bar is not None:
        bar.update(1)
        shown = {k: f"{scalar_m[k]:.3f}" for k in hooks.postfix if k in scalar_m}
        bar.set_postfix(**shown, fps=f"{frames / dt:.0f}", refresh=False)
      if changed:
        stage_history.append((step, cstate.stage))
        if bar is not None:
          bar.close()
          bar = None
      if changed or step % config.checkpoint_every == 0 or step == config.total_steps:
        save()
  finally:
    if profiling:
      jax.profiler.stop_trace()
    close_run(bar, writer, log_file, pool)
  if step == config.total_steps:
    save()  # no-op when that step is saved already
  ckpt.close()

  def fps_summary(rows):
    warm = [(f, d) for f, d, first in rows if not first] or [(f, d) for f, d, _ in rows]
    return {"steps": len(rows), "frames_per_s": sum(f for f, _ in warm) / max(sum(d for _, d in warm), 1e-9),
            "first_step_s": rows[0][1]}

  warm = [d for rows in fps_by_stage.values() for _, d, first in rows if not first]
  summary = {"steps": step, "steps_this_run": steps_this_run, "resumed_from": resumed_from,
             "stage_history": stage_history, "seconds": time.time() - t_start,
             "cpu_seconds": time.process_time() - c_start,
             "steps_per_s": len(warm) / sum(warm) if warm else None,
             "per_stage": {int(k): fps_summary(v) for k, v in sorted(fps_by_stage.items())},
             "final_stage": cstate.stage, "last": last}
  if main_process:
    with open(os.path.join(workdir, "train_summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
  return state, summary
