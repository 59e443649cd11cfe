"""OTB reader: every real sequence in ../shared/data/otb, all 100 anno_TB100 files, fake layouts."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from rolo_jax.data import paths
from rolo_jax.data.formats import load_dataset, otb
from rolo_jax.data.images import list_images
from rolo_jax.errors import DataError

DATA = paths.shared_data()
needs_data = pytest.mark.skipif(
    DATA is None or not os.path.isdir(os.path.join(DATA or "", "otb")),
    reason="needs ../shared/data: real OTB sequences (set ROLO_JAX_DATA or place shared/data beside the repo)")


def _d(*p):
  return os.path.join(DATA, *p)


SEQ_JSON = "otb_annotations/otb100_sequences.json"
# From shared/data/README.md: folder -> (images, ground-truth rows, (width, height)).
README_TABLE = {
    "Basketball": (725, 725, (576, 432)),
    "Couple": (140, 140, (320, 240)),
    "Crossing": (120, 120, (360, 240)),
    "DragonBaby": (113, 113, (640, 360)),
    "Football1": (81, 74, (352, 288)),
    "Jogging": (307, 307, (352, 288)),
    "MotorRolling": (164, 164, (640, 360)),
}


def _write_img(path, size=(16, 12), color=(10, 200, 30), mode="RGB"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new(mode, size, color).save(path)


def _fake_seq(root, name="Fake", n_img=5, rows=None, gt_name="groundtruth_rect.txt",
              img_names=None):
  d = os.path.join(root, name)
  names = img_names or [f"{i:04d}.jpg" for i in range(1, n_img + 1)]
  for i, n in enumerate(names):
    _write_img(os.path.join(d, "img", n), color=(i * 20 % 255, 0, 0))
  if rows is None:
    rows = [f"{i},{i + 1},5,6" for i in range(1, len(names) + 1)]
  with open(os.path.join(d, gt_name), "w") as f:
    f.write("\n".join(rows) + "\n")
  return d


# ----------------------------------------------------------------------------- real data

@needs_data
def test_readme_table_matches_the_folders():
  assert sorted(os.listdir(_d("otb"))) == sorted(README_TABLE)
  for folder, (n_img, _, _) in README_TABLE.items():
    assert len(list_images(_d("otb", folder, "img"))) == n_img, folder


@needs_data
@pytest.mark.parametrize("folder", sorted(README_TABLE))
def test_every_real_sequence_with_sequences_json(folder):
  n_img, n_box, (w, h) = README_TABLE[folder]
  seqs = otb.read_otb_sequence(_d("otb", folder), sequences_json=_d(SEQ_JSON))
  assert len(seqs) == (2 if folder == "Jogging" else 1)
  for s in seqs:
    # Every OTB-100 range of these sequences starts at frame 1, so frames = the first n_box images.
    assert len(s) == n_box == len(s.frames) == len(s.boxes)
    np.testing.assert_array_equal(s.frame_numbers, np.arange(1, n_box + 1))
    assert os.path.basename(s.frames.paths[-1]) == f"{n_box:04d}.jpg"
    np.testing.assert_array_equal(s.boxes, otb.read_otb_annotation(s.meta["gt_file"]))
    assert s.boxes.dtype == np.float64 and np.all(np.isfinite(s.boxes))
    for t in (0, len(s) - 1):
      f = s.frame(t)
      assert f.shape == (h, w, 3) and f.dtype == np.uint8
    assert s.size() == (w, h)
    assert isinstance(s.meta["init_omit"], np.ndarray)  # initOmit/ found beside the json


@needs_data
@pytest.mark.parametrize("folder", sorted(set(README_TABLE) - {"Football1"}))
def test_real_sequences_read_strict_without_json(folder):
  n_img, n_box, _ = README_TABLE[folder]
  for s in otb.read_otb_sequence(_d("otb", folder)):
    assert len(s) == n_img == n_box
    assert "init_omit" not in s.meta  # nothing to look it up in


@needs_data
def test_read_otb_dataset_reads_all_real_sequences():
  seqs = load_dataset("otb", _d("otb"), sequences_json=_d(SEQ_JSON))
  assert [s.name for s in seqs] == ["Basketball", "Couple", "Crossing", "DragonBaby", "Football1",
                                    "Jogging-1", "Jogging-2", "MotorRolling"]
  assert sum(len(s) for s in seqs) == 725 + 140 + 120 + 113 + 74 + 2 * 307 + 164
  # Names the toolkit's result files use (otb_reference/results/<Tracker>/<name>.txt).
  assert [s.meta["benchmark_name"] for s in seqs] == [
      "basketball", "couple", "crossing", "DragonBaby", "football1", "jogging-1", "jogging-2",
      "motorRolling"]


@needs_data
def test_jogging_has_two_targets_sharing_img():
  a, b = otb.read_otb_sequence(_d("otb", "Jogging"), sequences_json=_d(SEQ_JSON))
  # otb100_sequences.json names them 'jogging-1', 'jogging-2': same separator, folder's case.
  assert (a.name, b.name) == ("Jogging-1", "Jogging-2")
  assert (a.meta["target"], b.meta["target"]) == (1, 2)
  assert a.frames.paths == b.frames.paths
  assert a.meta["gt_file"].endswith("groundtruth_rect.1.txt")
  assert b.meta["gt_file"].endswith("groundtruth_rect.2.txt")
  np.testing.assert_array_equal(a.boxes[0], [111, 98, 25, 101])  # first row of .1
  np.testing.assert_array_equal(b.boxes[0], [180, 79, 37, 114])  # first row of .2
  # initOmit/jogging-1.txt is '61 83'; jogging-2.txt '40 63'.
  np.testing.assert_array_equal(a.meta["init_omit"], np.arange(61, 84))
  np.testing.assert_array_equal(b.meta["init_omit_ranges"], [[40, 63]])
  # Without the json the toolkit's separator for Jogging is still used.
  assert [s.name for s in otb.read_otb_sequence(_d("otb", "Jogging"))] == ["Jogging-1", "Jogging-2"]


@needs_data
def test_basketball_init_omit():
  (s,) = otb.read_otb_sequence(_d("otb", "Basketball"), sequences_json=_d(SEQ_JSON))
  np.testing.assert_array_equal(s.meta["init_omit_ranges"], [[8, 27], [619, 628], [639, 659]])
  assert len(s.meta["init_omit"]) == 20 + 10 + 21
  assert 8 in s.meta["init_omit"] and 659 in s.meta["init_omit"] and 28 not in s.meta["init_omit"]
  # Explicit folder gives the same.
  (s2,) = otb.read_otb_sequence(_d("otb", "Basketball"),
                                init_omit_dir=_d("otb_annotations", "initOmit"))
  np.testing.assert_array_equal(s.meta["init_omit"], s2.meta["init_omit"])


@needs_data
def test_football1_count_mismatch():
  with pytest.raises(DataError) as e:
    otb.read_otb_sequence(_d("otb", "Football1"))
  msg = str(e.value)
  assert _d("otb", "Football1", "groundtruth_rect.txt") in msg
  assert "81 images" in msg and "74 boxes" in msg
  assert "sequences_json" in msg and "strict=False" in msg
  (s,) = otb.read_otb_sequence(_d("otb", "Football1"), sequences_json=_d(SEQ_JSON))
  assert len(s) == 74 and os.path.basename(s.frames.paths[-1]) == "0074.jpg"
  assert "truncated" not in s.meta
  (s2,) = otb.read_otb_sequence(_d("otb", "Football1"), strict=False)
  assert len(s2) == 74 and s2.frames.paths == s.frames.paths
  np.testing.assert_array_equal(s2.boxes, s.boxes)
  assert "74" in s2.meta["truncated"]


@needs_data
def test_all_100_anno_tb100_files_match_the_json_ranges():
  with open(_d(SEQ_JSON)) as f:
    entries = json.load(f)
  assert len(entries) == 100
  anno = _d("otb_annotations", "anno_TB100")
  found = set()
  for e in entries:
    path = otb.find_annotation(anno, e["name"])
    assert os.path.basename(path).lower() == e["name"].lower() + ".txt"
    boxes = otb.read_otb_annotation(path)
    assert boxes.shape == (e["end_frame"] - e["start_frame"] + 1, 4), e
    found.add(path)
  assert len(found) == 100
  # Case really varies between the json and the folder ('fleetFace' vs fleetface.txt).
  assert os.path.basename(otb.find_annotation(anno, "fleetFace")) == "fleetface.txt"
  assert os.path.basename(otb.find_annotation(anno, "DAVID")) == "david.txt"
  assert os.path.basename(otb.find_annotation(anno, "Jogging.1")) == "jogging-1.txt"


@needs_data
def test_real_groundtruth_equals_anno_tb100():
  anno = _d("otb_annotations", "anno_TB100")
  for s in otb.read_otb_dataset(_d("otb"), sequences_json=_d(SEQ_JSON)):
    ref = otb.read_otb_annotation(otb.find_annotation(anno, s.name))
    np.testing.assert_array_equal(s.boxes, ref, err_msg=s.name)


# ----------------------------------------------------------------------------- fake layouts

def test_frame_range_by_file_number(tmp_path):
  # Like OTB-100 'david' (300..770 -> img/0300.jpg..0770.jpg): images 0003..0009, range 5..7.
  d = _fake_seq(tmp_path, "David", img_names=[f"{i:04d}.jpg" for i in range(3, 10)],
                rows=["1,1,4,4", "2,2,4,4", "3,3,4,4"])
  js = [{"name": "david", "start_frame": 5, "end_frame": 7}]
  (s,) = otb.read_otb_sequence(d, sequences_json=js)
  assert s.name == "David" and s.meta["benchmark_name"] == "david"
  assert [os.path.basename(p) for p in s.frames.paths] == ["0005.jpg", "0006.jpg", "0007.jpg"]
  np.testing.assert_array_equal(s.frame_numbers, [5, 6, 7])
  np.testing.assert_array_equal(s.boxes[:, 0], [1, 2, 3])
  # Without the range: 7 images, 3 boxes.
  with pytest.raises(DataError, match="7 images but groundtruth_rect.txt has 3 boxes"):
    otb.read_otb_sequence(d)
  # A range the images do not cover.
  with pytest.raises(DataError, match="no image numbered 10"):
    otb.read_otb_sequence(d, sequences_json=[{"name": "David", "start_frame": 8, "end_frame": 10}])


def test_groundtruth_with_a_row_per_image_is_cut_to_the_range(tmp_path):
  d = _fake_seq(tmp_path, "Full", n_img=9)  # rows "i,i+1,5,6" for images 1..9
  (s,) = otb.read_otb_sequence(d, sequences_json=[{"name": "full", "start_frame": 5,
                                                   "end_frame": 7}])
  np.testing.assert_array_equal(s.frame_numbers, [5, 6, 7])
  np.testing.assert_array_equal(s.boxes[:, 0], [5, 6, 7])
  assert s.meta["gt_cut_to_range"] is True


def test_natural_sort_and_names_without_numbers(tmp_path):
  names = [f"{i}.jpg" for i in (1, 10, 2, 3, 4, 5, 6, 7, 8, 9)]  # as listdir might give them
  d = _fake_seq(tmp_path, "Unpadded", img_names=names)
  (s,) = otb.read_otb_sequence(d)
  assert [os.path.basename(p) for p in s.frames.paths] == [f"{i}.jpg" for i in range(1, 11)]
  np.testing.assert_array_equal(s.frame_numbers, np.arange(1, 11))
  d = _fake_seq(tmp_path, "Letters", img_names=["b.jpg", "a.jpg", "c.jpg", "d.jpg"],
                rows=["1,1,2,2", "2,2,2,2"])
  (s,) = otb.read_otb_sequence(d, sequences_json=[{"name": "letters", "start_frame": 2,
                                                   "end_frame": 3}])
  assert [os.path.basename(p) for p in s.frames.paths] == ["b.jpg", "c.jpg"]
  np.testing.assert_array_equal(s.frame_numbers, [2, 3])


@pytest.mark.parametrize("strict", [True, False])
def test_missing_image_is_an_error_not_a_shift(tmp_path, strict):
  # 0003.jpg missing: pairing the 5 boxes with the 4 images in order would give image 0004 the box
  # of frame 3. Strict or not, the reader names the gap instead.
  d = _fake_seq(tmp_path, "Gap", img_names=["0001.jpg", "0002.jpg", "0004.jpg", "0005.jpg"],
                rows=[f"{i},{i},5,6" for i in range(1, 6)])
  with pytest.raises(DataError, match=r"Gap/img: frame numbers jump from 2 \(0002.jpg\) to 4 "
                                      r"\(0004.jpg\): is an image missing\?"):
    otb.read_otb_sequence(d, strict=strict)
  # Extra images after the last box (Football1's case) are not a gap: strict=False keeps the rest.
  d = _fake_seq(tmp_path, "Extra", n_img=6, rows=[f"{i},{i},5,6" for i in range(1, 5)])
  (s,) = otb.read_otb_sequence(d, strict=False)
  assert len(s) == 4 and os.path.basename(s.frames.paths[-1]) == "0004.jpg"


def test_blank_line_inside_ground_truth_is_an_error(tmp_path):
  d = _fake_seq(tmp_path, "Blank", n_img=4, rows=["1,1,5,6", "2,2,5,6", "", "3,3,5,6", "4,4,5,6"])
  with pytest.raises(DataError, match=r"groundtruth_rect.txt, line 3: blank line with more rows "
                                      r"after it \(line 4\)"):
    otb.read_otb_sequence(d, strict=False)
  # Blank lines at the end are fine (trailing newlines).
  d = _fake_seq(tmp_path, "Trailing", n_img=2, rows=["1,1,5,6", "2,2,5,6", "", ""])
  (s,) = otb.read_otb_sequence(d)
  assert len(s) == 2


@pytest.mark.parametrize("row,msg", [("2_5,1,5,6", r"not a number: '2_5'"),
                                     ("1,1,-5,6", r"negative width/height")])
def test_ground_truth_row_rejected(tmp_path, row, msg):
  d = _fake_seq(tmp_path, "Bad", n_img=3, rows=["1,1,5,6", row, "3,3,5,6"])
  with pytest.raises(DataError, match=r"groundtruth_rect.txt, line 2: " + msg):
    otb.read_otb_sequence(d)


def test_frames_of_another_size_are_named(tmp_path):
  d = _fake_seq(tmp_path, "Mixed", n_img=3)
  _write_img(os.path.join(d, "img", "0002.jpg"), size=(9, 7))
  (s,) = otb.read_otb_sequence(d)
  s.frames[0]
  with pytest.raises(DataError, match=r"0002.jpg: frame 1 is 9x7 but the sequence's first frame "):
    s.frames[1]


@pytest.mark.parametrize("js,msg", [({"couple": 1}, r"entry 'couple': expected an object"),
                                    ({"couple": {"start_frame": True, "end_frame": True}},
                                     r"need whole numbers 1 <= start_frame <= end_frame")])
def test_sequences_json_values_checked(tmp_path, js, msg):
  with pytest.raises(DataError, match=msg):
    otb.load_sequences_json(js)


def test_second_target_only_and_separator_from_json(tmp_path):
  d = _fake_seq(tmp_path, "Human4", n_img=3, gt_name="groundtruth_rect.2.txt")
  (s,) = otb.read_otb_sequence(d)
  assert s.name == "Human4.2" and s.meta["target"] == 2
  d = _fake_seq(tmp_path, "Pair", n_img=3, gt_name="groundtruth_rect.1.txt")
  _fake_seq(tmp_path, "Pair", n_img=3, gt_name="groundtruth_rect.2.txt")
  js = [{"name": "pair_1", "start_frame": 1, "end_frame": 3},
        {"name": "pair_2", "start_frame": 1, "end_frame": 3}]
  assert [s.name for s in otb.read_otb_sequence(d, sequences_json=js)] == ["Pair_1", "Pair_2"]
  assert [s.name for s in otb.read_otb_sequence(d)] == ["Pair.1", "Pair.2"]


@pytest.mark.parametrize("row,line,what", [
    ("1,2,3", 2, "expected 4 numbers"),
    ("1,2,abc,4", 2, "not a number"),
    ("1\t2 3,4,5", 2, "expected 4 numbers"),
])
def test_malformed_groundtruth_names_file_and_line(tmp_path, row, line, what):
  d = _fake_seq(tmp_path, "Bad", n_img=3, rows=["1,1,2,2", row, "3,3,2,2"])
  with pytest.raises(DataError) as e:
    otb.read_otb_sequence(d)
  assert f"{os.path.join(d, 'groundtruth_rect.txt')}, line {line}:" in str(e.value)
  assert what in str(e.value)


def test_mixed_separators_are_accepted(tmp_path):
  d = _fake_seq(tmp_path, "Mixed", n_img=3, rows=["1,2,3,4", "5\t6\t7\t8", "9 10,11\t12"])
  (s,) = otb.read_otb_sequence(d)
  np.testing.assert_array_equal(s.boxes, np.arange(1, 13).reshape(3, 4))


def test_missing_pieces(tmp_path):
  with pytest.raises(DataError, match="OTB sequence folder does not exist"):
    otb.read_otb_sequence(tmp_path / "Nope")
  d = tmp_path / "NoGt"
  (d / "img").mkdir(parents=True)
  with pytest.raises(DataError, match="no groundtruth_rect.txt"):
    otb.read_otb_sequence(d)
  d = tmp_path / "NoImg"
  d.mkdir()
  (d / "groundtruth_rect.txt").write_text("1,1,1,1\n")
  with pytest.raises(DataError) as e:
    otb.read_otb_sequence(d)
  assert str(d / "img") in str(e.value) and "does not exist" in str(e.value)
  (d / "img").mkdir()
  with pytest.raises(DataError, match="no image files"):
    otb.read_otb_sequence(d)
  with pytest.raises(DataError, match="no OTB sequence folders"):
    otb.read_otb_dataset(tmp_path / "NoGt" / "img")
  with pytest.raises(DataError, match="annotation folder does not exist"):
    otb.find_annotation(tmp_path / "anno", "x")


def test_undecodable_image_fails_at_frame_access(tmp_path):
  d = _fake_seq(tmp_path, "Broken", n_img=3)
  bad = os.path.join(d, "img", "0002.jpg")
  with open(bad, "wb") as f:
    f.write(b"this is not a jpeg")
  (s,) = otb.read_otb_sequence(d)  # lazy: reading the sequence works
  assert s.frame(0).shape == (12, 16, 3)
  with pytest.raises(DataError) as e:
    s.frame(1)
  assert bad in str(e.value) and "cannot decode" in str(e.value)


def test_grayscale_jpeg_becomes_three_channels(tmp_path):
  d = _fake_seq(tmp_path, "Gray", n_img=2)
  _write_img(os.path.join(d, "img", "0001.jpg"), color=128, mode="L")
  assert Image.open(os.path.join(d, "img", "0001.jpg")).mode == "L"
  (s,) = otb.read_otb_sequence(d)
  f = s.frame(0)
  assert f.shape == (12, 16, 3) and f.dtype == np.uint8
  assert np.array_equal(f[..., 0], f[..., 1]) and np.array_equal(f[..., 1], f[..., 2])
  assert abs(int(f[0, 0, 0]) - 128) <= 2


def test_dataset_skips_non_sequence_entries_with_a_warning(tmp_path):
  _fake_seq(tmp_path, "B", n_img=2)
  _fake_seq(tmp_path, "A", n_img=3)
  (tmp_path / "README.txt").write_text("hi")
  (tmp_path / "anno_TB100").mkdir()
  with pytest.warns(UserWarning, match="anno_TB100"):
    seqs = otb.read_otb_dataset(tmp_path)
  assert [(s.name, len(s)) for s in seqs] == [("A", 3), ("B", 2)]
  assert [s.name for s in otb.read_otb_dataset(tmp_path, names=["b"])] == ["B"]
  with pytest.raises(DataError, match="no sequence folder named 'C'"):
    otb.read_otb_dataset(tmp_path, names=["C"])


def test_find_annotation_case_and_ambiguity(tmp_path):
  (tmp_path / "couple.txt").write_text("1,1,1,1\n")
  (tmp_path / "Jogging-2.txt").write_text("1,1,1,1\n")
  assert otb.find_annotation(tmp_path, "COUPLE") == str(tmp_path / "couple.txt")
  assert otb.find_annotation(tmp_path, "jogging.2") == str(tmp_path / "Jogging-2.txt")
  assert otb.find_annotation(tmp_path, "missing", required=False) is None
  with pytest.raises(DataError, match="no annotation file for sequence 'missing'"):
    otb.find_annotation(tmp_path, "missing")
  (tmp_path / "Couple.txt").write_text("1,1,1,1\n")
  assert otb.find_annotation(tmp_path, "Couple") == str(tmp_path / "Couple.txt")  # exact wins
  with pytest.raises(DataError, match="several files match"):
    otb.find_annotation(tmp_path, "COUPLE")


def test_bad_sequences_json_and_init_omit(tmp_path):
  d = _fake_seq(tmp_path, "S", n_img=3)
  js = tmp_path / "seqs.json"
  js.write_text('[\n {"name": "S", "start_frame": 1,\n "end_frame": }\n]')
  with pytest.raises(DataError) as e:
    otb.read_otb_sequence(d, sequences_json=js)
  assert str(js) in str(e.value) and "line 3" in str(e.value)
  with pytest.raises(DataError, match="start_frame <= end_frame"):
    otb.read_otb_sequence(d, sequences_json=[{"name": "S", "start_frame": 3, "end_frame": 1}])
  with pytest.raises(DataError, match="lacks name/start_frame/end_frame"):
    otb.read_otb_sequence(d, sequences_json=[{"name": "S"}])
  omit = tmp_path / "initOmit"
  omit.mkdir()
  (omit / "s.txt").write_text("1 2\n3 x\n")
  with pytest.raises(DataError) as e:
    otb.read_otb_sequence(d, init_omit_dir=omit)
  assert f"{omit / 's.txt'}, line 2:" in str(e.value)
  (omit / "s.txt").write_text("2 2\n")
  (s,) = otb.read_otb_sequence(d, init_omit_dir=omit)
  np.testing.assert_array_equal(s.meta["init_omit"], [2])
  # A sequence without an initOmit file gets an empty list, not an error.
  (omit / "s.txt").unlink()
  (s,) = otb.read_otb_sequence(d, init_omit_dir=omit)
  assert s.meta["init_omit"].shape == (0,)


def test_count_mismatch_more_boxes_than_images(tmp_path):
  d = _fake_seq(tmp_path, "Short", n_img=2, rows=["1,1,1,1", "2,2,2,2", "3,3,3,3"])
  with pytest.raises(DataError, match="2 images but groundtruth_rect.txt has 3 boxes"):
    otb.read_otb_sequence(d)
  (s,) = otb.read_otb_sequence(d, strict=False)
  assert len(s) == 2 and len(s.frames) == 2
  js = [{"name": "Short", "start_frame": 1, "end_frame": 2}]
  with pytest.raises(DataError, match="frame range 1..2 of Short has 2 images"):
    otb.read_otb_sequence(d, sequences_json=js)
