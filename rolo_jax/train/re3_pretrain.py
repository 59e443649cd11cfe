"""Siamese pretraining of Re3's conv encoder on the training tracks, before the curriculum.

Why: the paper fine-tunes a CaffeNet pretrained on ImageNet; this project has no pretrained weights
(nothing can be downloaded) and trains the tiny model from random ones. Trained from scratch, the
tiny model localises well while its crop is centred on the target but drifts onto look-alike
distractors and background shapes it passes (WORKSPACE.md, Re3, sessions 4-17): its features are
never asked to tell the target from a similar object. This stage asks exactly that, with SiamFC's
objective (Bertinetto et al. 2016) on the same tracks the curriculum then uses: find the target of
one frame in a larger crop of another frame of the same track, among whatever else is there.
It is the project's offline stand-in for the paper's ImageNet initialisation, off by default
(`experiments.re3_curriculum --pretrain_steps N` turns it on): in session 19 four runs with 400
steps (two of this code, seeds 0 and 1, and two of a scratch prototype of it with its own sampling,
seeds 0 and 1; so each run without it is counted twice below) scored 0.454 ± 0.060 success AUC on
the default run's 20 test videos, 0.501 ± 0.026 on 60 and 0.509 ± 0.006 on 60 validation videos,
against 0.444 ± 0.032, 0.501 ± 0.016 and 0.514 ± 0.009 for the same seeds without it
(WORKSPACE.md, Re3, "Session 19"). The encoder keeps what it learns here
through the curriculum (its peak lands within one cell of the target for 71% of new pairs of the
training videos after the curriculum, 78% before, 44% for a random encoder), so the features
survive; the tracker just does not track better with them.

What the two branches see differs from what the tracker sees: conv2-conv5 pad SAME and tiny's
group norm takes its statistics over the whole map, so the exemplar's 4×4 conv5 map (all border
cells) and the same pixels' cells inside the 179-px search map are not the same numbers (the
session-19 review measured differences of the order of the features themselves), and neither is
exactly the 83-px crop's feature the curriculum trains on. SiamFC avoids this with an unpadded,
batch-normalised trunk; Re3's trunk is fixed by the spec. An exemplar whose conv5 is the middle of
a search-sized crop's map (both branches then alike; a scratch patch, one seed) tracked no better
either (WORKSPACE.md, Re3, "Session 19").

One sample (all choices from a numpy Generator seeded by (seed, position), so a batch is a pure
function of the sampler and `position`, as Re3Sampler's):
  1. source (real with the Re3Sampler's p_real), track, and a labelled frame t1, uniformly;
  2. a labelled frame t2 with |t2 - t1| <= max_gap, uniformly (t2 = t1 is allowed);
  3. exemplar: frame t1 cut at its box's 2x context window (Re3's crop, aspect ratio not kept,
     zeros outside the image) and warped to crop_size E;
  4. search: frame t2 cut at the same scale (E pixels per 2x window of the box at t2) over
     S = E + 2 · cells · stride pixels, the window's centre moved so that the target's centre lands
     at S/2 + (dx, dy), dx, dy ~ U(-cells · stride, cells · stride) crop pixels;
  5. with p_mirror both crops are flipped left-right (and dx with them).

The response: conv5 of the exemplar (h × w) correlated with conv5 of the search crop ((h + 2 cells)
× (w + 2 cells)), times a learned scale plus a learned bias: a (2 cells + 1)² map whose cell (i, j)
scores the target's centre at (E/2 + stride · j, E/2 + stride · i) in search-crop pixels (the
conv trunk's total stride is 16 for every Re3 config). Loss: the logistic loss per cell, positives
the cells within pos_radius strides of the true centre, positives and negatives each weighted to
half of a map (SiamFC's balanced loss). No weight decay (the curriculum's applies afterwards).
Adam with a cosine decay, global-norm clipping and Re3's conv1 learning-rate factor
(re3_task.default_lr_scales: conv1's init is divided by 64, so must its steps be).

The stage runs through rolo_jax.train.loop in ``<workdir>/pretrain`` (checkpoints, resume after
a kill, the non-finite guard, logs); `encoder_params` reads its result, which
`re3_task.init_train_state` puts into conv1-conv5 of a fresh Re3 model.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rolo_jax.data import crops as crops_lib
from rolo_jax.errors import DataError
from rolo_jax.models import re3
from rolo_jax.train import optim

PyTree = Any
CONVS = re3.CONV_LAYERS
SUBDIR = "pretrain"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
  """Settings of the encoder's Siamese pretraining (module docstring)."""
  steps: int = 400
  batch: int = 32
  cells: int = 3                 # the response is (2 cells + 1)²: target offsets up to ±cells strides
  max_gap: int = 60              # frames between exemplar and search
  pos_radius: float = 1.0        # positive cells: centre within this many strides of the target's
  context: float = 2.0           # Re3's crop context
  lr: float = 1e-3
  lr_final_fraction: float = 0.1
  clip_norm: float = 10.0
  response_scale: float = 1e-3   # the learned scale's start (conv5 products are large)


