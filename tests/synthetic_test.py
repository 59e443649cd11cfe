"""Tests of the synthetic video generator: determinism, ground truth against the pixels, splits."""
import dataclasses
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from rolo_jax.data import synthetic as S
from rolo_jax.data.sequence import ArrayFrames, MultiSequence, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Short videos keep the tests fast; the distribution is the 'train' preset's.
SHORT = dataclasses.replace(S.PRESETS["train"], num_frames=24)
# Every nuisance switched on, so the checks below see occluders, distractors, blur and exits.
BUSY = dataclasses.replace(SHORT, num_distractors=(2, 2), num_occluders=(2, 2), motion_blur_prob=1.0,
                           illumination_prob=1.0, partial_exit_prob=1.0, exit_margin=(0.6, 0.75),
                           occluder_size=(1.5, 2.5))


def _digest(seq) -> str:
  h = hashlib.sha256()
  h.update(np.ascontiguousarray(seq.frames.array).tobytes())
  boxes = seq.boxes if isinstance(seq, Sequence) else seq.gt.box
  h.update(np.ascontiguousarray(boxes).tobytes())
  return h.hexdigest()


def _bbox(mask):
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], float)


def test_types_and_shapes():
  seq = S.make_sequence(3, SHORT)
  assert isinstance(seq.frames, ArrayFrames)
  assert seq.frames.array.shape == (24, 128, 160, 3) and seq.frames.array.dtype == np.uint8
  assert seq.boxes.shape == (24, 4) and seq.boxes.dtype == np.float64
  assert seq.meta["class"] in S.CLASS_NAMES
  assert S.CLASS_NAMES[seq.meta["class_index"]] == seq.meta["class"]
  for key in ("visible_fraction", "in_frame_fraction", "covered_fraction", "occluded"):
    assert seq.meta[key].shape == (24,)
  assert seq.meta["occluded"].dtype == bool
  assert seq.size() == (160, 128)
  large = S.PRESETS["large"]
  assert (large.height, large.width) == (360, 480)
  assert set(S.PRESETS) >= {"train", "test", "large"}


def test_same_seed_is_byte_identical_in_process():
  for seed in (0, 11):
    a, b = S.make_sequence(seed, BUSY), S.make_sequence(seed, BUSY)
    assert a.frames.array.tobytes() == b.frames.array.tobytes()
    np.testing.assert_array_equal(a.boxes, b.boxes)   # NaNs compare equal here
    np.testing.assert_array_equal(a.meta["visible_fraction"], b.meta["visible_fraction"])
  m1, m2 = S.make_multi_sequence(5, BUSY), S.make_multi_sequence(5, BUSY)
  assert _digest(m1) == _digest(m2)
  np.testing.assert_array_equal(m1.gt.track_id, m2.gt.track_id)


