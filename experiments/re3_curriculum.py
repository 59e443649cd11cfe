"""Re3 trained from scratch with the unroll curriculum, then scored against static / KCF / CSRT.

    python -m experiments.re3_curriculum                         # tiny model, synthetic data
    python -m experiments.re3_curriculum --smoke --workdir /tmp/re3_smoke   # seconds; same code path
    python -m experiments.re3_curriculum --eval_only              # re-score the workdir's model
    python -m experiments.re3_curriculum --eval_otb ../shared/data/otb     # + real OTB sequences
    python -m experiments.re3_curriculum --eval_only --probe --baselines ""  # size/position response
    python -m experiments.re3_curriculum --data otb --data_dir DIR  # mix real tracks in (p = 0.5)
    python -m experiments.re3_curriculum --data_parallel --compute_dtype bfloat16   # all local devices
    # multi-host: on host i of N (the same command on each, process 0's address first):
    python -m experiments.re3_curriculum --data_parallel --coordinator_address HOST0:1234 \
        --num_processes N --process_id i --workdir SHARED_DIR

Runtime of the default command (2-core CPU): 9–13 min on session 4–21's Intel Xeon, 12.5 min on
session 22's slower AMD EPYC with that session's faster training step (WORKSPACE.md, "Re3").  Running it again with the same
--workdir resumes training from the last checkpoint (or only re-evaluates when training is done).

Writes to --workdir: checkpoints/ (orbax; `rolo_jax.train.checkpoint.load_params(workdir)` or
``make_tracker('re3', checkpoint=workdir)`` read it), tb/ (TensorBoard), train_summary.json,
metrics.json (AUC, precision@20 and fps per tracker, training frames/s per stage, runtimes),
success_precision.png, sequences.md / sequences.csv (per-sequence table), re3_<seq>.gif.

Deviations from the paper (which fine-tunes a pretrained CaffeNet on real video for ~200k
iterations at lr 1e-5): the tiny model starts from random weights, so the learning rate is 7e-4
(--lr) with a 50-step warm-up and a cosine decay to 0.3 of it; the curriculum stages keep the paper's doubling of T and halving of B but
with T*B = 64 frames per update (the paper's 128 is twice the CPU cost per step), and advance at
fixed step counts so the 15-minute budget is predictable (--stage_steps "" switches to the
automatic plateau rule with --patience / --min_delta). The model the run evaluates and writes for
tracking is an exponential moving average of the weights (--params_ema, decay 0.998; the raw
weights stay in the checkpoint for resuming, --eval_raw scores them): the paper has no such
average, but the last stage's batches of 2 leave the raw weights noisy (WORKSPACE.md, Re3,
"Session 15"). --pretrain_steps N first trains the conv encoder for N updates with SiamFC's
objective on the training tracks (rolo_jax.train.re3_pretrain), an offline stand-in for the
paper's ImageNet initialisation; it is off by default because four runs with it tracked no better
than the default on 60 validation videos (WORKSPACE.md, Re3, "Session 19").
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags

from experiments import _args

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", "./workdirs/re3_curriculum", "Run folder (checkpoints, logs, results).")
flags.DEFINE_string("config", "tiny", "Re3 model config name (rolo_jax.models.re3.CONFIGS).")
flags.DEFINE_enum("data", "synthetic", ["synthetic", "otb", "got10k", "vid", "lasot"],
                  "Training data: synthetic only, or synthetic mixed with a real dataset (p_real).")
flags.DEFINE_string("data_dir", None, "Dataset root for --data other than synthetic.")
flags.DEFINE_float("p_real", 0.5, "Probability of a real track per sample when real data is given.")
flags.DEFINE_integer("num_train_seqs", 400, "Synthetic training sequences in the pool.")
flags.DEFINE_string("synthetic_preset", "train", "Synthetic preset of the training pool.")
flags.DEFINE_integer("num_test_seqs", 20, "Held-out synthetic test sequences (make_split('test')).")
flags.DEFINE_integer("test_frames", 0, "Score only the first N frames of each test sequence (0: all).")
flags.DEFINE_integer("steps", 3000, "Total training updates.")
flags.DEFINE_string("stages", "2x32,4x16,8x8,16x4,32x2", "Curriculum stages UNROLLxBATCH, in order.")
flags.DEFINE_string("stage_steps", "300,450,600,750",
                    "Fixed stage lengths (steps; the last stage runs to --steps). Empty: plateau rule.")
flags.DEFINE_integer("patience", 100, "Plateau rule: steps without a relative improvement >= min_delta.")
flags.DEFINE_float("min_delta", 0.01, "Plateau rule: relative improvement of the smoothed loss that counts.")
flags.DEFINE_float("ema", 0.95, "Plateau rule: EMA factor of the smoothed loss.")
flags.DEFINE_integer("max_stage_steps", 0, "Plateau rule: cap on a stage's length (0: none).")
flags.DEFINE_string("p_pred", "paper", "'paper' (0.25, 0.5, 0.75 as T doubles) or a fixed probability "
                    "(the authors' TF code: 0.8).")
flags.DEFINE_float("lr", 7e-4, "Peak learning rate (paper: 1e-5 for a pretrained CaffeNet).")
flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant", "paper"], "Learning-rate schedule.")
flags.DEFINE_integer("warmup_steps", 50, "Linear warm-up steps of the cosine schedule.")
flags.DEFINE_float("lr_final_fraction", 0.3, "The cosine schedule ends at lr * this.")
flags.DEFINE_float("clip_norm", 0.0, "Clip gradients to this global norm (0: off).")
flags.DEFINE_float("params_ema", 0.998, "Decay of the exponential moving average of the weights that "
                   "the checkpoint's model (evaluation, tracking) uses; training is unchanged (0: off, "
                   "the raw weights).")
flags.DEFINE_integer("pretrain_steps", 0, "Updates of the conv encoder's Siamese pretraining on the training "
                     "tracks before the curriculum (rolo_jax.train.re3_pretrain; 400 take ~50 s on 2 cores; "
                     "0: none, the encoder starts from random weights). Off by default: it did not help "
                     "tracking on the validation videos (WORKSPACE.md, Re3, session 19).")
flags.DEFINE_integer("pretrain_batch", 32, "Exemplar/search pairs per pretraining update (with --pretrain_steps).")
flags.DEFINE_bool("eval_raw", False, "Evaluate the raw training weights even when the checkpoint holds "
                  "an average (--params_ema).")
flags.DEFINE_float("conv1_lr_scale", -1.0, "Learning-rate factor of conv1 in the curriculum (-1: 1 / "
                   "init_input_std of the config, which conv1's init is divided by; 1: none; the "
                   "pretraining always uses 1 / init_input_std).")
flags.DEFINE_integer("crop_size", 0, "Override the config's crop side in pixels (0: the config's; tiny: 83).")
flags.DEFINE_integer("fc6_units", 0, "Override the config's fc6 width (0: the config's; tiny: 256).")
flags.DEFINE_integer("lstm_hidden", 0, "Override the config's LSTM width (0: the config's; tiny: 128).")
flags.DEFINE_enum("norm", "", ["", "lrn", "group", "none"], "Override the config's normalisation after "
                  "pool1 and pool2 ('': the config's; tiny: group, paper and small: the paper's LRN).")
flags.DEFINE_float("centre_noise", 1.0 / 5.0, "Laplace scale of the jittered crop box's centre offset, "
                   "in box sizes (spec: 1/5).")
flags.DEFINE_float("size_noise", 1.0 / 15.0, "Laplace scale of the jittered crop box's size factor "
                   "(spec: 1/15; see the tuning record in WORKSPACE.md for 0.2).")
flags.DEFINE_bool("nudge_pred", True, "Nudge fed-back predictions toward the ground truth as the spec nudges "
                  "jittered boxes (the project's deviation, re3_task; --nonudge_pred: the spec's rule).")
flags.DEFINE_float("min_visible", 0.7, "The nudge's rule: the 2x crop window must hold this fraction of the "
                   "ground truth's area (spec: 0.7).")
flags.DEFINE_float("weight_decay", 0.0005, "L2 coefficient: wd * sum 1/2 ||v||^2 added to the loss.")
flags.DEFINE_integer("seed", 0, "Seed of init, data order and training noise.")
flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
flags.DEFINE_string("profile_dir", None, "Write a jax.profiler trace of steps 5-8 here.")
flags.DEFINE_bool("eval_only", False, "Skip training; evaluate the workdir's latest checkpoint.")
flags.DEFINE_bool("eval", True, "Evaluate after training (--noeval: train only).")
flags.DEFINE_bool("smoke", False, "A seconds-long configuration of the same code path (tests).")
flags.DEFINE_string("eval_otb", None, "Also score the trained model on the OTB sequences in this folder.")
flags.DEFINE_string("sequences_json", None, "otb100_sequences.json (the benchmark's frame ranges) for --data "
                    "otb and --eval_otb; found beside the data when omitted. A sequence whose boxes and "
                    "frames differ in number is an error.")
flags.DEFINE_string("baselines", "static,kcf,csrt", "Baseline trackers to compare with.")
flags.DEFINE_bool("gif", True, "Render an annotated GIF of one test sequence.")
flags.DEFINE_bool("probe", False, "Also measure how one step corrects a crop box of the wrong size or "
                  "position, and how the tracker scores when its fed-back centre or size is replaced "
                  "by the ground truth, on the test sequences (rolo_jax.eval.re3_probe); writes "
                  "probe.json / probe.md.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_integer("inject_nan_at", None, "Testing: make the loss of this step NaN.")
flags.DEFINE_integer("stop_after", None, "Testing: end the process after this many curriculum updates "
                     "(the pretraining's are not counted).")
flags.DEFINE_bool("data_parallel", False, "Split each batch over every device (all processes) with "
                  "jax.sharding; same results as one device to float rounding (rolo_jax.train.parallel).")
flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "Forward/backward compute dtype "
                  "(params and optimiser state stay float32). Part of the model config: a workdir resumes "
                  "only with the dtype it started with.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (the same on every "
                    "host); unset: a single process.")
flags.DEFINE_integer("num_processes", 1, "Multi-host: the number of processes (one per host).")
flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index in [0, num_processes).")


class _UsageError(Exception):
  """A flag value outside what it may be: one line on stderr, exit status 2 (no usage dump)."""


def main(argv):
  del argv
  from rolo_jax.errors import cli_main, usage_error
  try:
    # (the other experiments' handling: bad data, a refused workdir with the flags that match it,
    # an OSError naming its path, a non-finite loss: one line each; warnings as 'note:' lines)
    cli_main(run, mismatch_hint=resume_flags)()
  except _UsageError as e:
    usage_error(str(e))


# (checkpoint meta section, field) -> the flag that sets it, for the refusal's hint.
_FLAG_OF = {("optimizer", "lr"): "lr", ("optimizer", "lr_schedule"): "lr_schedule",
            ("optimizer", "warmup_steps"): "warmup_steps",
            ("optimizer", "lr_final_fraction"): "lr_final_fraction",
            ("optimizer", "clip_norm"): "clip_norm", ("optimizer", "ema_decay"): "params_ema",
            ("optimizer", "total_steps"): "steps", ("train", "seed"): "seed",
            ("optimizer", "encoder_pretrain_steps"): "pretrain_steps",
            # (the pretraining's own checkpoints, <workdir>/pretrain, record these)
            ("task", "steps"): "pretrain_steps", ("task", "batch"): "pretrain_batch",
            ("task", "centre_noise"): "centre_noise", ("task", "size_noise"): "size_noise",
            ("task", "min_visible"): "min_visible", ("task", "nudge_pred"): "nudge_pred",
            ("task", "weight_decay"): "weight_decay", ("config", "crop_size"): "crop_size",
            ("config", "fc6_units"): "fc6_units", ("config", "lstm_hidden"): "lstm_hidden",
            ("config", "norm"): "norm", ("curriculum", "patience"): "patience",
            ("curriculum", "min_delta"): "min_delta"}
# Flags whose "off" is 0 while the checkpoint stores nothing (ema_decay and encoder_pretrain_steps
# are written only when on) or None (clip_norm).
_OFF_AS_ZERO = ("params_ema", "clip_norm", "pretrain_steps")


def resume_flags(saved_values) -> str:
  """The flags that give a refused workdir's checkpoint settings back, e.g. '--params_ema 0'
  for a workdir trained before the weights' average existed; '' when a difference has no flag
  (`_args.resume_hint`)."""
  return _args.resume_hint(saved_values, _FLAG_OF, off_as_zero=_OFF_AS_ZERO)


SMOKE = dict(steps=4, stages="2x2,4x1", stage_steps="2", num_train_seqs=3, num_test_seqs=1, test_frames=30,
             checkpoint_every=2, warmup_steps=0, baselines="static", gif=False, pretrain_batch=2)
SMOKE_MODEL = dict(conv_channels=(8, 16, 16, 16, 16), skip_channels=(4, 4, 4), fc6_units=32,
                   lstm_hidden=16)


def _settings():
  s = {name: FLAGS[name].value for name in FLAGS if name in _OUR_FLAGS}
  if s["smoke"]:
    for k, v in SMOKE.items():
      if not FLAGS[k].present:
        s[k] = v
  return s


def _check_numbers(s) -> None:
  """Usage errors for numeric flags outside their meaning (checked before anything is written)."""
  import math

  def need(ok, flag, want):
    if not ok:
      raise _UsageError(f"--{flag} {s[flag]}: expected {want}")

  finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)
  if not s["eval_only"]:
    need(s["steps"] >= 1, "steps", "at least 1 update (--eval_only evaluates without training)")
    need(s["num_train_seqs"] >= 1 or s["data"] != "synthetic", "num_train_seqs",
         "at least 1 synthetic training sequence (or real tracks with --data)")
    need(s["num_train_seqs"] >= 0, "num_train_seqs", "a count >= 0")
    need(finite(s["lr"]) and s["lr"] > 0, "lr", "a finite learning rate > 0")
    need(finite(s["lr_final_fraction"]) and 0 <= s["lr_final_fraction"] <= 1, "lr_final_fraction",
         "a fraction in [0, 1]")
    need(s["warmup_steps"] >= 0, "warmup_steps", "a count >= 0")
    need(finite(s["clip_norm"]) and s["clip_norm"] >= 0, "clip_norm", "a norm >= 0 (0: off)")
    need(finite(s["params_ema"]) and 0 <= s["params_ema"] < 1, "params_ema", "a decay in [0, 1) (0: off)")
    need(finite(s["weight_decay"]) and s["weight_decay"] >= 0, "weight_decay", "a coefficient >= 0")
    need(finite(s["p_real"]) and 0 <= s["p_real"] <= 1, "p_real", "a probability in [0, 1]")
    need(s["checkpoint_every"] >= 1, "checkpoint_every", "at least 1 step")
    need(s["pretrain_steps"] >= 0, "pretrain_steps", "a count >= 0 (0: no pretraining)")
    need(s["pretrain_batch"] >= 1, "pretrain_batch", "at least 1 pair")
    need(s["patience"] >= 1, "patience", "at least 1 step")
    need(finite(s["min_delta"]) and s["min_delta"] >= 0, "min_delta", "a relative improvement >= 0")
    need(finite(s["ema"]) and 0 <= s["ema"] < 1, "ema", "a factor in [0, 1)")
    need(s["max_stage_steps"] >= 0, "max_stage_steps", "a count >= 0 (0: no cap)")
    need(finite(s["conv1_lr_scale"]) and (s["conv1_lr_scale"] >= 0 or s["conv1_lr_scale"] == -1),
         "conv1_lr_scale", "a factor >= 0, or -1 for 1 / init_input_std")
    from rolo_jax.data import synthetic
    need(s["synthetic_preset"] in synthetic.PRESETS, "synthetic_preset",
         f"one of {', '.join(sorted(synthetic.PRESETS))}")
  for flag in ("centre_noise", "size_noise"):   # part of the task config, also under --eval_only
    need(finite(s[flag]) and s[flag] >= 0, flag, "a Laplace scale >= 0")
  need(s["num_processes"] >= 1, "num_processes", "at least 1")
  need(0 <= s["process_id"] < s["num_processes"], "process_id",
       f"an index in [0, {s['num_processes']}) (--num_processes {s['num_processes']})")
  if s["eval"] or s["eval_only"]:
    need(s["num_test_seqs"] >= 1, "num_test_seqs", "at least 1 test sequence (--noeval: train only)")
    need(s["test_frames"] >= 0, "test_frames", "a frame count >= 0 (0: all)")
    from rolo_jax import trackers
    need(not trackers.unknown_names(s["baselines"]), "baselines", f"comma-separated tracker names from {', '.join(trackers.available())}")


def run():
  from rolo_jax.data import synthetic
  from rolo_jax.models import re3
  from rolo_jax.train import curriculum as cur
  from rolo_jax.train import re3_data, re3_task
  from rolo_jax.train.checkpoint import load_params
  from rolo_jax.trackers.re3 import checked_config

  s = _settings()
  _check_numbers(s)   # (pure Python: touches no device)
  if s["num_processes"] > 1 and not s["coordinator_address"]:
    raise _UsageError(f"--num_processes {s['num_processes']} needs --coordinator_address HOST:PORT")
  from rolo_jax.train import parallel
  # Before anything touches a device: jax.distributed must come first.
  parallel.maybe_initialize_distributed(s["coordinator_address"], s["num_processes"], s["process_id"])
  t_start = time.time()
  workdir = os.path.abspath(s["workdir"])
  from rolo_jax.errors import check_output_dir
  # a file there, or a folder it may not write in: now, not at the first checkpoint
  check_output_dir(workdir, "--workdir")
  if s["eval_otb"] and not os.path.isdir(s["eval_otb"]):
    # (it is read after training: a typo here used to cost the whole run)
    raise _UsageError(f"--eval_otb {s['eval_otb']}: no such folder")
  if s["data"] != "synthetic" and not s["eval_only"] and not s["data_dir"]:
    raise _UsageError(f"--data {s['data']} needs --data_dir")
  if s["sequences_json"] is not None:
    if not os.path.isfile(s["sequences_json"]):
      raise _UsageError(f"--sequences_json {s['sequences_json']}: no such file")
    if not s["eval_otb"] and (s["data"] != "otb" or s["eval_only"]):
      raise _UsageError("--sequences_json is read only with --data otb or --eval_otb")
  os.makedirs(workdir, exist_ok=True)
  if s["config"] not in re3.CONFIGS:
    raise _UsageError(f"--config {s['config']!r}: known configs {sorted(re3.CONFIGS)}")
  model_cfg = re3.CONFIGS[s["config"]]
  if s["smoke"]:
    model_cfg = model_cfg.replace(name=model_cfg.name + "-smoke", **SMOKE_MODEL)
  if s["compute_dtype"] != model_cfg.compute_dtype:
    model_cfg = model_cfg.replace(compute_dtype=s["compute_dtype"])
  try:
    stages = cur.parse_stages(s["stages"])
    stage_steps = tuple(int(x) for x in s["stage_steps"].split(",") if x.strip()) or None
    p_pred = s["p_pred"] if s["p_pred"] == "paper" else float(s["p_pred"])
    curriculum = cur.CurriculumConfig(
        stages=stages, patience=s["patience"], min_delta=s["min_delta"], ema=s["ema"],
        stage_steps=stage_steps, max_stage_steps=s["max_stage_steps"] or None, p_pred=p_pred)
  except ValueError as e:
    raise _UsageError(f"curriculum flags: {e}") from None
  for name in ("crop_size", "fc6_units", "lstm_hidden"):
    if s[name] < 0:
      raise _UsageError(f"--{name} {s[name]}: expected a positive size (0: the config's)")
  for name in ("crop_size", "fc6_units", "lstm_hidden", "norm"):   # 0 / '': the config's own
    if s[name]:
      try:
        model_cfg = model_cfg.replace(**{name: s[name]})
      except ValueError as e:
        raise _UsageError(f"--{name} {s[name]}: {e}") from None
  if not 0.0 <= s["min_visible"] <= 1.0:
    raise _UsageError(f"--min_visible {s['min_visible']}: expected a fraction in [0, 1]")
  task_cfg = re3_task.TaskConfig(weight_decay=s["weight_decay"], size_noise=s["size_noise"],
                                 centre_noise=s["centre_noise"], nudge_pred=s["nudge_pred"],
                                 min_visible=s["min_visible"])
  log = lambda msg: print(msg, flush=True)
  otb_seqs = None
  if s["eval_otb"] and (s["eval"] or s["eval_only"]):
    # Read before training, so that a folder the reader refuses costs seconds, not the run.
    otb_seqs = _read_otb(s["eval_otb"], s["sequences_json"])

  train_info = {}
  real_names = []
  if not s["eval_only"]:
    t0 = time.time()
    pool = re3_data.synthetic_pool(s["num_train_seqs"], s["synthetic_preset"])
    real = []
    if s["data"] != "synthetic":
      # (OTB: read strictly, with the frame ranges of the json found beside the data or named)
      otb_kw = {"sequences_json": s["sequences_json"]} if s["data"] == "otb" and s["sequences_json"] else {}
      real = re3_data.real_sequences(s["data"], s["data_dir"], **otb_kw)
      real_names = [q.name for q in real]
    sampler = re3_data.Re3Sampler(pool, real, seed=s["seed"], p_real=s["p_real"])
    log(f"data: {len(pool)} synthetic + {len(real)} real tracks, canvas {sampler.canvas_hw} "
        f"({time.time() - t0:.1f} s)")
    pretrain = None
    if s["pretrain_steps"]:
      from rolo_jax.train import re3_pretrain
      pretrain = re3_pretrain.PretrainConfig(steps=s["pretrain_steps"], batch=s["pretrain_batch"])
    t0 = time.time()
    _, summary = re3_task.train(
        workdir=workdir, model_cfg=model_cfg, curriculum=curriculum, sampler=sampler,
        total_steps=s["steps"], lr=s["lr"], lr_schedule=s["lr_schedule"],
        lr_final_fraction=s["lr_final_fraction"],
        warmup_steps=s["warmup_steps"], clip_norm=s["clip_norm"] or None, ema_decay=s["params_ema"],
        group_lr_scales=(None if s["conv1_lr_scale"] < 0 else {"conv1": s["conv1_lr_scale"]}), cfg=task_cfg,
        seed=s["seed"], checkpoint_every=s["checkpoint_every"], profile_dir=s["profile_dir"],
        progress=s["progress"], nan_at_step=s["inject_nan_at"], stop_after=s["stop_after"],
        parallel=parallel.DataParallel() if s["data_parallel"] else None, pretrain=pretrain, log=log,
        meta={"data": s["data"], "real_train_sequences": real_names,
              "synthetic_train": [s["synthetic_preset"], s["num_train_seqs"]]})
    pre = summary.get("pretrain")
    train_info = {"seconds": time.time() - t0, "steps": summary["steps"],
                  "pretrain": None if pre is None else {
                      "steps": pre["steps"], "seconds": pre["seconds"],
                      "pairs_per_s": pre["per_stage"].get(0, {}).get("frames_per_s")},
                  "stage_history": summary["stage_history"],
                  "frames_per_s_by_stage": {
                      f"{stages[k].unroll}x{stages[k].batch}": v["frames_per_s"]
                      for k, v in summary["per_stage"].items()}}
    for k, v in summary["per_stage"].items():
      log(f"stage {k} (T={stages[k].unroll}, B={stages[k].batch}): {v['steps']} steps, "
          f"{v['frames_per_s']:.0f} frames/s (first step incl. compile {v['first_step_s']:.1f} s)")
    if summary["steps"] < s["steps"]:
      log(f"stopped after {summary['steps']} of {s['steps']} steps (--stop_after); not evaluating")
      return
    if not s["eval"]:
      return
  if not parallel.is_main_process():   # multi-host: process 0 evaluates
    return

  params, meta = load_params(workdir, raw=s["eval_raw"])
  # Another model's checkpoint, an unknown config or params of another shape: one DataError
  # naming the workdir, as `rolo_jax.track` gives for the same folder.
  model_cfg = checked_config(s["workdir"], params, meta)
  real_names = meta.get("real_train_sequences", real_names)
  t0 = time.time()
  test = synthetic.make_split("test", s["num_test_seqs"])
  if s["test_frames"]:
    from rolo_jax.data.sequence import ArrayFrames, Sequence
    n = s["test_frames"]
    test = [Sequence(q.name, ArrayFrames(q.frames.array[:n]), q.boxes[:n], q.frame_numbers[:n], q.meta)
            for q in test]
  factories = {"re3": re3_task.re3_tracker_factory(params, model_cfg)}
  from rolo_jax import trackers
  for name in [b.strip() for b in s["baselines"].split(",") if b.strip()]:
    factories[name] = (lambda n: (lambda: trackers.make_tracker(n)))(name)
  weights = "the weights' moving average" if meta["params_item"] == "ema_params" else "the raw weights"
  log(f"evaluating on {len(test)} held-out synthetic test sequences (checkpoint step {meta['step']}, "
      f"{weights})")
  res = re3_task.evaluate_trackers(factories, test, log=log)
  eval_seconds = time.time() - t0
  metrics = {"checkpoint_step": meta["step"], "params_item": meta["params_item"],
             "config": meta.get("config_name", model_cfg.name),
             "test": {"split": "synthetic test", "num_sequences": len(test),
                      "trackers": res["summary"]},
             "train": train_info, "eval_seconds": eval_seconds}
  _write_reports(workdir, res, test, "synthetic test", gif=s["gif"])
  if otb_seqs is not None:
    held = [q for q in otb_seqs if q.name not in set(real_names)]
    if len(held) < len(otb_seqs):
      log(f"OTB: leaving out {len(otb_seqs) - len(held)} sequences the model was trained on")
    if held:
      log(f"evaluating on {len(held)} OTB sequences from {s['eval_otb']}")
      r_otb = re3_task.evaluate_trackers(factories, held, log=log)
      _write_reports(os.path.join(workdir, "otb_eval"), r_otb, held, "OTB", gif=False)
      metrics["otb"] = {"dir": os.path.abspath(s["eval_otb"]), "num_sequences": len(held),
                        "trackers": r_otb["summary"]}
  if s["probe"]:
    from rolo_jax.eval import re3_probe
    rows = re3_probe.box_response(params, model_cfg, test)
    table = re3_probe.format_rows(rows)
    oracle = re3_probe.oracle_runs(params, model_cfg, test)
    oracle_table = re3_probe.format_oracle_rows(oracle)
    with open(os.path.join(workdir, "probe.json"), "w") as f:
      json.dump({"box_response": rows, "oracle_runs": oracle}, f, indent=1)
    with open(os.path.join(workdir, "probe.md"), "w") as f:
      f.write(f"Re3 one-step box response, {rows[0]['frames']} frame pairs of {len(test)} test sequences "
              f"(rolo_jax/eval/re3_probe.py)\n\n{table}\n\n"
              f"The tracker with its fed-back box corrected by the ground truth after every step, "
              f"{len(test)} test sequences\n\n{oracle_table}\n")
    log(table)
    log(oracle_table)
    metrics["probe"] = {"box_response": rows, "oracle_runs": [
        {k: v for k, v in r.items() if k != "per_sequence"} for r in oracle]}
  metrics["total_seconds"] = time.time() - t_start
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
  re3_auc = res["summary"]["re3"]["auc"]
  best = max((v["auc"], k) for k, v in res["summary"].items() if k != "re3") if len(res["summary"]) > 1 else None
  log(f"re3 AUC {re3_auc:.4f}" + (f" vs best baseline {best[1]} {best[0]:.4f}" if best else "")
      + f"; total {metrics['total_seconds']:.0f} s; results in {workdir}")


def _read_otb(folder, sequences_json):
  """The OTB sequences of `folder`, read strictly (a DataError for a sequence whose boxes and
  frames differ in number) with the benchmark's frame ranges where a sequences json is known."""
  from rolo_jax.data.formats.otb import find_sequences_json, read_otb_dataset
  return read_otb_dataset(folder, sequences_json=sequences_json or find_sequences_json(folder))


