"""tensorflow-datasets builders for tracking videos, stored as array_record and read without TF.

Two builders (registered with tfds under their snake-case names when this module is imported):

* ``synthetic_tracking`` -- videos of `rolo_jax.data.synthetic`; configs 'single' (one target per
  example, `make_sequence`) and 'multi' (`make_multi_sequence`), splits 'train' (seeds 0..n-1,
  'train' preset) and 'test' (seeds 10**6 + i, 'test' preset).  Default sizes: 64 train and 16
  test videos per config (about 110 MB and 65 MB of PNG).  `synthetic_config` makes a config with
  other sizes; its name records them ('single_train3_test2_frames8').
* ``otb_folder`` -- packs an OTB-layout folder (one sequence folder, or a folder of them) read
  with `rolo_jax.data.formats.otb`; one split, 'test'.  `otb_config(folder)` makes the config.

One example = one video.  Frames are stored as their encoded image files (`frames`: a [T] string
tensor of PNG bytes for synthetic videos, the original JPEG/PNG bytes for OTB) and decoded lazily
with PIL, exactly as `rolo_jax.data.images.load_image` decodes files.  tfds' own Image/Video
features are not used: in tfds 4.9 they need TensorFlow to encode numpy images
(`tf.image.encode_png`), and the numpy decoding path cannot skip decoding, which would decode all
frames of a video at once.  Boxes and other float tables are float64 stored as raw bytes
(``Tensor(..., encoding='bytes')``) so they round-trip exactly (tf.train.Example floats are 32-bit).

Single-target example features::

  name: str, frames: [T] bytes, image_format: str ('png' | 'jpeg' | ...), boxes: [T, 4] float64
  (x, y, w, h, NaN = absent), frame_numbers: [T] int64, class: str ('' unknown),
  synthetic only: seed: int64, visible_fraction: [T] float64, occluded: [T] bool;
  OTB only: benchmark_name: str, attributes: [A] str, init_omit: [N] int64.

Multi-object example features: name, frames, image_format, seed, class_names [C] str and
gt_frame [N] int64 (0-based), gt_track_id [N] int64, gt_box [N, 4] float64, gt_label [N] int64,
gt_visibility [N] float64 (the flat `Objects` table).

Reading: `load_sequences(data_dir, 'synthetic_tracking/single', 'test')` goes through
``tfds.data_source`` (no TensorFlow, no network).  Building: `build_synthetic` / `build_otb`, or
``Builder(config=..., data_dir=...).download_and_prepare(download_config=DOWNLOAD_CONFIG)``.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence as Seq, Tuple, Union

import cv2
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from rolo_jax.data import synthetic
from rolo_jax.data.sequence import MultiSequence, Objects, Sequence
from rolo_jax.errors import DataError

FILE_FORMAT = "array_record"

# tfds derives a builder's code path through `importlib_resources` for builders defined inside a
# package (tfds 4.9 `DatasetBuilder.code_path`), a package that is not a dependency here; giving
# the path directly avoids it (the folder holds no checksums.tsv, so no download URLs are known).
_CODE_PATH = epath.Path(os.path.abspath(__file__))

# No GCS look-up (it would go to the network), no statistics (they need TensorFlow).
DOWNLOAD_CONFIG = tfds.download.DownloadConfig(
    try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP)


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """The DatasetInfo of a dataset that exists only where it is built: nothing to fetch from GCS.

  tfds 4.9 (`DatasetBuilder.__init__`, for a dataset not yet prepared) calls
  `DatasetInfo.initialize_from_bucket`, which makes a folder with `tempfile.mkdtemp("tfds")` before
  it looks for published metadata and never removes it: every build left an empty
  ``$TMPDIR/tmp*tfds`` folder behind. These builders have no published metadata, so the look-up is
  skipped, and with it the folder (tests/tfds_builders_test.py checks that a build leaves $TMPDIR
  as it was)."""

  def initialize_from_bucket(self) -> None:
    return None


# ----------------------------------------------------------------------------------------------
# Frames as encoded image bytes.


class EncodedFrames:
  """Frames held as encoded image files (bytes), decoded on access to RGB uint8 [H, W, 3]."""

  def __init__(self, data: Seq[bytes], name: str = "<frames>"):
    self.data = list(data)
    self.name = name

  def __len__(self) -> int:
    return len(self.data)

  def __getitem__(self, i: int) -> np.ndarray:
    return decode_image(self.data[i], f"{self.name} frame {i}")

  def size(self) -> Tuple[int, int]:
    """(width, height) of the first frame, from its header."""
    from PIL import Image
    with Image.open(io.BytesIO(self.data[0])) as im:
      return im.size

  def decode_all(self) -> np.ndarray:
    """uint8 [T, H, W, 3]."""
    return np.stack([self[i] for i in range(len(self))])

  def __repr__(self):
    return f"EncodedFrames({len(self)} frames of {self.name})"


def decode_image(data: bytes, what: str = "<image>") -> np.ndarray:
  """Decodes image bytes to RGB uint8 [H, W, 3] the way `images.load_image` decodes files."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      if im.mode != "RGB":
        im = im.convert("RGB")
      return np.asarray(im, dtype=np.uint8)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(what, f"cannot decode image bytes ({type(e).__name__}: {e})") from None