class Geometry(NamedTuple):
  exemplar: int          # E, the model's crop size
  search: int            # S = E + 2 · cells · stride
  stride: int            # crop pixels per response cell
  centres: np.ndarray    # [2 cells + 1] crop coordinate of the target centre each cell scores


def geometry(model_cfg: re3.Re3Config, cells: int) -> Geometry:
  """Crop sizes and response-cell positions for a Re3 config (module docstring)."""
  if cells < 1:
    raise ValueError(f"cells must be >= 1, got {cells}")
  if any(int(s) != 1 for s in model_cfg.conv_strides[1:]):
    raise ValueError(f"Siamese pretraining needs conv2-conv5 at stride 1, config {model_cfg.name!r} "
                     f"has strides {model_cfg.conv_strides}")
  stride = int(model_cfg.conv_strides[0]) * re3.POOL_STRIDE ** 2
  e = int(model_cfg.crop_size)
  s = e + 2 * cells * stride
  ne = re3.layer_shapes(model_cfg)["conv5"][0]
  ns = re3.layer_shapes(model_cfg.replace(crop_size=s))["conv5"][0]
  if ns - ne != 2 * cells:   # (VALID pools can drop a row: then the cells would not line up)
    raise ValueError(f"config {model_cfg.name!r}: a {s}-px search crop gives a {ns}-cell conv5 map, "
                     f"not the exemplar's {ne} + {2 * cells}")
  return Geometry(e, s, stride, e / 2.0 + stride * np.arange(2 * cells + 1, dtype=np.float64))


class PairBatch(NamedTuple):
  exemplars: np.ndarray  # uint8 [B, E, E, 3]
  searches: np.ndarray   # uint8 [B, S, S, 3]
  target: np.ndarray     # float32 [B, 2] the target's centre (x, y) in search-crop pixels


class PairSampler:
  """Deterministic exemplar/search pairs from a Re3Sampler's tracks (module docstring).

  Args:
    sampler: rolo_jax.train.re3_data.Re3Sampler (its tracks, p_real, p_mirror and frame cache).
    model_cfg: the Re3 config (crop size, strides).
    cfg: PretrainConfig.
    seed: batch(position) depends only on (seed, position, the tracks, the configs).
  """

  def __init__(self, sampler, model_cfg: re3.Re3Config, cfg: PretrainConfig = PretrainConfig(), *,
               seed: int = 0):
    self.geo = geometry(model_cfg, cfg.cells)
    self.cfg, self.seed = cfg, int(seed)
    self.p_real, self.p_mirror = sampler.p_real, sampler.p_mirror
    self.sources = sampler.sources
    self._labelled = [[tr.starts(1) for tr in src] for src in self.sources]
    self._eligible = [np.array([i for i, lab in enumerate(labs) if len(lab)], np.int64)
                      for labs in self._labelled]
    if not any(len(e) for e in self._eligible):
      raise DataError(None, "Siamese pretraining: no training track has a labelled frame")
    # The Re3Sampler's own lock: the two share its frame cache, and the pretraining loop's last
    # prefetched batch may still be cutting crops when the curriculum's first batch is drawn.
    self._lock = sampler._lock

  def batch(self, position: int) -> PairBatch:
    with self._lock:
      return self._batch(position)

  def _batch(self, position: int) -> PairBatch:
    g, c = self.geo, self.cfg
    rng = np.random.default_rng([self.seed, 0x5A17, int(position)])
    ex = np.zeros((c.batch, g.exemplar, g.exemplar, 3), np.uint8)
    se = np.zeros((c.batch, g.search, g.search, 3), np.uint8)
    target = np.zeros((c.batch, 2), np.float32)
    reach = c.cells * g.stride
    for b in range(c.batch):
      src = 1 if rng.random() < self.p_real else 0
      if not len(self._eligible[src]):
        src = 1 - src
      ti = int(self._eligible[src][rng.integers(len(self._eligible[src]))])
      tr, lab = self.sources[src][ti], self._labelled[src][ti]
      t1 = int(lab[rng.integers(len(lab))])
      near = lab[np.abs(lab - t1) <= c.max_gap]
      t2 = int(near[rng.integers(len(near))])
      off = rng.uniform(-reach, reach, 2)
      mirror = rng.random() < self.p_mirror
      z_win = crops_lib.context_window(tr.xyxy[t1], c.context)
      win = crops_lib.context_window(tr.xyxy[t2], c.context)
      sx, sy = (win[2] - win[0]) / g.exemplar, (win[3] - win[1]) / g.exemplar   # image px per crop px
      cx = 0.5 * (win[0] + win[2]) - off[0] * sx
      cy = 0.5 * (win[1] + win[3]) - off[1] * sy
      hw, hh = 0.5 * g.search * sx, 0.5 * g.search * sy
      x_win = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
      z = crops_lib.crop_np(tr.frame(t1), z_win, g.exemplar)
      x = crops_lib.crop_np(tr.frame(t2), x_win, g.search)
      if mirror:
        z, x, off = z[:, ::-1], x[:, ::-1], off * np.array([-1.0, 1.0])
      ex[b] = np.clip(np.rint(z), 0, 255)
      se[b] = np.clip(np.rint(x), 0, 255)
      target[b] = g.search / 2.0 + off
    return PairBatch(ex, se, target)


