"""Smoke runs of the ROLO experiments (the same code paths as the defaults, tiny sizes): detector
pretraining, the coordinate and heatmap experiments, the step study, resuming, the exported
tracker, and an OTB-layout folder when ../shared/data is present."""
import json
import os

import numpy as np
import pytest

import rolo_jax  # noqa: F401

from experiments import rolo as rolo_exp
from experiments import rolo_heatmap, rolo_steps, yolo_pretrain
from rolo_jax.data import paths


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("yolo"))
  assert yolo_pretrain.main(["--config", "smoke", "--workdir", d, "--eval_sequences", "1", "--no_progress"]) == 0
  m = json.load(open(os.path.join(d, "detector_metrics.json")))
  assert m["steps"] == 6 and set(m["test"]) >= {"ap", "recall"}
  return d


def _finite_summary(metrics, names=("YOLO", "YOLO+SORT", "ROLO")):
  for n in names:
    s = metrics["summary"][n]
    assert np.isfinite(s["average_overlap"]) and 0 <= s["average_overlap"] <= 1
    assert s["frames"] > 0


def test_rolo_experiment_smoke_all_protocols_and_resume(tmp_path, detector_dir, capsys):
  wd = str(tmp_path / "rolo")
  argv = ["--smoke", "--workdir", wd, "--detector", detector_dir, "--no_progress", "--conf_thresh", "0.0"]
  assert rolo_exp.main(argv) == 0     # --protocol all: one folder per protocol + summary
  summary = open(os.path.join(wd, "summary.md")).read()
  for p in ("sequences", "first_third", "third_labels"):
    assert f"| {p} |" in summary
    m = json.load(open(os.path.join(wd, p, "metrics.json")))
    _finite_summary(m)
    assert m["protocol"] == p and m["rolo"]["train_summary"]["steps_this_run"] == 6
    for f in ("overlap_table.md", "success.png"):
      assert os.path.getsize(os.path.join(wd, p, f)) > 0
    assert len(m["gifs"]) == 1 and os.path.getsize(m["gifs"][0]) > 0
  m = json.load(open(os.path.join(wd, "sequences", "metrics.json")))
  # Training sequences are never scored under 'sequences'.
  assert not set(m["train_sequences"]) & set(m["test_sequences"])
  # Same workdir again: training resumes at its end (no new steps), same scores.
  assert rolo_exp.main(argv + ["--protocol", "sequences"]) == 0
  m2 = json.load(open(os.path.join(wd, "sequences", "metrics.json")))
  assert m2["rolo"]["train_summary"]["steps_this_run"] == 0
  assert m2["summary"]["ROLO"]["average_overlap"] == pytest.approx(m["summary"]["ROLO"]["average_overlap"])
  # The same workdir with other detections (assignment IoU, history, score threshold) is refused:
  # its model was trained on the old ones. The message names what differs.
  for flag, value, field in (("--iou_min", "0.3", "iou_min"), ("--history", "5", "history"),
                             ("--conf_thresh", "0.2", "conf_thresh")):
    bad = [a for a in argv if a not in ("--conf_thresh", "0.0")] + ["--protocol", "sequences", flag, value]
    if flag != "--conf_thresh":
      bad += ["--conf_thresh", "0.0"]
    with pytest.raises(SystemExit) as e:
      rolo_exp.main(bad)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "different 'data'" in err and f"{field}:" in err, err
  # ... and so is another detector (same folder name elsewhere is not what is compared: its weights are).
  import shutil
  other = str(tmp_path / "other_detector")
  assert yolo_pretrain.main(["--config", "smoke", "--workdir", other, "--eval_sequences", "1",
                             "--no_progress", "--seed", "1"]) == 0
  with pytest.raises(SystemExit) as e:
    rolo_exp.main([a if a != detector_dir else other for a in argv] + ["--protocol", "sequences"])
  assert e.value.code == 2 and "detector:" in capsys.readouterr().err
  moved = str(tmp_path / "moved_detector")
  shutil.copytree(detector_dir, moved)
  assert rolo_exp.main([a if a != detector_dir else moved for a in argv] + ["--protocol", "sequences"]) == 0
  # The exported tracker runs online through the common interface.
  from rolo_jax import trackers
  from rolo_jax.data import synthetic

  tr = trackers.make_tracker("rolo", checkpoint=os.path.join(wd, "sequences", "tracker"))
  seq = synthetic.make_sequence(7, synthetic.SyntheticConfig(num_frames=5))
  boxes, fps = trackers.run_tracker(tr, seq)
  assert boxes.shape == (5, 4) and np.all(np.isfinite(boxes))


