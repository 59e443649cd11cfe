"""The experiments' numeric flags: values outside their meaning are argparse usage errors (exit 2,
one 'error: argument --X: expected ...' line) before anything runs."""
import subprocess
import sys

import pytest

from experiments import _args
from rolo_jax.data.paths import PROJECT_ROOT


def _assert_usage_error(module, argv, message):
  """Runs `python -m experiments.<module> *argv` and asserts a usage error: exit 2, `message` in
  stderr, no traceback."""
  r = subprocess.run([sys.executable, "-m", f"experiments.{module}", *argv],
                     cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("convert,text,value", [
    (_args.whole(1), "3", 3), (_args.whole(0), "0", 0), (_args.POSITIVE, "1e-3", 1e-3),
    (_args.NONNEGATIVE, "0", 0.0), (_args.FRACTION, "1", 1.0),
    (_args.real(0.0, 1.0, low_open=True, high_open=True), "0.5", 0.5),
])
def test_accepted(convert, text, value):
  assert convert(text) == value


@pytest.mark.parametrize("convert,text,message", [
    (_args.whole(1), "0", "expected a whole number >= 1, got 0"),
    (_args.whole(0), "-2", "expected a whole number >= 0, got -2"),
    (_args.whole(1), "2.5", "expected a whole number >= 1, got '2.5'"),
    (_args.POSITIVE, "0", "expected a finite number > 0, got 0"),
    (_args.POSITIVE, "nan", "expected a finite number > 0, got nan"),
    (_args.NONNEGATIVE, "-1e-9", "expected a finite number >= 0, got -1e-9"),
    (_args.FRACTION, "1.5", "expected a finite number in [0, 1], got 1.5"),
    (_args.FRACTION, "inf", "expected a finite number in [0, 1], got inf"),
    (_args.real(0.0, 1.0, low_open=True, high_open=True), "1", "expected a finite number in (0, 1), got 1"),
])
def test_refused(convert, text, message):
  with pytest.raises(Exception) as e:
    convert(text)
  assert str(e.value) == message


@pytest.mark.parametrize("module,flag,message", [
    ("memtrack", "--batch=0", "argument --batch: expected a whole number >= 1, got 0"),
    ("memtrack", "--lr=nan", "argument --lr: expected a finite number > 0, got nan"),
    ("rolo", "--num_test=0", "argument --num_test: expected a whole number >= 1, got 0"),
    ("rolo_heatmap", "--iou_min=2", "argument --iou_min: expected a finite number in [0, 1], got 2"),
    ("yolo_pretrain", "--steps=0", "argument --steps: expected a whole number >= 1, got 0"),
    ("association_lstm", "--num_test_seqs=0", "argument --num_test_seqs: expected a whole number >= 1"),
])
def test_experiment_flags_exit_2_before_running(tmp_path, module, flag, message):
  _assert_usage_error(module, [flag, "--workdir", str(tmp_path / "w")], message)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("module,argv,message", [
    ("memtrack", ["--data", "nope"], "--data 'nope': choose from synthetic, otb, got10k, vid"),
    ("memtrack", ["--data", "otb"], "--data otb needs --data_dir"),
    ("memtrack", ["--baselines", "static,nope"], "--baselines: unknown tracker(s) nope; available:"),
    ("memtrack_ablation", ["--config", "tiny"], "--config 'tiny' has no template-only twin 'tiny_nomem'"),
])
def test_memtrack_choices_are_usage_errors(tmp_path, module, argv, message):
  _assert_usage_error(module, [*argv, "--workdir", str(tmp_path / "w")], message)
  assert not (tmp_path / "w").exists()


def test_another_models_checkpoint_is_named(tmp_path):
  import numpy as np
  from rolo_jax.errors import DataError
  from rolo_jax.mot import association_tracker as at
  from rolo_jax.train import checkpoint, yolo_task

  checkpoint.save_params(str(tmp_path / "re3"), {"w": np.zeros(2, np.float32)}, {"model": "re3"})
  with pytest.raises(DataError, match=r"re3: holds a 're3' checkpoint, not a YOLO detector"):
    yolo_task.load_detector(str(tmp_path / "re3"))
  with pytest.raises(DataError, match=r"re3: not an Association LSTM checkpoint \(meta: model='re3'\)"):
    at.from_checkpoint(str(tmp_path / "re3"))


@pytest.mark.parametrize("convert,text", [(_args.whole_list(1), "1,8,64"), (_args.whole_list(1), ""),
                                          (_args.whole_list(0), "0, 3")])
def test_whole_lists_accepted(convert, text):
  assert convert(text) == text


@pytest.mark.parametrize("text,message", [("1,x", "got 'x' in '1,x'"), ("4,0", "got 0 in '4,0'")])
def test_whole_lists_refused(text, message):
  with pytest.raises(Exception) as e:
    _args.whole_list(1)(text)
  assert message in str(e.value)


# Paths the run would only trip over at its end (an output folder that is a file, an output file
# that is a folder, a missing folder to evaluate on) and flags a mode ignores: usage errors before
# any training, nothing written. {f} is an existing file, {d} an existing folder.
@pytest.mark.parametrize("module,argv,message", [
    ("memtrack", ["--workdir", "{f}"], "--workdir: this is a file"),
    ("memtrack", ["--eval_otb", "{d}/nope"], "--eval_otb {d}/nope: no such folder"),
    ("memtrack_ablation", ["--out", "{f}/x"], "--out: {f} is a file, so no folder can be made below it"),
    ("memtrack_ablation", ["--nomem_workdir", "{f}"], "--nomem_workdir: this is a file"),
    ("yolo_pretrain", ["--workdir", "{f}"], "--workdir: this is a file"),
    ("association_lstm", ["--workdir", "{f}"], "--workdir: this is a file"),
    ("association_lstm", ["--frame_size", "640x480"], "--frame_size: only used with --track_det"),
    ("association_lstm", ["--track_det", "{f}", "--checkpoint", "{d}", "--out", "{d}"],
     "--out: this is a folder; expected the path of a file"),
    ("association_lstm", ["--track_det", "{f}"], "--track_det needs --checkpoint"),
    ("mot_tud", ["--data", "{d}", "--out_dir", "{f}"], "--out_dir: this is a file"),
    ("mot_tud", ["--data", "{d}", "--checkpoint", "{f}"], "--checkpoint: this is a file"),
    ("re3_curriculum", ["--workdir", "{f}"], "--workdir: this is a file"),
    ("re3_curriculum", ["--workdir", "{d}/w", "--eval_otb", "{d}/nope"], "--eval_otb {d}/nope: no such folder"),
    ("re3_curriculum", ["--workdir", "{d}/w", "--data", "otb"], "--data otb needs --data_dir"),
    ("otb_baselines", ["--data", "{d}", "--out", "{f}"], "--out: this is a file"),
    ("otb_baselines", ["--data", "{d}", "--out", "{d}/o", "--trackers", ""], "--trackers '': no tracker names"),
])
def test_paths_and_ignored_flags_are_usage_errors(tmp_path, module, argv, message):
  f = tmp_path / "afile"
  f.write_text("x")
  sub = lambda a: a.format(f=f, d=tmp_path)
  _assert_usage_error(module, [sub(a) for a in argv], sub(message))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _unwritable_folder(tmp_path):
  """(folder, reason): a folder this process cannot create files in, and the system's words for why
  (EACCES, EROFS, ...): a 0o555 folder, or /sys when running as root (root writes into 0o555
  folders; /sys refuses it new files). Skips where neither refuses."""
  import tempfile

  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  for cand in (str(ro), "/sys"):
    try:
      with tempfile.TemporaryFile(dir=cand):
        pass
    except OSError as e:
      return cand, e.strerror
  pytest.skip("no folder refuses writes here (root, and /sys takes new files)")


def test_unwritable_output_paths_are_data_errors_before_any_work(tmp_path):
  from rolo_jax import errors

  ro, why = _unwritable_folder(tmp_path)
  for check, path in [(errors.check_output_dir, ro), (errors.check_output_dir, f"{ro}/new/run"),
                      (errors.check_output_file, f"{ro}/results.json"),
                      (errors.check_output_file, f"{ro}/new/results.json")]:
    with pytest.raises(errors.DataError) as e:
      check(path, "--out")
    assert str(e.value) == f"{path}: --out: cannot write in {ro} ({why}); expected a folder " \
                           f"this user may write in"
  ok = tmp_path / "ok"
  errors.check_output_dir(ok / "run", "--out")        # missing below a writable folder: fine
  errors.check_output_file(ok / "r.json", "--out")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]   # the write test leaves nothing


