"""MemTrack training: 17-frame samples, SiamFC crops, logistic loss with IoU labels, and the loop.

Samples (``MemTrackSampler``; spec "Training"). Per sample of a batch, all choices from one numpy
Generator seeded by (seed, position), so batch ``position`` is a pure function of the sampler:

  1. a track with at least ``min_track_len`` frames and ``frames_per_sample`` labelled ones
     (uniform over tracks);
  2. ``frames_per_sample`` (17) distinct labelled frames f_0 < ... < f_16 (uniform, sorted);
  3. exemplars from f_0 .. f_15, searches from f_1 .. f_16 (16 time steps): exemplar t is the
     SiamFC exemplar window of the ground truth in f_t (side s_z = sqrt((w + p)(h + p)),
     p = (w + h)/2), search t the instance window of the ground truth in f_{t+1} (side
     s_x = s_z · S / E), both warped to E² / S² with the frame's mean colour outside the image;
  4. augmentation: every exemplar but the first is scaled by U(1 ± 0.10) and shifted by
     U(±8) px (in 127-px crop units, scaled to E), every search by U(1 ± 0.05) and U(±4) px
     (255-px units, scaled to S); the target's centre and size inside the search crop are recorded.

Labels (``make_labels``): response cell (i, j) looks at the target centred at
(E/2 + stride · j, E/2 + stride · i) in search-crop coordinates (the centre cell is the crop
centre S/2). A cell is positive when a box of the target's size there has IoU > 0.7 with the
box at the target's real position; weights 0.5 / #positives and 0.5 / #negatives per map.

Loss:  L = Σ_{t, b, i, j} w · CE(y, label) / (T · B) + 1e-4 · Σ_v ½ ||v||²   (all trainable v)
with CE the sigmoid cross-entropy. Adam, lr = lr_0 · 0.8^⌊step / decay_every⌋ (paper: 1e-4,
10k), gradient clipping at global norm 20.

Training (``train``, through the project's one loop ``rolo_jax.train.loop.train`` with a one-stage
curriculum and this task's ``HOOKS``): one jitted ``update(state, batch, key) -> (state, metrics)``
(state donated, dropout key ``fold_in(key, step)``); batch ``step`` is the step's data (prefetched
in a thread); orbax checkpoints (``rolo_jax.train.checkpoint.Checkpointer``) hold
{'params', 'batch_stats'} as the params item, the optimiser state, and step / seed / RNG key, so
running the same workdir again resumes exactly; a non-finite loss, gradient norm or any other
metric raises ``NonFiniteError`` before anything is saved for that step; tqdm bar and TensorBoard
(``<workdir>/tb``) plus ``<workdir>/train_log.jsonl``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, NamedTuple, Optional, Sequence as Seq, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.data import crops as crops_lib
from rolo_jax.data.sequence import Sequence
from rolo_jax.errors import DataError
from rolo_jax.models import memtrack
from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import optim
from rolo_jax.train import loop as loop_lib
from rolo_jax.train.loop import ConfigMismatchError, NonFiniteError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Sampling, augmentation, loss and optimiser settings (the spec's values by default)."""
  frames_per_sample: int = 17
  batch: int = 8
  min_track_len: int = 50
  exemplar_stretch: float = 0.10
  exemplar_shift: float = 8.0     # px in a 127-px exemplar (scaled to the config's size)
  search_stretch: float = 0.05
  search_shift: float = 4.0       # px in a 255-px search crop (scaled)
  pos_iou: float = 0.7
  weight_decay: float = 1e-4
  lr: float = 1e-4
  lr_decay: float = 0.8
  lr_decay_every: int = 10_000
  clip_norm: float = 20.0
  remat: bool = False

  @property
  def steps_per_sample(self) -> int:
    return self.frames_per_sample - 1


class MemTrackBatch(NamedTuple):
  exemplars: np.ndarray  # uint8 [T, B, E, E, 3]
  searches: np.ndarray   # uint8 [T, B, S, S, 3]
  target: np.ndarray     # float32 [T, B, 4] (cx, cy, w, h) of the target in search-crop pixels


