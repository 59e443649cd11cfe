"""Scores tracker result files against OTB ground truth, exactly as the OTB toolkit does (OPE).

    python -m rolo_jax.evaluate --annotations ../shared/data/otb_annotations/anno_TB100 \\
        --sequences ../shared/data/otb_annotations/otb100_sequences.json \\
        --results ../shared/data/otb_reference/results/KCF --json /tmp/kcf.json \\
        [--init_omit DIR] [--plot /tmp/kcf.png] [--table /tmp/kcf.md]

Inputs
  --annotations: a folder of ground-truth files <Seq>.txt (anno_TB100 style), or an OTB-layout
    dataset root (<Seq>/groundtruth_rect.txt; two-target folders hold groundtruth_rect.1.txt /
    .2.txt, named 'Seq.1' / 'Seq.2' or however the sequences json spells them, e.g. 'jogging-1').
    A folder with at least one such sequence folder is an OTB root, and .txt files beside its
    sequence folders (a README.txt) are not ground truth.  Only the ground-truth files are read,
    never images.  Names match without regard to case and with any target separator
    ('Jogging.1' = 'jogging-1').
  --results: a folder of <Seq>.txt (one x,y,w,h row per frame; comma, tab or space separated) for
    one tracker (named after the folder), or a folder of such folders, one per tracker (compared
    in one plot and table).  Other files (e.g. *.json) are ignored.  A folder holding both <Seq>.txt
    files and tracker folders of them is refused (exit status 2) rather than half scored.
  --sequences: otb100_sequences.json ({name, start_frame, end_frame}): frame ranges, so that
    initOmit frame numbers map to rows (ground truth longer than the range is cut to it).
  --init_omit: folder of initOmit/<Seq>.txt ('first last' frame ranges that may not start a run);
    defaults to 'initOmit' beside the sequences json when that exists.  Without it a sequence
    starts at its first frame with valid ground truth.
  Result rows are aligned with the run's start frame (the toolkit's layout); a full-length result
  of a sequence whose start frame is later is cut to it.

Output (--json): for one tracker an object
  {tracker, auc, precision_20, normalized_precision, average_overlap, num_sequences,
   success [21], precision [51], normalized_precision_curve [51], thresholds {...},
   per_sequence: {<result file stem>: {success [21], precision [51], auc, precision_20,
                  normalized_precision, average_overlap, n, start_frame}}}
and for several trackers {thresholds, trackers: {<name>: that object}}.  See rolo_jax.eval.otb for
the definitions.  --table writes Markdown there and a .csv of the same name beside it (so --table
may not end in .csv).  Malformed input: one line naming the file and line, exit status 2; so are
two outputs (--json, --plot, --table, the table's .csv) naming one file and an output naming an
input file, refused before any scoring.  Huge finite result boxes (1e308) are scored as the toolkit
scores them: the overflow gives IoU 0 and an infinite centre error, without numpy warnings.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from rolo_jax.data.formats import otb as otb_format
from rolo_jax.data.formats._common import check_nonnegative_size, check_scorable_size, rows_with_lines
from rolo_jax.data.formats.textrows import read_rows
from rolo_jax.errors import ArgumentParser, DataError, check_output_file, cli_main, same_file
from rolo_jax.eval import otb

_GT_FILE = re.compile(r"^groundtruth_rect(?:\.(\d+))?\.txt$", re.IGNORECASE)
_TARGET_SUFFIX = re.compile(r"[.\-_](\d+)$")


def _key(name: str) -> str:
  """Matching key: lower case, target suffix written '.k' ('jogging-1', 'Jogging.1' -> 'jogging.1')."""
  return _TARGET_SUFFIX.sub(r".\1", name.lower())


class GroundTruthIndex:
  """Ground-truth files by sequence name: a flat folder of <Seq>.txt or an OTB-layout root."""

  def __init__(self, root: str, table: Optional[Dict[str, Dict]] = None):
    if not os.path.isdir(root):
      raise DataError(root, "annotation folder does not exist" if not os.path.exists(root)
                      else "expected an annotation folder, found a file")
    self.root = root
    # An OTB root when any sub-folder holds groundtruth_rect*.txt, whatever lies beside them.
    self.flat = not any(os.path.isdir(os.path.join(root, d)) and _has_gt_file(os.path.join(root, d))
                        for d in os.listdir(root))
    self.entries: Dict[str, List[Tuple[str, str]]] = {}  # key -> [(name, path)]
    if self.flat:
      for f in sorted(os.listdir(root)):
        if f.lower().endswith(".txt") and os.path.isfile(os.path.join(root, f)):
          self._add(f[:-4], os.path.join(root, f))
    else:
      for d in sorted(os.listdir(root)):
        folder = os.path.join(root, d)
        if not os.path.isdir(folder):
          continue
        for f in sorted(os.listdir(folder)):
          m = _GT_FILE.match(f)
          if not m or not os.path.isfile(os.path.join(folder, f)):
            continue
          name = d if m.group(1) is None else f"{d}.{m.group(1)}"
          entry = (table or {}).get(_key(name))
          self._add(entry["name"] if entry else name, os.path.join(folder, f))
    if not self.entries:
      raise DataError(root, "no ground truth here: expected <Seq>.txt files or sequence folders "
                      "with groundtruth_rect.txt")

  def _add(self, name: str, path: str) -> None:
    self.entries.setdefault(_key(name), []).append((name, path))

  def names(self) -> List[str]:
    return sorted(n for v in self.entries.values() for n, _ in v)

  def find(self, name: str, result_path: str) -> str:
    """Path of the ground truth of `name`; DataError listing near names when there is none."""
    if self.flat:
      path = otb_format.find_annotation(self.root, name, required=False)
      if path is not None:
        return path
    else:
      hits = self.entries.get(_key(name), [])
      exact = [p for n, p in hits if n == name]
      if exact:
        return exact[0]
      if len(hits) == 1:
        return hits[0][1]
      if len(hits) > 1:
        raise DataError(result_path, f"several ground-truth files match {name!r}: "
                        f"{[p for _, p in hits]}")
    names = self.names()
    near = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=5, cutoff=0.5)
    near = [n for n in names if n.lower() in near][:5]
    hint = f"; nearest names: {', '.join(near)}" if near else ""
    if not self.flat and otb_format.find_annotation(self.root, name, required=False) is not None:
      hint += (f"; {name}.txt beside the sequence folders is not read: this is an OTB-layout root "
               "(<Seq>/groundtruth_rect.txt)")
    raise DataError(result_path, f"no ground truth for sequence {name!r} in {self.root} "
                    f"({len(names)} sequences there){hint}")


def _has_gt_file(folder: str) -> bool:
  try:
    names = os.listdir(folder)
  except OSError:
    return False
  return any(_GT_FILE.match(f) and os.path.isfile(os.path.join(folder, f)) for f in names)


def _tracker_folders(results: str) -> Dict[str, str]:
  """tracker name -> folder of <Seq>.txt result files; DataError when `results` holds both
  result files and tracker folders of them (which layout is meant is unclear)."""
  if not os.path.isdir(results):
    raise DataError(results, "results folder does not exist" if not os.path.exists(results)
                    else "expected a results folder, found a file")

  def has_txt(d):
    return any(f.lower().endswith(".txt") and os.path.isfile(os.path.join(d, f)) for f in os.listdir(d))

  out = {d: os.path.join(results, d) for d in sorted(os.listdir(results))
         if os.path.isdir(os.path.join(results, d)) and has_txt(os.path.join(results, d))}
  if has_txt(results):
    if out:
      files = sorted(f for f in os.listdir(results) if f.lower().endswith(".txt")
                     and os.path.isfile(os.path.join(results, f)))
      raise DataError(results, f"holds both result files ({', '.join(files[:3])}"
                      f"{' ...' if len(files) > 3 else ''}) and tracker folders of them "
                      f"({', '.join(list(out)[:3])}{' ...' if len(out) > 3 else ''}); expected one "
                      "layout: <Seq>.txt files of one tracker, or one folder of them per tracker")
    return {os.path.basename(os.path.normpath(os.path.abspath(results))): results}
  if not out:
    raise DataError(results, "no result files: expected <Seq>.txt files or one folder of them per "
                    "tracker")
  return out


def _load_gt(path: str, entry: Optional[Dict]) -> Tuple[np.ndarray, int]:
  """Ground truth of the sequence's frame range and its first frame number."""
  gt, lines = rows_with_lines(path, 4, allow_nan=True, what="x,y,w,h")
  check_nonnegative_size(path, gt, lines)
  check_scorable_size(path, gt, lines)
  if len(gt) == 0:
    raise DataError(path, "ground-truth file has no rows")
  if entry is None:
    return gt, 1
  start, end = entry["start_frame"], entry["end_frame"]
  length = end - start + 1
  if len(gt) == length:
    return gt, start
  if len(gt) >= end:  # the file covers frames 1.. : cut to the range
    return gt[start - 1:end], start
  raise DataError(path, f"{len(gt)} ground-truth rows, but {entry['name']} runs from frame {start} "
                  f"to {end} ({length} frames) in {entry.get('source', 'the sequences json')}")