def test_training_videos_are_cached_as_made_and_dropped(detector_dir):
  """experiments.rolo keeps no synthetic training video after its cache is made (800 videos of
  150 frames were 7 GB of frames); the caches equal those of the kept list."""
  import argparse
  import gc
  import weakref

  from rolo_jax.data import synthetic
  from rolo_jax.train import yolo_task

  det = yolo_task.Detector.load(detector_dir, conf_thresh=0.0)
  args = argparse.Namespace(features_dir=None, history=3, iou_min=0.1)
  cfg = synthetic.SyntheticConfig(num_frames=8)
  refs, alive_when_made = [], []

  def videos():
    for s in rolo_exp.iter_synthetic_split("train", 3, cfg):
      gc.collect()
      alive_when_made.append(sum(r() is not None for r in refs[1:]))   # dropped ones still alive
      refs.append(weakref.ref(s))
      yield s

  caches, kept = rolo_exp.cache_all(videos(), det, args, keep=lambda i: i == 0)
  gc.collect()
  assert kept[0] is not None and kept[1] is None and kept[2] is None
  assert refs[0]() is not None and refs[1]() is None and refs[2]() is None
  # While a video is made, at most the previous one is still referenced: never the whole split.
  assert alive_when_made == [0, 0, 1]
  ref_caches, ref_kept = rolo_exp.cache_all(rolo_exp.synthetic_split("train", 3, cfg), det, args)
  assert [s.name for s in ref_kept] == [c.name for c in caches]
  for a, b in zip(caches, ref_caches):
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.assigned, b.assigned)


def test_heatmap_experiment_smoke(tmp_path, detector_dir):
  wd = str(tmp_path / "hm")
  assert rolo_heatmap.main(["--smoke", "--workdir", wd, "--detector", detector_dir, "--no_progress",
                            "--protocol", "first_third"]) == 0
  m = json.load(open(os.path.join(wd, "first_third", "metrics.json")))
  _finite_summary(m)
  assert m["rolo"]["config"]["mode"] == "heatmap"
  occ = m["occlusion"]
  if occ["found"]:   # the smoke videos may or may not hold an occlusion
    assert all(os.path.exists(p) for p in occ["paths"]) and occ["paths"][-1].endswith(".gif")
    assert set(occ["occluded_frames"]) <= set(occ["shown_frames"])


def test_step_study_smoke(tmp_path, detector_dir):
  wd = str(tmp_path / "steps")
  assert rolo_steps.main(["--smoke", "--workdir", wd, "--detector", detector_dir, "--no_progress",
                          "--steps_list", "1,3"]) == 0
  out = json.load(open(os.path.join(wd, "steps.json")))
  assert [r["N"] for r in out["rows"]] == [1, 3]
  assert all(r["lstm_fps"] > 0 and 0 <= r["average_overlap"] <= 1 for r in out["rows"])
  table = open(os.path.join(wd, "steps_table.md")).read()
  assert "| 1 |" in table and "| 3 |" in table and "YOLO (reference)" in table
  assert os.path.getsize(os.path.join(wd, "steps.png")) > 0


