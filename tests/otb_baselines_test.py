"""experiments.otb_baselines on a tiny OTB-layout folder (and on real data when present)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments import otb_baselines
from rolo_jax.data.paths import shared_data


def make_otb(root, names=("SeqA", "SeqB"), T=6, H=48, W=64):
  rng = np.random.default_rng(0)
  for k, name in enumerate(names):
    img = root / name / "img"
    img.mkdir(parents=True)
    tex = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
    rows = []
    for t in range(T):
      f = np.full((H, W, 3), 30 * k, np.uint8)
      x, y = 10 + t, 8 + t
      f[y:y + 12, x:x + 12] = tex
      Image.fromarray(f).save(img / f"{t + 1:04d}.jpg", quality=95)
      rows.append(f"{x},{y},12,12")
    (root / name / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")


def test_writes_result_files_and_fps(tmp_path):
  make_otb(tmp_path / "otb")
  out = tmp_path / "out"
  assert otb_baselines.main(["--data", str(tmp_path / "otb"), "--out", str(out),
                             "--trackers", "static,kcf"]) == 0
  for tracker in ("static", "kcf"):
    for seq in ("SeqA", "SeqB"):
      rows = np.loadtxt(out / tracker / f"{seq}.txt", delimiter=",", ndmin=2)
      assert rows.shape == (6, 4)
      np.testing.assert_array_equal(rows[0], [10, 8, 12, 12])
      assert np.all(np.isfinite(rows))
  static = np.loadtxt(out / "static" / "SeqB.txt", delimiter=",")
  np.testing.assert_array_equal(static, np.tile([10, 8, 12, 12], (6, 1)))
  fps = json.loads((out / "fps.json").read_text())
  assert set(fps) == {"static", "kcf"} and all(v > 0 for v in fps.values())
  runs = json.loads((out / "runs.json").read_text())
  assert runs["kcf"]["SeqA"]["start"] == 0 and runs["kcf"]["SeqA"]["frames"] == 6


def test_unknown_tracker_exits_2(tmp_path, capsys):
  from rolo_jax.errors import cli_main

  make_otb(tmp_path / "otb", names=("SeqA",))
  with pytest.raises(SystemExit) as e:
    cli_main(otb_baselines.main)(["--data", str(tmp_path / "otb"), "--out", str(tmp_path / "o"),
                                  "--trackers", "static,nope"])
  assert e.value.code == 2
  assert "unknown tracker 'nope'" in capsys.readouterr().err


def test_real_otb_sequence(tmp_path):
  data = shared_data()
  if data is None or not os.path.isdir(os.path.join(data, "otb", "Football1")):
    pytest.skip("needs ../shared/data: otb/Football1")
  out = tmp_path / "out"
  otb_baselines.main(["--data", os.path.join(data, "otb"), "--out", str(out), "--names", "Football1",
                      "--trackers", "static"])
  rows = np.loadtxt(out / "static" / "football1.txt", delimiter=",")
  assert rows.shape == (74, 4)  # the benchmark's frame range 1..74 of the 81 images