def evaluate_folder(results_dir: str, index: GroundTruthIndex, table: Dict[str, Dict],
                    init_omit_dir: Optional[str], notes: List[str]) -> Dict[str, otb.SequenceScore]:
  """Scores every <Seq>.txt in one tracker's folder.  Returns {stem: SequenceScore}."""
  scores: Dict[str, otb.SequenceScore] = {}
  files = sorted(f for f in os.listdir(results_dir)
                 if f.lower().endswith(".txt") and os.path.isfile(os.path.join(results_dir, f)))
  for f in files:
    stem = f[:-4]
    rpath = os.path.join(results_dir, f)
    gpath = index.find(stem, rpath)
    entry = table.get(_key(stem))
    gt, first_frame = _load_gt(gpath, entry)
    init_omit, opath = np.zeros((0, 2)), None
    if init_omit_dir is not None:
      opath = otb_format.find_annotation(init_omit_dir, entry["name"] if entry else stem,
                                         required=False)
      if opath is not None:
        init_omit = otb_format.read_init_omit(opath)
    res = read_rows(rpath, 4, allow_nan=True, what="x,y,w,h")
    if len(res) == 0:
      raise DataError(rpath, "result file has no rows (expected one x,y,w,h row per frame)")
    with np.errstate(invalid="ignore"):
      odd = np.isnan(res).any(axis=1) | (res[:, 2] <= 0) | (res[:, 3] <= 0)
    if odd.any():
      first = int(np.argmax(odd))
      notes.append(f"{rpath}: {int(odd.sum())} rows hold NaN or a width/height <= 0 (first: row "
                   f"{first + 1}, {res[first].tolist()}); as in the OTB toolkit, each from the second row "
                   "on is replaced by the previous row's box")
    try:
      s = otb.start_index(gt, init_omit, first_frame)
    except ValueError as e:
      also = f" (with the frames omitted by {opath})" if opath is not None and len(init_omit) else ""
      raise DataError(gpath, f"{e}{also}") from None
    n = len(gt) - s
    if len(res) not in (n, len(gt)):
      notes.append(f"{rpath}: {len(res)} rows for {n} frames from the start frame "
                   f"(ground truth {len(gt)} rows, start at row {s + 1}); rows are taken from the "
                   "start frame on" + ("; frames past the last row count as failures"
                                       if len(res) < n else "; extra rows ignored"))
    # Boxes like 1e308 overflow to inf inside the box arithmetic: IoU 0 and an infinite centre
    # error, which is the toolkit's score for them (only numpy's warnings are silenced).
    with np.errstate(over="ignore"):
      scores[stem] = otb.score_sequence(gt, res, init_omit=init_omit,
                                        start_frame_number=first_frame)
  return scores


