"""MOTChallenge reader: the real MOT17-mini sequences and TUD-Campus files, fake layouts, bad rows."""
import os

import numpy as np
import pytest
from PIL import Image

from rolo_jax.data import paths
from rolo_jax.data.formats import load_dataset, mot
from rolo_jax.data.sequence import Objects
from rolo_jax.errors import DataError

DATA = paths.shared_data()
needs_data = pytest.mark.skipif(
    DATA is None or not os.path.isdir(os.path.join(DATA or "", "mot")),
    reason="needs ../shared/data: real MOTChallenge files (set ROLO_JAX_DATA or place shared/data beside the repo)")


def _d(*p):
  return os.path.join(DATA, "mot", *p)


def _raw_rows(path):
  """The file's rows as float lists, parsed independently of the reader."""
  with open(path) as f:
    return [[float(v) for v in line.split(",")] for line in f if line.strip()]


# ----------------------------------------------------------------------------- real data

@needs_data
@pytest.mark.parametrize("seq,k,seq_len", [("MOT17-02-FRCNN", 4, 600), ("MOT17-04-FRCNN", 8, 1050)])
def test_mot17_mini_sequences(seq, k, seq_len):
  d = _d("MOT17-mini", "train", seq)
  s = mot.read_mot_sequence(d)
  assert s.name == seq and len(s) == k
  assert s.meta["seqLength"] == seq_len and s.meta["frameRate"] == 30
  assert s.meta["frames_missing"] == seq_len - k
  gt_rows = _raw_rows(os.path.join(d, "gt", "gt.txt"))
  det_rows = _raw_rows(os.path.join(d, "det", "det.txt"))
  assert all(r[0] <= k for r in gt_rows)  # the cut gt only covers the kept frames
  assert len(s.gt) == len(gt_rows) and s.meta["gt_dropped"] == 0
  kept = [r for r in det_rows if r[0] <= k]
  assert 0 < len(s.detections) == len(kept) < len(det_rows)
  assert s.meta["detections_dropped"] == len(det_rows) - len(kept)
  assert "detections" in s.meta["note"]
  # 1-based file frames -> 0-based Objects frames.
  assert s.gt.frame.min() == 0 and s.gt.frame.max() == k - 1
  assert s.detections.frame.max() == k - 1
  assert np.all(s.detections.track_id == -1)
  # First gt row, field by field.
  r = gt_rows[0]
  assert (s.gt.frame[0], s.gt.track_id[0]) == (r[0] - 1, r[1])
  np.testing.assert_array_equal(s.gt.box[0], r[2:6])
  assert (s.gt.score[0], s.gt.label[0], s.gt.visibility[0]) == (r[6], r[7], r[8])
  # MOT17 det.txt has 7 columns: no class (-1), visibility 1, score = conf.
  np.testing.assert_array_equal(s.detections.score[:3], [kk[6] for kk in kept[:3]])
  assert np.all(s.detections.label == -1) and np.all(s.detections.visibility == 1)
  f = s.frames[k - 1]
  assert f.shape == (1080, 1920, 3) and f.dtype == np.uint8
  # Track view: box per frame.
  tr = s.track(int(s.gt.track_id[0]))
  assert tr.boxes.shape == (k, 4)


@needs_data
def test_mot_dataset_finds_both_sequences():
  seqs = load_dataset("mot", _d())  # TUD-Campus (no img1/, no seqinfo.ini) is not a sequence
  assert [s.name for s in seqs] == ["MOT17-02-FRCNN", "MOT17-04-FRCNN"]
  assert [s.name for s in mot.read_mot_dataset(_d("MOT17-mini"), split="train",
                                               names=["MOT17-04-FRCNN"])] == ["MOT17-04-FRCNN"]
  assert seqs[0].class_names[1] == "pedestrian"


@needs_data
@pytest.mark.parametrize("fname,kind,n", [("gt.txt", "gt", 359), ("det.txt", "det", 321),
                                          ("tracker_output.txt", "results", 222)])
def test_tud_campus_files(fname, kind, n):
  path = _d("TUD-Campus", fname)
  rows = np.asarray(_raw_rows(path))
  o = mot.read_mot_file(path, kind)
  assert len(o) == n == len(rows)
  np.testing.assert_array_equal(o.frame, rows[:, 0] - 1)
  np.testing.assert_array_equal(o.track_id, rows[:, 1])
  np.testing.assert_array_equal(o.box, rows[:, 2:6])
  np.testing.assert_array_equal(o.score, rows[:, 6])
  assert o.frame.min() == 0 and o.frame.max() == 70
  # 10-column MOT15 rows: world coordinates dropped, no class.
  assert np.all(o.label == -1) and np.all(o.visibility == 1)
  if kind == "det":
    assert np.all(o.track_id == -1)
  else:
    assert np.all(o.track_id >= 1)
  np.testing.assert_array_equal(mot.read_mot_file(_d("TUD-Campus", "gt.txt")).box[0],
                                [399, 182, 121, 229])