def test_read_only_output_file_is_refused(tmp_path):
  import os

  from rolo_jax import errors

  f = tmp_path / "r.json"
  f.write_text("{}")
  f.chmod(0o444)
  if os.access(f, os.W_OK):
    pytest.skip("this user (root) may write read-only files")
  with pytest.raises(errors.DataError, match="this file is read-only"):
    errors.check_output_file(f, "--json")


# A read-only output folder used to be found when the first result was written: after the whole
# tracking run (otb_baselines), at the first checkpoint (re3, memtrack), or after the detector (rolo).
@pytest.mark.parametrize("module,argv,flag", [
    ("otb_baselines", ["--data", "{t}", "--out", "{ro}/o"], "--out"),
    ("re3_curriculum", ["--workdir", "{ro}/w"], "--workdir"),
    ("memtrack", ["--workdir", "{ro}/w"], "--workdir"),
    ("rolo", ["--smoke", "--workdir", "{ro}/w"], "--workdir"),
    ("benchmark", ["--only", "synthetic", "--json", "{ro}/b.json"], "--json"),
])
def test_unwritable_output_folder_stops_the_experiment_at_once(tmp_path, module, argv, flag):
  ro, why = _unwritable_folder(tmp_path)
  sub = lambda a: a.format(ro=ro, t=tmp_path)
  _assert_usage_error(module, [sub(a) for a in argv], f"{flag}: cannot write in {ro} ({why})")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]