def _tolist(a) -> list:
  return [float(v) for v in np.asarray(a)]


def tracker_json(name: str, scores: Dict[str, otb.SequenceScore], first_frames: Dict[str, int]) -> Dict:
  agg = otb.aggregate(scores)
  per = {}
  for seq, sc in scores.items():
    per[seq] = dict(success=_tolist(sc.success), precision=_tolist(sc.precision), auc=sc.auc,
                    precision_20=sc.precision_20,
                    normalized_precision=float(np.mean(sc.norm_precision)),
                    average_overlap=sc.average_overlap, n=int(sc.n),
                    start_frame=int(first_frames.get(seq, 1)) + int(sc.start))
  return dict(tracker=name, auc=agg["auc"], precision_20=agg["precision_20"],
              normalized_precision=agg["normalized_precision"],
              average_overlap=agg["average_overlap"], num_sequences=agg["num_sequences"],
              success=_tolist(agg["success"]), precision=_tolist(agg["precision"]),
              normalized_precision_curve=_tolist(agg["normalized_precision_curve"]),
              per_sequence=per)


def _thresholds() -> Dict[str, list]:
  return dict(success=_tolist(otb.SUCCESS_THRESHOLDS), precision=_tolist(otb.PRECISION_THRESHOLDS),
              normalized_precision=_tolist(otb.NORM_PRECISION_THRESHOLDS))


def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m rolo_jax.evaluate",
                     description="OTB one-pass evaluation of tracker result files.")
  p.add_argument("--annotations", required=True,
                 help="folder of <Seq>.txt ground truth, or an OTB-layout dataset root")
  p.add_argument("--results", required=True,
                 help="folder of <Seq>.txt results, or of one such folder per tracker")
  p.add_argument("--sequences", default=None, help="otb100_sequences.json (frame ranges)")
  p.add_argument("--init_omit", default=None,
                 help="initOmit folder (default: initOmit beside --sequences when present)")
  p.add_argument("--json", required=True, help="output JSON")
  p.add_argument("--plot", default=None, help="success/precision plot (PNG)")
  p.add_argument("--table", default=None,
                 help="per-sequence table (Markdown; a .csv of the same name beside it)")
  p.add_argument("--title", default="OPE", help="plot title")
  return p


def parse_args(argv):
  return build_parser().parse_args(argv)


