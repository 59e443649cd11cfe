"""Tests for `python -m rolo_jax.evaluate_mot`: the TUD-Campus reference, several sequences with an
overall row and a table, an empty results file, and one clear error line for bad input."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from rolo_jax import evaluate_mot
from rolo_jax.data import paths
from rolo_jax.errors import cli_main
from rolo_jax.eval import mot

DATA = paths.shared_data()
TUD = os.path.join(DATA or "", "mot", "TUD-Campus")
needs_tud = pytest.mark.skipif(
    DATA is None or not os.path.isfile(os.path.join(TUD, "tracker_output.txt")),
    reason="needs ../shared/data: mot/TUD-Campus (gt.txt, tracker_output.txt)")

TUD_REFERENCE = dict(mota=0.526462, motp=0.277201, idf1=0.557659, idp=0.729730, idr=0.451253,
                     recall=0.582173, precision=0.941441, num_switches=7, num_fragmentations=7,
                     num_false_positives=13, num_misses=150, mostly_tracked=1,
                     partially_tracked=6, mostly_lost=1, num_unique_objects=8)

# Two small sequences written by hand: 2 gt tracks x 3 frames, and 1 track x 2 frames.
GT1 = "1,1,0,0,10,10,1,-1,-1,-1\n2,1,0,0,10,10,1,-1,-1,-1\n3,1,0,0,10,10,1,-1,-1,-1\n" \
      "1,2,100,0,10,10,1,-1,-1,-1\n2,2,100,0,10,10,1,-1,-1,-1\n3,2,100,0,10,10,1,-1,-1,-1\n"
RES1 = "1,5,0,0,10,10,-1,-1,-1,-1\n2,5,0,0,10,10,-1,-1,-1,-1\n3,6,0,0,10,10,-1,-1,-1,-1\n" \
       "1,7,100,0,10,10,-1,-1,-1,-1\n"   # one switch, o2 missed in frames 2-3
GT2 = "1,1,50,50,20,20,1,-1,-1,-1\n2,1,50,50,20,20,1,-1,-1,-1\n"
RES2 = "1,1,50,50,20,20,-1,-1,-1,-1\n2,1,50,50,20,20,-1,-1,-1,-1\n5,9,0,0,5,5,-1,-1,-1,-1\n"


def _parse(out: str):
  vals = {}
  for line in out.strip().splitlines():
    k, v = line.split("=")
    vals[k] = float(v)
  return vals


def _run(argv, capsys):
  rc = evaluate_mot.main(argv)
  return rc, capsys.readouterr()


@needs_tud
def test_tud_campus_reference(tmp_path, capsys):
  out_json, out_md = tmp_path / "m.json", tmp_path / "sub" / "m.md"
  rc, cap = _run(["--gt", os.path.join(TUD, "gt.txt"), "--results",
                  os.path.join(TUD, "tracker_output.txt"), "--json", str(out_json),
                  "--table", str(out_md)], capsys)
  assert rc == 0
  names = [line.split("=")[0] for line in cap.out.strip().splitlines()]
  assert names == list(mot.METRIC_NAMES)  # exactly one name=value line per metric, in order
  printed = _parse(cap.out)
  data = json.loads(out_json.read_text())
  assert list(data["per_sequence"]) == ["TUD-Campus"]
  for k, v in TUD_REFERENCE.items():
    assert printed[k] == pytest.approx(v, abs=1e-6), k
    assert data["overall"][k] == pytest.approx(v, abs=1e-6), k
    assert data["per_sequence"]["TUD-Campus"][k] == pytest.approx(v, abs=1e-6), k
  assert data["iou_threshold"] == 0.5 and data["overall"]["num_objects"] == 359
  table = out_md.read_text().splitlines()
  assert table[0].startswith("| Sequence | MOTA | MOTP | IDF1")
  assert table[2].startswith("| TUD-Campus | 52.6 | 0.277 | 55.8 |")
  assert table[3].startswith("| OVERALL | 52.6 |")


@needs_tud
def test_module_entry_point_and_sequence_folder(tmp_path):
  """Runs as `python -m`, with the gt given as a sequence folder (<seq>/gt/gt.txt) and the results
  as a folder of <seq>.txt."""
  seq = tmp_path / "gt_root" / "TUD-Campus" / "gt"
  seq.mkdir(parents=True)
  shutil.copy(os.path.join(TUD, "gt.txt"), seq / "gt.txt")
  res = tmp_path / "res"
  res.mkdir()
  shutil.copy(os.path.join(TUD, "tracker_output.txt"), res / "TUD-Campus.txt")
  p = subprocess.run([sys.executable, "-m", "rolo_jax.evaluate_mot", "--gt",
                      str(tmp_path / "gt_root"), "--results", str(res)],
                     capture_output=True, text=True, cwd=paths.PROJECT_ROOT, timeout=120)
  assert p.returncode == 0, p.stderr
  vals = _parse(p.stdout)
  assert vals["idf1"] == pytest.approx(TUD_REFERENCE["idf1"], abs=1e-6)
  assert vals["num_switches"] == 7


def test_several_sequences_by_folder(tmp_path, capsys):
  for name, g, r in (("seqA", GT1, RES1), ("seqB", GT2, RES2)):
    d = tmp_path / "gt" / name / "gt"
    d.mkdir(parents=True)
    (d / "gt.txt").write_text(g)
    (tmp_path / "res").mkdir(exist_ok=True)
    (tmp_path / "res" / f"{name}.txt").write_text(r)
  (tmp_path / "res" / "other.txt").write_text("")  # no gt: skipped with a note
  out_json, out_md = tmp_path / "m.json", tmp_path / "m.md"
  rc, cap = _run(["--gt", str(tmp_path / "gt"), "--results", str(tmp_path / "res"),
                  "--json", str(out_json), "--table", str(out_md)], capsys)
  assert rc == 0
  lines = cap.out.strip().splitlines()
  assert lines[0].startswith("seqA: mota=") and lines[1].startswith("seqB: mota=")
  overall = _parse("\n".join(lines[2:]))
  assert list(overall) == list(mot.METRIC_NAMES)
  assert "other" in cap.err
  data = json.loads(out_json.read_text())
  a, b = data["per_sequence"]["seqA"], data["per_sequence"]["seqB"]
  # seqA by hand: GT 6, matches 4 (one a switch), FN 2, FP 0 -> MOTA = 1 - 3/6.
  assert (a["num_switches"], a["num_misses"], a["num_false_positives"]) == (1, 2, 0)
  assert a["mota"] == pytest.approx(0.5)
  # seqB: GT 2, both matched, one FP in a frame without gt -> MOTA 0.5.
  assert (b["num_misses"], b["num_false_positives"]) == (0, 1) and b["mota"] == pytest.approx(0.5)
  # Overall from summed counts: GT 8, FN 2, FP 1, IDSW 1.
  assert overall["mota"] == pytest.approx(1 - 4 / 8)
  assert overall["num_unique_objects"] == 3 and overall["num_misses"] == 2
  rows = out_md.read_text().splitlines()
  assert [r.split("|")[1].strip() for r in rows[2:]] == ["seqA", "seqB", "OVERALL"]


def test_repeated_files_pair_in_order(tmp_path, capsys):
  files = {}
  for name, text in (("g1", GT1), ("g2", GT2), ("r1", RES1), ("r2", RES2)):
    files[name] = tmp_path / f"{name}.txt"
    files[name].write_text(text)
  rc, cap = _run(["--gt", str(files["g1"]), "--gt", str(files["g2"]), "--results",
                  str(files["r1"]), "--results", str(files["r2"])], capsys)
  assert rc == 0
  lines = cap.out.strip().splitlines()
  assert lines[0].startswith("g1: ") and lines[1].startswith("g2: ")
  assert _parse("\n".join(lines[2:]))["mota"] == pytest.approx(0.5)


def test_empty_results_file(tmp_path, capsys):
  (tmp_path / "gt.txt").write_text(GT1)
  (tmp_path / "res.txt").write_text("")
  out_json = tmp_path / "m.json"
  rc, cap = _run(["--gt", str(tmp_path / "gt.txt"), "--results", str(tmp_path / "res.txt"),
                  "--json", str(out_json)], capsys)
  assert rc == 0
  vals = _parse(cap.out)
  assert vals["mota"] == 0.0 and vals["num_misses"] == 6 and vals["mostly_lost"] == 2
  assert "motp=nan" in cap.out
  data = json.loads(out_json.read_text())
  assert data["overall"]["motp"] is None and data["overall"]["mota"] == 0.0


def test_empty_ground_truth_is_an_error(tmp_path, capsys):
  (tmp_path / "gt.txt").write_text("\n")
  (tmp_path / "res.txt").write_text(RES1)
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate_mot.main)(["--gt", str(tmp_path / "gt.txt"), "--results",
                                 str(tmp_path / "res.txt")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {tmp_path / 'gt.txt'}: the ground truth has no rows"), err


def test_blank_lines_between_rows_are_fine(tmp_path, capsys):
  # MOT rows name their frame, so a blank line shifts nothing (unlike OTB's one row per frame).
  (tmp_path / "gt.txt").write_text(GT2.replace("\n", "\n\n", 1))
  (tmp_path / "res.txt").write_text(RES2)
  rc, cap = _run(["--gt", str(tmp_path / "gt.txt"), "--results", str(tmp_path / "res.txt")], capsys)
  assert rc == 0 and _parse(cap.out)["num_misses"] == 0


def _exit_2_one_line(tmp_path, capsys, gt_text: str, res_text: str) -> str:
  """Writes gt.txt and res.txt, runs the CLI, asserts exit 2 with one stderr line; returns it."""
  (tmp_path / "gt.txt").write_text(gt_text)
  (tmp_path / "res.txt").write_text(res_text)
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate_mot.main)(["--gt", str(tmp_path / "gt.txt"), "--results",
                                 str(tmp_path / "res.txt")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  return err[0]


@pytest.mark.parametrize("bad_line,expect", [
    ("2,1,0,0,10\n", "line 2"),                       # wrong column count
    ("2,1,0,zero,10,10,-1,-1,-1,-1\n", "line 2"),     # not a number
    ("2,1,0,0,-10,10,-1,-1,-1,-1\n", "line 2"),       # negative width
])
@pytest.mark.parametrize("which", ["gt", "results"])
def test_malformed_rows_exit_2(tmp_path, capsys, bad_line, expect, which):
  good_res = "1,1,0,0,10,10,-1,-1,-1,-1\n"
  gt_text = "1,1,0,0,10,10,1,-1,-1,-1\n" + (bad_line if which == "gt" else "")
  res_text = good_res + (bad_line if which == "results" else "")
  err = _exit_2_one_line(tmp_path, capsys, gt_text, res_text)
  bad_file = "gt.txt" if which == "gt" else "res.txt"
  assert err.startswith("error: ") and bad_file in err and expect in err


def test_huge_ground_truth_box_is_an_error(tmp_path, capsys):
  # A finite gt box whose area overflows would be a target no box can overlap: an error naming the
  # line, where before it was scored as a miss.
  err = _exit_2_one_line(tmp_path, capsys, "1,1,0,0,10,10,1,-1,-1,-1\n2,1,0,0,1e308,1e308,1,-1,-1,-1\n",
                         "1,1,0,0,10,10,-1,-1,-1,-1\n")
  assert err.startswith(f"error: {tmp_path / 'gt.txt'}, line 2: box [0.0, 0.0, 1e+308, 1e+308] "
                        "is too large to score"), err


def _mot_toy(tmp_path):
  (tmp_path / "gt.txt").write_text("1,1,0,0,10,10,1,-1,-1,-1\n2,1,0,0,10,10,1,-1,-1,-1\n")
  (tmp_path / "res.txt").write_text("1,1,0,0,10,10,-1,-1,-1,-1\n2,1,0,0,10,10,-1,-1,-1,-1\n")
  return ["--gt", str(tmp_path / "gt.txt"), "--results", str(tmp_path / "res.txt")]


@pytest.mark.parametrize("extra, expect", [
    (["--json", "{d}/m.md", "--table", "{d}/m.md"],
     "--json {d}/m.md and --table {d}/m.md name one file"),
    (["--json", "{d}/res.txt"], "--json {d}/res.txt: this is an input file (--results"),
    (["--table", "{d}/gt.txt"], "--table {d}/gt.txt: this is an input file (--gt"),
])
def test_mot_clashing_outputs_are_refused_before_scoring(tmp_path, capsys, monkeypatch, extra,
                                                         expect):
  argv = _mot_toy(tmp_path)
  (tmp_path / "m.md").write_text("keep")
  inputs = {p: p.read_text() for p in (tmp_path / "gt.txt", tmp_path / "res.txt")}
  monkeypatch.setattr(evaluate_mot.mot, "evaluate_many", lambda *a, **k: pytest.fail("scored"))
  d = str(tmp_path)
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate_mot.main)(argv + [a.format(d=d) for a in extra])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and expect.format(d=d) in err, err
  assert (tmp_path / "m.md").read_text() == "keep"
  assert all(p.read_text() == text for p, text in inputs.items())


def test_mot_huge_result_boxes_score_as_misses_without_warnings(tmp_path, capsys):
  import warnings

  argv = _mot_toy(tmp_path) + ["--json", str(tmp_path / "m.json")]
  scores = []
  for box1, box2 in (("1e308,1e308,1e308,1e308", "-1e308,-1e308,1.7e308,1.7e308"),
                     ("1000,1000,10,10", "2000,1000,10,10")):   # far away: the same score
    (tmp_path / "res.txt").write_text(f"1,1,0,0,10,10,-1,-1,-1,-1\n2,1,{box1},-1,-1,-1,-1\n"
                                      f"2,2,{box2},-1,-1,-1,-1\n")
    with warnings.catch_warnings():
      warnings.simplefilter("error")   # numpy's overflow RuntimeWarnings fail the test
      assert evaluate_mot.main(argv) == 0
    scores.append(json.loads((tmp_path / "m.json").read_text())["overall"])
  assert scores[0] == scores[1] and scores[0]["num_false_positives"] == 2
  assert "Warning" not in capsys.readouterr().err


def test_missing_results_for_a_sequence_exit_2(tmp_path, capsys):
  for name in ("seqA", "seqB"):
    (tmp_path / "gt" / name / "gt").mkdir(parents=True)
    (tmp_path / "gt" / name / "gt" / "gt.txt").write_text(GT2)
  (tmp_path / "res").mkdir()
  (tmp_path / "res" / "seqA.txt").write_text(RES2)
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate_mot.main)(["--gt", str(tmp_path / "gt"), "--results", str(tmp_path / "res")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "seqB" in err and "no results file" in err


def test_missing_file_exit_2(tmp_path, capsys):
  (tmp_path / "gt.txt").write_text(GT1)
  with pytest.raises(SystemExit) as e:
    cli_main(evaluate_mot.main)(["--gt", str(tmp_path / "gt.txt"), "--results",
                                 str(tmp_path / "nope.txt")])
  assert e.value.code == 2
  assert "nope.txt" in capsys.readouterr().err


def test_gt_name():
  assert evaluate_mot.gt_name("/d/TUD-Campus/gt.txt") == "TUD-Campus"
  assert evaluate_mot.gt_name("/d/MOT17-02/gt/gt.txt") == "MOT17-02"
  assert evaluate_mot.gt_name("/d/gts/MOT17-04.txt") == "MOT17-04"