def test_same_seed_is_byte_identical_in_a_subprocess_with_one_thread():
  code = (
      "import cv2, hashlib, numpy as np\n"
      "cv2.setNumThreads(1)\n"
      "from rolo_jax.data import synthetic as S\n"
      f"cfg = S.SyntheticConfig(**{dataclasses.asdict(BUSY)!r})\n"
      "def digest(frames, boxes):\n"
      "  h = hashlib.sha256(); h.update(np.ascontiguousarray(frames).tobytes())\n"
      "  h.update(np.ascontiguousarray(boxes).tobytes()); return h.hexdigest()\n"
      "for s in (0, 11):\n"
      "  q = S.make_sequence(s, cfg); print(digest(q.frames.array, q.boxes))\n"
      "m = S.make_multi_sequence(5, cfg); print(digest(m.frames.array, m.gt.box))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout.split()
  here = [_digest(S.make_sequence(0, BUSY)), _digest(S.make_sequence(11, BUSY)),
          _digest(S.make_multi_sequence(5, BUSY))]
  assert out == here


def test_different_seeds_differ():
  a, b = S.make_sequence(1, SHORT), S.make_sequence(2, SHORT)
  assert not np.array_equal(a.frames.array, b.frames.array)
  assert not np.array_equal(a.boxes, b.boxes)
  # Backgrounds differ too (not only the objects): compare the first frames' mean colours.
  assert np.abs(a.frames[0].mean((0, 1)) - b.frames[0].mean((0, 1))).max() > 1.0
  # The multi-object video of a seed does not share the single-object video's stream.
  assert not np.array_equal(S.make_multi_sequence(1, SHORT).frames[0], a.frames[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_boxes_match_masks_and_nan_exactly_when_hidden(seed):
  cfg = BUSY
  seq = S.make_sequence(seed, cfg, debug=True)
  H, W = cfg.height, cfg.width
  masks, vis_masks = seq.meta["masks"], seq.meta["visible_masks"]
  assert masks.shape == vis_masks.shape == (cfg.num_frames, H, W)
  assert not np.any(vis_masks & ~masks)
  vf, inf = seq.meta["visible_fraction"], seq.meta["in_frame_fraction"]
  hidden = vf < cfg.min_visible
  np.testing.assert_array_equal(np.isnan(seq.boxes).any(axis=1), hidden)
  np.testing.assert_array_equal(np.isnan(seq.boxes).all(axis=1), hidden)
  for t in range(cfg.num_frames):
    n_full, n_vis = masks[t].sum(), vis_masks[t].sum()
    if n_full:   # visible / in-frame fractions agree with the pixel counts of the masks
      assert vf[t] / inf[t] == pytest.approx(n_vis / n_full, abs=1e-12)
    else:
      assert vf[t] == 0 and inf[t] == 0
    if not hidden[t]:
      np.testing.assert_array_equal(seq.boxes[t], _bbox(masks[t]))
  finite = seq.boxes[~hidden]
  assert np.all(finite[:, :2] >= 0) and np.all(finite[:, 2:] >= 1)
  assert np.all(finite[:, 0] + finite[:, 2] <= W) and np.all(finite[:, 1] + finite[:, 3] <= H)
  assert np.all((vf >= 0) & (vf <= inf + 1e-12) & (inf <= 1))


def test_boxes_match_the_rendered_pixels(monkeypatch):
  """Renders each video over a black and over a white background: a pixel whose colour changes
  by (1 - alpha) * 255 reveals the object's alpha, so the box can be checked from pixels alone."""
  cfg = dataclasses.replace(SHORT, num_distractors=(0, 0), num_occluders=(0, 0),
                            background_clutter=(0, 0), motion_blur_prob=0.0,
                            illumination_prob=0.0, partial_exit_prob=1.0, exit_margin=(0.3, 0.5))
  checked = 0
  for seed in range(4):
    renders = []
    for level in (0, 255):
      monkeypatch.setattr(S, "_background",
                          lambda rng, h, w, level=level: np.full((h, w, 3), level, np.uint8))
      renders.append(S.make_sequence(seed, cfg))
    np.testing.assert_array_equal(renders[0].boxes, renders[1].boxes)
    boxes = renders[0].boxes
    diff = renders[1].frames.array.astype(int) - renders[0].frames.array.astype(int)
    diff = diff.max(axis=-1)   # ~ 255 - alpha (+-1 from rounding) in every channel
    for t in range(cfg.num_frames):
      surely_in = diff[t] <= 126      # alpha >= 128 for certain
      maybe_in = diff[t] <= 128       # every alpha >= 128 pixel is here
      if np.isnan(boxes[t, 0]):
        assert not surely_in.any() or renders[0].meta["visible_fraction"][t] < cfg.min_visible
        continue
      x, y, w, h = boxes[t].astype(int)
      inner, outer = _bbox(surely_in), _bbox(maybe_in)
      assert inner[0] >= x and inner[1] >= y
      assert inner[0] + inner[2] <= x + w and inner[1] + inner[3] <= y + h
      assert outer[0] <= x and outer[1] <= y
      assert outer[0] + outer[2] >= x + w and outer[1] + outer[3] >= y + h
      checked += 1
  assert checked > 50


def test_switching_blur_or_illumination_changes_only_pixels():
  base = dataclasses.replace(SHORT, motion_blur_prob=0.0, illumination_prob=0.0)
  blur = dataclasses.replace(base, motion_blur_prob=1.0)
  illum = dataclasses.replace(base, illumination_prob=1.0)
  for seed in (0, 1, 2):
    a, b, c = S.make_sequence(seed, base), S.make_sequence(seed, blur), S.make_sequence(seed, illum)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.boxes, c.boxes)
    assert not np.array_equal(a.frames.array, c.frames.array)
    # Illumination is a per-frame, per-channel monotone map of the unlit frame.
    fa, fc = a.frames.array.astype(int), c.frames.array.astype(int)
    for t in (0, SHORT.num_frames - 1):
      for ch in range(3):
        order = np.argsort(fa[t, ..., ch], axis=None, kind="stable")
        assert np.all(np.diff(fc[t, ..., ch].ravel()[order]) >= 0)
  # Blur changes pixels in at least one of a few videos (it needs a moving object).
  changed = [not np.array_equal(S.make_sequence(s, base).frames.array,
                                S.make_sequence(s, blur).frames.array) for s in range(4)]
  assert any(changed)


def test_features_occur_in_a_sample():
  seqs = [S.make_sequence(s, S.PRESETS["train"]) for s in range(40)]
  occluded = sum(int(q.meta["occluded"].sum()) for q in seqs)
  inf = np.concatenate([q.meta["in_frame_fraction"] for q in seqs])
  partial_exit = int(np.sum((inf > 0) & (inf < 0.9)))
  assert sum(int(q.meta["out_of_view"].sum()) for q in seqs) >= partial_exit
  fully_hidden = sum(int(np.isnan(q.boxes[:, 0]).sum()) for q in seqs)
  scale_ratio = [np.sqrt(q.meta["object_size"].prod(1)).max() / np.sqrt(q.meta["object_size"].prod(1)).min()
                 for q in seqs]
  aspect = [q.meta["object_size"][:, 0] / q.meta["object_size"][:, 1] for q in seqs]
  aspect_ratio = [a.max() / a.min() for a in aspect]
  assert occluded > 10
  assert partial_exit > 10
  assert fully_hidden > 0
  assert sum(r > 1.3 for r in scale_ratio) >= 3
  assert sum(r > 1.3 for r in aspect_ratio) >= 3
  assert sum(q.meta["num_distractors"] > 0 for q in seqs) >= 5
  assert sum(q.meta["motion_blur"] for q in seqs) >= 3
  assert sum(q.meta["illumination_change"] for q in seqs) >= 3
  assert len({q.meta["class"] for q in seqs}) == len(S.CLASS_NAMES)
  # Motion: the target moves several pixels on average over a clip.
  centres = [q.boxes[:, :2] + q.boxes[:, 2:] / 2 for q in seqs]
  travel = [np.nanmax(np.linalg.norm(c - c[0], axis=1)) for c in centres if np.isfinite(c[0]).all()]
  assert np.median(travel) > 10


def test_split_seeds_never_overlap():
  train = S.split_seeds("train", S.MAX_SPLIT_SIZE)
  test = S.split_seeds("test", S.MAX_SPLIT_SIZE)
  assert train[0] == 0 and test[0] == 10**6
  assert train.max() < test.min()
  np.testing.assert_array_equal(S.split_seeds("test", 2, start=7), [10**6 + 7, 10**6 + 8])
  with pytest.raises(ValueError):
    S.split_seeds("train", 2, start=S.MAX_SPLIT_SIZE - 1)
  with pytest.raises(ValueError):
    S.split_seeds("val", 1)
  cfg = dataclasses.replace(SHORT, num_frames=4)
  tr, te = S.make_split("train", 2, cfg), S.make_split("test", 2, cfg)
  assert [q.meta["seed"] for q in tr] == [0, 1]
  assert [q.meta["seed"] for q in te] == [10**6, 10**6 + 1]
  assert _digest(te[1]) == _digest(S.make_sequence(10**6 + 1, cfg))
  assert S.make_split("test", 1)[0].boxes.shape == (S.PRESETS["test"].num_frames, 4)
  multi = S.make_split("train", 1, cfg, multi=True)
  assert isinstance(multi[0], MultiSequence)


def test_multi_sequences():
  cfg = dataclasses.replace(S.PRESETS["train"], num_targets=(3, 4))
  overlaps = occlusions = 0
  for seed in range(6):
    m = S.make_multi_sequence(seed, cfg, debug=True)
    gt = m.gt
    K = len(m.meta["classes"])
    assert 3 <= K <= 4
    assert set(gt.track_ids()) <= set(range(1, K + 1))
    for t in range(cfg.num_frames):
      ids = gt.in_frame(t).track_id
      assert len(np.unique(ids)) == len(ids)
    assert np.all(gt.visibility >= cfg.min_visible) and np.all(gt.visibility <= 1)
    for k, cls in enumerate(m.meta["classes"]):
      sel = gt.track_id == k + 1
      assert np.all(gt.label[sel] == S.CLASS_NAMES.index(cls))
      for t, box in zip(gt.frame[sel], gt.box[sel]):
        np.testing.assert_array_equal(box, _bbox(m.meta["masks"][k, t]))
      tr = m.track(k + 1) if sel.any() else None
      if tr is not None:
        np.testing.assert_array_equal(np.isfinite(tr.boxes[:, 0]),
                                      m.meta["visible_fraction"][k] >= cfg.min_visible)
    # Crossings: two targets' boxes intersect in some frame; occlusion between layers happens.
    for t in range(cfg.num_frames):
      b = gt.in_frame(t).box
      for i in range(len(b)):
        for j in range(i + 1, len(b)):
          ix = min(b[i, 0] + b[i, 2], b[j, 0] + b[j, 2]) - max(b[i, 0], b[j, 0])
          iy = min(b[i, 1] + b[i, 3], b[j, 1] + b[j, 3]) - max(b[i, 1], b[j, 1])
          overlaps += ix > 0 and iy > 0
    occlusions += int(m.meta["occluded"].sum())
  assert overlaps > 10
  assert occlusions > 10


def test_config_validation():
  with pytest.raises(ValueError):
    S.SyntheticConfig(classes=("hexagon",))
  with pytest.raises(ValueError):
    S.SyntheticConfig(num_occluders=(3, 1))
  with pytest.raises(ValueError):
    S.SyntheticConfig(num_frames=0)
  cfg = S.SyntheticConfig(classes=("ring",), num_frames=3)
  assert S.make_sequence(0, cfg).meta["class"] == "ring"
  hash(cfg)   # frozen: usable as a cache key