def encode_png(frame: np.ndarray) -> bytes:
  """Lossless PNG bytes of an RGB uint8 [H, W, 3] frame (fast compression level)."""
  ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]),
                         [cv2.IMWRITE_PNG_COMPRESSION, 1])
  if not ok:
    raise ValueError("PNG encoding failed")
  return buf.tobytes()


def _image_format(path: str) -> str:
  ext = os.path.splitext(path)[1].lower().lstrip(".")
  return {"jpg": "jpeg", "jpeg": "jpeg", "tif": "tiff"}.get(ext, ext)


# ----------------------------------------------------------------------------------------------
# Feature specs.


def _f64(shape):
  return tfds.features.Tensor(shape=shape, dtype=np.float64, encoding="bytes")


def _strings():
  return tfds.features.Tensor(shape=(None,), dtype=np.object_)


def _single_features(extra: Dict[str, Any]) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "name": tfds.features.Text(),
      "frames": _strings(),
      "image_format": tfds.features.Text(),
      "boxes": _f64((None, 4)),
      "frame_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "class": tfds.features.Text(),
      **extra,
  })


def _multi_features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "name": tfds.features.Text(),
      "frames": _strings(),
      "image_format": tfds.features.Text(),
      "seed": tfds.features.Scalar(dtype=np.int64),
      "class_names": _strings(),
      "gt_frame": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "gt_track_id": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "gt_box": _f64((None, 4)),
      "gt_label": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "gt_visibility": _f64((None,)),
  })


# ----------------------------------------------------------------------------------------------
# Synthetic videos.


@dataclasses.dataclass
class SyntheticTrackingConfig(tfds.core.BuilderConfig):
  """kind: 'single' | 'multi'; sizes of the splits; presets of `synthetic.PRESETS`; num_frames
  overrides the presets' video length when set."""
  kind: str = "single"
  num_train: int = 64
  num_test: int = 16
  train_preset: str = "train"
  test_preset: str = "test"
  num_frames: Optional[int] = None

  def synthetic_config(self, split: str) -> synthetic.SyntheticConfig:
    cfg = synthetic.PRESETS[self.train_preset if split == "train" else self.test_preset]
    if self.num_frames is not None:
      cfg = dataclasses.replace(cfg, num_frames=int(self.num_frames))
    return cfg


_SYNTHETIC_DEFAULTS = SyntheticTrackingConfig(name="defaults")


