"""ImageNet VID (ILSVRC2015 object detection from video) snippets as multi-object sequences.

Layout::

  <root>/Annotations/VID/<split>/[<batch>/]<snippet>/000000.xml ...   one file per frame
  <root>/Data/VID/<split>/[<batch>/]<snippet>/000000.JPEG ...         frames (index from 0)

Each frame's XML holds <size><width/><height/></size> and one <object> per visible instance with
<trackid>, <name> (WordNet synset id, one of the 30 VID classes), <bndbox> <xmin/><xmax/><ymin/>
<ymax/>, <occluded> and <generated>. A snippet becomes one `MultiSequence`: its ground truth is an
`Objects` table with frame = the frame's position (0-based), track_id = trackid, label = index into
`VID_CLASS_NAMES`, visibility = 0 for occluded objects else 1, score = 1.

Box convention: ImageNet's xmin..xmax and ymin..ymax are inclusive pixel indices (the ILSVRC
devkit measures a box as xmax - xmin + 1 wide), so by default
  x = xmin, y = ymin, w = xmax - xmin + 1, h = ymax - ymin + 1,
the continuous extent of those pixels. ``inclusive_max=False`` gives w = xmax - xmin (the
convention several Siamese-tracker curation scripts use).

Snippets of a split without annotations (test) give frames only (gt None).
"""
from __future__ import annotations

import math
import os
import xml.parsers.expat
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rolo_jax.data.formats import _common
from rolo_jax.data.images import list_images, natural_key
from rolo_jax.data.sequence import ImageFiles, MultiSequence, Objects
from rolo_jax.errors import DataError

VID_SYNSETS: Tuple[Tuple[str, str], ...] = (
    ("n02691156", "airplane"), ("n02419796", "antelope"), ("n02131653", "bear"),
    ("n02834778", "bicycle"), ("n01503061", "bird"), ("n02924116", "bus"),
    ("n02958343", "car"), ("n02402425", "cattle"), ("n02084071", "dog"),
    ("n02121808", "domestic_cat"), ("n02503517", "elephant"), ("n02118333", "fox"),
    ("n02510455", "giant_panda"), ("n02342885", "hamster"), ("n02374451", "horse"),
    ("n02129165", "lion"), ("n01674464", "lizard"), ("n02484322", "monkey"),
    ("n03790512", "motorcycle"), ("n02324045", "rabbit"), ("n02509815", "red_panda"),
    ("n02411705", "sheep"), ("n01726692", "snake"), ("n02355227", "squirrel"),
    ("n02129604", "tiger"), ("n04468005", "train"), ("n01662784", "turtle"),
    ("n04530566", "watercraft"), ("n02062744", "whale"), ("n02391049", "zebra"),
)
"""The 30 VID classes in ILSVRC2015_VID_ID order (ID = index + 1): (synset id, name)."""
VID_CLASS_NAMES: List[str] = [n for _, n in VID_SYNSETS]
SYNSET_TO_LABEL: Dict[str, int] = {s: i for i, (s, _) in enumerate(VID_SYNSETS)}


class _Node:
  """A parsed XML element with the line it starts on."""
  __slots__ = ("tag", "line", "children", "text")

  def __init__(self, tag: str, line: int):
    self.tag, self.line, self.children, self.text = tag, line, [], ""

  def find(self, tag: str) -> Optional["_Node"]:
    for c in self.children:
      if c.tag == tag:
        return c
    return None

  def findall(self, tag: str) -> List["_Node"]:
    return [c for c in self.children if c.tag == tag]


def _parse_xml(path: str) -> _Node:
  """Parses an XML file keeping each element's line (ElementTree does not)."""
  p = xml.parsers.expat.ParserCreate()
  root = _Node("#document", 1)
  stack = [root]

  def start(tag, attrs):
    node = _Node(tag, p.CurrentLineNumber)
    stack[-1].children.append(node)
    stack.append(node)

  def end(tag):
    node = stack.pop()
    node.text = node.text.strip()

  def chars(data):
    stack[-1].text += data

  p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
  try:
    with open(path, "rb") as f:
      p.ParseFile(f)
  except xml.parsers.expat.ExpatError as e:
    raise DataError(path, f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}",
                    line=e.lineno) from None
  if not root.children:
    raise DataError(path, "empty XML document")
  return root.children[0]