def test_a_refused_workdir_names_the_flags_that_match_it(capsys):
  # cli_main ends a ConfigMismatchError's line with the experiment's hint (memtrack's flag table;
  # re3_curriculum's is tested in re3_train_test), and adds nothing where a field has no flag.
  from experiments import memtrack
  from rolo_jax.errors import ConfigMismatchError, cli_main

  def refused(saved_values):
    def main():
      raise ConfigMismatchError("w: its checkpoint was trained with a different 'task'", saved_values)
    return main

  cases = (({("task", "lr"): 0.001, ("task", "batch"): 8}, "; the flags that match it: --lr 0.001 --batch 8"),
           ({("train", "seed"): 0}, "; the flags that match it: --seed 0"),
           ({("task", "lr"): 0.001, ("config", "hidden"): 16}, None),   # no flag sets one field alone
           ({("task", "frames_per_sample"): 17}, None),
           ({("task", "lr"): ConfigMismatchError.ABSENT}, None))
  for saved, hint in cases:
    with pytest.raises(SystemExit) as e:
      cli_main(refused(saved), mismatch_hint=memtrack.resume_flags)()
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: w: its checkpoint was trained with a different 'task'"), err
    assert err.rstrip().endswith(hint) if hint else "flags that match" not in err, err
  # Without a hint function the line is the message alone.
  with pytest.raises(SystemExit):
    cli_main(refused({("task", "lr"): 0.001}))()
  assert capsys.readouterr().err == "error: w: its checkpoint was trained with a different 'task'\n"


