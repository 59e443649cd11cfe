"""Tests of the tfds builders: build tiny datasets as array_record, read back via tfds.data_source."""
import dataclasses
import glob
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from rolo_jax.data import synthetic as S
from rolo_jax.data import tfds_builders as B
from rolo_jax.data.formats import otb
from rolo_jax.data.images import list_images, load_image
from rolo_jax.data.paths import shared_data
from rolo_jax.data.sequence import ArrayFrames, MultiSequence, Sequence
from rolo_jax.errors import DataError

tfds = pytest.importorskip("tensorflow_datasets")


def _array_record_files(data_dir, name):
  d = os.path.join(data_dir, *name.split("/"))
  return glob.glob(os.path.join(d, "*", "*.array_record-*")), glob.glob(os.path.join(d, "*", "*.tfrecord*"))


def test_synthetic_single_round_trip(tmp_path):
  name = B.build_synthetic(tmp_path, "single", num_train=2, num_test=3, num_frames=6)
  assert name == "synthetic_tracking/single_train2_test3_frames6"
  records, tfrecords = _array_record_files(tmp_path, name)
  assert len(records) == 2 and not tfrecords   # one file per split, array_record only
  for split, seeds, preset in (("test", [10**6, 10**6 + 1, 10**6 + 2], "test"),
                               ("train", [0, 1], "train")):
    cfg = dataclasses.replace(S.PRESETS[preset], num_frames=6)
    seqs = B.load_sequences(tmp_path, name, split)
    assert len(seqs) == len(seeds)
    for q, seed in zip(seqs, seeds):
      ref = S.make_sequence(seed, cfg)
      assert isinstance(q, Sequence) and isinstance(q.frames, B.EncodedFrames)
      assert q.name == ref.name and q.meta["seed"] == seed
      assert q.meta["class"] == ref.meta["class"]
      np.testing.assert_array_equal(q.frames.decode_all(), ref.frames.array)
      assert q.boxes.dtype == np.float64
      np.testing.assert_array_equal(q.boxes, ref.boxes)
      np.testing.assert_array_equal(q.frame_numbers, ref.frame_numbers)
      np.testing.assert_array_equal(q.meta["visible_fraction"], ref.meta["visible_fraction"])
      np.testing.assert_array_equal(q.meta["occluded"], ref.meta["occluded"])
      assert q.size() == ref.size()
  eager = B.load_sequences(tmp_path, name, "test", decode=True, limit=1)
  assert len(eager) == 1 and isinstance(eager[0].frames, ArrayFrames)
  # Building again is a no-op (the prepared data is reused).
  assert B.build_synthetic(tmp_path, "single", num_train=2, num_test=3, num_frames=6) == name


def test_plain_tfds_data_source_reads_it(tmp_path):
  name = B.build_synthetic(tmp_path, "single", num_train=1, num_test=1, num_frames=3)
  ds = tfds.data_source(name, split="train", data_dir=os.fspath(tmp_path), download=False)
  assert len(ds) == 1
  ex = ds[0]
  ref = S.make_sequence(0, dataclasses.replace(S.PRESETS["train"], num_frames=3))
  assert ex["frames"].shape == (3,)
  np.testing.assert_array_equal(B.decode_image(ex["frames"][2]), ref.frames[2])
  np.testing.assert_array_equal(ex["boxes"], ref.boxes)
  assert ex["image_format"] in (b"png", "png")


def test_synthetic_multi_round_trip(tmp_path):
  name = B.build_synthetic(tmp_path, "multi", num_train=1, num_test=1, num_frames=5)
  (m,) = B.load_sequences(tmp_path, name, "test")
  ref = S.make_multi_sequence(10**6, dataclasses.replace(S.PRESETS["test"], num_frames=5))
  assert isinstance(m, MultiSequence) and m.name == ref.name
  assert m.class_names == ref.class_names
  np.testing.assert_array_equal(m.frames.decode_all(), ref.frames.array)
  for f in ("frame", "track_id", "box", "label", "visibility"):
    np.testing.assert_array_equal(getattr(m.gt, f), getattr(ref.gt, f))
  tid = int(ref.gt.track_ids()[0])
  np.testing.assert_array_equal(m.track(tid).boxes, ref.track(tid).boxes)


def test_synthetic_config_names():
  assert B.synthetic_config("single") is B.SyntheticTracking.builder_configs["single"]
  assert B.synthetic_config("multi").kind == "multi"
  c = B.synthetic_config("single", num_train=3, num_test=2, num_frames=8)
  assert c.name == "single_train3_test2_frames8"
  assert c.synthetic_config("train").num_frames == 8
  assert c.synthetic_config("test").height == S.PRESETS["test"].height
  assert B.synthetic_config("multi", num_test=5, test_preset="large").name == \
      "multi_train64_test5_train_large"
  with pytest.raises(ValueError):
    B.synthetic_config("triple")
  with pytest.raises(ValueError):
    B.synthetic_config("single", num_train=1, train_preset="huge")