def test_bad_arguments_are_clear(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    rolo_exp.main(["--smoke", "--workdir", str(tmp_path), "--detector", str(tmp_path / "missing")])
  assert e.value.code == 2 and "detector folder does not exist" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    rolo_exp.main(["--smoke", "--workdir", str(tmp_path), "--config", "tiny_heatmap"])


@pytest.mark.parametrize("argv, message", [
    (["--feature_scale", "x"], "--feature_scale 'x'"),
    (["--feature_scale", "nan"], "--feature_scale 'nan'"),
    (["--feature_scale", "-1"], "--feature_scale '-1'"),
    (["--features_dir", "{tmp}/feats", "--detector", "{tmp}"], "--features_dir replaces the detector"),
    (["--workdir", "{tmp}/afile"], "is a file"),
])
def test_flags_are_checked_before_the_detector(tmp_path, capsys, argv, message):
  # No --detector: a run that got past the checks would train one (minutes); these fail at once.
  (tmp_path / "afile").write_text("x")
  (tmp_path / "feats").mkdir()
  argv = [a.format(tmp=tmp_path) for a in argv]
  full = ["--smoke", "--no_progress"] + (["--workdir", str(tmp_path / "wd")] if "--workdir" not in argv else []) + argv
  for main in (rolo_exp.main, rolo_heatmap.main):
    with pytest.raises(SystemExit) as e:
      main(full)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and message in err, err
  assert not (tmp_path / "wd").exists()


def test_step_study_refuses_a_repeated_window(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    rolo_steps.main(["--smoke", "--workdir", str(tmp_path / "wd"), "--steps_list", "3,3"])
  assert e.value.code == 2 and "repeats a window length" in capsys.readouterr().err
  assert not (tmp_path / "wd").exists()


def test_otb_folder_third_labels(tmp_path, detector_dir):
  root = paths.shared_data()
  if root is None or not os.path.isdir(os.path.join(root, "otb", "Couple")):
    pytest.skip("needs ../shared/data: otb/Couple")
  # A one-sequence OTB folder (a link, not a copy) keeps the run short.
  data = tmp_path / "otb"
  data.mkdir()
  os.symlink(os.path.join(root, "otb", "Couple"), data / "Couple")
  wd = str(tmp_path / "otb_run")
  assert rolo_exp.main(["--smoke", "--workdir", wd, "--detector", detector_dir, "--no_progress",
                        "--data_dir", str(data), "--protocol", "third_labels", "--conf_thresh", "0.0"]) == 0
  m = json.load(open(os.path.join(wd, "third_labels", "metrics.json")))
  _finite_summary(m)
  assert m["test_sequences"] == ["Couple"]
  # third_labels scores the unlabelled frames only: 2/3 of the 140 frames, minus frame 0's group.
  assert m["summary"]["ROLO"]["frames"] == sum(1 for t in range(140) if t % 3 != 0)


def test_occlusion_runs_use_scored_frames_only():
  from types import SimpleNamespace

  T = 10
  gt = np.tile([[10.0, 10.0, 20.0, 20.0]], (T, 1))
  assigned = gt.copy()
  assigned[4:7] = np.nan                         # YOLO misses during the occlusion
  heat = np.zeros((T, 32 * 32))
  heat[:, 0] = 1.0                               # all heat in the top-left cell ...
  cache = SimpleNamespace(num_frames=T, gt=gt, assigned=assigned, size=(64, 64), name="s",
                          occluded=np.zeros(T, bool))
  covered = np.zeros(T)
  covered[3:8] = 0.5                             # occluded frames 3..7
  seq = SimpleNamespace(meta={"covered_fraction": covered})
  scored = np.arange(T) % 3 != 0                 # frames 3 and 6 trained ROLO
  runs = rolo_heatmap.occlusion_runs(cache, seq, scored, heat)
  assert len(runs) == 1
  r = runs[0]
  assert (r["first"], r["last"]) == (3, 7) and r["frames"] == [4, 5, 7]
  assert r["yolo_missed"] == [True, True, False]
  # ... cell (0, 0) covers [0, 2) px: outside the box at x, y >= 10, so no heat is on the target.
  assert r["mean_heat_on_target"] == 0.0


def test_pick_run_prefers_heat_held_through_the_whole_occlusion():
  def run(name, missed, heat):
    return {"sequence": name, "yolo_missed": missed, "heat_on_target": heat,
            "mean_heat_on_target": float(np.mean(heat))}

  # A long occlusion where the heat is held on 6 of 30 missed frames, a short one held on all 4,
  # and one with only 2 misses (both held): too short to be a candidate.
  long = run("long", [True] * 30, [0.6] * 6 + [0.1] * 24)
  short = run("short", [True] * 4, [0.7, 0.6, 0.55, 0.5])
  tiny = run("tiny", [True, True], [0.9, 0.9])
  assert rolo_heatmap.held_frames(long) == 6 and rolo_heatmap.held_frames(short) == 4
  assert rolo_heatmap.pick_run([long, short, tiny])["sequence"] == "short"
  # Same share held: more held frames wins.
  short5 = run("short5", [True] * 5, [0.6] * 5)
  assert rolo_heatmap.pick_run([short, short5])["sequence"] == "short5"
  # No run with enough misses: most held frames, then most misses.
  a = run("a", [True, False], [0.8, 0.8])
  b = run("b", [True, True], [0.8, 0.1])
  assert rolo_heatmap.pick_run([a, b])["sequence"] == "b"


def test_data_meta_names_folders_by_their_last_name(tmp_path):
  # A workdir resumes when its data or feature folder has moved (another machine's copy): only the
  # folder's name, the sequences' names and their frame count are compared, never a full path.
  import argparse
  import types

  caches = [types.SimpleNamespace(name=n, num_frames=10) for n in ("Couple", "Girl")]
  prep = rolo_exp.Prepared(detector=None, train_caches=caches)
  metas = [rolo_exp.data_meta(argparse.Namespace(iou_min=0.1, history=3, features_dir=f"{root}/feats/",
                                                 feature_dim=None, data_dir=f"{root}/otb"), prep)
           for root in ("/a", str(tmp_path))]
  assert metas[0] == metas[1]
  assert metas[0]["data"] == "otb" and metas[0]["features_dir"] == "feats" and metas[0]["train_frames"] == 20
  caches.reverse()
  assert rolo_exp.data_meta(argparse.Namespace(iou_min=0.1, history=3, features_dir="f", feature_dim=None,
                                               data_dir="otb"), prep)["train_names_sha1"] != metas[0]["train_names_sha1"]
