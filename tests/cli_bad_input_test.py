"""Bad input found by session 18's probe of the command lines: each is one 'error: ...' line on
stderr and exit status 2, before any work (in process: the entry points' `main`)."""
import os

import numpy as np
import pytest
from PIL import Image

from rolo_jax.errors import DataError


def _one_line_exit_2(capsys, main, argv, message):
  with pytest.raises(SystemExit) as e:
    main(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2, err
  assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
  return err


def _otb(root, names=("SeqA",), rows=None, size=(64, 48), frames=4):
  for name in names:
    img = root / name / "img"
    img.mkdir(parents=True)
    for t in range(frames):
      Image.new("RGB", size, (40 * t, 0, 0)).save(img / f"{t + 1:04d}.jpg")
    (root / name / "groundtruth_rect.txt").write_text(
        "\n".join(rows or [f"{10 + t},8,12,12" for t in range(frames)]) + "\n")
  return root


# ------------------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("module,argv,message", [
    ("rolo", ["--steps", "0"], "argument --steps: expected a whole number >= 1, got 0 (see --help)"),
    ("rolo_heatmap", ["--lr", "nan"], "argument --lr"),
    ("rolo_steps", ["--bogus"], "unrecognized arguments: --bogus"),
    ("memtrack", ["--batch", "-1"], "argument --batch"),
    ("yolo_pretrain", ["--config", "bogus"], "--config 'bogus': unknown; choose from default, smoke"),
    ("association_lstm", ["--config", "bogus"], "--config 'bogus': unknown; choose from"),
    ("benchmark", ["--repeats", "0"], "argument --repeats"),
    ("otb_baselines", ["--data", "{d}", "--out", "{d}/o", "--trackers", "re3"],
     "--trackers re3: a learned tracker needs a checkpoint, which otb_baselines does not take; it runs"),
    ("otb_baselines", ["--data", "{d}", "--out", "{d}/o", "--trackers", "kcf,static,kcf"],
     "--trackers: kcf named twice"),
    ("otb_baselines", ["--data", "{d}", "--out", "{d}/o", "--names", "A,B,A"], "--names: A named twice"),
    ("mot_tud", ["--bogus"], "unrecognized arguments: --bogus"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, module, argv, message):
  """Every experiment's parser is `rolo_jax.errors.ArgumentParser` (no usage block), and the checks
  after parsing print the same one line (they used SystemExit('...'): exit 1, no 'error:')."""
  import importlib

  main = importlib.import_module(f"experiments.{module}").main
  _one_line_exit_2(capsys, main, [a.format(d=tmp_path) for a in argv], message)
  assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("size,message", [
    ("0x480", "--frame_size '0x480': expected a finite width and height > 0 (e.g. 640x480)"),
    ("nanxnan", "--frame_size 'nanxnan': expected a finite width and height > 0 (e.g. 640x480)"),
    ("640", "--frame_size '640': expected WIDTHxHEIGHT (e.g. 640x480)"),
])
def test_frame_size_is_a_usage_error(capsys, size, message):
  from experiments import association_lstm

  with pytest.raises(SystemExit) as e:
    association_lstm.parse_frame_size(size)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err == f"error: {message} (see --help)\n", err


@pytest.mark.parametrize("only,message", [
    (",", "--only ',': no benchmark names (leave it out to run all)"),
    (" , ", "no benchmark names"),
    ("re3:", "--only re3:: no config after the ':'"),
    ("re3:tiny,re3:tiny", "--only: re3:tiny named twice"),
    ("re3_train:tiny,re3_train:small", "re3_train takes one config"),
])
def test_benchmark_only_slips_do_not_run_everything(only, message):
  import argparse

  from experiments import benchmark

  args = argparse.Namespace(**{flag: "" for flag, _ in benchmark.CONFIG_FLAGS.values()})
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    benchmark.apply_only(only, args)
  assert benchmark.apply_only("", args) == list(benchmark.BENCHMARKS)
  assert benchmark.apply_only("re3:tiny,re3:paper", args) == ["re3"] and args.re3_configs == "tiny,paper"


# ------------------------------------------------------------------------------------------ readers

@pytest.mark.parametrize("first,message", [
    ("1000,1000,20,20", "lies outside the 64x48 first image"),
    ("-50,-50,20,20", "lies outside the 64x48 first image"),
    ("0,0,0,0", "expected a finite box with width and height > 0"),
])
def test_otb_first_box_must_start_a_tracker(tmp_path, first, message):
  """The first box starts every tracker: one outside the first image (or empty) is named with its
  file and line, not tracked as given (KCF gave a 1x1 box in the corner)."""
  from rolo_jax.data.formats.otb import read_otb_sequence

  rows = [first] + [f"{10 + t},8,12,12" for t in range(1, 4)]
  _otb(tmp_path, rows=rows)
  with pytest.raises(DataError) as e:
    read_otb_sequence(tmp_path / "SeqA")
  text = str(e.value)
  assert text.startswith(f"{tmp_path / 'SeqA' / 'groundtruth_rect.txt'}, line 1: the first frame's box"), text
  assert message in text


@pytest.mark.parametrize("first", ["60,40,20,20", "-15,-10,20,20", "1,1,1,1", "64,48,5,5"])
def test_otb_first_box_that_touches_the_image_is_kept(tmp_path, first):
  from rolo_jax.data.formats.otb import read_otb_sequence

  _otb(tmp_path, rows=[first] + [f"{10 + t},8,12,12" for t in range(1, 4)])
  (s,) = read_otb_sequence(tmp_path / "SeqA")
  np.testing.assert_array_equal(s.boxes[0], [float(v) for v in first.split(",")])


def test_rolo_sequences_protocol_with_one_sequence_is_one_line(tmp_path, capsys):
  from experiments import rolo

  _otb(tmp_path / "otb")
  (tmp_path / "f").mkdir()
  err = _one_line_exit_2(capsys, rolo.main, ["--smoke", "--data_dir", str(tmp_path / "otb"),
                                             "--features_dir", str(tmp_path / "f"), "--feature_dim", "8",
                                             "--workdir", str(tmp_path / "w"), "--no_progress"],
                         "the 'sequences' protocol trains on some sequences and tests on the others")
  assert f"error: {tmp_path / 'otb'}: --protocol all:" in err


def test_an_empty_det_file_has_its_own_message(tmp_path):
  from rolo_jax.data.formats.mot import read_mot_file

  p = tmp_path / "det.txt"
  p.write_text("")
  assert len(read_mot_file(p, "det").frame) == 0   # valid input: a detector that found nothing
  with pytest.raises(DataError, match="det.txt: the det file has no rows: there are no detections "
                                      "to track"):
    read_mot_file(p, "det", allow_empty=False)


def test_a_fractional_mot_id_is_shown_as_a_number(tmp_path):
  from rolo_jax.data.formats.mot import read_mot_file

  p = tmp_path / "gt.txt"
  p.write_text("1,1,10,10,5,5,1,1,1\n2,2.5,10,10,5,5,1,1,1\n")
  with pytest.raises(DataError) as e:
    read_mot_file(p, "gt")
  assert "line 2" in str(e.value) and "got 2.5" in str(e.value) and "np." not in str(e.value)


def test_a_damaged_reference_result_is_named_before_any_training(tmp_path, capsys):
  """mot_tud read the reference tracker's results only after training and tracking."""
  from experiments import mot_tud

  rows = "1,1,10,10,20,20,1,1,1\n2,1,12,10,20,20,1,1,1\n"
  (tmp_path / "gt.txt").write_text(rows)
  (tmp_path / "det.txt").write_text(rows.replace(",1,1,1\n", ",0.9,-1,-1,-1\n"))
  (tmp_path / "tracker_output.txt").write_text("1,1,10,10,20,20,1,-1,-1,-1\n2,x,1,1,1,1,1,-1,-1,-1\n")
  err = _one_line_exit_2(capsys, mot_tud.main, ["--data", str(tmp_path), "--checkpoint", str(tmp_path / "none"),
                                                "--out_dir", str(tmp_path / "out"), "--no_train"],
                         "tracker_output.txt, line 2")
  assert "no checkpoint" not in err and not (tmp_path / "out").exists()


def test_the_projects_warnings_are_one_line_notes_in_a_command(capsys, recwarn):
  import warnings

  from rolo_jax.errors import cli_main

  import rolo_jax
  from rolo_jax.data.paths import PROJECT_ROOT

  ours = os.path.join(os.path.dirname(rolo_jax.__file__), "data", "formats", "otb.py")
  # A library in the README's venv, inside the checkout: not the project's.
  venv_lib = os.path.join(PROJECT_ROOT, ".venv", "lib", "python3", "site-packages", "lib.py")

  def main():
    warnings.warn_explicit("skipped 1 entries that are not OTB sequence folders", UserWarning, ours, 3)
    warnings.warn_explicit("not ours", UserWarning, "/elsewhere/lib.py", 7)
    warnings.warn_explicit("a library's", UserWarning, venv_lib, 9)
    return 0

  assert cli_main(main)() == 0
  assert capsys.readouterr().err == "note: skipped 1 entries that are not OTB sequence folders\n"
  # Other packages' warnings go where they went before (here: pytest's record of them).
  assert [str(w.message) for w in recwarn] == ["not ours", "a library's"]


def test_every_otb_training_reader_refuses_boxes_and_frames_that_differ(tmp_path):
  """Re3's and MemTrack's real-track readers cut such a sequence to the shorter without a word."""
  from experiments import memtrack
  from rolo_jax.train import re3_data

  _otb(tmp_path, frames=5)
  gt = tmp_path / "SeqA" / "groundtruth_rect.txt"
  gt.write_text("\n".join(gt.read_text().splitlines()[:4]) + "\n")
  for read in (lambda: re3_data.real_sequences("otb", str(tmp_path)),
               lambda: memtrack.otb_sequences(str(tmp_path), None)):
    with pytest.raises(DataError, match="img/ has 5 images but groundtruth_rect.txt has 4 boxes"):
      read()
  (tmp_path / "otb100_sequences.json").write_text(
      '[{"name": "SeqA", "start_frame": 1, "end_frame": 4}]')
  (s,) = re3_data.real_sequences("otb", str(tmp_path))   # the benchmark's range: the first 4 frames
  assert len(s) == 4


def test_a_count_mismatch_names_the_commands_flags_for_the_frame_ranges(tmp_path):
  """The advice was Python's ('pass sequences_json=... or strict=False'), which no command takes."""
  from rolo_jax.data.formats.otb import read_otb_sequence

  _otb(tmp_path, frames=5)
  gt = tmp_path / "SeqA" / "groundtruth_rect.txt"
  gt.write_text("\n".join(gt.read_text().splitlines()[:4]) + "\n")
  with pytest.raises(DataError) as e:
    read_otb_sequence(tmp_path / "SeqA")
  text = str(e.value)
  for flag in ("--sequences_json of re3_curriculum and rolo", "--otb_sequences of memtrack",
               "--sequences of otb_baselines and evaluate", "uses the first 4 frames"):
    assert flag in text, text