@pytest.mark.slow
def test_memtrack_cli_refusal_ends_with_the_matching_flag(tmp_path):
  common = ["--config", "tiny", "--steps", "1", "--num_synthetic", "2", "--n_test", "1",
            "--baselines", "static", "--no_picture", "--no_progress", "--workdir", str(tmp_path / "w")]
  run = lambda *extra: subprocess.run([sys.executable, "-m", "experiments.memtrack", *common, *extra],
                                      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  first = run()
  assert first.returncode == 0, first.stderr[-3000:]
  r = run("--lr", "0.01")
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert r.stderr.rstrip().endswith("(lr: 0.001 -> 0.01); use another --workdir, or the checkpoint's "
                                    "settings to resume it; the flags that match it: --lr 0.001"), r.stderr


# The hints of the ROLO experiments (rolo_heatmap shares rolo's flags and table), the detector's and
# the Association LSTM's: (saved values of a refusal, the hint; None: no hint, a field has no flag).
_ABSENT = "<absent>"   # ConfigMismatchError.ABSENT


@pytest.mark.parametrize("module,saved,hint", [
    ("rolo", {("task", "lr"): 0.001, ("task", "seed"): 3}, "--lr 0.001 --seed 3"),
    ("rolo", {("task", "steps"): 3000, ("task", "warmup_steps"): 50}, "--steps 3000"),   # warm-up follows
    ("rolo", {("task", "steps"): 100, ("task", "warmup_steps"): 50}, None),   # not --steps 100's warm-up
    ("rolo", {("task", "coord_loss"): "iou", ("task", "weight_decay"): 0.0}, "--coord_loss iou --weight_decay 0.0"),
    ("rolo", {("config", "carry_state"): False, ("config", "hold_detection"): True},
     "--no-carry_state --hold_detection"),
    ("rolo", {("config", "hidden_from"): "output_layer", ("config", "hidden"): 256, ("config", "window"): 3},
     "--hidden_from output_layer --hidden 256 --window 3"),
    ("rolo", {("config", "hidden_from"): "faithful", ("config", "hidden"): 0}, None),   # no --hidden 0
    ("rolo", {("data", "iou_min"): 0.3, ("data", "history"): 5, ("data", "conf_thresh"): 0.0},
     "--iou_min 0.3 --history 5 --conf_thresh 0.0"),
    ("rolo", {("task", "feature_scale"): 0.0}, None),   # 'protocol' is a number per protocol
    ("rolo", {("data", "detector"): "0123abcd", ("data", "conf_thresh"): 0.05}, None),
    ("rolo", {("config", "name"): "tiny", ("config", "window"): 6}, None),
    ("rolo", {("data", "feature_dim"): _ABSENT}, None),
    ("yolo_pretrain", {("task", "lr"): 0.002, ("task", "num_sequences"): 2500}, "--lr 0.002 --num_sequences 2500"),
    ("yolo_pretrain", {("task", "steps"): 6, ("task", "batch"): 4, ("task", "seed"): 1},
     "--steps 6 --batch 4 --seed 1"),
    ("yolo_pretrain", {("task", "steps"): 6, ("task", "checkpoint_every"): 3}, None),   # --config smoke's
    ("yolo_pretrain", {("config", "layers"): [["conv", 3, 16]]}, None),
    ("association_lstm", {("task", "data.seed"): 0}, "--seed 0"),
    ("association_lstm", {("task", "data.num_train_seqs"): 200, ("task", "data.seed"): 1},
     "--num_train_seqs 200 --seed 1"),
    ("association_lstm", {("task", "data.seed"): 0, ("task", "data.lr"): 0.002}, None),
    ("association_lstm", {("task", "data"): {"seed": 0}}, None),   # a nested entry not split
    ("association_lstm", {("task", "detector"): "simulated", ("task", "data.features"): "pixels"}, None),
])
def test_rolo_yolo_association_refusals_name_their_flags(capsys, module, saved, hint):
  import importlib

  from rolo_jax.errors import ConfigMismatchError, cli_main

  exp = importlib.import_module(f"experiments.{module}")
  assert exp.resume_flags(saved) == (hint or "")

  def main():
    raise ConfigMismatchError("w: its checkpoint was trained with a different 'task'", saved)

  with pytest.raises(SystemExit) as e:
    cli_main(main, mismatch_hint=exp.resume_flags)()
  err = capsys.readouterr().err
  assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
  assert err.rstrip().endswith(f"; the flags that match it: {hint}") if hint else "flags that match" not in err, err


def test_rolo_hint_parses_back_to_the_saved_settings():
  # The hint, given to experiments.rolo's parser, reproduces the saved values (booleans as
  # argparse's --no-NAME, choices by name, numbers as argparse reads them).
  import argparse

  from experiments import rolo as rolo_exp

  saved = {("task", "lr"): 0.0007, ("task", "steps"): 40, ("task", "warmup_steps"): 4,
           ("task", "coord_loss"): "l1", ("task", "weight_decay"): 1e-05, ("task", "seed"): 2,
           ("config", "carry_state"): False, ("config", "hold_detection"): False,
           ("config", "hidden"): 64, ("config", "window"): 6, ("data", "iou_min"): 0.3, ("data", "history"): 5}
  p = argparse.ArgumentParser()
  rolo_exp.add_common_args(p, workdir="w", config="tiny_residual", steps=3000)
  args = p.parse_args(rolo_exp.resume_flags(saved).split())
  cfg = rolo_exp.rolo_config(args)
  got = {("task", "lr"): args.lr, ("task", "steps"): args.steps,
         ("task", "warmup_steps"): rolo_exp.warmup_steps(args.steps), ("task", "coord_loss"): args.coord_loss,
         ("task", "weight_decay"): args.weight_decay, ("task", "seed"): args.seed,
         ("config", "carry_state"): cfg.carry_state,
         ("config", "hold_detection"): cfg.hold_detection, ("config", "hidden"): cfg.hidden,
         ("config", "window"): cfg.window, ("data", "iou_min"): args.iou_min, ("data", "history"): args.history}
  assert got == saved


def test_association_refusal_splits_the_task_data_into_fields():
  from experiments import association_lstm as exp

  meta = {"model": "association", "task": {"loss": {"gaps": [1]}, "detector": "simulated",
                                           "data": {"seed": 1, "num_train_seqs": 3, "gaps": (1,)}}}
  saved = {("task", "data"): {"seed": 0, "num_train_seqs": 3, "gaps": [1]}, ("task", "detector"): "yolo",
           ("train", "seed"): 0}
  assert exp.field_differences(saved, meta) == {("task", "data.seed"): 0, ("task", "detector"): "yolo",
                                                ("train", "seed"): 0}
  saved = {("task", "data"): {"seed": 0, "num_train_seqs": 3}}   # a field the checkpoint lacks
  assert exp.field_differences(saved, meta) == {("task", "data.seed"): 0, ("task", "data.gaps"): _ABSENT}


def _refused_then_resumed(main, argv, changed, hint, capsys):
  """main(argv + changed) is refused with a line ending with `hint`; main(argv + changed + hint)
  runs."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    main(argv + changed)
  err = capsys.readouterr().err
  assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
  assert err.rstrip().endswith(f"the checkpoint's settings to resume it; the flags that match it: {hint}"), err
  assert main(argv + changed + hint.split()) == 0


@pytest.mark.slow
def test_detector_and_rolo_refusals_resume_with_their_hint(tmp_path, capsys):
  # Smoke runs through main (cli_main's line and exit status): the detector, then ROLO on it with
  # a boolean flag whose off form is argparse's --no-NAME.
  from experiments import rolo as rolo_exp
  from experiments import yolo_pretrain

  det = str(tmp_path / "det")
  argv = ["--config", "smoke", "--workdir", det, "--eval_sequences", "1", "--no_progress"]
  assert yolo_pretrain.main(argv) == 0
  _refused_then_resumed(yolo_pretrain.main, argv, ["--lr", "0.01"], "--lr 0.002", capsys)
  argv = ["--smoke", "--protocol", "third_labels", "--detector", det, "--workdir", str(tmp_path / "rolo"),
          "--gifs", "0", "--no_progress"]
  assert rolo_exp.main(argv + ["--no-carry_state"]) == 0
  _refused_then_resumed(rolo_exp.main, argv, [], "--no-carry_state", capsys)


@pytest.mark.slow
def test_association_refusal_resumes_with_its_hint(tmp_path, capsys):
  from experiments import association_lstm as exp

  argv = ["--config", "smoke", "--workdir", str(tmp_path / "w"), "--no_progress"]
  assert exp.main(argv) == 0
  _refused_then_resumed(exp.main, argv, ["--seed", "1"], "--seed 0", capsys)


def test_rolo_heatmap_refusal_has_rolos_hint(monkeypatch, capsys):
  from experiments import rolo_heatmap
  from rolo_jax.errors import ConfigMismatchError

  def refused(args, log=print):
    raise ConfigMismatchError("w: its checkpoint was trained with a different 'config'",
                              {("config", "carry_state"): True})

  monkeypatch.setattr(rolo_heatmap, "run", refused)
  with pytest.raises(SystemExit) as e:
    rolo_heatmap.main(["--smoke"])
  assert e.value.code == 2
  assert capsys.readouterr().err.rstrip().endswith("; the flags that match it: --carry_state")


@pytest.mark.parametrize("smoke,saved,hint", [
    (True, {("task", "steps"): 3000, ("task", "batch"): 32}, ""),   # --smoke caps them at 6 and 4
    (True, {("task", "steps"): 6, ("task", "lr"): 0.001}, "--steps 6 --lr 0.001"),
    (False, {("task", "steps"): 3000, ("task", "batch"): 32}, "--steps 3000 --batch 32"),
])
def test_rolo_hint_under_smoke_only_within_its_caps(monkeypatch, smoke, saved, hint):
  import argparse

  from experiments import rolo as rolo_exp
  from rolo_jax.errors import ConfigMismatchError
  from rolo_jax.models import rolo
  from rolo_jax.train import rolo_task

  def refused(*a, **k):
    raise ConfigMismatchError("w: its checkpoint was trained with a different 'task'", saved)

  monkeypatch.setattr(rolo_exp, "feature_scale_of", lambda args, prep: 1.0)
  monkeypatch.setattr(rolo_exp, "data_meta", lambda args, prep: {})
  monkeypatch.setattr(rolo_task, "window_data", lambda *a: argparse.Namespace(index=[]))
  monkeypatch.setattr(rolo_task, "train_rolo", refused)
  args = argparse.Namespace(steps=6 if smoke else 3000, batch=4 if smoke else 32, lr=0.01, seed=0,
                            coord_loss="iou", weight_decay=0.0, smoke=smoke, no_progress=True)
  prep = rolo_exp.Prepared(train_caches=[], label_masks=[])
  with pytest.raises(ConfigMismatchError) as e:
    rolo_exp.train_and_track(args, prep, rolo.CONFIGS["tiny_residual"], "w", log=lambda *a: None)
  assert rolo_exp.resume_flags(e.value.saved_values) == hint


def test_a_refusal_names_every_differing_section_so_its_hint_resumes_at_once():
  """A run that differs in two sections (ROLO's --window is 'config', --lr is 'task') and the seed
  gets one refusal for all three: raising at the first section gave '--window 6', which the next
  run refused again for the learning rate."""
  from experiments import rolo
  from rolo_jax.errors import ConfigMismatchError
  from rolo_jax.train import loop

  saved = {"model": "rolo", "config": {"window": 6, "name": "x"}, "task": {"lr": 0.001, "steps": 6}}
  now = {"model": "rolo", "config": {"window": 3, "name": "x"}, "task": {"lr": 0.01, "steps": 6}}
  with pytest.raises(ConfigMismatchError) as e:
    loop._check_meta(saved, now, "W", saved_seed=0, seed=2)
  assert str(e.value) == ("W: its checkpoint was trained with a different 'config', 'task' and seed "
                          "than this run (window: 6 -> 3; lr: 0.001 -> 0.01; seed: 0 -> 2); use "
                          "another --workdir, or the checkpoint's settings to resume it")
  assert rolo.resume_flags(e.value.saved_values) == "--window 6 --lr 0.001 --seed 0"
  loop._check_meta(saved, saved, "W", saved_seed=0, seed=0)   # the same settings: no refusal


def test_a_flag_that_sets_two_recorded_fields_is_named_once():
  flag_of = {("task", "data.seed"): "seed", ("train", "seed"): "seed", ("task", "lr"): "lr"}
  assert _args.resume_hint({("task", "data.seed"): 0, ("train", "seed"): 0, ("task", "lr"): 0.1},
                           flag_of) == "--seed 0 --lr 0.1"
  assert _args.resume_hint({("task", "data.seed"): 0, ("train", "seed"): 3}, flag_of) == ""