# --------------------------------------------------------------------------- model and loss


def init_params(key: jax.Array, model_cfg: re3.Re3Config, cfg: PretrainConfig = PretrainConfig()) -> PyTree:
  """{'conv1'..'conv5': re3.init's (the same init a fresh Re3 model gets), 'adjust': [scale, bias]}."""
  p = re3.init(key, model_cfg)
  out = {k: p[k] for k in CONVS}
  out["adjust"] = jnp.array([cfg.response_scale, 0.0], jnp.float32)
  return out


def xcorr(z: jax.Array, x: jax.Array) -> jax.Array:
  """Per-sample cross-correlation: z [B, h, w, C] over x [B, H, W, C] -> [B, H-h+1, W-w+1].

  Written as h·w shifted products rather than a convolution vmapped over the batch, which XLA:CPU
  runs as a grouped convolution (slow there)."""
  h, w = z.shape[1], z.shape[2]
  oh, ow = x.shape[1] - h + 1, x.shape[2] - w + 1
  out = jnp.zeros(x.shape[:1] + (oh, ow), jnp.float32)
  for u in range(h):
    for v in range(w):
      out = out + jnp.einsum("bijc,bc->bij", x[:, u:u + oh, v:v + ow].astype(jnp.float32),
                             z[:, u, v].astype(jnp.float32))
  return out


def responses(params: PyTree, exemplars, searches, model_cfg: re3.Re3Config) -> jax.Array:
  """[B, R, R] response maps of uint8 exemplar and search crops."""
  fz, _ = re3.conv_maps(params, re3.preprocess(exemplars), cfg=model_cfg)
  fx, _ = re3.conv_maps(params, re3.preprocess(searches), cfg=model_cfg)
  a = params["adjust"]
  return xcorr(fz, fx) * a[0] + a[1]


def labels(target: jax.Array, geo: Geometry, pos_radius: float):
  """(labels [B, R, R] in {0, 1}, weights [B, R, R]: each class half of a map's total weight)."""
  c = jnp.asarray(geo.centres, jnp.float32)
  dx = c[None, None, :] - target[:, 0, None, None]
  dy = c[None, :, None] - target[:, 1, None, None]
  lab = (jnp.hypot(dx, dy) <= pos_radius * geo.stride).astype(jnp.float32)
  n_pos = jnp.sum(lab, axis=(1, 2), keepdims=True)
  n_neg = lab.shape[1] * lab.shape[2] - n_pos
  w = jnp.where(lab > 0, 0.5 / jnp.maximum(n_pos, 1.0), 0.5 / jnp.maximum(n_neg, 1.0))
  return lab, w


