"""VOT, UAV123, GOT-10k, LaSOT and ImageNet VID readers on tiny fake datasets in their exact layouts,
plus `load_dataset` dispatch."""
import os

import numpy as np
import pytest
from PIL import Image

from rolo_jax.data.formats import KINDS, got10k, lasot, load_dataset, uav, vid, vot
from rolo_jax.errors import DataError

NAN = float("nan")


def _img(path, size=(16, 12), color=(0, 120, 255)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", size, color).save(path)


def _frames(folder, n, fmt="{:08d}.jpg", start=1):
  for i in range(start, start + n):
    _img(os.path.join(folder, fmt.format(i)), color=(i * 30 % 256, 0, 0))


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _check_line(e, path, line):
  assert str(e.value).startswith(f"{path}, line {line}:"), str(e.value)


# ============================================================================ VOT

VOT_ROWS = [
    "10,20,30,40",                        # rectangle
    "10,20,40,20,40,50,10,50",            # axis-aligned square as a polygon -> 10,20,30,30
    "25.5,10,40,25,25.5,40,10,25",        # diamond -> 10,10,30,30
    "nan,nan,nan,nan",                    # absent
    "0,0,0,0",                            # absent (VOT's zero rectangle)
    "0",                                  # special code
    "m2,3,4,3,5,2,5",                     # 4x3 mask at (2,3): pixels (row 1, cols 1..2) -> 3,4,2,1
]


def _fake_vot(root, name="ball", rows=VOT_ROWS, color_dir=True, n_frames=None):
  d = os.path.join(root, name)
  _frames(os.path.join(d, "color") if color_dir else d, n_frames or len(rows))
  _write(os.path.join(d, "groundtruth.txt"), "\n".join(rows) + "\n")
  return d


def test_vot_regions(tmp_path):
  d = _fake_vot(tmp_path)
  s = vot.read_vot_sequence(d)
  assert s.name == "ball" and len(s) == 7
  np.testing.assert_array_equal(s.boxes[0], [10, 20, 30, 40])
  np.testing.assert_array_equal(s.boxes[1], [10, 20, 30, 30])
  np.testing.assert_array_equal(s.boxes[2], [10, 10, 30, 30])
  assert np.all(np.isnan(s.boxes[3:6]))
  np.testing.assert_array_equal(s.boxes[6], [3, 4, 2, 1])
  assert s.present.tolist() == [True, True, True, False, False, False, True]
  assert s.meta["region_type"] == ["rect", "polygon", "polygon", "rect", "rect", "special", "mask"]
  np.testing.assert_array_equal(s.meta["polygons"][2], [[25.5, 10], [40, 25], [25.5, 40], [10, 25]])
  assert s.meta["polygons"][0] is None
  assert s.frame(0).shape == (12, 16, 3)
  np.testing.assert_array_equal(s.frame_numbers, np.arange(1, 8))


def test_vot_mask_box_by_hand():
  # 3x2 mask, runs 0 zeros, 1 one, 4 zeros, 1 one -> pixels (0,0) and (1,2): box 0..2 x 0..1.
  np.testing.assert_array_equal(vot.mask_region_box(["0", "0", "3", "2", "0", "1", "4", "1"]),
                                [0, 0, 3, 2])
  assert np.all(np.isnan(vot.mask_region_box(["5", "5", "2", "2", "4"])))
  with pytest.raises(DataError, match="add up to 7 > W\\*H = 4"):
    vot.mask_region_box(["0", "0", "2", "2", "3", "4"])


def test_vot_plain_layout_tags_and_dataset(tmp_path):
  d = _fake_vot(tmp_path, "car", rows=["1,1,5,1,5,5,1,5"] * 3, color_dir=False)
  _write(os.path.join(d, "occlusion.tag"), "0\n1\n")  # shorter than the sequence: padded
  _fake_vot(tmp_path, "ball")
  _write(os.path.join(tmp_path, "list.txt"), "car\nball\n")
  seqs = load_dataset("vot", tmp_path)
  assert [s.name for s in seqs] == ["car", "ball"]
  assert seqs[0].meta["tags"]["occlusion"].tolist() == [False, True, False]
  np.testing.assert_array_equal(seqs[0].boxes, [[1, 1, 4, 4]] * 3)
  os.remove(os.path.join(tmp_path, "list.txt"))
  assert [s.name for s in vot.read_vot_dataset(tmp_path)] == ["ball", "car"]
  _write(os.path.join(tmp_path, "list.txt"), "car\nbike\n")
  with pytest.raises(DataError) as e:
    vot.read_vot_dataset(tmp_path)
  _check_line(e, os.path.join(tmp_path, "list.txt"), 2)
  with pytest.raises(DataError, match="no VOT sequences asked for"):
    vot.read_vot_dataset(tmp_path, names=[])
  empty = os.path.join(tmp_path, "empty")
  os.makedirs(empty)
  with pytest.raises(DataError, match="no VOT sequences \\(no list.txt and no folder with groundtruth.txt\\)"):
    vot.read_vot_dataset(empty)


@pytest.mark.parametrize("row,what", [
    ("1,2,3,4,5", "got 5"),
    ("1,2,x,4", "not a number"),
    ("1,2,-3,4", "negative width/height"),
    ("m1,2,3", "mask region needs"),
])
def test_vot_bad_rows(tmp_path, row, what):
  d = _fake_vot(tmp_path, rows=["1,2,3,4", "1,2,3,4", row])
  with pytest.raises(DataError) as e:
    vot.read_vot_sequence(d)
  _check_line(e, os.path.join(d, "groundtruth.txt"), 3)
  assert what in str(e.value)


def test_vot_missing_and_mismatch(tmp_path):
  with pytest.raises(DataError, match="VOT sequence folder does not exist"):
    vot.read_vot_sequence(tmp_path / "none")
  d = _fake_vot(tmp_path, rows=["1,2,3,4"] * 3, n_frames=4)
  with pytest.raises(DataError, match="color/ has 4 images but groundtruth.txt has 3 boxes"):
    vot.read_vot_sequence(d)
  assert len(vot.read_vot_sequence(d, strict=False)) == 3
  os.remove(os.path.join(d, "groundtruth.txt"))
  with pytest.raises(DataError, match="groundtruth.txt: VOT ground-truth file does not exist"):
    vot.read_vot_sequence(d)
  d = _fake_vot(tmp_path, "t", rows=["1,1,1,1"] * 2)
  _write(os.path.join(d, "occlusion.tag"), "0\n2\n")
  with pytest.raises(DataError) as e:
    vot.read_vot_sequence(d)
  _check_line(e, os.path.join(d, "occlusion.tag"), 2)


# ============================================================================ UAV123

def _fake_uav(root):
  data = os.path.join(root, "data_seq", "UAV123")
  anno = os.path.join(root, "anno", "UAV123")
  _frames(os.path.join(data, "car1"), 4, "{:06d}.jpg")
  _write(os.path.join(anno, "car1.txt"), "1,2,3,4\nNaN,NaN,NaN,NaN\n5,6,7,8\n9,10,11,12\n")
  _frames(os.path.join(data, "bird1"), 6, "{:06d}.jpg")
  _write(os.path.join(anno, "bird1_1.txt"), "1,1,2,2\n2,2,2,2\n3,3,2,2\n")
  os.makedirs(os.path.join(anno, "att"))  # the benchmark's attribute folder: ignored
  return data, anno


def test_uav_sequence_and_nan_rows(tmp_path):
  data, anno = _fake_uav(tmp_path)
  s = uav.read_uav_sequence(os.path.join(anno, "car1.txt"), os.path.join(data, "car1"))
  assert s.name == "car1" and len(s) == 4
  assert s.present.tolist() == [True, False, True, True]
  np.testing.assert_array_equal(s.boxes[[0, 2, 3]], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
  s = uav.read_uav_sequence(os.path.join(anno, "bird1_1.txt"), os.path.join(data, "bird1"),
                            start_frame=3)
  np.testing.assert_array_equal(s.frame_numbers, [3, 4, 5])
  assert os.path.basename(s.frames.paths[0]) == "000003.jpg"


def test_uav_dataset_needs_ranges_for_partial_sequences(tmp_path):
  _fake_uav(tmp_path)
  with pytest.raises(DataError) as e:
    load_dataset("uav123", tmp_path)
  assert "bird1_1.txt" in str(e.value) and "ranges=" in str(e.value)
  seqs = uav.read_uav_dataset(tmp_path, ranges={"bird1_1": (2, 4)})
  assert [s.name for s in seqs] == ["bird1_1", "car1"]
  np.testing.assert_array_equal(seqs[0].frame_numbers, [2, 3, 4])
  with pytest.raises(DataError, match="no image numbered 7"):
    uav.read_uav_dataset(tmp_path, ranges={"bird1_1": (5, 7)})
  with pytest.raises(DataError, match="UAV annotation folder does not exist"):
    uav.read_uav_dataset(tmp_path, subset="UAV20L")


@pytest.mark.parametrize("row,what", [("1,2,3", "expected 4 numbers"), ("1,2,three,4", "not a number"),
                                      ("1,2,-3,4", "negative width/height")])
def test_uav_bad_rows(tmp_path, row, what):
  data, anno = _fake_uav(tmp_path)
  p = os.path.join(anno, "car1.txt")
  _write(p, f"1,2,3,4\n{row}\n5,6,7,8\n9,10,11,12\n")
  with pytest.raises(DataError) as e:
    uav.read_uav_sequence(p, os.path.join(data, "car1"))
  _check_line(e, p, 2)
  assert what in str(e.value)


def test_uav_missing_and_mismatch(tmp_path):
  data, anno = _fake_uav(tmp_path)
  with pytest.raises(DataError, match="UAV frame folder does not exist"):
    uav.read_uav_sequence(os.path.join(anno, "car1.txt"), os.path.join(data, "car9"))
  _write(os.path.join(anno, "car2.txt"), "1,1,1,1\n")
  with pytest.raises(DataError, match="frame folder for annotation car2.txt does not exist"):
    uav.read_uav_dataset(tmp_path, names=["car2"])
  with pytest.raises(DataError, match="bird1/ has 6 images but bird1_1.txt has 3 boxes"):
    uav.read_uav_sequence(os.path.join(anno, "bird1_1.txt"), os.path.join(data, "bird1"))


# ============================================================================ GOT-10k

META_INI = """[METAINFO]
url: https://youtu.be/abcdefghijk
begin: 00:00:10
end: 00:00:20
anno_fps: 10Hz
object_class: ichneumon
motion_class: walking
major_class: viverrine
root_class: animal
motion_adverb: slowly
resolution: (1280, 720)
"""


def _fake_got(root, split="val", name="GOT-10k_Val_000001", n=4, gt=None, absence="0\n0\n1\n0\n",
              cover="8\n8\n0\n5\n"):
  d = os.path.join(root, split, name)
  _frames(d, n)
  rows = gt if gt is not None else "".join(f"{i}.0000,{i + 1}.5000,10.0000,20.0000\n" for i in range(n))
  _write(os.path.join(d, "groundtruth.txt"), rows)
  if absence is not None:
    _write(os.path.join(d, "absence.label"), absence)
    _write(os.path.join(d, "cover.label"), cover)
    _write(os.path.join(d, "cut_by_image.label"), "0\n" * n)
  _write(os.path.join(d, "meta_info.ini"), META_INI)
  return d


def test_got10k_sequence(tmp_path):
  d = _fake_got(tmp_path)
  s = got10k.read_got10k_sequence(d)
  assert s.name == "GOT-10k_Val_000001" and len(s) == 4
  assert s.present.tolist() == [True, True, False, True]
  np.testing.assert_array_equal(s.boxes[3], [3, 4.5, 10, 20])
  np.testing.assert_array_equal(s.meta["boxes_original"][2], [2, 3.5, 10, 20])
  assert s.meta["absent"].tolist() == [False, False, True, False]
  assert s.meta["cover"].tolist() == [8, 8, 0, 5]
  assert s.meta["info"]["url"] == "https://youtu.be/abcdefghijk"
  assert s.meta["info"]["resolution"] == (1280, 720)
  assert s.meta["class"] == "ichneumon" and s.meta["first_box_only"] is False


def test_got10k_test_split_first_box_only_and_dataset(tmp_path):
  _fake_got(tmp_path, "test", "GOT-10k_Test_000001", n=3, gt="5,6,7,8\n", absence=None)
  _write(os.path.join(tmp_path, "test", "list.txt"), "GOT-10k_Test_000001\n")
  (s,) = load_dataset("got-10k", tmp_path, split="test")
  assert len(s) == 3 and s.meta["first_box_only"] is True
  np.testing.assert_array_equal(s.boxes[0], [5, 6, 7, 8])
  assert np.all(np.isnan(s.boxes[1:]))
  _write(os.path.join(tmp_path, "test", "list.txt"), "GOT-10k_Test_000001\nGOT-10k_Test_000002\n")
  with pytest.raises(DataError) as e:
    got10k.read_got10k_dataset(tmp_path, split="test")
  _check_line(e, os.path.join(tmp_path, "test", "list.txt"), 2)
  with pytest.raises(DataError, match="GOT-10k train split folder does not exist"):
    got10k.read_got10k_dataset(tmp_path, split="train")


def test_got10k_missing_frame_is_an_error(tmp_path):
  d = _fake_got(tmp_path)
  os.remove(os.path.join(d, "00000002.jpg"))
  for strict in (True, False):
    with pytest.raises(DataError, match=r"frame numbers jump from 1 \(00000001.jpg\) to 3 "
                                        r"\(00000003.jpg\): is an image missing\?"):
      got10k.read_got10k_sequence(d, strict=strict)


def test_got10k_errors(tmp_path):
  d = _fake_got(tmp_path, absence="0\n0\n1\n")
  with pytest.raises(DataError, match="absence.label: has 3 values but the sequence has 4 frames"):
    got10k.read_got10k_sequence(d)
  d = _fake_got(tmp_path, name="b", cover="8\n9\n0\n5\n")
  with pytest.raises(DataError) as e:
    got10k.read_got10k_sequence(d)
  _check_line(e, os.path.join(d, "cover.label"), 2)
  d = _fake_got(tmp_path, name="c", gt="1,2,3,4\n1,2,3\n1,2,3,4\n1,2,3,4\n")
  with pytest.raises(DataError) as e:
    got10k.read_got10k_sequence(d)
  _check_line(e, os.path.join(d, "groundtruth.txt"), 2)
  d = _fake_got(tmp_path, name="d", gt="1,2,3,4\n1,2,x,4\n1,2,3,4\n1,2,3,4\n")
  with pytest.raises(DataError, match="line 2: not a number"):
    got10k.read_got10k_sequence(d)
  d = _fake_got(tmp_path, name="e", gt="1,2,3,4\n1,2,3,4\n")
  with pytest.raises(DataError, match="has 4 images but groundtruth.txt has 2 boxes"):
    got10k.read_got10k_sequence(d)
  _write(os.path.join(d, "meta_info.ini"), "[METAINFO]\nresolution: big\n")
  with pytest.raises(DataError, match="resolution should be"):
    got10k.read_got10k_meta(os.path.join(d, "meta_info.ini"))
  with pytest.raises(DataError, match="GOT-10k sequence folder does not exist"):
    got10k.read_got10k_sequence(tmp_path / "nope")


# ============================================================================ LaSOT

def _fake_lasot(root, cls="airplane", idx=1, n=4, gt=None, occ="0,0,1,0", oov="0,0,0,1"):
  d = os.path.join(root, cls, f"{cls}-{idx}")
  _frames(os.path.join(d, "img"), n)
  _write(os.path.join(d, "groundtruth.txt"),
         gt if gt is not None else "".join(f"{10 + i},{20 + i},30,40\n" for i in range(n)))
  _write(os.path.join(d, "full_occlusion.txt"), occ)
  _write(os.path.join(d, "out_of_view.txt"), oov)
  _write(os.path.join(d, "nlp.txt"), "white airplane flying in the sky\n")
  return d


def test_lasot_sequence(tmp_path):
  d = _fake_lasot(tmp_path)
  s = lasot.read_lasot_sequence(d)
  assert s.name == "airplane-1" and len(s) == 4 and s.meta["class"] == "airplane"
  assert s.present.tolist() == [True, True, False, False]  # occluded at 2, out of view at 3
  np.testing.assert_array_equal(s.meta["boxes_original"][2:], [[12, 22, 30, 40], [13, 23, 30, 40]])
  assert s.meta["full_occlusion"].tolist() == [False, False, True, False]
  assert s.meta["out_of_view"].tolist() == [False, False, False, True]
  assert s.meta["nlp"] == "white airplane flying in the sky"
  assert s.frame(3).shape == (12, 16, 3)


def test_lasot_dataset_and_split(tmp_path):
  _fake_lasot(tmp_path, "airplane", 1)
  _fake_lasot(tmp_path, "airplane", 2)
  _fake_lasot(tmp_path, "zebra", 10, n=2, occ="0,0", oov="0\n0\n")
  _write(os.path.join(tmp_path, "testing_set.txt"), "airplane-2\nzebra-10\n")
  assert [s.name for s in load_dataset("lasot", tmp_path)] == ["airplane-1", "airplane-2", "zebra-10"]
  assert [s.name for s in lasot.read_lasot_dataset(tmp_path, split="test")] == ["airplane-2", "zebra-10"]
  assert [s.name for s in lasot.read_lasot_dataset(tmp_path, split="train")] == ["airplane-1"]
  assert [s.name for s in lasot.read_lasot_dataset(tmp_path, classes=["zebra"])] == ["zebra-10"]
  with pytest.raises(DataError, match="no LaSOT sequence folder 'cat-1'"):
    lasot.read_lasot_dataset(tmp_path, names=["cat-1"])


def test_lasot_errors(tmp_path):
  d = _fake_lasot(tmp_path, occ="0,0,1")
  with pytest.raises(DataError, match="full_occlusion.txt: has 3 full occlusion flag values but "
                     "groundtruth.txt has 4"):
    lasot.read_lasot_sequence(d)
  d = _fake_lasot(tmp_path, idx=2, oov="0,0\n2,0")
  with pytest.raises(DataError) as e:
    lasot.read_lasot_sequence(d)
  _check_line(e, os.path.join(d, "out_of_view.txt"), 2)
  d = _fake_lasot(tmp_path, idx=3, gt="1,2,3,4\n1,2,3,4\n1;2;3\n1,2,3,4\n")
  with pytest.raises(DataError) as e:
    lasot.read_lasot_sequence(d)
  _check_line(e, os.path.join(d, "groundtruth.txt"), 3)
  d = _fake_lasot(tmp_path, idx=4, gt="1,2,3,4\n1,2,3,4\nx,2,3,4\n1,2,3,4\n")
  with pytest.raises(DataError, match="line 3: not a number"):
    lasot.read_lasot_sequence(d)
  d = _fake_lasot(tmp_path, idx=5, n=5)
  os.remove(os.path.join(d, "img", "00000005.jpg"))
  _write(os.path.join(d, "groundtruth.txt"), "1,1,1,1\n" * 5)
  _write(os.path.join(d, "full_occlusion.txt"), "0,0,0,0,0")
  _write(os.path.join(d, "out_of_view.txt"), "0,0,0,0,0")
  with pytest.raises(DataError, match="img/ has 4 images but groundtruth.txt has 5 boxes"):
    lasot.read_lasot_sequence(d)
  os.remove(os.path.join(d, "out_of_view.txt"))
  with pytest.raises(DataError, match="out_of_view.txt: out-of-view flag file does not exist"):
    lasot.read_lasot_sequence(d)


# ============================================================================ ImageNet VID

def _vid_xml(objects, size=(16, 12)):
  """Frame XML; line numbers: <object> 8, <trackid> 9, <name> 10, <bndbox> 11, <xmax> 12,
  <xmin> 13, <ymax> 14, <ymin> 15 (first object)."""
  objs = "".join(
      f"""  <object>
    <trackid>{o[0]}</trackid>
    <name>{o[1]}</name>
    <bndbox>
      <xmax>{o[2][2]}</xmax>
      <xmin>{o[2][0]}</xmin>
      <ymax>{o[2][3]}</ymax>
      <ymin>{o[2][1]}</ymin>
    </bndbox>
    <occluded>{o[3]}</occluded>
    <generated>0</generated>
  </object>
""" for o in objects)
  return (f"<annotation>\n  <folder>x</folder>\n  <filename>000000</filename>\n"
          f"  <size>\n    <width>{size[0]}</width>\n    <height>{size[1]}</height>\n  </size>\n"
          f"{objs}</annotation>\n")


AIRPLANE, ZEBRA = "n02691156", "n02391049"
# xmin, ymin, xmax, ymax
VID_FRAMES = [
    [(0, AIRPLANE, (10, 2, 29, 11), 0)],
    [(0, AIRPLANE, (11, 2, 30, 11), 0), (1, ZEBRA, (0, 0, 4, 4), 0)],
    [(0, AIRPLANE, (12, 2, 31, 11), 0), (1, ZEBRA, (1, 1, 5, 5), 1)],
]


def _fake_vid(root, split="train", rel="ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000",
              frames=VID_FRAMES, annotate=True):
  for t, objs in enumerate(frames):
    _img(os.path.join(root, "Data", "VID", split, rel, f"{t:06d}.JPEG"))
    if annotate:
      _write(os.path.join(root, "Annotations", "VID", split, rel, f"{t:06d}.xml"), _vid_xml(objs))
  return os.path.join(root, "Annotations", "VID", split, rel), os.path.join(root, "Data", "VID", split, rel)


def test_vid_class_table():
  assert len(vid.VID_SYNSETS) == 30 and len(set(s for s, _ in vid.VID_SYNSETS)) == 30
  assert vid.VID_CLASS_NAMES[0] == "airplane" and vid.VID_CLASS_NAMES[-1] == "zebra"
  assert vid.VID_CLASS_NAMES[vid.SYNSET_TO_LABEL["n02510455"]] == "giant_panda"


def test_vid_sequence(tmp_path):
  anno, data = _fake_vid(tmp_path)
  s = vid.read_vid_sequence(anno, data)
  assert len(s) == 3 and len(s.gt) == 5 and s.detections is None
  assert s.meta["size"] == (16, 12)
  np.testing.assert_array_equal(s.gt.frame, [0, 1, 1, 2, 2])
  np.testing.assert_array_equal(s.gt.track_id, [0, 0, 1, 0, 1])
  # Inclusive xmax: xmin=10..xmax=29 covers 20 pixels.
  np.testing.assert_array_equal(s.gt.box[0], [10, 2, 20, 10])
  np.testing.assert_array_equal(s.gt.visibility, [1, 1, 1, 1, 0])
  assert s.meta["gt_occluded"].tolist() == [False, False, False, False, True]
  plane, zebra = s.tracks()
  assert plane.meta["class"] == "airplane" and zebra.meta["class"] == "zebra"
  np.testing.assert_array_equal(plane.boxes[:, 0], [10, 11, 12])
  assert zebra.present.tolist() == [False, True, True]
  assert s.frames[2].shape == (12, 16, 3)
  s2 = vid.read_vid_sequence(anno, data, inclusive_max=False)
  np.testing.assert_array_equal(s2.gt.box[0], [10, 2, 19, 9])


def test_vid_dataset_splits(tmp_path):
  _fake_vid(tmp_path)
  _fake_vid(tmp_path, "val", "ILSVRC2015_val_00000000", frames=VID_FRAMES[:2])
  _fake_vid(tmp_path, "test", "ILSVRC2015_test_00000000", frames=VID_FRAMES[:1], annotate=False)
  seqs = load_dataset("imagenet_vid", tmp_path)
  assert [s.name for s in seqs] == ["test/ILSVRC2015_test_00000000",
                                    "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000",
                                    "val/ILSVRC2015_val_00000000"]
  assert seqs[0].gt is None and len(seqs[0]) == 1
  assert [len(s) for s in seqs] == [1, 3, 2]
  assert len(vid.read_vid_dataset(tmp_path, split="val")) == 1
  assert len(vid.read_vid_dataset(tmp_path, max_sequences=2)) == 2


@pytest.mark.parametrize("mutate,line,what", [
    (lambda x: x.replace("</bndbox>", "", 1), None, "malformed XML"),
    (lambda x: x.replace("<xmin>10</xmin>", "<xmin>ten</xmin>"), 13, "<xmin> should be a number"),
    (lambda x: x.replace(AIRPLANE, "n99999999"), 10, "not one of the 30 VID synsets"),
    (lambda x: x.replace("<xmax>29</xmax>", "<xmax>5</xmax>"), 11, "xmax < xmin"),
    (lambda x: x.replace("<trackid>0</trackid>\n", ""), 8, "<object> has no <trackid>"),
    (lambda x: x.replace("<xmin>10</xmin>", "<xmin>nan</xmin>"), 13, "<xmin> should be a finite number"),
    (lambda x: x.replace("<xmin>10</xmin>", "<xmin>1_0</xmin>"), 13, "<xmin> should be a number"),
    (lambda x: x.replace("<trackid>0</trackid>", "<trackid>nan</trackid>"), 9,
     "<trackid> should be a finite number"),
    (lambda x: x.replace("<trackid>0</trackid>", "<trackid>-1</trackid>"), 9,
     "<trackid> should be 0 or more"),
])
def test_vid_bad_xml_names_file_and_line(tmp_path, mutate, line, what):
  anno, data = _fake_vid(tmp_path)
  p = os.path.join(anno, "000000.xml")
  with open(p) as f:
    text = f.read()
  _write(p, mutate(text))
  with pytest.raises(DataError) as e:
    vid.read_vid_sequence(anno, data)
  assert str(e.value).startswith(f"{p}, line "), str(e.value)
  if line is not None:
    _check_line(e, p, line)
  assert what in str(e.value)


def test_vid_inconsistent_tracks_and_counts(tmp_path):
  anno, data = _fake_vid(tmp_path, frames=[[(0, AIRPLANE, (1, 1, 2, 2), 0)],
                                           [(0, ZEBRA, (1, 1, 2, 2), 0)]])
  with pytest.raises(DataError, match="000001.xml, line 8: trackid 0 is n02391049 here"):
    vid.read_vid_sequence(anno, data)
  anno, data = _fake_vid(tmp_path / "b", frames=[[(3, AIRPLANE, (1, 1, 2, 2), 0),
                                                  (3, AIRPLANE, (1, 1, 2, 2), 0)]])
  with pytest.raises(DataError, match="trackid 3 appears twice"):
    vid.read_vid_sequence(anno, data)
  anno, data = _fake_vid(tmp_path / "c")
  os.remove(os.path.join(data, "000002.JPEG"))
  with pytest.raises(DataError, match="has 3 XML files but .* has 2 images"):
    vid.read_vid_sequence(anno, data)
  s = vid.read_vid_sequence(anno, data, strict=False)
  with pytest.raises(DataError, match="000002.JPEG: image file does not exist"):
    s.frames[2]
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty/Data/VID: VID frame \\(Data/VID\\) folder does not exist"):
    vid.read_vid_dataset(tmp_path / "empty")


# ============================================================================ all formats

def test_kinds_and_unknown_kind():
  assert KINDS == ("otb", "vot", "uav", "got10k", "lasot", "vid", "mot")
  with pytest.raises(ValueError, match="unknown dataset kind 'kitti'"):
    load_dataset("kitti", "/tmp")


@pytest.mark.parametrize("kind", KINDS)
def test_missing_root_is_a_data_error(tmp_path, kind):
  with pytest.raises(DataError) as e:
    load_dataset(kind, tmp_path / "missing")
  assert str(tmp_path / "missing") in str(e.value) and "does not exist" in str(e.value)


def _build(kind, root):
  """A one-sequence fake dataset of `kind`; returns (load kwargs, path of its first frame)."""
  if kind == "otb":
    d = os.path.join(root, "Seq")
    _frames(os.path.join(d, "img"), 2, "{:04d}.jpg")
    _write(os.path.join(d, "groundtruth_rect.txt"), "1,1,2,2\n1,1,2,2\n")
    return {}, os.path.join(d, "img", "0001.jpg")
  if kind == "vot":
    d = _fake_vot(root, rows=["1,1,2,2"] * 2)
    return {}, os.path.join(d, "color", "00000001.jpg")
  if kind == "uav":
    data, _ = _fake_uav(root)
    return {"names": ["car1"]}, os.path.join(data, "car1", "000001.jpg")
  if kind == "got10k":
    d = _fake_got(root)
    return {"split": "val"}, os.path.join(d, "00000001.jpg")
  if kind == "lasot":
    d = _fake_lasot(root)
    return {}, os.path.join(d, "img", "00000001.jpg")
  if kind == "vid":
    _, data = _fake_vid(root)
    return {}, os.path.join(data, "000000.JPEG")
  d = os.path.join(root, "M-01")
  _frames(os.path.join(d, "img1"), 2, "{:06d}.jpg")
  return {}, os.path.join(d, "img1", "000001.jpg")


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_lazy_undecodable_and_grayscale_frames(tmp_path, kind):
  kw, first = _build(kind, tmp_path)
  (s,) = load_dataset(kind, tmp_path, **kw)
  assert s.frames[0].shape == (12, 16, 3)
  Image.new("L", (16, 12), 77).save(first, format="JPEG")  # grayscale JPEG
  f = s.frames[0]
  assert f.shape == (12, 16, 3) and f.dtype == np.uint8 and np.all(f[..., 0] == f[..., 2])
  with open(first, "wb") as fh:
    fh.write(b"\x00\x01 not an image")
  (s,) = load_dataset(kind, tmp_path, **kw)  # reading the dataset does not decode frames...
  with pytest.raises(DataError) as e:  # ...the first access does, and names the file
    s.frames[0]
  assert first in str(e.value) and "cannot decode" in str(e.value)