def _number(path: str, parent: _Node, tag: str, *, integer: bool = True) -> float:
  node = parent.find(tag)
  if node is None:
    raise DataError(path, f"<{parent.tag}> has no <{tag}>", line=parent.line)
  try:
    if node.text is None or "_" in node.text:  # float() reads '2_5' as 25
      raise ValueError(node.text)
    v = float(node.text)
  except ValueError:
    raise DataError(path, f"<{tag}> should be a number, got {node.text!r}", line=node.line) from None
  if not math.isfinite(v):
    raise DataError(path, f"<{tag}> should be a finite number, got {node.text!r}", line=node.line)
  if integer and v != int(v):
    raise DataError(path, f"<{tag}> should be a whole number, got {node.text!r}", line=node.line)
  return v


def read_vid_frame_xml(path: str, *, inclusive_max: bool = True) -> Dict[str, Any]:
  """Reads one frame annotation.

  Returns:
    {'size': (w, h) or None, 'objects': [{'trackid', 'synset', 'box' [4] xywh, 'occluded',
    'generated', 'line'}]}.
  """
  root = _parse_xml(path)
  size = root.find("size")
  wh = None
  if size is not None:
    wh = (int(_number(path, size, "width")), int(_number(path, size, "height")))
  objs = []
  for o in root.findall("object"):
    name = o.find("name")
    if name is None:
      raise DataError(path, "<object> has no <name>", line=o.line)
    if name.text not in SYNSET_TO_LABEL:
      raise DataError(path, f"<name> {name.text!r} is not one of the 30 VID synsets", line=name.line)
    tid = int(_number(path, o, "trackid"))
    if tid < 0:
      raise DataError(path, f"<trackid> should be 0 or more, got {tid}", line=o.find("trackid").line)
    bb = o.find("bndbox")
    if bb is None:
      raise DataError(path, "<object> has no <bndbox>", line=o.line)
    x0, x1, y0, y1 = (_number(path, bb, t, integer=False) for t in ("xmin", "xmax", "ymin", "ymax"))
    if x1 < x0 or y1 < y0:
      raise DataError(path, f"<bndbox> has xmax < xmin or ymax < ymin: "
                      f"xmin={x0:g} xmax={x1:g} ymin={y0:g} ymax={y1:g}", line=bb.line)
    extra = 1.0 if inclusive_max else 0.0
    occ = o.find("occluded")
    gen = o.find("generated")
    objs.append({
        "trackid": tid, "synset": name.text, "line": o.line,
        "box": np.array([x0, y0, x1 - x0 + extra, y1 - y0 + extra]),
        "occluded": bool(int(_number(path, o, "occluded"))) if occ is not None else False,
        "generated": bool(int(_number(path, o, "generated"))) if gen is not None else False,
    })
  return {"size": wh, "objects": objs}