def _write_fake_otb(root):
  """SeqA: 4 colour JPEG frames, one target; SeqB: 3 grayscale JPEG frames, two targets."""
  rng = np.random.default_rng(0)
  a = root / "SeqA" / "img"
  a.mkdir(parents=True)
  for i in range(1, 5):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(a / f"{i:04d}.jpg",
                                                                            quality=90)
  (root / "SeqA" / "groundtruth_rect.txt").write_text(
      "1,2,10,12\n2\t3\t10.3\t12.7\n3,4,11,12\n0,0,0,0\n")
  b = root / "SeqB" / "img"
  b.mkdir(parents=True)
  for i in range(1, 4):
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), mode="L").save(b / f"{i:04d}.jpg")
  (root / "SeqB" / "groundtruth_rect.1.txt").write_text("1 1 5 5\n2 2 5 5\n3 3 5 5\n")
  (root / "SeqB" / "groundtruth_rect.2.txt").write_text("10,10,4,4\n11,10,4,4\n12,10,4,4\n")
  (root / "README.txt").write_text("not a sequence\n")


def _check_same(got, want):
  assert [q.name for q in got] == [q.name for q in want]
  for q, r in zip(got, want):
    np.testing.assert_array_equal(q.boxes, r.boxes)
    np.testing.assert_array_equal(q.frame_numbers, r.frame_numbers)
    assert len(q.frames) == len(r.frames)
    for i in range(len(r.frames)):
      np.testing.assert_array_equal(q.frames[i], load_image(r.frames.paths[i]))


def test_otb_folder_of_sequences(tmp_path):
  root = tmp_path / "otb"
  _write_fake_otb(root)
  data = tmp_path / "tfds"
  with pytest.warns(UserWarning):   # README.txt is skipped with a warning
    name = B.build_otb(data, root)
  assert name == "otb_folder/otb"
  records, tfrecords = _array_record_files(data, name)
  assert len(records) == 1 and not tfrecords
  got = B.load_sequences(data, name, "test")
  with pytest.warns(UserWarning):
    want = otb.read_otb_dataset(root)
  assert [q.name for q in got] == ["SeqA", "SeqB.1", "SeqB.2"]
  _check_same(got, want)
  assert got[0].boxes[1].tolist() == [2.0, 3.0, 10.3, 12.7]   # float64, not float32
  assert got[1].frames[0].shape == (20, 30, 3)                   # grayscale -> RGB
  assert got[0].meta["benchmark_name"] == "SeqA"


def test_otb_single_sequence_folder_and_errors(tmp_path):
  root = tmp_path / "otb"
  _write_fake_otb(root)
  name = B.build_otb(tmp_path / "tfds", root / "SeqB", name="seq_b")
  assert name == "otb_folder/seq_b"
  got = B.load_sequences(tmp_path / "tfds", name)
  _check_same(got, otb.read_otb_sequence(root / "SeqB"))
  with pytest.raises(DataError, match="does not exist"):
    B.build_otb(tmp_path / "tfds", root / "Missing")
  with pytest.raises(DataError, match="no prepared tfds dataset"):
    B.load_sequences(tmp_path / "tfds", "otb_folder/nothing_here")
  with pytest.raises(DataError, match="Unknown split"):
    B.load_sequences(tmp_path / "tfds", name, "train")


def test_building_leaves_no_temporary_folders(tmp_path, monkeypatch):
  # tfds 4.9 made an empty tmp*tfds folder in $TMPDIR for every builder of a dataset not yet
  # prepared (DatasetInfo.initialize_from_bucket); the builders skip that look-up.
  scratch = tmp_path / "tmpdir"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", os.fspath(scratch))
  assert tempfile.gettempdir() == os.fspath(scratch)
  B.build_synthetic(tmp_path / "tfds", "single", num_train=1, num_test=1, num_frames=3)
  B.build_synthetic(tmp_path / "tfds", "multi", num_train=1, num_test=1, num_frames=3)
  root = tmp_path / "otb"
  _write_fake_otb(root)
  B.build_otb(tmp_path / "tfds", root / "SeqA", name="seq_a")
  assert os.listdir(scratch) == []


def test_otb_folder_on_shared_crossing(tmp_path):
  data = shared_data()
  folder = os.path.join(data, "otb", "Crossing") if data else None
  if folder is None or not os.path.isdir(folder):
    pytest.skip("needs ../shared/data: otb/Crossing")
  name = B.build_otb(tmp_path, folder)
  assert name == "otb_folder/crossing"
  (q,) = B.load_sequences(tmp_path, name)
  (ref,) = otb.read_otb_sequence(folder)
  assert q.name == "Crossing" and len(q) == len(ref) == 120
  np.testing.assert_array_equal(q.boxes, ref.boxes)
  np.testing.assert_array_equal(q.frame_numbers, ref.frame_numbers)
  paths = list_images(os.path.join(folder, "img"))
  for i in (0, 57, 119):
    np.testing.assert_array_equal(q.frames[i], load_image(paths[i]))
  assert q.size() == (360, 240)
