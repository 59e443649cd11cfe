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