def read_vid_sequence(anno_dir: Optional[str | os.PathLike],
                      data_dir: str | os.PathLike,
                      *,
                      inclusive_max: bool = True,
                      strict: bool = True,
                      name: Optional[str] = None) -> MultiSequence:
  """Reads one VID snippet.

  Args:
    anno_dir: folder of the snippet's per-frame XML files (None: frames only, gt None).
    data_dir: folder of the snippet's JPEG frames.
    inclusive_max: w = xmax - xmin + 1 (default) or xmax - xmin; see the module docstring.
    strict: a different number of XML files and images is a DataError; with False, the frames
      are the images with the XML files' names (missing ones fail when read).
  Returns:
    MultiSequence, class_names = VID_CLASS_NAMES; meta 'synsets', 'size' (w, h), 'gt_occluded',
    'gt_generated' (bool, aligned with gt rows), 'frame_names'.
  """
  data_dir = _common.require_dir(data_dir, "VID frame (Data/VID)")
  images = list_images(data_dir)
  name = name or os.path.basename(os.path.normpath(data_dir))
  meta: Dict[str, Any] = {"synsets": [s for s, _ in VID_SYNSETS]}
  if anno_dir is None:
    return MultiSequence(name, ImageFiles(images), None, None, list(VID_CLASS_NAMES), meta)
  anno_dir = _common.require_dir(anno_dir, "VID annotation (Annotations/VID)")
  xmls = sorted((f for f in os.listdir(anno_dir) if f.lower().endswith(".xml")), key=natural_key)
  if not xmls:
    raise DataError(anno_dir, "no .xml annotation files")
  if len(xmls) != len(images) and strict:
    raise DataError(anno_dir, f"has {len(xmls)} XML files but {data_dir} has {len(images)} images; "
                    "pass strict=False to use the images named like the XML files")
  by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in images}
  frames = []
  rows: List[Tuple] = []
  track_synset: Dict[int, str] = {}
  size = None
  for t, x in enumerate(xmls):
    stem = os.path.splitext(x)[0]
    frames.append(by_stem.get(stem, os.path.join(data_dir, stem + ".JPEG")))
    path = os.path.join(anno_dir, x)
    ann = read_vid_frame_xml(path, inclusive_max=inclusive_max)
    if ann["size"] is not None:
      size = size or ann["size"]
    seen = set()
    for o in ann["objects"]:
      tid = o["trackid"]
      if tid in seen:
        raise DataError(path, f"trackid {tid} appears twice in this frame", line=o["line"])
      seen.add(tid)
      prev = track_synset.setdefault(tid, o["synset"])
      if prev != o["synset"]:
        raise DataError(path, f"trackid {tid} is {o['synset']} here but {prev} in an earlier frame",
                        line=o["line"])
      rows.append((t, tid, o["box"], SYNSET_TO_LABEL[o["synset"]], o["occluded"], o["generated"]))
  if rows:
    f, tid, box, lab, occ, gen = zip(*rows)
    gt = Objects.from_arrays(f, tid, np.stack(box), label=lab,
                             visibility=1.0 - np.asarray(occ, np.float64))
    meta.update(gt_occluded=np.asarray(occ, bool), gt_generated=np.asarray(gen, bool))
  else:
    gt = Objects.empty()
    meta.update(gt_occluded=np.zeros(0, bool), gt_generated=np.zeros(0, bool))
  meta["size"] = size
  meta["frame_names"] = [os.path.splitext(x)[0] for x in xmls]
  meta["inclusive_max"] = inclusive_max
  return MultiSequence(name, ImageFiles(frames), gt, None, list(VID_CLASS_NAMES), meta)


def _snippet_dirs(top: str, ext: str) -> List[str]:
  """Relative paths of the folders under `top` that directly contain files ending in `ext`."""
  out = []
  for dirpath, dirnames, filenames in os.walk(top):
    dirnames.sort(key=natural_key)
    if any(f.lower().endswith(ext) for f in filenames):
      out.append(os.path.relpath(dirpath, top))
  return sorted(out, key=natural_key)


def read_vid_dataset(root: str | os.PathLike,
                     *,
                     split: Optional[str] = None,
                     inclusive_max: bool = True,
                     strict: bool = True,
                     max_sequences: Optional[int] = None) -> List[MultiSequence]:
  """Reads the snippets of an ILSVRC VID folder (<root>/Annotations/VID and <root>/Data/VID).

  Args:
    root: the ILSVRC2015 folder (holding Annotations/ and Data/).
    split: 'train', 'val' or 'test'; None reads every split under Data/VID.
    max_sequences: stop after this many snippets (the full train split has ~4000).
  Returns:
    list of MultiSequence named '<split>/<relative snippet path>'.
  """
  root = _common.require_dir(root, "ImageNet VID dataset")
  data_top = _common.require_dir(os.path.join(root, "Data", "VID"), "VID frame (Data/VID)")
  splits = [split] if split is not None else sorted(
      d for d in os.listdir(data_top) if os.path.isdir(os.path.join(data_top, d)))
  out: List[MultiSequence] = []
  for sp in splits:
    data_split = _common.require_dir(os.path.join(data_top, sp), f"VID {sp} split (Data/VID/{sp})")
    anno_split = os.path.join(root, "Annotations", "VID", sp)
    has_anno = os.path.isdir(anno_split)
    if has_anno:
      rels = _snippet_dirs(anno_split, ".xml")
    else:
      rels = _snippet_dirs(data_split, ".jpeg")
    for rel in rels:
      if max_sequences is not None and len(out) >= max_sequences:
        return out
      data_dir = os.path.join(data_split, rel)
      if not os.path.isdir(data_dir):
        raise DataError(data_dir, f"frame folder for annotations {os.path.join(anno_split, rel)} "
                        "does not exist")
      out.append(read_vid_sequence(os.path.join(anno_split, rel) if has_anno else None, data_dir,
                                   inclusive_max=inclusive_max, strict=strict,
                                   name=f"{sp}/{rel.replace(os.sep, '/')}"))
  if not out:
    raise DataError(root, "no VID snippets (folders of .xml under Annotations/VID/<split>)")
  return out
