"""Speed benchmarks: a registry of named benchmark functions and a printed table.

Run (from the repository root)::

  python -m experiments.benchmark                        # every registered benchmark
  python -m experiments.benchmark --only synthetic --json /tmp/bench.json
  python -m experiments.benchmark --list
  python -m experiments.benchmark --only re3 --re3_configs tiny,paper --re3_targets 1,8
  python -m experiments.benchmark --only re3:paper --re3_targets 1   # NAME:CONFIG = one config
  python -m experiments.benchmark --only memtrack --memtrack_configs cpu,paper --memtrack_targets 1,8

Each benchmark is a function ``fn(args) -> list[record]`` registered with ``@register('name')``;
a record is a dict with at least ``name``, ``config`` and ``frames_per_s`` (the median over
``--repeats`` timed runs, after one untimed warm-up), plus ``frames_per_cpu_s`` (frames per CPU
second of this process: what the code costs when other jobs share the machine), ``seconds``
(median wall time of one run), ``frames`` (frames per run), ``repeats`` and
``all_frames_per_s``; extra keys are free.
Use `measure` and `make_record` to write a new one.  The 'synthetic' benchmark takes about 10 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from experiments import _args
from rolo_jax.errors import ArgumentParser, cli_main

Record = Dict[str, Any]
BENCHMARKS: Dict[str, Callable[[argparse.Namespace], List[Record]]] = {}


def register(name: str):
  """Decorator adding `fn(args) -> list[record]` to BENCHMARKS under `name`."""

  def deco(fn):
    if name in BENCHMARKS:
      raise ValueError(f"benchmark {name!r} registered twice")
    BENCHMARKS[name] = fn
    return fn

  return deco


class Timing(NamedTuple):
  wall: List[float]   # seconds per run (time.perf_counter)
  cpu: List[float]    # CPU seconds of this process per run (time.process_time, all threads)


def measure(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
  """Wall-clock and CPU seconds of `repeats` calls of fn() after `warmup` untimed calls."""
  for _ in range(warmup):
    fn()
  wall, cpu = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  return Timing(wall, cpu)


def make_record(name: str, config: str, frames: int, timing: Timing, **extra) -> Record:
  """A record from the timing of runs of `frames` frames each: median frames/s (wall clock) and
  median frames per CPU second (less sensitive to other processes on a shared machine)."""
  fps = [frames / t for t in timing.wall]
  return {"name": name, "config": config, "frames_per_s": statistics.median(fps),
          "frames_per_cpu_s": statistics.median(frames / max(t, 1e-9) for t in timing.cpu),
          "seconds": statistics.median(timing.wall), "frames": frames, "repeats": len(fps),
          "all_frames_per_s": fps, **extra}


# ----------------------------------------------------------------------------------------------
# Benchmarks.


@register("synthetic")
def bench_synthetic(args: argparse.Namespace) -> List[Record]:
  """Frames/s of the synthetic video generator (one process, one Python thread)."""
  from rolo_jax.data import synthetic

  out = []
  cases = [("train", 8, False), ("large", 3, False), ("train", 8, True)]
  for preset, n, multi in cases:
    cfg = synthetic.PRESETS[preset]
    fn = synthetic.make_multi_sequence if multi else synthetic.make_sequence
    seeds = list(range(n))
    timing = measure(lambda: [fn(s, cfg) for s in seeds], args.repeats)
    out.append(make_record(
        "synthetic", f"{preset}{'-multi' if multi else ''}", n * cfg.num_frames, timing,
        size=f"{cfg.height}x{cfg.width}", sequences=n,
        fn="make_multi_sequence" if multi else "make_sequence"))
  return out


_MACHINE: Dict[str, float] = {}


def machine_peaks(dtype: str = "float32") -> Dict[str, float]:
  """The machine's measured peaks, timed in this run (cached per process):

  * ``matmul_flops_per_s``: a jitted 2048x2048 @ 2048x2048 matmul of `dtype` (median of 5);
  * ``memory_bytes_per_s``: bytes read per second, the faster of two jitted 256 MiB float32 reads:
    a sum over the array, and a matrix-vector product with it as an [8192, 8192] matrix (the
    access pattern of a one-target fc6). On the 2-core CPU the product reads ~10% faster than the
    sum (30.9 vs 27.8 GB/s), so the sum alone would understate the peak and overstate every
    fraction of it.
  """
  key = f"{dtype}"
  if key in _MACHINE:
    return _MACHINE[key]
  import jax
  import jax.numpy as jnp

  n = 2048
  a = jnp.ones((n, n), dtype)
  mm = jax.jit(lambda x: x @ x)
  t = measure(lambda: mm(a).block_until_ready(), 5)
  flops = 2 * n ** 3 / statistics.median(t.wall)
  big = jnp.ones((64 * 1024 * 1024,), jnp.float32)
  sm = jax.jit(jnp.sum)
  t = measure(lambda: sm(big).block_until_ready(), 5)
  bw_sum = big.size * 4 / statistics.median(t.wall)
  mat = big.reshape(8192, 8192)
  vec = jnp.ones((8192,), jnp.float32)
  mv = jax.jit(lambda m, v: m @ v)
  t = measure(lambda: mv(mat, vec).block_until_ready(), 5)
  bw_mv = mat.size * 4 / statistics.median(t.wall)
  del big, mat
  _MACHINE[key] = {"matmul_flops_per_s": flops, "memory_bytes_per_s": max(bw_sum, bw_mv),
                   "memory_bytes_per_s_sum": bw_sum, "memory_bytes_per_s_matvec": bw_mv}
  return _MACHINE[key]


@register("re3")
def bench_re3(args: argparse.Namespace) -> List[Record]:
  """Re3 online tracking frames/s (one jitted step per frame for K targets), per config and K.

  Besides frames/s: compile time of the first steps, XLA's FLOPs and bytes accessed per step
  (cost analysis of the compiled step), and the step's physical limit on this machine: the larger
  of FLOPs / measured matmul rate and bytes / measured memory bandwidth (`machine_peaks`);
  `peak_fraction` is the achieved FLOP rate over the matmul rate, `limit_fraction` the achieved
  frames/s over the frames/s that limit allows.
  """
  import jax
  import numpy as np

  from rolo_jax.models import re3
  from rolo_jax.trackers import re3 as re3_tracker

  configs = [c for c in (args.re3_configs or "tiny,small,paper").split(",") if c]
  targets = [int(k) for k in (args.re3_targets or "1,8").split(",") if k]
  height, width, frames = 480, 640, args.re3_frames
  peaks = machine_peaks("float32")
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (frames + 1, height, width, 3), dtype=np.uint8)
  out = []
  for name in configs:
    cfg = re3.CONFIGS[name]
    params = jax.device_get(re3.init(jax.random.PRNGKey(0), cfg))
    n_params = re3.count_params(params)
    for k in targets:
      # K boxes spread over the frame; reset_every=32 as in tracking, so resets are included.
      xs = np.linspace(40, width - 140, k)
      boxes = np.stack([xs, np.full(k, 150.0), np.full(k, 80.0), np.full(k, 120.0)], 1)
      core = re3_tracker.Re3Core(params, cfg)
      t0 = time.perf_counter()
      state = core.init_state(video[0], boxes)
      for t in (1, 2):  # compiles the plain step (and warms up)
        state, b = core.step(state, video[t])
      np.asarray(b)
      compile_s = time.perf_counter() - t0
      flops = bytes_accessed = None
      try:
        lowered = re3_tracker._track_step.lower(
            core.params_for(k), state.lstm, state.saved, state.frame, jax.numpy.asarray(video[1]),
            state.boxes, cfg=cfg, context=core.context, reset=False)
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops", float("nan")))
        bytes_accessed = float(cost.get("bytes accessed", float("nan")))
      except Exception:  # cost analysis is best effort across jax versions / backends
        pass

      def run():
        st = core.init_state(video[0], boxes)
        for t in range(1, frames + 1):
          st, bb = core.step(st, video[t])
        np.asarray(bb)  # wait for the device

      timing = measure(run, args.repeats, warmup=1)
      rec = make_record("re3", name, frames, timing, tracker="re3", targets=k, compile_s=compile_s,
                        flops_per_frame=flops, bytes_per_frame=bytes_accessed,
                        device=jax.devices()[0].device_kind, frame_size=f"{height}x{width}",
                        params=n_params)
      fps = rec["frames_per_s"]
      rec["target_frames_per_s"] = fps * k
      rec["weight_bytes"] = 4 * n_params
      if flops:
        rec["peak_fraction"] = flops * fps / peaks["matmul_flops_per_s"]
        compute_s = flops / peaks["matmul_flops_per_s"]
        # Bytes: XLA's count when available, else at least the float32 weights once per step.
        mem_s = max(bytes_accessed or 0.0, 4.0 * n_params) / peaks["memory_bytes_per_s"]
        rec["bound_compute_s"] = compute_s
        rec["bound_memory_s"] = mem_s
        rec["limit_frames_per_s"] = 1.0 / max(compute_s, mem_s)
        rec["limit_fraction"] = fps / rec["limit_frames_per_s"]
        # The same bounds added instead of maxed: a step whose convolutions (compute-bound) must
        # finish before fc6 (memory-bound) can start cannot overlap the two, so for one target
        # this is the limit a sequential step can reach.
        rec["serial_limit_frames_per_s"] = 1.0 / (compute_s + mem_s)
        rec["serial_limit_fraction"] = fps / rec["serial_limit_frames_per_s"]
      out.append(rec)
    del params
  out.append({"name": "machine", "config": "float32", "frames_per_s": float("nan"),
              "tracker": "-", **peaks, "device": jax.devices()[0].device_kind})
  return out


@register("re3_train")
def bench_re3_train(args: argparse.Namespace) -> List[Record]:
  """Re3 training frames/s per curriculum stage, and whether the input pipeline keeps up.

  For each stage (T unrolls x B tracks, `--re3_train_stages`) of `--re3_train_config`:
    step: the jitted update (rolo_jax.train.re3_task.make_update) on one batch kept on the device,
      median of --repeats runs of `--re3_train_steps` updates -> `frames_per_s` (T*B / step time),
      `compile_s` (first call);
    pipeline: Re3Sampler.batch on the default synthetic pool (what the training loop's prefetch
      thread runs) -> `pipeline_frames_per_s`;
  `pipeline_ratio` = pipeline frames/s over step frames/s: the loop prefetches batches in a
  thread, so the pipeline is not the bottleneck while the ratio is above 1.
  """
  import jax
  import numpy as np

  from rolo_jax.models import re3
  from rolo_jax.train import curriculum as cur
  from rolo_jax.train import optim, re3_data, re3_task

  cfg = re3.CONFIGS[args.re3_train_config]
  stages = cur.parse_stages(args.re3_train_stages)
  pool = re3_data.synthetic_pool(args.re3_train_pool, "train")
  sampler = re3_data.Re3Sampler(pool, seed=0)
  optimizer = optim.make_optimizer(optim.lr_schedule(1e-4, 1000, kind="constant"))
  update = re3_task.make_update(cfg, optimizer)
  key = jax.random.PRNGKey(0)
  out = []
  for stage in stages:
    frames = stage.unroll * stage.batch
    state = re3_task.init_train_state(key, cfg, optimizer)
    batch = jax.device_put(tuple(sampler.batch(0, stage.unroll, stage.batch)))
    p = np.float32(0.5)
    t0 = time.perf_counter()
    state, m = update(state, batch, key, p)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run_steps():
      st = holder["state"]
      for _ in range(args.re3_train_steps):
        st, mm = update(st, batch, key, p)
      jax.block_until_ready(mm["loss"])
      holder["state"] = st

    timing = measure(run_steps, args.repeats, warmup=1)
    pos = iter(range(1, 10**9))

    def run_pipeline():
      for _ in range(args.re3_train_steps):
        sampler.batch(next(pos), stage.unroll, stage.batch)

    pipe = measure(run_pipeline, args.repeats, warmup=0)
    rec = make_record("re3_train", f"{cfg.name} {stage.unroll}x{stage.batch}",
                      frames * args.re3_train_steps, timing, tracker="re3", targets=stage.batch,
                      unroll=stage.unroll, compile_s=compile_s, device=jax.devices()[0].device_kind)
    rec["pipeline_frames_per_s"] = statistics.median(frames * args.re3_train_steps / t for t in pipe.wall)
    rec["pipeline_ratio"] = rec["pipeline_frames_per_s"] / rec["frames_per_s"]
    out.append(rec)
  return out


@register("memtrack")
def bench_memtrack(args: argparse.Namespace) -> List[Record]:
  """MemTrack online tracking frames/s (K targets × 3 scales in one jitted step), per config and K."""
  import jax
  import numpy as np

  from rolo_jax.models import memtrack
  from rolo_jax.trackers import memtrack as memtrack_tracker

  configs = [c for c in (args.memtrack_configs or "cpu,paper").split(",") if c]
  targets = [int(k) for k in (args.memtrack_targets or "1,8").split(",") if k]
  height, width, frames = 480, 640, args.memtrack_frames
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (frames + 1, height, width, 3), dtype=np.uint8)
  out = []
  for name in configs:
    cfg = memtrack.CONFIGS[name]
    params = jax.device_get(memtrack.init(jax.random.PRNGKey(0), cfg))
    stats = jax.device_get(memtrack.init_batch_stats(cfg))
    for k in targets:
      xs = np.linspace(40, width - 140, k)
      boxes = np.stack([xs, np.full(k, 150.0), np.full(k, 80.0), np.full(k, 120.0)], 1)
      core = memtrack_tracker.MemTrackCore(params, stats, cfg)
      t0 = time.perf_counter()
      state = core.init_state(video[0], boxes)
      for t in (1, 2):  # compiles the step (and warms up)
        state, b = core.step(state, video[t])
      compile_s = time.perf_counter() - t0

      def run():
        st = core.init_state(video[0], boxes)
        for t in range(1, frames + 1):
          st, bb = core.step(st, video[t])
        np.asarray(bb)

      timing = measure(run, args.repeats, warmup=1)
      rec = make_record("memtrack", name, frames, timing, targets=k, compile_s=compile_s,
                        target_frames_per_s=None, device=jax.devices()[0].device_kind,
                        frame_size=f"{height}x{width}", params=memtrack.count_params(params))
      rec["target_frames_per_s"] = rec["frames_per_s"] * k
      out.append(rec)
    del params
  return out


@register("rolo")
def bench_rolo(args: argparse.Namespace) -> List[Record]:
  """ROLO online frames/s: the tracking LSTM alone (one jitted window of N frames per frame, zero
  state, as the paper's 'LSTM fps') per config and N, and the detectors (one frame per call)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from rolo_jax.models import rolo, yolo
  from rolo_jax.train import yolo_task

  out = []
  frames = args.rolo_frames
  for name in [c for c in (args.rolo_configs or "tiny,tiny_heatmap,paper").split(",") if c]:
    base = rolo.CONFIGS[name]
    windows = [int(n) for n in (args.rolo_windows or "").split(",") if n] or [base.window]
    for n in windows:
      cfg = base.replace(window=n)
      params = rolo.init(jax.random.PRNGKey(0), cfg)
      fn = jax.jit(lambda p, x, cfg=cfg: rolo.apply(p, x, cfg=cfg)[0])
      x = jnp.zeros((1, n, cfg.input_dim), jnp.float32)
      t0 = time.perf_counter()
      fn(params, x).block_until_ready()
      compile_s = time.perf_counter() - t0

      def run():
        y = None
        for _ in range(frames):
          y = fn(params, x)
        y.block_until_ready()

      out.append(make_record("rolo_lstm", f"{name} N={n}", frames, measure(run, args.repeats),
                             compile_s=compile_s, params=rolo.count_params(params),
                             device=jax.devices()[0].device_kind))
  for name in [c for c in (args.rolo_detectors or "tiny_fast").split(",") if c]:
    cfg = yolo_task.detector_config(name)
    det = yolo_task.Detector(yolo.init(jax.random.PRNGKey(0), cfg), cfg, chunk=1)
    video = np.random.default_rng(0).integers(0, 256, (frames, 128, 160, 3), dtype=np.uint8)
    det(video[:1])

    def run_det():
      for f in video:
        det.raw(f[None])

    out.append(make_record("rolo_detector", name, frames, measure(run_det, args.repeats),
                           size="128x160", device=jax.devices()[0].device_kind))
  return out


# ----------------------------------------------------------------------------------------------
# Command line.


def environment() -> Dict[str, Any]:
  env = {"python": platform.python_version(), "platform": platform.platform(),
         "cpu_count": os.cpu_count()}
  for mod in ("numpy", "cv2", "jax"):
    m = sys.modules.get(mod)
    if m is not None:
      env[mod] = getattr(m, "__version__", "?")
  try:
    env["load_average_1min"] = os.getloadavg()[0]
  except OSError:
    pass
  return env


def format_table(records: List[Record]) -> str:
  cols = ["name", "config", "frames_per_s", "frames_per_cpu_s", "seconds", "frames", "repeats"]
  # Printed extras (all keys go to --json): the informative ones present in these records.
  shown = ["targets", "size", "compile_s", "flops_per_frame", "peak_fraction", "limit_frames_per_s",
           "limit_fraction", "serial_limit_fraction", "pipeline_frames_per_s", "pipeline_ratio", "matmul_flops_per_s",
           "memory_bytes_per_s"]
  header = cols + [k for k in shown if any(k in r for r in records)]

  def cell(v):
    if isinstance(v, float):
      return f"{v:.1f}" if abs(v) >= 10 else f"{v:.4g}"
    return str(v)

  rows = [[cell(r.get(c, "")) for c in header] for r in records]
  widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
  line = lambda vals: "  ".join(v.rjust(w) if i >= 2 else v.ljust(w)
                                for i, (v, w) in enumerate(zip(vals, widths)))
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# Per benchmark with configs: the flag that lists them (set by `--only NAME:CONFIG` entries) and the
# rolo_jax.models module whose CONFIGS names them.
CONFIG_FLAGS = {"re3": ("re3_configs", "re3"), "memtrack": ("memtrack_configs", "memtrack"),
                "rolo": ("rolo_configs", "rolo"), "re3_train": ("re3_train_config", "re3")}


def check_configs(names: List[str], args: argparse.Namespace) -> None:
  """Raises ValueError naming the flag, the unknown config and the known ones, before any run."""
  import importlib

  for name in names:
    if name not in CONFIG_FLAGS:
      continue
    flag, module = CONFIG_FLAGS[name]
    known = importlib.import_module(f"rolo_jax.models.{module}").CONFIGS
    bad = [c for c in str(getattr(args, flag)).split(",") if c and c not in known]
    if bad:
      raise ValueError(f"--{flag} (or --only {name}:CONFIG): unknown config(s) {', '.join(bad)}; "
                       f"known: {', '.join(known)}")


def check_lists(names: List[str], args: argparse.Namespace) -> None:
  """Raises ValueError for what the argparse types cannot see: an empty list where the benchmark
  needs one, re3_train's stages, an unknown detector config."""
  # '' means the default (1,8); a list of only commas is a mistake
  for flag in ("re3_targets", "memtrack_targets", "rolo_windows"):
    text = getattr(args, flag)
    if text.strip() and not [k for k in text.split(",") if k.strip()]:
      raise ValueError(f"--{flag} {text!r}: no numbers (leave it out for the default)")
  if "re3_train" in names:
    from rolo_jax.train import curriculum as cur

    try:
      stages = cur.parse_stages(args.re3_train_stages)
    except ValueError as e:
      raise ValueError(f"--re3_train_stages: {e}") from None
    if any(s.unroll < 1 or s.batch < 1 for s in stages):
      raise ValueError(f"--re3_train_stages {args.re3_train_stages!r}: unroll and batch must be >= 1")
  if "rolo" in names:
    from rolo_jax.train import yolo_task

    bad = [d for d in args.rolo_detectors.split(",") if d and d not in yolo_task.DETECTOR_CONFIGS]
    if bad:
      raise ValueError(f"--rolo_detectors: unknown detector config(s) {', '.join(bad)}; "
                       f"known: {', '.join(yolo_task.DETECTOR_CONFIGS)}")


def apply_only(only: str, args: argparse.Namespace) -> List[str]:
  """The benchmarks `--only` names, in order; ``NAME:CONFIG`` entries also set NAME's config flag.

  ``--only re3:paper`` = ``--only re3 --re3_configs paper``; ``re3:tiny,re3:paper`` lists both;
  ``re3_train:small`` sets --re3_train_config (one config). Raises ValueError on an unknown name, a
  config for a benchmark without configs, or two configs for re3_train.
  """
  names: List[str] = []
  configs: Dict[str, List[str]] = {}
  entries = [e.strip() for e in only.split(",")]
  if only.strip() and not any(entries):   # '' means all; ',' or ' , ' is a slip, not "run everything"
    raise ValueError(f"--only {only!r}: no benchmark names (leave it out to run all)")
  for entry in entries:
    if not entry:
      continue
    name, sep, config = entry.partition(":")
    if sep and not config:
      raise ValueError(f"--only {entry}: no config after the ':' (NAME:CONFIG, or NAME for its default)")
    if entries.count(entry) > 1:
      raise ValueError(f"--only: {entry} named twice")
    if name not in BENCHMARKS:
      raise ValueError(f"unknown benchmark {name!r} in --only; known: {', '.join(sorted(BENCHMARKS))}")
    if name not in names:
      names.append(name)
    if config:
      if name not in CONFIG_FLAGS:
        raise ValueError(f"--only {entry}: benchmark {name!r} has no configs")
      configs.setdefault(name, []).append(config)
  for name, cs in configs.items():
    if name == "re3_train" and len(cs) > 1:
      raise ValueError(f"--only: re3_train takes one config, got {', '.join(cs)}")
    setattr(args, CONFIG_FLAGS[name][0], ",".join(cs))
  return names or list(BENCHMARKS)


@cli_main
def main(argv: Optional[List[str]] = None) -> List[Record]:
  p = ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--only", default="", help="comma-separated benchmark names (default: all); "
                 "NAME:CONFIG runs that benchmark on that config only (e.g. re3:paper)")
  p.add_argument("--repeats", type=_args.whole(1), default=5, help="timed runs per case (median reported)")
  p.add_argument("--json", default=None, help="write the records (and environment) here")
  p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
  p.add_argument("--re3_configs", default="tiny,small,paper", help="re3: comma-separated configs")
  p.add_argument("--re3_targets", type=_args.whole_list(1), default="1,8", help="re3: comma-separated numbers of targets")
  p.add_argument("--re3_frames", type=_args.whole(1), default=40, help="re3: frames per timed run")
  p.add_argument("--memtrack_configs", default="cpu,paper", help="memtrack: comma-separated configs")
  p.add_argument("--memtrack_targets", type=_args.whole_list(1), default="1,8", help="memtrack: comma-separated numbers of targets")
  p.add_argument("--re3_train_config", default="tiny", help="re3_train: models.re3 config")
  p.add_argument("--re3_train_stages", default="2x32,4x16,8x8,16x4,32x2",
                 help="re3_train: curriculum stages UNROLLxBATCH")
  p.add_argument("--re3_train_steps", type=_args.whole(1), default=5, help="re3_train: updates per timed run")
  p.add_argument("--re3_train_pool", type=_args.whole(1), default=400, help="re3_train: synthetic training videos")
  p.add_argument("--memtrack_frames", type=_args.whole(1), default=20, help="memtrack: frames per timed run")
  p.add_argument("--rolo_configs", default="tiny,tiny_heatmap,paper", help="rolo: models.rolo configs")
  p.add_argument("--rolo_windows", type=_args.whole_list(1), default="", help="rolo: comma-separated N (default: each config's)")
  p.add_argument("--rolo_detectors", default="tiny_fast", help="rolo: yolo_task.DETECTOR_CONFIGS names")
  p.add_argument("--rolo_frames", type=_args.whole(1), default=50, help="rolo: frames per timed run")
  args = p.parse_args(argv)
  if args.list:
    for name, fn in BENCHMARKS.items():
      print(f"{name}: {(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}")
    return []
  try:
    names = apply_only(args.only, args)
    check_configs(names, args)
    check_lists(names, args)
  except ValueError as e:
    p.error(str(e))
  _args.check_paths(p, out_files=[("--json", args.json)])   # before the timing, not after it
  records: List[Record] = []
  for n in names:
    records.extend(BENCHMARKS[n](args))
  print(format_table(records))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"environment": environment(), "records": records}, f, indent=2)
  return records


if __name__ == "__main__":
  main()
