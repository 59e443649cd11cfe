"""Per-frame ROLO vectors (.npy, 4096 features + class, x, y, w, h, confidence): reading, writing,
and a clear DataError for every kind of bad folder or file."""
import os

import numpy as np
import pytest

from rolo_jax.data.formats import rolo_features as rf
from rolo_jax.errors import DataError


def vec(t, F=4096):
  """Frame t's vector: features t + k/F, det (class 14, 0.1t, 0.2, 0.3, 0.4, 0.9)."""
  return np.concatenate([t + np.arange(F) / F, [14, 0.1 * t, 0.2, 0.3, 0.4, 0.9]]).astype(np.float32)


def test_reads_frames_in_natural_order_with_either_stored_shape(tmp_path):
  np.save(tmp_path / "2.npy", vec(2))
  np.save(tmp_path / "10.npy", vec(10)[None])                # [1, 4102] as well as flat
  np.save(tmp_path / "1.npy", vec(1))
  (tmp_path / "notes.txt").write_text("not a frame")
  feats, dets = rf.read_feature_folder(tmp_path)
  assert feats.shape == (3, 4096) and feats.dtype == np.float32
  assert dets.shape == (3, 6)
  np.testing.assert_allclose(feats[:, 0], [1, 2, 10])        # 1, 2, 10 — not 1, 10, 2
  np.testing.assert_allclose(feats[2, 4095], 10 + 4095 / 4096, rtol=1e-6)
  np.testing.assert_allclose(dets[:, 1], [0.1, 0.2, 1.0], rtol=1e-6)
  np.testing.assert_allclose(dets[0], [14, 0.1, 0.2, 0.3, 0.4, 0.9], rtol=1e-6)


def test_write_then_read_round_trip_and_location_vectors(tmp_path):
  F = 8
  rng = np.random.RandomState(0)
  feats = rng.normal(size=(12, F)).astype(np.float32)
  dets = np.column_stack([np.full(12, 3.0), rng.uniform(0, 1, (12, 4)), np.full(12, 0.7)])
  paths = rf.write_feature_folder(tmp_path / "seq", feats, dets)
  assert [os.path.basename(p) for p in paths[:2]] == ["00000.npy", "00001.npy"]
  f2, d2 = rf.read_feature_folder(tmp_path / "seq", feature_dim=F)
  np.testing.assert_array_equal(f2, feats)
  np.testing.assert_allclose(d2, dets, rtol=1e-6)
  loc = rf.location_vectors(d2)
  np.testing.assert_array_equal(loc[:, [0, 5]], 0)           # class and confidence nulled
  np.testing.assert_array_equal(loc[:, 1:5], d2[:, 1:5])
  assert d2[0, 0] == 3.0                                     # the input is not modified


def test_wrong_length_names_the_file_and_both_lengths(tmp_path):
  np.save(tmp_path / "0001.npy", vec(1))
  np.save(tmp_path / "0002.npy", vec(2)[:-1])
  with pytest.raises(DataError) as e:
    rf.read_feature_folder(tmp_path)
  msg = str(e.value)
  assert e.value.path == str(tmp_path / "0002.npy")
  assert "expected 4102 values" in msg and "found 4101" in msg
  # the same values in a non-vector shape are refused too
  np.save(tmp_path / "0002.npy", vec(2).reshape(2, 2051))
  with pytest.raises(DataError, match=r"shape \(2, 2051\)"):
    rf.read_feature_folder(tmp_path)
  # and a different feature_dim changes what is expected
  np.save(tmp_path / "0002.npy", vec(2))
  with pytest.raises(DataError, match="expected 518 values"):
    rf.read_feature_folder(tmp_path, feature_dim=512)


def test_non_finite_values_are_reported_with_their_index(tmp_path):
  v = vec(0)
  v[17] = np.nan
  np.save(tmp_path / "0.npy", v)
  with pytest.raises(DataError, match=r"0\.npy: non-finite value nan at index 17 \(feature 17\)"):
    rf.read_feature_folder(tmp_path)
  v = vec(0)
  v[4096 + 3] = np.inf                                      # the 'w' field
  np.save(tmp_path / "0.npy", v)
  with pytest.raises(DataError, match=r"index 4099 \('w'\)"):
    rf.read_feature_folder(tmp_path)


def test_missing_or_empty_folders(tmp_path):
  with pytest.raises(DataError, match="feature folder does not exist") as e:
    rf.read_feature_folder(tmp_path / "nope")
  assert e.value.path == str(tmp_path / "nope")
  (tmp_path / "file.npy").write_bytes(b"")
  with pytest.raises(DataError, match="found a file"):
    rf.read_feature_folder(tmp_path / "file.npy")
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("x")
  with pytest.raises(DataError, match=r"no \.npy files"):
    rf.read_feature_folder(empty)


def test_unreadable_and_non_numeric_files(tmp_path):
  (tmp_path / "0.npy").write_bytes(b"this is not numpy")
  with pytest.raises(DataError, match=r"0\.npy: not a readable \.npy array"):
    rf.read_feature_folder(tmp_path)
  np.save(tmp_path / "0.npy", np.array(["a"] * 4102))
  with pytest.raises(DataError, match="numeric"):
    rf.read_feature_folder(tmp_path)
  np.save(tmp_path / "0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(DataError, match=r"0\.npy"):
    rf.read_feature_folder(tmp_path)


def test_writer_checks_shapes(tmp_path):
  with pytest.raises(ValueError, match="dets"):
    rf.write_feature_folder(tmp_path, np.zeros((3, 8)), np.zeros((3, 5)))