def synthetic_config(kind: str = "single", *, num_train: Optional[int] = None,
                     num_test: Optional[int] = None, num_frames: Optional[int] = None,
                     train_preset: str = "train", test_preset: str = "test",
                     name: Optional[str] = None) -> SyntheticTrackingConfig:
  """The predefined 'single' / 'multi' config, or a custom one whose name records its sizes.

  Example: ``synthetic_config('single', num_train=3, num_test=2, num_frames=8)`` is named
  'single_train3_test2_frames8' (read it back as 'synthetic_tracking/single_train3_test2_frames8').
  """
  if kind not in ("single", "multi"):
    raise ValueError(f"kind must be 'single' or 'multi', got {kind!r}")
  for p in (train_preset, test_preset):
    if p not in synthetic.PRESETS:
      raise ValueError(f"unknown preset {p!r}; known: {sorted(synthetic.PRESETS)}")
  d = _SYNTHETIC_DEFAULTS
  n_tr = d.num_train if num_train is None else int(num_train)
  n_te = d.num_test if num_test is None else int(num_test)
  if (n_tr, n_te, num_frames, train_preset, test_preset, name) == (
      d.num_train, d.num_test, None, d.train_preset, d.test_preset, None):
    return SyntheticTracking.builder_configs[kind]
  if name is None:
    name = f"{kind}_train{n_tr}_test{n_te}"
    if num_frames is not None:
      name += f"_frames{int(num_frames)}"
    if (train_preset, test_preset) != (d.train_preset, d.test_preset):
      name += f"_{train_preset}_{test_preset}"
  return SyntheticTrackingConfig(
      name=name, kind=kind, num_train=n_tr, num_test=n_te, train_preset=train_preset,
      test_preset=test_preset, num_frames=num_frames,
      description=f"{kind}-target synthetic videos: {n_tr} train / {n_te} test")


