"""Tests for `python -m rolo_jax.evaluate`: the toolkit's curves from the reference result files,
the OTB-layout annotation root, several trackers with plot and table, and clear errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rolo_jax import evaluate
from rolo_jax.data import paths
from rolo_jax.errors import cli_main

DATA = paths.shared_data()
needs_data = pytest.mark.skipif(
    DATA is None or not os.path.isdir(os.path.join(DATA or "", "otb_reference")),
    reason="needs ../shared/data: otb_reference and otb_annotations")


def _ann(*p):
  return os.path.join(DATA, "otb_annotations", *p)


def _expected(tracker):
  with open(os.path.join(DATA, "otb_reference", "results", tracker, "expected_toolkit_curves.json")) as f:
    return json.load(f)


def _compare(out, expected, names=None):
  names = names or list(expected["per_sequence"])
  for name in names:
    got, want = out["per_sequence"][name], expected["per_sequence"][name]
    np.testing.assert_allclose(got["success"], want["success"], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(got["precision"], want["precision"], rtol=0, atol=1e-9, err_msg=name)
    assert len(got["success"]) == 21 and len(got["precision"]) == 51


@needs_data
def test_kcf_reference_results(tmp_path, capsys):
  out_json = tmp_path / "kcf.json"
  rc = evaluate.main([
      "--annotations", _ann("anno_TB100"), "--sequences", _ann("otb100_sequences.json"),
      "--results", os.path.join(DATA, "otb_reference", "results", "KCF"), "--json", str(out_json)])
  assert rc == 0
  out = json.loads(out_json.read_text())
  expected = _expected("KCF")
  assert out["tracker"] == "KCF" and out["num_sequences"] == 100
  assert set(out["per_sequence"]) == set(expected["per_sequence"])
  _compare(out, expected)
  assert out["auc"] == pytest.approx(expected["auc_mean_of_21"], abs=1e-12)
  assert out["precision_20"] == pytest.approx(expected["precision_at_20"], abs=1e-12)
  assert 0 < out["normalized_precision"] < 1 and len(out["normalized_precision_curve"]) == 51
  assert abs(out["average_overlap"] - out["auc"]) < 0.01
  assert out["per_sequence"]["tiger1"]["start_frame"] == 6  # initOmit found beside the json
  assert out["per_sequence"]["david"]["start_frame"] == 300
  printed = capsys.readouterr().out
  assert "KCF: 100 sequences  AUC 0.4771  precision@20 0.6954" in printed


@needs_data
def test_otb_layout_root_and_two_trackers(tmp_path):
  """Ground truth from <Seq>/groundtruth_rect[.k].txt; results of two trackers in subfolders."""
  names = ["basketball", "jogging-1", "jogging-2", "football1", "DragonBaby"]
  for t in ("KCF", "CSK"):
    (tmp_path / "res" / t).mkdir(parents=True)
    for n in names:
      shutil.copy(os.path.join(DATA, "otb_reference", "results", t, n + ".txt"), tmp_path / "res" / t)
  out_json, png, md = tmp_path / "o.json", tmp_path / "p.png", tmp_path / "t.md"
  evaluate.main(["--annotations", os.path.join(DATA, "otb"), "--sequences",
                 _ann("otb100_sequences.json"), "--results", str(tmp_path / "res"),
                 "--json", str(out_json), "--plot", str(png), "--table", str(md)])
  out = json.loads(out_json.read_text())
  assert sorted(out["trackers"]) == ["CSK", "KCF"]
  assert len(out["thresholds"]["success"]) == 21
  for t in ("KCF", "CSK"):
    _compare(out["trackers"][t], _expected(t), names)
    mean_auc = np.mean([np.mean(_expected(t)["per_sequence"][n]["success"]) for n in names])
    assert out["trackers"][t]["auc"] == pytest.approx(mean_auc, abs=1e-9)
  assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = md.read_text().splitlines()
  assert len(table) == 2 + len(names) + 1 and table[-1].startswith("| **mean**")
  kcf_auc = out["trackers"]["KCF"]["auc"]
  assert f"{kcf_auc:.4f}" in table[-1]
  csv_rows = (tmp_path / "t.csv").read_text().splitlines()
  assert csv_rows[0] == "sequence,CSK auc,CSK precision_20,KCF auc,KCF precision_20"  # sorted
  assert csv_rows[-1].split(",")[0] == "mean"
  assert float(csv_rows[-1].split(",")[3]) == pytest.approx(kcf_auc, abs=1e-12)


def _toy(tmp_path, result_text, gt_name="Couple"):
  (tmp_path / "anno").mkdir()
  (tmp_path / "anno" / f"{gt_name}.txt").write_text("1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "couple.txt").write_text(result_text)
  return ["--annotations", str(tmp_path / "anno"), "--results", str(tmp_path / "mine"),
          "--json", str(tmp_path / "o.json")]


def test_toy_folder_hand_computed(tmp_path):
  argv = _toy(tmp_path, "1 1 10 10\n2\t2\t10\t10\n8,3,10,10\n")
  assert evaluate.main(argv) == 0
  out = json.loads((tmp_path / "o.json").read_text())
  seq = out["per_sequence"]["couple"]
  # Frame 2: x 8..17 vs 3..12 -> 5 x 10 = 50 / 150 = 1/3, centre error 5.
  np.testing.assert_allclose(seq["success"], [1] * 7 + [2 / 3] * 13 + [0])
  np.testing.assert_allclose(seq["precision"], [2 / 3] * 5 + [1] * 46)
  assert out["auc"] == pytest.approx((7 + 26 / 3) / 21)


def test_malformed_row_names_file_and_line(tmp_path, capsys):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,oops,10\n")
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate.main)(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert os.path.join("mine", "couple.txt") in err and "line 3" in err and "'oops'" in err
  assert not (tmp_path / "o.json").exists()


def _exit_2_one_line(argv, capsys):
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate.main)(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
  return err


def test_blank_line_inside_results_is_an_error(tmp_path, capsys):
  # Skipping it would score frame 3's box against frame 2's ground truth.
  err = _exit_2_one_line(_toy(tmp_path, "1,1,10,10\n\n2,2,10,10\n3,3,10,10\n"), capsys)
  assert os.path.join("mine", "couple.txt") + ", line 2: blank line with more rows after it" in err
  assert not (tmp_path / "o.json").exists()


def test_nan_result_rows_are_noted_and_carried_forward(tmp_path, capsys):
  # Row 2 NaN -> row 1's box (1,1,10,10) against gt (2,2,10,10): IoU 81/119, centre error sqrt(2).
  assert evaluate.main(_toy(tmp_path, "1,1,10,10\nnan,nan,nan,nan\n3,3,10,0\n")) == 0
  out = capsys.readouterr().out
  assert ("couple.txt: 2 rows hold NaN or a width/height <= 0 (first: row 2, [nan, nan, nan, nan]); "
          "as in the OTB toolkit, each from the second row on is replaced by the previous row's box") in out
  seq = json.loads((tmp_path / "o.json").read_text())["per_sequence"]["couple"]
  # Frames 2 and 3 both score the carried (1,1,10,10) box: IoU 81/119 and 64/136.
  assert seq["success"][10] == pytest.approx(2 / 3)   # threshold 0.5: frames 1 and 2
  assert seq["success"][14] == pytest.approx(1 / 3)   # threshold 0.7: frame 1 only


def test_init_omit_that_omits_every_frame_is_named(tmp_path, capsys):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "omit").mkdir()
  (tmp_path / "omit" / "couple.txt").write_text("1 3\n")
  err = _exit_2_one_line(argv + ["--init_omit", str(tmp_path / "omit")], capsys)
  assert "Couple.txt: no frame can start a run" in err
  assert f"(with the frames omitted by {tmp_path / 'omit' / 'couple.txt'})" in err
  (tmp_path / "omit" / "couple.txt").write_text("-5 3\n")
  err = _exit_2_one_line(argv + ["--init_omit", str(tmp_path / "omit")], capsys)
  assert "couple.txt, line 1: range [-5, 3]: frame numbers start at 1" in err


def test_negative_size_in_ground_truth_is_an_error(tmp_path, capsys):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "anno" / "Couple.txt").write_text("1,1,10,10\n2,2,-10,10\n3,3,10,10\n")
  err = _exit_2_one_line(argv, capsys)
  assert "Couple.txt, line 2: negative width/height" in err


@pytest.mark.parametrize("flag,name", [("--json", "o.json"), ("--plot", "p.png"), ("--table", "t.md"),
                                       ("--plot", "p.xyz")])
def test_outputs_checked_before_scoring(tmp_path, capsys, flag, name):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  target = tmp_path / name
  if name != "p.xyz":
    target.mkdir()   # a folder where the file should go
  err = _exit_2_one_line(argv + [flag, str(target)], capsys)
  if name == "p.xyz":
    assert f"{target}: --plot: unknown image type 'xyz'; expected a file ending in" in err
    assert ".png" in err
  else:
    assert f"{target}: {flag}: this is a folder" in err


def test_missing_annotation_lists_near_names(tmp_path, capsys):
  argv = _toy(tmp_path, "1,1,10,10\n", gt_name="Coupel")
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate.main)(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "no ground truth for sequence 'couple'" in err and "nearest names: Coupel" in err


def test_command_line_exit_status(tmp_path):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10\n")
  p = subprocess.run([sys.executable, "-m", "rolo_jax.evaluate"] + argv, capture_output=True,
                     text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert p.returncode == 2, p.stderr
  assert p.stderr.startswith("error: ") and "couple.txt, line 2: expected 4 numbers" in p.stderr
  assert "Traceback" not in p.stderr


# ------------------------------------------------------------------ outputs that would destroy data

@pytest.fixture
def no_scoring(monkeypatch):
  """Fails a test that reaches the scoring: the bad input must be refused before it."""
  monkeypatch.setattr(evaluate, "evaluate_folder", lambda *a, **k: pytest.fail("scored"))


@pytest.mark.parametrize("extra, expect", [
    (["--json", "{d}/t.md", "--table", "{d}/t.md"],
     "--json {d}/t.md and --table {d}/t.md name one file"),
    (["--table", "{d}/x.csv"],
     "--table {d}/x.csv: the table is Markdown and a .csv of the same name"),
    (["--json", "{d}/t.csv", "--table", "{d}/t.md"],
     "--json {d}/t.csv and --table (its .csv) {d}/t.csv name one file"),
    (["--plot", "{d}/o.png", "--table", "{d}/o.png"],
     "--plot {d}/o.png and --table {d}/o.png name one"),
    (["--json", "{d}/mine/couple.txt"],
     "--json {d}/mine/couple.txt: this is an input file (--results"),
    (["--table", "{d}/anno/Couple.txt"],
     "--table {d}/anno/Couple.txt: this is an input file (--annotations"),
])
def test_clashing_outputs_are_refused_before_scoring(tmp_path, capsys, no_scoring, extra, expect):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  d = str(tmp_path)
  for name in ("t.md", "t.csv", "x.csv", "o.png"):
    (tmp_path / name).write_text("keep")
  inputs = {p: p.read_text()
            for p in (tmp_path / "mine" / "couple.txt", tmp_path / "anno" / "Couple.txt")}
  err = _exit_2_one_line(argv + [a.format(d=d) for a in extra], capsys)
  assert expect.format(d=d) in err and err.rstrip().endswith("(see --help)"), err
  for name in ("t.md", "t.csv", "x.csv", "o.png"):
    assert (tmp_path / name).read_text() == "keep"
  assert all(p.read_text() == text for p, text in inputs.items())


def test_table_csv_that_is_a_folder_is_refused_before_scoring(tmp_path, capsys, no_scoring):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "y.csv").mkdir()
  err = _exit_2_one_line(argv + ["--table", str(tmp_path / "y.md")], capsys)
  assert f"{tmp_path / 'y.csv'}: --table (its .csv): this is a folder" in err
  assert not (tmp_path / "y.md").exists() and not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------ layouts of the input folders

def test_otb_root_with_a_readme_is_an_otb_root(tmp_path, capsys):
  """A README.txt beside the sequence folders used to make the root a flat folder of <Seq>.txt."""
  for seq in ("Mini", "Couple"):
    (tmp_path / "otb" / seq).mkdir(parents=True)
    (tmp_path / "otb" / seq / "groundtruth_rect.txt").write_text("1,1,10,10\n2,2,10,10\n")
  (tmp_path / "otb" / "README.txt").write_text("a dataset\n")
  (tmp_path / "otb" / "Other.txt").write_text("1,1,10,10\n2,2,10,10\n")
  (tmp_path / "res").mkdir()
  (tmp_path / "res" / "Mini.txt").write_text("1,1,10,10\n2,2,10,10\n")
  argv = ["--annotations", str(tmp_path / "otb"), "--results", str(tmp_path / "res"),
          "--json", str(tmp_path / "o.json")]
  assert evaluate.main(argv) == 0
  assert json.loads((tmp_path / "o.json").read_text())["per_sequence"]["Mini"]["auc"] == \
      pytest.approx(20 / 21)
  capsys.readouterr()
  (tmp_path / "res" / "Other.txt").write_text("1,1,10,10\n2,2,10,10\n")
  err = _exit_2_one_line(argv, capsys)
  assert "no ground truth for sequence 'Other'" in err
  assert "Other.txt beside the sequence folders is not read: this is an OTB-layout root" in err


def test_results_with_files_and_tracker_folders_are_refused(tmp_path, capsys, no_scoring):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "mine" / "KCF").mkdir()
  (tmp_path / "mine" / "KCF" / "couple.txt").write_text("1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  err = _exit_2_one_line(argv, capsys)   # the KCF folder used to be ignored without a word
  assert (f"{tmp_path / 'mine'}: holds both result files (couple.txt) and tracker folders of them "
          "(KCF); expected one layout") in err


# ------------------------------------------------------------------ huge boxes

def _scores_without_warnings(argv):
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")   # numpy's overflow RuntimeWarnings fail the test
    assert evaluate.main(argv) == 0


def test_huge_result_boxes_score_as_misses_without_warnings(tmp_path, capsys):
  # 1e308 overflows to inf in the box arithmetic: IoU 0 and an infinite centre error, the score of
  # any far-away box (here 1000,1000,10,10), as the OTB toolkit scores it.
  argv = _toy(tmp_path, "1,1,10,10\n1e308,1e308,1e308,1e308\n-1.7e308,3,1.7e308,1e308\n")
  _scores_without_warnings(argv)
  huge = json.loads((tmp_path / "o.json").read_text())
  (tmp_path / "mine" / "couple.txt").write_text("1,1,10,10\n1000,1000,10,10\n1000,1000,10,10\n")
  _scores_without_warnings(argv)
  far = json.loads((tmp_path / "o.json").read_text())
  assert huge["per_sequence"] == far["per_sequence"] and huge["auc"] == far["auc"]
  assert "Warning" not in capsys.readouterr().err


def test_huge_ground_truth_box_is_an_error(tmp_path, capsys):
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "anno" / "Couple.txt").write_text("1,1,10,10\n1e308,2,1e308,10\n3,3,10,10\n")
  err = _exit_2_one_line(argv, capsys)
  assert "Couple.txt, line 2: box [1e+308, 2.0, 1e+308, 10.0] is too large to score" in err


# ------------------------------------------------------------------ usage errors of the other CLIs
# evaluate, evaluate_mot, convert, summary and mot.sort print one `error: ... (see --help)` line
# (plain argparse printed its usage block first), and --help still works.

def _cli(module):
  import importlib

  return importlib.import_module(f"rolo_jax.{module}").main


@pytest.mark.parametrize("module, argv, expect", [
    ("evaluate", ["--annotations", "a"], "the following arguments are required: --results, --json"),
    ("evaluate_mot", ["--gt", "g", "--results", "r", "--iou", "2"],
     "--iou must be in (0, 1], got 2.0"),
    ("convert", [], "the following arguments are required: model"),
    ("convert", ["re3", "--pth", "x.pth"], "the following arguments are required: --out"),
    ("convert", ["nope"], "argument model: invalid choice: 'nope'"),
    ("summary", ["re3", "--bogus"], "unrecognized arguments: --bogus"),
    ("mot.sort", ["--det", "d.txt"], "the following arguments are required: --out"),
    ("mot.sort", ["--det", "d.txt", "--out", "o.txt", "--max_age", "-1"],
     "--max_age and --min_hits must be >= 0, got -1 and 3"),
    ("mot.sort", ["--det", "d.txt", "--out", "o.txt", "--iou_threshold", "2"],
     "--iou_threshold must be in (0, 1], got 2.0"),
    ("mot.sort", ["--det", "d.txt", "--out", "o.txt", "--num_frames", "0"],
     "--num_frames must be at least 1, got 0"),
    ("mot.sort", ["--det", "d.txt", "--out", "o.txt", "--min_score", "nan"],
     "--min_score must be a finite number, got nan"),
])
def test_usage_errors_are_one_line(capsys, module, argv, expect):
  with pytest.raises(SystemExit) as e:
    cli_main(_cli(module))(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and err.startswith(f"error: {expect}"), err
  assert err.endswith(" (see --help)\n"), err


@pytest.mark.parametrize("module, argv", [("evaluate", []), ("evaluate_mot", []), ("convert", []),
                                          ("convert", ["re3"]), ("summary", []), ("mot.sort", [])])
def test_help_still_works(capsys, module, argv):
  with pytest.raises(SystemExit) as e:
    _cli(module)(argv + ["--help"])
  assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: ")


def test_sort_out_that_is_the_det_file_is_refused(tmp_path, capsys):
  det = tmp_path / "det.txt"
  det.write_text("1,-1,10,10,20,20,0.9\n2,-1,11,11,20,20,0.9\n")
  with pytest.raises(SystemExit) as e:   # the results used to overwrite the detections
    cli_main(_cli("mot.sort"))(["--det", str(det), "--out", str(det)])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err == (f"error: --out {det} is the --det file; writing there would destroy the "
                 "detections: give another path (see --help)\n")
  assert det.read_text() == "1,-1,10,10,20,20,0.9\n2,-1,11,11,20,20,0.9\n"


def test_json_over_an_earlier_json_in_the_results_folder_is_fine(tmp_path):
  """Only the .txt of the input folders are inputs: an earlier --json there may be replaced."""
  argv = _toy(tmp_path, "1,1,10,10\n2,2,10,10\n3,3,10,10\n")
  (tmp_path / "mine" / "eval.json").write_text("{}")
  assert evaluate.main(argv[:-1] + [str(tmp_path / "mine" / "eval.json")]) == 0
  assert json.loads((tmp_path / "mine" / "eval.json").read_text())["num_sequences"] == 1