class TrainState(NamedTuple):
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  step: jax.Array  # int32 scalar


# --------------------------------------------------------------------------- sampling


class MemTrackSampler:
  """Deterministic MemTrack batches from single-target sequences (module docstring).

  Args:
    sequences: training Sequences (synthetic ones or any reader's output).
    model_cfg: gives the crop sizes and context.
    task_cfg: sampling and augmentation settings.
    seed: batch(position) depends only on (seed, position, the sequences, the configs).
    cache_frames: decoded frames kept (lazily read datasets).
  """

  def __init__(self, sequences: Seq[Sequence], model_cfg: memtrack.MemTrackConfig,
               task_cfg: TaskConfig = TaskConfig(), *, seed: int = 0, cache_frames: int = 512):
    self.model_cfg, self.task_cfg, self.seed = model_cfg, task_cfg, int(seed)
    need = task_cfg.frames_per_sample
    self.tracks = []
    for s in sequences:
      labelled = np.flatnonzero(s.present)
      if len(s) >= task_cfg.min_track_len and len(labelled) >= need:
        self.tracks.append((s, labelled))
    if not self.tracks:
      raise DataError(None, f"no training track has >= {task_cfg.min_track_len} frames and "
                            f">= {need} labelled ones ({len(sequences)} sequences given)")
    self._cache: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}
    self._order: List[Tuple[int, int]] = []
    self._capacity = int(cache_frames)

  def _frame(self, ti: int, fi: int):
    k = (ti, fi)
    if k not in self._cache:
      img = np.asarray(self.tracks[ti][0].frames[fi])
      self._cache[k] = (img, img.reshape(-1, 3).mean(axis=0))
      self._order.append(k)
      if len(self._order) > self._capacity:
        self._cache.pop(self._order.pop(0), None)
    return self._cache[k]

  def batch(self, position: int) -> MemTrackBatch:
    """Batch number ``position`` (see the module docstring)."""
    mc, tc = self.model_cfg, self.task_cfg
    e_sz, s_sz = mc.exemplar_size, mc.instance_size
    n_t, n_b = tc.steps_per_sample, tc.batch
    rng = np.random.default_rng([self.seed, int(position)])
    ex = np.zeros((n_t, n_b, e_sz, e_sz, 3), np.uint8)
    se = np.zeros((n_t, n_b, s_sz, s_sz, 3), np.uint8)
    target = np.zeros((n_t, n_b, 4), np.float32)
    ex_shift = tc.exemplar_shift * e_sz / 127.0
    se_shift = tc.search_shift * s_sz / 255.0
    for b in range(n_b):
      ti = int(rng.integers(len(self.tracks)))
      seq, labelled = self.tracks[ti]
      idx = np.sort(rng.choice(labelled, tc.frames_per_sample, replace=False))
      aug = rng.uniform(-1.0, 1.0, (n_t, 2, 3))  # [t, exemplar/search, (scale, dx, dy)]
      for t in range(n_t):
        # Exemplar t from frame idx[t].
        box = seq.boxes[idx[t]]
        img, mean = self._frame(ti, int(idx[t]))
        z_win, _ = crops_lib.siamfc_window(box, mc.context, e_sz, s_sz)
        if t > 0:
          z_win = _augment_window(z_win, 1.0 + tc.exemplar_stretch * aug[t, 0, 0],
                                  ex_shift * aug[t, 0, 1:], e_sz)
        ex[t, b] = _to_uint8(crops_lib.crop_np(img, z_win, e_sz, fill=mean))
        # Search t from frame idx[t + 1].
        box = seq.boxes[idx[t + 1]]
        img, mean = self._frame(ti, int(idx[t + 1]))
        _, x_win = crops_lib.siamfc_window(box, mc.context, e_sz, s_sz)
        scale = 1.0 + tc.search_stretch * aug[t, 1, 0]
        shift = se_shift * aug[t, 1, 1:]
        x_win = _augment_window(x_win, scale, shift, s_sz)
        se[t, b] = _to_uint8(crops_lib.crop_np(img, x_win, s_sz, fill=mean))
        side = x_win[2] - x_win[0]
        cx = (box[0] + 0.5 * box[2] - x_win[0]) * s_sz / side
        cy = (box[1] + 0.5 * box[3] - x_win[1]) * s_sz / side
        target[t, b] = (cx, cy, box[2] * s_sz / side, box[3] * s_sz / side)
    return MemTrackBatch(ex, se, target)