class SyntheticTracking(tfds.core.GeneratorBasedBuilder):
  """Synthetic tracking videos of `rolo_jax.data.synthetic` (deterministic: seed = index)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: PNG frames, float64 boxes."}
  BUILDER_CONFIGS = [
      SyntheticTrackingConfig(name="single", kind="single",
                              description="One annotated target per video (make_sequence)."),
      SyntheticTrackingConfig(name="multi", kind="multi",
                              description="Several annotated targets per video "
                              "(make_multi_sequence)."),
  ]
  DEFAULT_CONFIG_NAME = "single"
  code_path = _CODE_PATH

  def __init__(self, *, file_format: str = FILE_FORMAT, **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.kind == "multi":
      features = _multi_features()
    else:
      features = _single_features({
          "seed": tfds.features.Scalar(dtype=np.int64),
          "visible_fraction": _f64((None,)),
          "occluded": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
      })
    return _LocalDatasetInfo(
        builder=self, description=__doc__.split("\n\n")[0], features=features,
        disable_shuffling=True)   # example i of a split is the video of its i-th seed

  def _split_generators(self, dl_manager):
    del dl_manager   # nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, n: int) -> Iterator[Tuple[int, Dict[str, Any]]]:
    cfg = self.builder_config.synthetic_config(split)
    multi = self.builder_config.kind == "multi"
    for i, seed in enumerate(synthetic.split_seeds(split, n)):
      seed = int(seed)
      if multi:
        m = synthetic.make_multi_sequence(seed, cfg)
        yield i, _multi_example(m, seed)
      else:
        q = synthetic.make_sequence(seed, cfg)
        yield i, {
            "name": q.name, "frames": [encode_png(f) for f in q.frames.array],
            "image_format": "png", "boxes": q.boxes, "frame_numbers": q.frame_numbers,
            "class": q.meta["class"], "seed": seed,
            "visible_fraction": q.meta["visible_fraction"].astype(np.float64),
            "occluded": q.meta["occluded"].astype(np.bool_),
        }


def _multi_example(m: MultiSequence, seed: int) -> Dict[str, Any]:
  gt = m.gt if m.gt is not None else Objects.empty()
  return {
      "name": m.name, "frames": [encode_png(f) for f in m.frames.array], "image_format": "png",
      "seed": seed, "class_names": list(m.class_names),
      "gt_frame": gt.frame, "gt_track_id": gt.track_id, "gt_box": gt.box, "gt_label": gt.label,
      "gt_visibility": gt.visibility,
  }


# ----------------------------------------------------------------------------------------------
# OTB folders.


@dataclasses.dataclass
class OtbFolderConfig(tfds.core.BuilderConfig):
  """folder: an OTB sequence folder (img/ + groundtruth_rect*.txt) or a folder of them.
  sequences_json / strict / names: passed to `rolo_jax.data.formats.otb`."""
  folder: str = ""
  sequences_json: Optional[str] = None
  strict: bool = True
  names: Optional[Tuple[str, ...]] = None


def otb_config(folder: Union[str, os.PathLike], *, name: Optional[str] = None,
               sequences_json: Optional[Union[str, os.PathLike]] = None, strict: bool = True,
               names: Optional[Seq[str]] = None) -> OtbFolderConfig:
  """Config packing `folder`; named after the folder ('Crossing' -> 'crossing') unless given."""
  folder = os.path.abspath(os.fspath(folder))
  if name is None:
    name = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(os.path.normpath(folder)).lower()).strip("_")
    name = name or "otb"
  return OtbFolderConfig(
      name=name, folder=folder,
      sequences_json=None if sequences_json is None else os.path.abspath(os.fspath(sequences_json)),
      strict=strict, names=None if names is None else tuple(names),
      description=f"OTB-layout folder {folder}")


class OtbFolder(tfds.core.GeneratorBasedBuilder):
  """Any OTB-layout folder, packed as is (original image bytes, boxes as in the files)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  code_path = _CODE_PATH

  def __init__(self, *, file_format: str = FILE_FORMAT, **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = _single_features({
        "benchmark_name": tfds.features.Text(),
        "attributes": _strings(),
        "init_omit": tfds.features.Tensor(shape=(None,), dtype=np.int64),
    })
    return _LocalDatasetInfo(builder=self, description="An OTB-layout folder of videos.",
                             features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    if c is None or not c.folder:
      raise ValueError("OtbFolder needs a config naming the folder: "
                       "OtbFolder(config=otb_config('/path/to/otb'), data_dir=...)")
    return {"test": self._generate_examples(read_otb_folder(c.folder, c.sequences_json, c.strict,
                                                            c.names))}

  def _generate_examples(self, seqs: List[Sequence]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    for i, q in enumerate(seqs):
      paths = q.frames.paths
      frames = []
      for p in paths:
        with open(p, "rb") as f:
          frames.append(f.read())
      init_omit = q.meta.get("init_omit")
      yield i, {
          "name": q.name, "frames": frames, "image_format": _image_format(paths[0]),
          "boxes": q.boxes, "frame_numbers": q.frame_numbers,
          "class": str(q.meta.get("class", "")),
          "benchmark_name": str(q.meta.get("benchmark_name", q.name)),
          "attributes": list(q.meta.get("attributes") or []),
          "init_omit": np.zeros(0, np.int64) if init_omit is None else np.asarray(init_omit,
                                                                                  np.int64),
      }


def read_otb_folder(folder, sequences_json=None, strict: bool = True,
                    names: Optional[Seq[str]] = None) -> List[Sequence]:
  """The sequences of an OTB sequence folder or of a folder of sequence folders."""
  from rolo_jax.data.formats import otb
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise DataError(folder, "OTB folder does not exist")
  if otb.is_otb_sequence_dir(folder):
    return otb.read_otb_sequence(folder, sequences_json=sequences_json, strict=strict)
  return otb.read_otb_dataset(folder, sequences_json=sequences_json, strict=strict, names=names)


# ----------------------------------------------------------------------------------------------
# Building and reading.


def build_synthetic(data_dir: Union[str, os.PathLike], kind: str = "single", **sizes) -> str:
  """Generates a synthetic config into data_dir (no-op when present); returns its load name.

  Args:
    data_dir: tfds data directory.
    kind: 'single' or 'multi'.
    **sizes: num_train, num_test, num_frames, train_preset, test_preset (see `synthetic_config`).
  Returns:
    e.g. 'synthetic_tracking/single' -- the `builder` argument of `load_sequences`.
  """
  config = synthetic_config(kind, **sizes)
  b = SyntheticTracking(config=config, data_dir=os.fspath(data_dir))
  b.download_and_prepare(download_config=DOWNLOAD_CONFIG)
  return f"{b.name}/{config.name}"


def build_otb(data_dir: Union[str, os.PathLike], folder: Union[str, os.PathLike], **kwargs) -> str:
  """Packs an OTB folder into data_dir (no-op when present); returns its load name.

  kwargs: name, sequences_json, strict, names (see `otb_config`).
  """
  config = otb_config(folder, **kwargs)
  b = OtbFolder(config=config, data_dir=os.fspath(data_dir))
  b.download_and_prepare(download_config=DOWNLOAD_CONFIG)
  return f"{b.name}/{config.name}"


def _text(v) -> str:
  return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def example_to_sequence(ex: Dict[str, Any], decode: bool = False) -> Union[Sequence, MultiSequence]:
  """Converts one decoded example (a dict of numpy values) to a Sequence or MultiSequence."""
  from rolo_jax.data.sequence import ArrayFrames
  name = _text(ex["name"])
  frames: Any = EncodedFrames([bytes(b) for b in ex["frames"]], name)
  if decode:
    frames = ArrayFrames(frames.decode_all())
  if "gt_box" in ex:
    gt = Objects.from_arrays(ex["gt_frame"], ex["gt_track_id"], ex["gt_box"],
                             label=ex["gt_label"], visibility=ex["gt_visibility"])
    return MultiSequence(name, frames, gt=gt, class_names=[_text(c) for c in ex["class_names"]],
                         meta={"seed": int(ex["seed"])})
  meta: Dict[str, Any] = {}
  cls = _text(ex.get("class", b""))
  if cls:
    meta["class"] = cls
    if cls in synthetic.CLASS_NAMES:
      meta["class_index"] = synthetic.CLASS_NAMES.index(cls)
  for k in ("seed",):
    if k in ex:
      meta[k] = int(ex[k])
  for k in ("visible_fraction", "occluded", "init_omit"):
    if k in ex:
      meta[k] = np.asarray(ex[k])
  if "benchmark_name" in ex:
    meta["benchmark_name"] = _text(ex["benchmark_name"])
  if "attributes" in ex:
    meta["attributes"] = [_text(a) for a in ex["attributes"]]
  return Sequence(name, frames, np.asarray(ex["boxes"], np.float64),
                  np.asarray(ex["frame_numbers"], np.int64), meta)


def load_sequences(data_dir: Union[str, os.PathLike], builder: str = "synthetic_tracking/single",
                   split: str = "test", *, decode: bool = False,
                   limit: Optional[int] = None) -> List[Union[Sequence, MultiSequence]]:
  """Reads a prepared dataset through ``tfds.data_source`` (array_record; no TensorFlow).

  Args:
    data_dir: the tfds data directory it was built into.
    builder: 'synthetic_tracking/single', 'synthetic_tracking/multi', a custom config name such as
      'synthetic_tracking/single_train3_test2_frames8', or 'otb_folder/<name>'.
    split: 'train' or 'test' ('test' for OTB folders); any tfds split string.
    decode: decode all frames now (`ArrayFrames`) instead of lazily (`EncodedFrames`).
    limit: read only the first `limit` examples.
  Returns:
    list of Sequence (single-target builders) or MultiSequence ('multi' configs), in generation
    order (for synthetic splits, example i is the video of the split's i-th seed).
  Raises:
    DataError when the dataset is not in data_dir.
  """
  data_dir = os.fspath(data_dir)
  if builder.split(":")[0] == SyntheticTracking.name:
    builder = builder.replace(SyntheticTracking.name, f"{SyntheticTracking.name}/single", 1)
  where = os.path.join(data_dir, *builder.split(":")[0].split("/"))
  if not any(os.path.isfile(os.path.join(where, v, "dataset_info.json"))
             for v in (os.listdir(where) if os.path.isdir(where) else [])):
    raise DataError(where, f"no prepared tfds dataset {builder!r} here (expected "
                    "<version>/dataset_info.json); build it with "
                    "rolo_jax.data.tfds_builders.build_synthetic / build_otb")
  try:
    ds = tfds.data_source(builder, split=split, data_dir=data_dir, download=False)
  except (KeyError, ValueError, AssertionError) as e:
    raise DataError(where, f"cannot read split {split!r} of {builder!r}: {e}") from None
  n = len(ds) if limit is None else min(limit, len(ds))
  return [example_to_sequence(ds[i], decode=decode) for i in range(n)]