# ----------------------------------------------------------------------------- bad rows

@pytest.mark.parametrize("kind,bad,what", [
    ("gt", "2,1,10,10,5", "expected 10 numbers"),               # wrong column count
    ("det", "2,-1,10,ten,5,5,1,-1,-1,-1", "not a number"),
    ("gt", "2,1,10,10,-5,5,1,-1,-1,-1", "negative width/height"),
    ("det", "2,-1,10,10,5,-0.5,1,-1,-1,-1", "negative width/height"),
    ("gt", "0,1,10,10,5,5,1,-1,-1,-1", "frame numbers start at 1"),
    ("gt", "2.5,1,10,10,5,5,1,-1,-1,-1", "frame must be a whole number"),
    ("gt", "1,1,10,10,5,5,1,-1,-1,-1", "frame 1 has id 1 twice (first on line 1)"),
    ("results", "2,-1,10,10,5,5,1,-1,-1,-1", "track id >= 0"),
])
def test_bad_rows_name_file_and_line(tmp_path, kind, bad, what):
  p = tmp_path / "f.txt"
  p.write_text("1,1,10,10,5,5,1,-1,-1,-1\n\n" + bad + "\n")
  with pytest.raises(DataError) as e:
    mot.read_mot_file(p, kind)
  assert str(e.value).startswith(f"{p}, line 3:"), str(e.value)
  assert what in str(e.value)


def test_column_variants(tmp_path):
  p = tmp_path / "g.txt"
  p.write_text("3,7,1.5,2.5,10,20,0,12,0.25\n1,7,1,2,3,4,1,1,1.0\n")
  o = mot.read_mot_file(p, "gt")
  np.testing.assert_array_equal(o.frame, [2, 0])
  np.testing.assert_array_equal(o.box[0], [1.5, 2.5, 10, 20])
  np.testing.assert_array_equal(o.label, [12, 1])
  np.testing.assert_array_equal(o.visibility, [0.25, 1.0])
  np.testing.assert_array_equal(o.score, [0, 1])
  p.write_text("1,-1,1,2,3,4,0.9,2\n")
  o = mot.read_mot_file(p, "det")
  assert o.label.tolist() == [2] and o.visibility.tolist() == [1.0]
  p.write_text("1,4,1,2,3,4\n")
  o = mot.read_mot_file(p, "results")
  assert o.score.tolist() == [1.0] and o.track_id.tolist() == [4]
  with pytest.raises(DataError, match="line 1: expected 7 or 8 or 9 or 10 numbers"):
    mot.read_mot_file(p, "gt")  # 6 columns only for results
  p.write_text("1,4,1,2,3,4,1,-1,-1,-1\n2,5,1,2,3,4,1,-1,-1\n")
  with pytest.raises(DataError, match="line 2: expected 10 numbers"):
    mot.read_mot_file(p, "results")  # all rows must have the first row's width


def test_empty_and_missing_files(tmp_path):
  p = tmp_path / "empty.txt"
  p.write_text("")
  o = mot.read_mot_file(p, "det")
  assert isinstance(o, Objects) and len(o) == 0 and o.box.shape == (0, 4)
  p.write_text("\n\n")
  assert len(mot.read_mot_file(p, "gt")) == 0
  with pytest.raises(DataError, match="does not exist"):
    mot.read_mot_file(tmp_path / "nope.txt")
  with pytest.raises(ValueError):
    mot.read_mot_file(p, "tracks")


# ----------------------------------------------------------------------------- fake layouts

def _fake_mot(root, name="FAKE-01", n=3, seq_len=None, size=(32, 24), det=None, gt=None,
              mode="RGB"):
  d = os.path.join(root, "train", name)
  os.makedirs(os.path.join(d, "img1"))
  for i in range(1, n + 1):
    Image.new(mode, size, 90 if mode == "L" else (90, 40, 10)).save(
        os.path.join(d, "img1", f"{i:06d}.jpg"))
  with open(os.path.join(d, "seqinfo.ini"), "w") as f:
    f.write(f"[Sequence]\nname={name}\nimDir=img1\nframeRate=25\nseqLength={seq_len or n}\n"
            f"imWidth={size[0]}\nimHeight={size[1]}\nimExt=.jpg\n")
  if gt is not None:
    os.makedirs(os.path.join(d, "gt"))
    with open(os.path.join(d, "gt", "gt.txt"), "w") as f:
      f.write(gt)
  if det is not None:
    os.makedirs(os.path.join(d, "det"))
    with open(os.path.join(d, "det", "det.txt"), "w") as f:
      f.write(det)
  return d


