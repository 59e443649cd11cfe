"""OTB (Object Tracking Benchmark, OTB-2013 / OTB-100) sequence folders and annotation files.

Layout of one sequence folder::

  <Seq>/img/0001.jpg ...            frames (names carry the frame number; a few sequences differ)
  <Seq>/groundtruth_rect.txt        one x,y,w,h row per frame (comma, tab or space separated)
  <Seq>/groundtruth_rect.1.txt      two-target sequences (Jogging, Skating2) instead have one file
  <Seq>/groundtruth_rect.2.txt      per target sharing img/ (Human4 has only '.2')
  <Seq>/attrs.txt, cfg.json         optional (attribute list)

Benchmark-level files (the toolkit's own): ``otb100_sequences.json`` -- a list of
``{"name", "start_frame", "end_frame"}`` (frame numbers are image file numbers, e.g. 'david' runs
300..770 -> img/0300.jpg..img/0770.jpg), ``anno_TB100/<name>.txt`` (ground truth without images,
file names vary in case) and ``initOmit/<name>.txt`` (rows 'a b': frames a..b may not start a run).

Naming: a single-target sequence is named after its folder ('Couple'). Target k of a folder with
``groundtruth_rect.k.txt`` is named folder + separator + k, with the separator the benchmark uses
for that sequence: OTB-100 writes 'jogging-1'/'jogging-2' but 'Skating2.1' and 'Human4.2'. The
separator is taken from the sequences json when it lists the target, else from that fixed table,
else '.'. The folder's case is kept ('Jogging-1'); ``meta['benchmark_name']`` holds the json's own
spelling ('jogging-1'), which is what the toolkit's result files are named after.

Boxes are kept exactly as the files give them (x, y, w, h with the toolkit's 1-based pixel origin;
rows of zeros stay zeros). The inclusive-pixel convention matters only for evaluation.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Dict, List, Optional, Sequence as Seq, Tuple, Union

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.images import image_size, list_images, natural_key
from rolo_jax.data.sequence import ImageFiles, Sequence
from rolo_jax.errors import DataError

_GT_FILE = re.compile(r"^groundtruth_rect(?:\.(\d+))?\.txt$", re.IGNORECASE)
_TARGET_SUFFIX = re.compile(r"[.\-_](\d+)$")
# Separator OTB-100 uses between a folder name and its target number (otb100_sequences.json).
OTB100_TARGET_SEPARATOR = {"jogging": "-", "skating2": ".", "human4": "."}

SequencesJson = Union[str, os.PathLike, List[Dict[str, Any]], Dict[str, Dict[str, Any]]]


def read_otb_annotation(path: str | os.PathLike) -> np.ndarray:
  """Reads an OTB ground-truth file (groundtruth_rect*.txt or anno_TB100/<name>.txt).

  Returns:
    float64 [N, 4] x, y, w, h rows as written.
  Raises:
    DataError naming the file and line for a wrong column count, a non-number or a negative
    width/height (zero sizes occur in the benchmark's files and pass).
  """
  return _annotation_with_lines(path)[0]


def _annotation_with_lines(path) -> Tuple[np.ndarray, np.ndarray]:
  """`read_otb_annotation`'s rows and the file line of each."""
  rows, lines = _common.rows_with_lines(os.fspath(path), 4, what="x,y,w,h")
  _common.check_nonnegative_size(os.fspath(path), rows, lines)
  return rows, lines


def _check_initial_box(gt_path: str, line: int, box: np.ndarray, first_frame: str) -> None:
  """DataError (file and line) unless the sequence's first box can start a tracker: finite, with
  width and height > 0, and overlapping its first frame. Every tracker starts from this box; one
  outside the image used to be tracked as given (KCF reported a 1x1 box in the corner, and a
  detector-based scorer credited a box that never moved)."""
  x, y, w, h = (float(v) for v in box)
  if not (np.all(np.isfinite(box)) and w > 0 and h > 0):
    raise DataError(f"{gt_path}, line {line}", f"the first frame's box {x:g},{y:g},{w:g},{h:g} "
                    "starts the trackers; expected a finite box with width and height > 0")
  try:
    width, height = image_size(first_frame)
  except DataError:   # an unreadable frame is named where it is first decoded (frames stay lazy)
    return
  # Pixels 1..W (the benchmark's convention) or 0..W-1: a box touching either range overlaps.
  if x >= width + 1 or y >= height + 1 or x + w <= 0 or y + h <= 0:
    raise DataError(f"{gt_path}, line {line}", f"the first frame's box {x:g},{y:g},{w:g},{h:g} "
                    f"lies outside the {width}x{height} first image ({first_frame}); expected a "
                    "box that overlaps it")


def _norm_name(name: str) -> str:
  """Lower case, target suffix written '.k' ('jogging-1' and 'Jogging.1' -> 'jogging.1')."""
  return _TARGET_SUFFIX.sub(r".\1", name.lower())


def find_annotation(anno_dir: str | os.PathLike, seq_name: str, *, required: bool = True,
                    ext: str = ".txt") -> Optional[str]:
  """Path of ``<anno_dir>/<seq_name>.txt``, matched without regard to case.

  'couple' finds 'couple.txt', 'Couple' finds it too; a target suffix matches with any separator
  ('Jogging.1' finds 'jogging-1.txt'). An exact-case match wins over a case-insensitive one.

  Returns:
    the path, or None when `required` is False and no file matches.
  Raises:
    DataError when the folder is missing, no file matches (required=True), or two files match.
  """
  anno_dir = _common.require_dir(anno_dir, "annotation")
  files = [f for f in os.listdir(anno_dir)
           if f.lower().endswith(ext) and os.path.isfile(os.path.join(anno_dir, f))]
  if seq_name + ext in files:
    return os.path.join(anno_dir, seq_name + ext)
  for key in (lambda s: s.lower(), _norm_name):
    want = key(seq_name)
    hits = sorted(f for f in files if key(f[:-len(ext)]) == want)
    if len(hits) > 1:
      raise DataError(anno_dir, f"several files match {seq_name!r} without regard to case: {hits}")
    if hits:
      return os.path.join(anno_dir, hits[0])
  if required:
    raise DataError(anno_dir, f"no annotation file for sequence {seq_name!r} "
                    f"(looked for {seq_name}{ext} without regard to case)")
  return None


def load_sequences_json(src: SequencesJson) -> Dict[str, Dict[str, Any]]:
  """Reads otb100_sequences.json-style ranges.

  Args:
    src: a path, a list of {"name", "start_frame", "end_frame"}, or a dict name -> such an entry.
  Returns:
    {normalised name: {"name", "start_frame", "end_frame", "source"}}.
  Raises:
    DataError for unreadable JSON (with its line) or an entry without valid 1 <= start <= end.
  """
  source = "<sequences json>"
  if isinstance(src, (str, os.PathLike)):
    source = _common.require_file(src, "sequences json")
    with open(source, "r", encoding="utf-8-sig") as f:
      try:
        src = json.load(f)
      except json.JSONDecodeError as e:
        raise DataError(source, f"invalid JSON: {e.msg}", line=e.lineno) from None
  if isinstance(src, dict):
    for k, v in src.items():
      if not isinstance(v, dict):
        raise DataError(source, f"entry {k!r}: expected an object {{start_frame, end_frame}}, got "
                                f"{type(v).__name__} {v!r}")
    src = [dict(v, name=v.get("name", k)) for k, v in src.items()]
  if not isinstance(src, list):
    raise DataError(source, f"expected a list of {{name, start_frame, end_frame}}, got {type(src).__name__}")
  table: Dict[str, Dict[str, Any]] = {}
  for i, e in enumerate(src):
    try:
      name, start, end = str(e["name"]), e["start_frame"], e["end_frame"]
    except (KeyError, TypeError):
      raise DataError(source, f"entry {i} ({e!r}) lacks name/start_frame/end_frame") from None
    whole = [isinstance(v, int) and not isinstance(v, bool) for v in (start, end)]  # JSON true is an int
    if not (all(whole) and 1 <= start <= end):
      raise DataError(source, f"entry {i} ({name}): need whole numbers 1 <= start_frame <= "
                      f"end_frame, got {start!r}..{end!r}")
    table[_norm_name(name)] = {"name": name, "start_frame": start, "end_frame": end,
                               "source": e.get("source", source)}
  return table


def read_init_omit(path: str | os.PathLike) -> np.ndarray:
  """Reads an initOmit file: rows 'first last' (or a single frame number) -> int64 [K, 2]."""
  rows, lines = _common.rows_with_lines(os.fspath(path), (1, 2), what="first,last frame",
                                        one_row_per_frame=False)
  ranges = _common.check_integer(os.fspath(path), rows, lines, "a frame number")
  if ranges.shape[1] == 1:
    ranges = np.concatenate([ranges, ranges], axis=1)
  bad = np.nonzero(ranges[:, 0] > ranges[:, 1])[0]
  if len(bad):
    raise DataError(path, f"range {ranges[bad[0]].tolist()} has first > last", line=int(lines[bad[0]]))
  bad = np.nonzero(ranges[:, 0] < 1)[0]
  if len(bad):
    raise DataError(path, f"range {ranges[bad[0]].tolist()}: frame numbers start at 1",
                    line=int(lines[bad[0]]))
  return ranges.reshape(-1, 2)


def _expand_ranges(ranges: np.ndarray) -> np.ndarray:
  if len(ranges) == 0:
    return np.zeros(0, np.int64)
  return np.unique(np.concatenate([np.arange(a, b + 1) for a, b in ranges])).astype(np.int64)


def _gt_files(seq_dir: str) -> List[tuple]:
  """[(target number or None, path)] of the ground-truth files in a sequence folder."""
  out = []
  for f in os.listdir(seq_dir):
    m = _GT_FILE.match(f)
    if m and os.path.isfile(os.path.join(seq_dir, f)):
      out.append((m.group(1), os.path.join(seq_dir, f)))
  return sorted(out, key=lambda t: (t[0] is not None, int(t[0] or 0)))


def is_otb_sequence_dir(path: str) -> bool:
  """True for a folder holding img/ or a groundtruth_rect*.txt."""
  return os.path.isdir(path) and (os.path.isdir(os.path.join(path, "img")) or bool(_gt_files(path)))


def _select_range(images: List[str], start: int, end: int, img_dir: str, source: str):
  """Images with frame numbers start..end (by file number, else by natural-sort position)."""
  nums = _common.frame_numbers_of(images)
  want = np.arange(start, end + 1)
  if nums is not None:
    by_num = dict(zip(nums.tolist(), images))
    missing = [n for n in want.tolist() if n not in by_num]
    if missing:
      raise DataError(img_dir, f"{source} gives frames {start}..{end} but there is no image numbered "
                      f"{missing[0]} ({len(missing)} of {len(want)} missing; images are numbered "
                      f"{nums.min()}..{nums.max()})")
    return [by_num[n] for n in want.tolist()], want
  if end > len(images):
    raise DataError(img_dir, f"{source} gives frames {start}..{end} but the folder has only "
                    f"{len(images)} images (names carry no frame number, so frames are counted "
                    f"in natural sort order)")
  return images[start - 1:end], want


def _read_attributes(seq_dir: str) -> Optional[List[str]]:
  path = os.path.join(seq_dir, "attrs.txt")
  if os.path.isfile(path):
    with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
      return [t for t in re.split(r"[,\s]+", f.read()) if t]
  path = os.path.join(seq_dir, "cfg.json")
  if os.path.isfile(path):
    try:
      with open(path, "r", encoding="utf-8-sig") as f:
        attrs = json.load(f).get("attributes")
    except (json.JSONDecodeError, AttributeError) as e:
      raise DataError(path, f"invalid JSON: {e}") from None
    if isinstance(attrs, list):
      return [str(a) for a in attrs]
  return None


def read_otb_sequence(seq_dir: str | os.PathLike,
                      *,
                      sequences_json: Optional[SequencesJson] = None,
                      init_omit_dir: Optional[str | os.PathLike] = None,
                      strict: bool = True) -> List[Sequence]:
  """Reads one OTB sequence folder; one `Sequence` per ground-truth file (target).

  Frames: the images of img/ in natural sort order. With `sequences_json` listing the sequence,
  frames are the images numbered start_frame..end_frame (by the number in the file name; by
  position when names carry none) and ``frame_numbers`` are those numbers; without it, all images.
  The ground-truth file normally has one row per frame of that range (as anno_TB100's files do);
  a file with one row per image of img/ instead is cut to the range's rows
  (``meta['gt_cut_to_range'] = True``).

  Args:
    seq_dir: the sequence folder.
    sequences_json: otb100_sequences.json (path or loaded list), for frame ranges and names.
    init_omit_dir: folder of initOmit/<name>.txt files. Defaults to 'initOmit' beside the
      sequences json when that folder exists. A sequence without a file gets an empty list.
    strict: a frame/box count mismatch is a DataError; with False, both are cut to the shorter
      (and ``meta['truncated']`` says so).
  Returns:
    list of Sequence (two for Jogging). meta: 'gt_file', 'target' (k or None), 'benchmark_name',
    'start_frame', 'end_frame' (when in the json), 'attributes' (attrs.txt / cfg.json),
    'init_omit' (int64 frame numbers that may not start a run, as written in the file, comparable
    with ``frame_numbers``) and 'init_omit_ranges' ([K, 2]) when an initOmit folder is known.
  Raises:
    DataError: missing folder / img/ / ground truth, malformed rows (file and line), a count
      mismatch (strict) or a json range the images do not cover.
  """
  seq_dir = _common.require_dir(seq_dir, "OTB sequence")
  folder = os.path.basename(os.path.normpath(seq_dir))
  gts = _gt_files(seq_dir)
  if not gts:
    raise DataError(seq_dir, "no groundtruth_rect.txt (or groundtruth_rect.<k>.txt) in this "
                    "OTB sequence folder")
  img_dir = _common.require_dir(os.path.join(seq_dir, "img"), "OTB image (img/)")
  images = list_images(img_dir)
  table = load_sequences_json(sequences_json) if sequences_json is not None else {}
  if init_omit_dir is None:
    init_omit_dir = _default_init_omit(sequences_json)
  attributes = _read_attributes(seq_dir)

  out = []
  for k, gt_path in gts:
    entry = None
    if k is None:
      entry = table.get(_norm_name(folder))
      name = folder
    else:
      entry = table.get(_norm_name(f"{folder}.{k}"))
      if entry is not None and len(entry["name"]) > len(folder):
        sep = entry["name"][len(folder)]
      else:
        sep = OTB100_TARGET_SEPARATOR.get(folder.lower(), ".")
      name = f"{folder}{sep}{k}"
    boxes, lines = _annotation_with_lines(gt_path)
    meta: Dict[str, Any] = {"gt_file": gt_path, "target": None if k is None else int(k),
                            "benchmark_name": entry["name"] if entry else name}
    if attributes is not None:
      meta["attributes"] = attributes
    if entry is not None:
      start, end = entry["start_frame"], entry["end_frame"]
      frames, numbers = _select_range(images, start, end, img_dir,
                                      f"{entry['source']} ({entry['name']})")
      meta.update(start_frame=start, end_frame=end)
      if len(boxes) != len(frames) and len(boxes) == len(images):
        # The file has a row for every image of img/ (not yet cut to the benchmark's range, as
        # anno_TB100's files are): take the rows of the range's images.
        first = images.index(frames[0])
        boxes, lines = boxes[first:first + len(frames)], lines[first:first + len(frames)]
        meta["gt_cut_to_range"] = True
      n = _common.count_mismatch(
          strict, gt_path, len(boxes), f"the frame range {start}..{end} of {entry['name']}",
          len(frames), "the ground truth does not cover the range (in Python, strict=False uses the "
          f"first {min(len(boxes), len(frames))} frames)")
    else:
      frames = images
      numbers = _common.frame_numbers_of(images)
      if numbers is None:
        numbers = np.arange(1, len(images) + 1)
      n = _common.count_mismatch(
          strict, gt_path, len(boxes), "img/", len(frames),
          "the benchmark's otb100_sequences.json gives its frame range (found by itself as "
          "<data>/otb100_sequences.json or <data>/../otb_annotations/otb100_sequences.json; or "
          "name it: --sequences_json of re3_curriculum and rolo, --otb_sequences of memtrack, "
          "--sequences of otb_baselines and evaluate, sequences_json= in Python, where strict=False "
          f"uses the first {min(len(boxes), len(frames))} frames instead)", frames)
    if n:
      _check_initial_box(gt_path, int(lines[0]), boxes[0], frames[0])
    if n != len(boxes) or n != len(frames):
      meta["truncated"] = (f"{len(frames)} frames and {len(boxes)} boxes; kept the first {n} "
                           "(strict=False)")
    if init_omit_dir is not None:
      path = find_annotation(init_omit_dir, meta["benchmark_name"], required=False)
      if path is None and meta["benchmark_name"] != name:
        path = find_annotation(init_omit_dir, name, required=False)
      ranges = read_init_omit(path) if path else np.zeros((0, 2), np.int64)
      meta["init_omit_ranges"] = ranges
      meta["init_omit"] = _expand_ranges(ranges)
    out.append(Sequence(name, ImageFiles(frames[:n]), boxes[:n], numbers[:n], meta))
  return out


def find_sequences_json(root: str | os.PathLike) -> Optional[str]:
  """The otb100_sequences.json for an OTB folder: ``<root>/otb100_sequences.json`` or
  ``<root>/../otb_annotations/otb100_sequences.json`` (the layout of ../shared/data); None if neither."""
  for cand in (os.path.join(root, "otb100_sequences.json"),
               os.path.join(root, os.pardir, "otb_annotations", "otb100_sequences.json")):
    if os.path.isfile(cand):
      return os.path.normpath(cand)
  return None


def read_otb_dataset(root: str | os.PathLike,
                     *,
                     sequences_json: Optional[SequencesJson] = None,
                     init_omit_dir: Optional[str | os.PathLike] = None,
                     strict: bool = True,
                     names: Optional[Seq[str]] = None) -> List[Sequence]:
  """Reads every OTB sequence folder under `root` (sorted by name).

  A folder counts as a sequence when it holds img/ or a groundtruth_rect*.txt; files and other
  folders (archives, a README, anno_TB100/) are skipped with a `warnings.warn` naming them.

  Args:
    root: folder of sequence folders.
    names: read only these folders (case-insensitive); a missing one is a DataError.
    sequences_json, init_omit_dir, strict: as in `read_otb_sequence`.
  Returns:
    list of Sequence, targets of one folder consecutive.
  """
  root = _common.require_dir(root, "OTB dataset")
  table = load_sequences_json(sequences_json) if sequences_json is not None else None
  if init_omit_dir is None:
    init_omit_dir = _default_init_omit(sequences_json)
  entries = sorted(os.listdir(root), key=natural_key)
  if names is not None:
    lower = {e.lower(): e for e in entries}
    missing = [n for n in names if n.lower() not in lower]
    if missing:
      raise DataError(root, f"no sequence folder named {missing[0]!r}")
    entries = [lower[n.lower()] for n in names]
  out, skipped = [], []
  for e in entries:
    path = os.path.join(root, e)
    if not is_otb_sequence_dir(path):
      if not e.startswith(".") and e.lower() not in ("otb100_sequences.json", "initomit"):
        skipped.append(e)   # (the benchmark's own json and initOmit/ belong here: no word for them)
      continue
    out.extend(read_otb_sequence(path, sequences_json=table, init_omit_dir=init_omit_dir,
                                 strict=strict))
  if skipped:
    warnings.warn(f"{root}: skipped {len(skipped)} entries that are not OTB sequence folders "
                  f"(no img/ or groundtruth_rect*.txt): {skipped}", stacklevel=2)
  if not out:
    raise DataError(root, "no OTB sequence folders (folders with img/ and groundtruth_rect*.txt)")
  return out


def _default_init_omit(sequences_json) -> Optional[str]:
  if isinstance(sequences_json, (str, os.PathLike)):
    cand = os.path.join(os.path.dirname(os.fspath(sequences_json)), "initOmit")
    if os.path.isdir(cand):
      return cand
  return None