def _output_paths(args, parser) -> List[Tuple[str, str]]:
  """(flag, path) of every file to write, checked as files and told apart; usage error when two
  name one file or --table ends in .csv (its .csv would be the table itself)."""
  outputs = [(f, p) for f, p in (("--json", args.json), ("--plot", args.plot),
                                 ("--table", args.table)) if p is not None]
  if args.table is not None:
    stem, ext = os.path.splitext(args.table)
    if ext.lower() == ".csv":
      parser.error(f"--table {args.table}: the table is Markdown and a .csv of the same name is "
                   "written beside it; give a name ending in .md")
    outputs.append(("--table (its .csv)", stem + ".csv"))
  for flag, path in outputs:
    check_output_file(path, flag)
  for i, (flag, path) in enumerate(outputs):
    for flag2, path2 in outputs[:i]:
      if same_file(path, path2):
        parser.error(f"{flag2} {path2} and {flag} {path} name one file; one would overwrite the "
                     "other: give different paths")
  return outputs


def _input_files(index: GroundTruthIndex, trackers: Dict[str, str], sequences: Optional[str],
                 init_omit_dir: Optional[str]) -> List[Tuple[str, str]]:
  """(flag, path) of the files read: ground truth, results, the sequences json, initOmit files
  (the .txt of the folders; other files there, such as an earlier --json, are not read)."""
  txt = lambda d: [os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(".txt")]
  files = [("--annotations", p) for v in index.entries.values() for _, p in v]
  for folder in trackers.values():
    files += [("--results", p) for p in txt(folder)]
  if sequences:
    files.append(("--sequences", sequences))
  if init_omit_dir:
    files += [("--init_omit", p) for p in txt(init_omit_dir)]
  return [(flag, p) for flag, p in files if os.path.isfile(p)]


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  outputs = _output_paths(args, parser)   # before scoring, so no work is lost
  if args.plot:
    from matplotlib.figure import Figure

    kinds = Figure().canvas.get_supported_filetypes()
    ext = os.path.splitext(args.plot)[1].lower().lstrip(".")
    if ext not in kinds:
      raise DataError(args.plot, f"--plot: unknown image type {ext!r}; expected a file ending in "
                                 f"{', '.join('.' + k for k in sorted(kinds))}")
  table = otb_format.load_sequences_json(args.sequences) if args.sequences else {}
  init_omit_dir = args.init_omit
  if init_omit_dir is not None and not os.path.isdir(init_omit_dir):
    raise DataError(init_omit_dir, "initOmit folder does not exist")
  if init_omit_dir is None and args.sequences:
    cand = os.path.join(os.path.dirname(os.path.abspath(args.sequences)), "initOmit")
    init_omit_dir = cand if os.path.isdir(cand) else None
  index = GroundTruthIndex(args.annotations, table)
  trackers = _tracker_folders(args.results)
  for flag, path in outputs:
    for what, inp in _input_files(index, trackers, args.sequences, init_omit_dir):
      if same_file(path, inp):
        parser.error(f"{flag} {path}: this is an input file ({what} {inp}); writing there would "
                     "destroy it: give another path")

  notes: List[str] = []
  per_tracker: Dict[str, Dict[str, otb.SequenceScore]] = {}
  out_trackers = {}
  for name, folder in trackers.items():
    scores = evaluate_folder(folder, index, table, init_omit_dir, notes)
    per_tracker[name] = scores
    first = {s: (table[_key(s)]["start_frame"] if _key(s) in table else 1) for s in scores}
    out_trackers[name] = tracker_json(name, scores, first)
    if table:
      missing = sorted(e["name"] for k, e in table.items() if k not in {_key(s) for s in scores})
      if missing:
        notes.append(f"{name}: {len(missing)} sequences of {args.sequences} have no result file "
                     f"(not scored): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")

  if len(out_trackers) == 1:
    out = dict(next(iter(out_trackers.values())), thresholds=_thresholds())
  else:
    out = dict(thresholds=_thresholds(), trackers=out_trackers)
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(out, f, indent=1)

  for line in notes:
    print(f"note: {line}")
  if init_omit_dir:
    print(f"initOmit: {init_omit_dir}")
  for name, o in out_trackers.items():
    print(f"{name}: {o['num_sequences']} sequences  AUC {o['auc']:.4f}  precision@20 "
          f"{o['precision_20']:.4f}  norm. precision {o['normalized_precision']:.4f}  "
          f"average overlap {o['average_overlap']:.4f}")
  print(f"wrote {args.json}")
  if args.plot or args.table:
    from rolo_jax.eval import plots
    if args.plot:
      plots.plot_success_precision({n: otb.aggregate(s) for n, s in per_tracker.items()}, args.plot,
                                   args.title)
      print(f"wrote {args.plot}")
    if args.table:
      csv_path = os.path.splitext(args.table)[0] + ".csv"
      plots.sequence_table(per_tracker, args.table, csv_path)
      print(f"wrote {args.table} and {csv_path}")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main)())