def test_fake_sequence_round_trip(tmp_path):
  gt = "1,1,2,3,4,5,1,1,1\n3,1,3,3,4,5,1,1,0.5\n2,2,10,10,6,6,0,7,1\n"
  det = "1,-1,2,3,4,5,0.9\n4,-1,1,1,1,1,0.8\n"
  d = _fake_mot(tmp_path, n=3, seq_len=4, gt=gt, det=det, mode="L")
  s = mot.read_mot_sequence(d)
  assert s.name == "FAKE-01" and len(s) == 3 and s.meta["frameRate"] == 25
  assert s.frames[0].shape == (24, 32, 3)  # grayscale -> 3 channels
  np.testing.assert_array_equal(s.gt.frame, [0, 2, 1])
  t1 = s.track(1)
  np.testing.assert_array_equal(t1.boxes[0], [2, 3, 4, 5])
  assert np.all(np.isnan(t1.boxes[1]))
  np.testing.assert_array_equal(t1.boxes[2], [3, 3, 4, 5])
  assert len(s.detections) == 1 and s.meta["detections_dropped"] == 1
  assert s.meta["frames_missing"] == 1
  assert s.class_names[s.gt.label[2]] == "static_person"


def test_fake_sequence_without_gt_or_det(tmp_path):
  d = _fake_mot(tmp_path)
  s = mot.read_mot_sequence(d)
  assert s.gt is None and s.detections is None and "note" not in s.meta


def test_fake_sequence_errors(tmp_path):
  with pytest.raises(DataError, match="MOT sequence folder does not exist"):
    mot.read_mot_sequence(tmp_path / "none")
  d = _fake_mot(tmp_path, "GAP", n=4)
  os.remove(os.path.join(d, "img1", "000002.jpg"))
  with pytest.raises(DataError, match="frame 2 is missing"):
    mot.read_mot_sequence(d)
  d = _fake_mot(tmp_path, "LONG", n=3, seq_len=2)
  with pytest.raises(DataError, match="has 3 images but seqLength"):
    mot.read_mot_sequence(d)
  d = _fake_mot(tmp_path, "SIZE", n=2)
  ini = os.path.join(d, "seqinfo.ini")
  with open(ini) as f:
    text = f.read().replace("imWidth=32", "imWidth=64")
  with open(ini, "w") as f:
    f.write(text)
  with pytest.raises(DataError, match="image is 32x24 but"):
    mot.read_mot_sequence(d)
  assert mot.read_mot_sequence(d, strict=False).meta["size_mismatch"] == (32, 24)
  with open(ini, "w") as f:
    f.write(text.replace("seqLength=2", "seqLength=two"))
  with pytest.raises(DataError, match="seqLength should be a number"):
    mot.read_mot_sequence(d)
  with open(ini, "w") as f:
    f.write("[Sequence]\nname\n")
  with pytest.raises(DataError) as e:
    mot.read_mot_sequence(d)
  assert str(e.value) == (f"{ini}, line 2: cannot parse 'name': expected 'key=value', 'key: value' "
                          "or a [section] header")
  d = _fake_mot(tmp_path, "BADGT", n=2, gt="1,1,1,1,1,1,1,1,1\n2,1,1,1,1\n")
  with pytest.raises(DataError) as e:
    mot.read_mot_sequence(d)
  assert str(e.value).startswith(f"{os.path.join(d, 'gt', 'gt.txt')}, line 2:")


def test_undecodable_frame(tmp_path):
  d = _fake_mot(tmp_path, "BROKEN", n=2)
  bad = os.path.join(d, "img1", "000002.jpg")
  with open(bad, "wb") as f:
    f.write(b"\xff\xd8 truncated")
  s = mot.read_mot_sequence(d)
  with pytest.raises(DataError) as e:
    s.frames[1]
  assert bad in str(e.value)


@pytest.mark.parametrize("box", ["1e308,2,1e308,10", "0,0,1e154,1e154"])
def test_gt_box_too_large_to_score_is_an_error_naming_the_line(tmp_path, box):
  # A gt box that no box can overlap (x+w or the sum of two such areas overflows: 1e154 x 1e154
  # passes a w*h check) is refused; the same row in detections or results is read as it is.
  text = f"1,1,0,0,10,10,1,1,1\n2,1,{box},0,8,1\n"
  f = tmp_path / "gt.txt"
  f.write_text(text)
  with pytest.raises(DataError, match=r"gt\.txt, line 2: box \[.*\] is too large to score"):
    mot.read_mot_file(f, "gt")
  for kind in ("det", "results"):
    objs = mot.read_mot_file(f, kind)
    assert len(objs) == 2 and np.all(np.isfinite(objs.box))