def _write_reports(out_dir, res, sequences, title, gif=True):
  from rolo_jax.eval import plots, render
  os.makedirs(out_dir, exist_ok=True)
  plots.plot_success_precision(res["curves"], os.path.join(out_dir, "success_precision.png"),
                               title=title)
  plots.sequence_table(res["per_sequence"], os.path.join(out_dir, "sequences.md"),
                       os.path.join(out_dir, "sequences.csv"))
  if gif and sequences:
    seq = sequences[0]
    tracks = {k: res["boxes"][k][seq.name] for k in ("re3", "csrt", "kcf") if k in res["boxes"]}
    render.render_sequence(seq, tracks, os.path.join(out_dir, f"re3_{seq.name}.gif"), scale=2.0)


_OUR_FLAGS = ("workdir", "config", "data", "data_dir", "p_real", "num_train_seqs", "synthetic_preset",
              "num_test_seqs", "test_frames", "steps", "stages", "stage_steps", "patience", "min_delta", "ema",
              "max_stage_steps", "p_pred", "lr", "lr_schedule", "warmup_steps", "lr_final_fraction", "clip_norm", "params_ema", "eval_raw", "conv1_lr_scale",
              "pretrain_steps", "pretrain_batch",
              "weight_decay", "nudge_pred", "min_visible", "crop_size", "fc6_units", "lstm_hidden", "norm", "centre_noise", "size_noise", "seed", "checkpoint_every", "profile_dir", "eval_only", "eval", "smoke",
              "eval_otb", "sequences_json", "baselines", "gif", "probe", "progress", "inject_nan_at", "stop_after", "data_parallel",
              "compute_dtype", "coordinator_address", "num_processes", "process_id")

if __name__ == "__main__":
  app.run(main)