def _augment_window(win: np.ndarray, scale: float, shift: np.ndarray, size: int) -> np.ndarray:
  """The square window scaled by ``scale`` about its centre, then moved so that the target moves
  by ``shift`` (dx, dy) pixels of the ``size``-pixel crop."""
  side = (win[2] - win[0]) * scale
  cx = 0.5 * (win[0] + win[2]) - shift[0] * side / size
  cy = 0.5 * (win[1] + win[3]) - shift[1] * side / size
  return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _to_uint8(a: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(a), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- loss


def cell_centres(cfg: memtrack.MemTrackConfig) -> np.ndarray:
  """[R] crop coordinate of the target that response cell k looks at: E/2 + stride · k."""
  return cfg.exemplar_size / 2.0 + cfg.total_stride * np.arange(cfg.response_side, dtype=np.float64)


def make_labels(target: jax.Array, cfg: memtrack.MemTrackConfig, pos_iou: float = 0.7):
  """IoU labels and balanced weights (module docstring).

  Args:
    target: [..., 4] (cx, cy, w, h) of the target in search-crop pixels.
  Returns:
    (labels [..., R, R] float32 in {0, 1}, weights [..., R, R]; each map's weights sum to 1 when it
    has positives and negatives).
  """
  pos = jnp.asarray(cell_centres(cfg), jnp.float32)
  cx, cy, w, h = (target[..., k, None, None] for k in range(4))
  dx = jnp.abs(pos[None, :] - cx)            # [..., 1, R]
  dy = jnp.abs(pos[:, None] - cy)            # [..., R, 1]
  inter = jnp.clip(w - dx, 0.0) * jnp.clip(h - dy, 0.0)
  iou = inter / jnp.maximum(2.0 * w * h - inter, 1e-12)
  labels = (iou > pos_iou).astype(jnp.float32)
  n_pos = jnp.sum(labels, axis=(-2, -1), keepdims=True)
  n_neg = labels.shape[-1] * labels.shape[-2] - n_pos
  weights = jnp.where(labels > 0, 0.5 / jnp.maximum(n_pos, 1.0), 0.5 / jnp.maximum(n_neg, 1.0))
  return labels, weights


def loss_fn(params, batch_stats, batch: MemTrackBatch, key, *, model_cfg, task_cfg):
  """(loss, (new batch_stats, metrics)) of one batch (module docstring)."""
  responses, aux = memtrack.apply(params, batch_stats, batch.exemplars, batch.searches, cfg=model_cfg,
                                  train=True, key=key, remat=task_cfg.remat)
  labels, weights = make_labels(batch.target.astype(jnp.float32), model_cfg, task_cfg.pos_iou)
  n_t, n_b = responses.shape[:2]
  ce = optax.sigmoid_binary_cross_entropy(responses, labels)
  data = jnp.sum(weights * ce) / (n_t * n_b)
  wd = optim.weight_decay_loss(params, task_cfg.weight_decay)
  # Peak of the response vs the target centre, in search-crop pixels.
  r = responses.shape[-1]
  flat = jnp.argmax(responses.reshape(n_t, n_b, -1), axis=-1)
  pos = jnp.asarray(cell_centres(model_cfg), jnp.float32)
  err = jnp.hypot(pos[flat % r] - batch.target[..., 0], pos[flat // r] - batch.target[..., 1])
  metrics = {"data_loss": data, "wd": wd, "peak_err": jnp.mean(err),
             "peak_acc": jnp.mean((err <= model_cfg.total_stride).astype(jnp.float32))}
  return data + wd, (aux["batch_stats"], metrics)


def make_optimizer(task_cfg: TaskConfig):
  """(optax optimiser, schedule): clip at global norm, Adam with lr_0 · decay^⌊step / every⌋."""
  schedule = optax.exponential_decay(task_cfg.lr, task_cfg.lr_decay_every, task_cfg.lr_decay,
                                     staircase=True)
  return optim.make_optimizer(schedule, clip_norm=task_cfg.clip_norm), schedule


@functools.lru_cache(maxsize=8)
def make_update(model_cfg: memtrack.MemTrackConfig, task_cfg: TaskConfig):
  """The jitted ``update(state, batch, key) -> (state, metrics)`` (state donated); one per
  (model_cfg, task_cfg), so runs in one process share the compilation."""
  tx, schedule = make_optimizer(task_cfg)

  def update(state: TrainState, batch: MemTrackBatch, key):
    k = jax.random.fold_in(key, state.step)
    grad_fn = jax.value_and_grad(
        functools.partial(loss_fn, model_cfg=model_cfg, task_cfg=task_cfg), has_aux=True)
    (loss, (stats, metrics)), grads = grad_fn(state.params, state.batch_stats, batch, k)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, lr=schedule(state.step),
                   **optim.norms(state.params, grads, updates))
    return TrainState(params, stats, opt_state, state.step + 1), metrics

  return jax.jit(update, donate_argnums=0)


def init_state(key, model_cfg: memtrack.MemTrackConfig, task_cfg: TaskConfig) -> TrainState:
  tx, _ = make_optimizer(task_cfg)
  params = memtrack.init(key, model_cfg)
  return TrainState(params, memtrack.init_batch_stats(model_cfg), tx.init(params),
                    jnp.zeros((), jnp.int32))


# --------------------------------------------------------------------------- loop


def run_meta(model_cfg, task_cfg, data: str) -> Dict[str, Any]:
  return {"model": "memtrack", "config": ckpt_lib.to_jsonable(model_cfg),
          "task": ckpt_lib.to_jsonable(task_cfg), "data": data}


def _nan_target(batch: MemTrackBatch) -> MemTrackBatch:
  """LoopConfig.nan_at_step: the target of one sample becomes NaN (a bad annotation)."""
  target = batch.target.copy()
  target[0, 0] = np.nan
  return batch._replace(target=target)


# The checkpoint's params tree holds the BatchNorm statistics beside the params.
HOOKS = loop_lib.TaskHooks(
    to_ckpt=lambda s: ({"params": s.params, "batch_stats": s.batch_stats}, s.opt_state),
    from_ckpt=lambda s, p, o, step: TrainState(p["params"], p["batch_stats"], o, step),
    inject_nan=_nan_target, finite=None, postfix=("data_loss", "peak_acc"))


def train(model_cfg: memtrack.MemTrackConfig, task_cfg: TaskConfig, sampler: MemTrackSampler, *,
          workdir: str, total_steps: int, seed: int = 0, data: str = "synthetic",
          checkpoint_every: int = 100, log_every: int = 10, progress: bool = True,
          stop_after: Optional[int] = None, nan_at_step: Optional[int] = None,
          max_to_keep: int = 2) -> Tuple[TrainState, Dict[str, Any]]:
  """Runs (or resumes) a MemTrack training run in ``workdir`` with rolo_jax.train.loop.

  Args:
    model_cfg / task_cfg: what is trained and how; a workdir with a checkpoint of other configs
      raises ConfigMismatchError.
    sampler: the batches (batch k is the data of step k: a resumed run continues the same stream).
    total_steps: the run ends after this many updates (resumed ones included).
    seed: parameter init and dropout key of a fresh run.
    data: a description of the data stored in the checkpoint meta.
    stop_after: end this process after this many updates (tests: interrupt at a checkpoint).
    nan_at_step: test hook: the target of one sample of that step (1-based) becomes NaN.
  Returns:
    (final TrainState, the loop's summary: steps, steps_this_run, resumed_from, seconds,
    cpu_seconds, steps_per_s, last metrics, ...).
  Raises:
    NonFiniteError on a NaN/Inf loss, gradient norm or metric (no checkpoint written for it).
  """
  update = make_update(model_cfg, task_cfg)
  lcfg = loop_lib.LoopConfig(workdir=workdir, total_steps=total_steps, checkpoint_every=checkpoint_every,
                             log_every=log_every, seed=seed, stop_after=stop_after,
                             nan_at_step=nan_at_step, progress=progress, max_to_keep=max_to_keep)
  hooks = dataclasses.replace(HOOKS, desc=f"memtrack {model_cfg.name}")
  return loop_lib.train(
      init_fn=lambda key: init_state(key, model_cfg, task_cfg),
      update_fn=lambda state, batch, key, p_pred: update(state, batch, key),
      batch_fn=lambda position, stage: sampler.batch(position),
      curriculum=loop_lib.fixed_stage(task_cfg.steps_per_sample, task_cfg.batch), config=lcfg,
      meta=run_meta(model_cfg, task_cfg, data), hooks=hooks)


# --------------------------------------------------------------------------- data sources


DATA_KINDS = ("synthetic", "otb", "got10k", "vid")


def training_sequences(kind: str = "synthetic", data_dir: Optional[str] = None, *,
                       num_synthetic: int = 200, synthetic_preset: str = "train",
                       exclude: Seq[str] = (), sequences_json: Optional[str] = None) -> List[Sequence]:
  """Training tracks by kind: 'synthetic' (the generator's train split, ``num_synthetic``
  sequences), or 'otb' / 'got10k' / 'vid' read from ``data_dir`` (ImageNet VID videos split into
  one Sequence per track; GOT-10k's train split). sequences_json: OTB's frame ranges (default:
  found beside ``data_dir``, `re3_data.real_sequences`)."""
  if kind == "synthetic":
    from rolo_jax.data import synthetic
    return list(synthetic.make_split("train", num_synthetic, synthetic.PRESETS[synthetic_preset]))
  if kind not in DATA_KINDS:
    raise ValueError(f"unknown data kind {kind!r}; choose from {', '.join(DATA_KINDS)}")
  if data_dir is None:
    raise ValueError(f"--data {kind} needs --data_dir")
  from rolo_jax.train.re3_data import real_sequences
  kw = {"split": "train"} if kind in ("got10k", "vid") else {}
  if kind == "otb" and sequences_json is not None:
    kw["sequences_json"] = sequences_json
  return real_sequences(kind, data_dir, exclude=exclude, **kw)


def load_variables(checkpoint: str):
  """(params, batch_stats, MemTrackConfig, meta) from a training workdir or a params folder."""
  params, meta = ckpt_lib.load_params(checkpoint)
  if meta.get("model", "memtrack") != "memtrack":
    raise DataError(checkpoint, f"checkpoint holds a {meta.get('model')!r} model, not 'memtrack'")
  try:
    cfg = memtrack.config_from_meta(meta.get("config"))
  except (TypeError, ValueError) as e:
    raise DataError(checkpoint, str(e)) from None
  if not (isinstance(params, dict) and "params" in params and "batch_stats" in params):
    raise DataError(checkpoint, "expected {'params', 'batch_stats'} in the params item")
  return params["params"], params["batch_stats"], cfg, meta


__all__ = ("TaskConfig", "MemTrackBatch", "TrainState", "MemTrackSampler", "make_labels", "cell_centres",
           "loss_fn", "make_update", "make_optimizer", "init_state", "train", "training_sequences",
           "load_variables", "ConfigMismatchError", "NonFiniteError", "DATA_KINDS")