def loss_fn(params: PyTree, batch, *, model_cfg: re3.Re3Config, cfg: PretrainConfig):
  """(loss, metrics): the balanced logistic loss, and 'peak_acc' (the map's maximum within one
  stride of the true centre) and 'peak_err' (its distance, crop pixels)."""
  ex, se, target = batch
  geo = geometry(model_cfg, cfg.cells)
  r = responses(params, ex, se, model_cfg)
  lab, w = labels(target, geo, cfg.pos_radius)
  loss = jnp.sum(w * optax.sigmoid_binary_cross_entropy(r, lab)) / r.shape[0]
  n = r.shape[-1]
  flat = jnp.argmax(r.reshape(r.shape[0], -1), axis=-1)
  c = jnp.asarray(geo.centres, jnp.float32)
  err = jnp.hypot(c[flat % n] - target[:, 0], c[flat // n] - target[:, 1])
  return loss, {"peak_err": jnp.mean(err), "peak_acc": jnp.mean((err <= geo.stride).astype(jnp.float32))}


@functools.lru_cache(maxsize=4)
def _optimizer_update(model_cfg: re3.Re3Config, cfg: PretrainConfig):
  from rolo_jax.train import re3_task
  schedule = optim.lr_schedule(cfg.lr, cfg.steps, kind="cosine", final_fraction=cfg.lr_final_fraction)
  optimizer = optim.make_optimizer(schedule, clip_norm=cfg.clip_norm,
                                   group_lr_scales=re3_task.default_lr_scales(model_cfg))

  def update(state, batch, key, p_pred):
    del key, p_pred
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch,
                                                                     model_cfg=model_cfg, cfg=cfg)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(aux, loss=loss, lr=jnp.asarray(schedule(state.step), jnp.float32),
                   **optim.norms(params, grads, updates))
    return type(state)(params, opt_state, state.step + 1), metrics

  return optimizer, schedule, jax.jit(update, donate_argnums=(0,))


def _nan_target(batch: PairBatch) -> PairBatch:
  return PairBatch(batch.exemplars, batch.searches, np.full_like(batch.target, np.nan))


def run_meta(model_cfg: re3.Re3Config, cfg: PretrainConfig, sampler,
             data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """The pretraining checkpoints' run description; 'data' (the tracks it samples) is compared on
  resume like the curriculum's, so an interrupted pretraining never continues on other tracks."""
  return {"model": "re3_encoder_pretrain", "config": model_cfg, "task": cfg,
          "data": dict(data or {}, num_tracks=list(sampler.num_tracks), p_real=sampler.p_real,
                       p_mirror=sampler.p_mirror)}


def train(*, workdir: str, model_cfg: re3.Re3Config, sampler, cfg: PretrainConfig = PretrainConfig(),
          seed: int = 0, checkpoint_every: int = 200, progress: bool = True,
          stop_after: Optional[int] = None, nan_at_step: Optional[int] = None,
          data: Optional[Dict[str, Any]] = None):
  """Runs (or resumes) the pretraining in `workdir` (a folder of its own: the Re3 run uses
  ``<run workdir>/pretrain``). `sampler` is a Re3Sampler; its tracks are sampled as PairSampler
  does with `seed`. `data`: a JSON-able description of the tracks (the Re3 run's data entries),
  stored and compared on resume with the sampler's track counts. Returns (final
  loop.TrainState, loop summary)."""
  from rolo_jax.train import loop

  optimizer, schedule, update = _optimizer_update(model_cfg, cfg)
  pairs = PairSampler(sampler, model_cfg, cfg, seed=seed)

  def init_fn(key):
    params = init_params(key, model_cfg, cfg)
    return loop.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

  lcfg = loop.LoopConfig(workdir=workdir, total_steps=cfg.steps, checkpoint_every=checkpoint_every,
                         seed=seed, progress=progress, stop_after=stop_after, nan_at_step=nan_at_step)
  hooks = loop.TaskHooks(inject_nan=_nan_target, postfix=("loss", "peak_acc"),
                         desc="encoder pretraining")
  return loop.train(init_fn=init_fn, update_fn=update, batch_fn=lambda pos, stage: pairs.batch(pos),
                    curriculum=loop.fixed_stage(1, cfg.batch), config=lcfg,
                    meta=run_meta(model_cfg, cfg, sampler, data),
                    lr_fn=schedule, hooks=hooks)


def check_finished(workdir: str, model_cfg: re3.Re3Config, cfg: PretrainConfig, sampler, *,
                   seed: int = 0, data: Optional[Dict[str, Any]] = None) -> None:
  """ConfigMismatchError when the pretraining checkpoint in `workdir` (if any) was run with other
  settings, seed or tracks than these; reads JSON only.

  A Re3 run that resumes from a curriculum checkpoint does not pretrain again, so `train` never
  compares its pretraining settings; the run's own checkpoints record only the steps. This makes
  a resume with another --pretrain_batch (or seed, or tracks) refused like an interrupted one."""
  from rolo_jax.train import loop

  loop.check_workdir(workdir, run_meta(model_cfg, cfg, sampler, data), seed)


def encoder_params(state) -> PyTree:
  """conv1-conv5 of a finished pretraining state (what a fresh Re3 model starts from)."""
  return {k: state.params[k] for k in CONVS}


def pretrain_dir(workdir: str) -> str:
  return os.path.join(workdir, SUBDIR)
