"""Scores MOTChallenge tracker results against ground truth (CLEAR MOT + identity metrics).

    python -m rolo_jax.evaluate_mot --gt ../shared/data/mot/TUD-Campus/gt.txt \\
        --results ../shared/data/mot/TUD-Campus/tracker_output.txt \\
        [--json OUT.json] [--table OUT.md]

Inputs (MOTChallenge text files: frame, id, x, y, w, h, conf, ...; see rolo_jax.data.formats.mot)
  --gt: a gt file, a sequence folder (<seq>/gt/gt.txt) or a folder of sequences (<seq>/gt/gt.txt
    or <seq>.txt).  Repeat it for several sequences.
  --results: a results file or a folder of <seq>.txt.  Repeat it for several sequences.
  Pairing: by sequence name when every gt sequence has a results entry of the same name (a gt file
  is named after its sequence folder: .../TUD-Campus/gt.txt and .../TUD-Campus/gt/gt.txt are both
  'TUD-Campus'; <seq>.txt is '<seq>'); otherwise, when all --results are files and there are as
  many as gt sequences, in the order given.  Results without ground truth are skipped (noted).
  --iou: matching threshold (default 0.5).
  Ground-truth rows that are not evaluated (consider flag 0; MOT16/17 class rules): see
  rolo_jax.eval.mot.

Output
  stdout: one `name=value` line per metric (mota, motp, idf1, idp, idr, recall, precision,
    num_switches, num_fragmentations, num_false_positives, num_misses, mostly_tracked,
    partially_tracked, mostly_lost, num_unique_objects) for a single sequence; for several, one
    line per sequence (`<name>: mota=... idf1=...`) and then the `name=value` lines of the overall
    result (counts summed over sequences, rates recomputed from the sums).
    MOTP is py-motmetrics' distance: mean 1 - IoU over matches (lower is better).
  --json: {"iou_threshold", "overall": {metrics and counts}, "per_sequence": {name: {...}},
    "files": {name: {"gt", "results"}}}; NaN (a zero denominator) is written as null.
  --table: a Markdown table, one row per sequence and an OVERALL row.
  Malformed input (wrong column count, non-number, negative size, duplicate id in a frame, a
  missing file): one line naming the file and line on stderr, exit status 2.  So are --json and
  --table naming one file, or an output naming an input file (refused before any scoring).
  Huge finite result boxes (1e308) overflow to IoU 0 (or NaN: no match either way), their true
  score, without numpy warnings.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Tuple

import numpy as np

from rolo_jax.data.formats.mot import read_mot_file
from rolo_jax.data.images import natural_key
from rolo_jax.errors import ArgumentParser, DataError, check_output_file, cli_main, same_file
from rolo_jax.eval import mot

_TABLE_COLUMNS = [("MOTA", "mota"), ("MOTP", "motp"), ("IDF1", "idf1"), ("IDP", "idp"),
                  ("IDR", "idr"), ("Rcll", "recall"), ("Prcn", "precision"),
                  ("GT", "num_unique_objects"), ("MT", "mostly_tracked"),
                  ("PT", "partially_tracked"), ("ML", "mostly_lost"),
                  ("FP", "num_false_positives"), ("FN", "num_misses"), ("IDs", "num_switches"),
                  ("FM", "num_fragmentations")]


def gt_name(path: str) -> str:
  """Sequence name of a gt file: <seq>/gt/gt.txt and <seq>/gt.txt -> <seq>; <name>.txt -> <name>."""
  path = os.path.abspath(path)
  stem = os.path.splitext(os.path.basename(path))[0]
  if stem.lower() != "gt":
    return stem
  parent = os.path.dirname(path)
  if os.path.basename(parent).lower() == "gt":
    parent = os.path.dirname(parent)
  return os.path.basename(parent) or stem


def _txt_files(folder: str) -> List[str]:
  return sorted((f for f in os.listdir(folder)
                 if f.lower().endswith(".txt") and os.path.isfile(os.path.join(folder, f))),
                key=natural_key)


def expand_gt(arg: str) -> List[Tuple[str, str]]:
  """(name, gt file) entries of one --gt argument."""
  if os.path.isfile(arg):
    return [(gt_name(arg), arg)]
  if not os.path.isdir(arg):
    raise DataError(arg, "ground-truth file or folder does not exist")
  own = os.path.join(arg, "gt", "gt.txt")
  if os.path.isfile(own):
    return [(os.path.basename(os.path.abspath(arg)), own)]
  out = []
  for e in sorted(os.listdir(arg), key=natural_key):
    p = os.path.join(arg, e, "gt", "gt.txt")
    if os.path.isfile(p):
      out.append((e, p))
  out += [(f[:-4], os.path.join(arg, f)) for f in _txt_files(arg)]
  if not out:
    raise DataError(arg, "no ground truth here: expected gt/gt.txt, <seq>/gt/gt.txt or <seq>.txt")
  return out


def expand_results(arg: str) -> List[Tuple[str, str]]:
  """(name, results file) entries of one --results argument."""
  if os.path.isfile(arg):
    return [(os.path.splitext(os.path.basename(arg))[0], arg)]
  if not os.path.isdir(arg):
    raise DataError(arg, "results file or folder does not exist")
  out = [(f[:-4], os.path.join(arg, f)) for f in _txt_files(arg)]
  if not out:
    raise DataError(arg, "no results files (<seq>.txt) in this folder")
  return out


def pair_files(gt_args: List[str],
               res_args: List[str]) -> Tuple[Dict[str, Tuple[str, str]], List[str]]:
  """Pairs gt and results files (see the module docstring).

  Returns:
    (name -> (gt path, results path) in gt order, notes).
  """
  gts: List[Tuple[str, str]] = [e for a in gt_args for e in expand_gt(a)]
  res: List[Tuple[str, str]] = [e for a in res_args for e in expand_results(a)]
  names = [n for n, _ in gts]
  dup = sorted({n for n in names if names.count(n) > 1})
  res_by_name = dict(res)
  notes: List[str] = []
  if not dup and all(n in res_by_name for n in names):
    extra = [n for n, _ in res if n not in set(names)]
    if extra:
      notes.append(f"no ground truth for {len(extra)} results files (skipped): "
                   f"{', '.join(extra[:10])}")
    return {n: (p, res_by_name[n]) for n, p in gts}, notes
  if all(os.path.isfile(a) for a in res_args) and len(res) == len(gts):
    out: Dict[str, Tuple[str, str]] = {}
    for (n, g), (_, r) in zip(gts, res):
      k, i = n, 2
      while k in out:
        k, i = f"{n}#{i}", i + 1
      out[k] = (g, r)
    return out, notes
  missing = [(n, p) for n, p in gts if n not in res_by_name]
  n, p = missing[0] if missing else gts[0]
  raise DataError(p, f"no results file for sequence {n!r} ({len(missing)} of {len(gts)} gt "
                  f"sequences have none; results are named <seq>.txt, or give as many --results "
                  f"files as gt sequences, in the same order)")


def _json_value(v):
  if isinstance(v, float) and not math.isfinite(v):
    return None
  return v


def format_value(v) -> str:
  if isinstance(v, bool) or isinstance(v, int):
    return str(int(v))
  return "nan" if not math.isfinite(v) else repr(float(v))


def metric_lines(result: Dict[str, float]) -> List[str]:
  """`name=value` lines of `mot.METRIC_NAMES`."""
  return [f"{k}={format_value(result[k])}" for k in mot.METRIC_NAMES]


def markdown_table(per_sequence: Dict[str, Dict[str, float]], overall: Dict[str, float]) -> str:
  """Per-sequence metrics as a Markdown table with an OVERALL row (rates in %, MOTP distance)."""

  def cell(key, v):
    if key in mot.INT_NAMES:
      return str(int(v))
    if not math.isfinite(v):
      return "-"
    return f"{v:.3f}" if key == "motp" else f"{100 * v:.1f}"

  head = "| Sequence | " + " | ".join(h for h, _ in _TABLE_COLUMNS) + " |"
  rule = "|---|" + "|".join("---:" for _ in _TABLE_COLUMNS) + "|"
  rows = [head, rule]
  for name, r in list(per_sequence.items()) + [("OVERALL", overall)]:
    rows.append(f"| {name} | " + " | ".join(cell(k, r[k]) for _, k in _TABLE_COLUMNS) + " |")
  return "\n".join(rows) + "\n"


def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m rolo_jax.evaluate_mot", description=__doc__.split("\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--gt", action="append", required=True,
                 help="gt file, sequence folder or folder of sequences (repeatable)")
  p.add_argument("--results", action="append", required=True,
                 help="results file or folder of <seq>.txt (repeatable)")
  p.add_argument("--json", default=None, help="write all metrics and counts here")
  p.add_argument("--table", default=None, help="write a per-sequence Markdown table here")
  p.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match (default 0.5)")
  return p


def parse_args(argv=None, parser=None):
  p = parser or build_parser()
  args = p.parse_args(argv)
  if not 0.0 < args.iou <= 1.0:
    p.error(f"--iou must be in (0, 1], got {args.iou}")
  return args


def main(argv=None) -> int:
  parser = build_parser()
  args = parse_args(argv, parser)
  check_output_file(args.json, "--json")     # before scoring, so no work is lost
  check_output_file(args.table, "--table")
  if args.json and args.table and same_file(args.json, args.table):
    parser.error(f"--json {args.json} and --table {args.table} name one file; one would overwrite "
                 "the other: give different paths")
  pairs, notes = pair_files(args.gt, args.results)
  for flag, out in (("--json", args.json), ("--table", args.table)):
    for name, (g, r) in pairs.items() if out else ():
      for what, inp in (("--gt", g), ("--results", r)):
        if same_file(out, inp):
          parser.error(f"{flag} {out}: this is an input file ({what} {inp}); writing there would "
                       "destroy it: give another path")
  data = {name: (read_mot_file(g, "gt", allow_empty=False), read_mot_file(r, "results"))
          for name, (g, r) in pairs.items()}
  try:
    # Huge boxes (1e308) overflow to IoU 0 or NaN, both "no match": right, so no warnings.
    with np.errstate(over="ignore", invalid="ignore"):
      per, overall = mot.evaluate_many(data, iou_threshold=args.iou)
  except ValueError as e:  # duplicate ids in objects built by hand; files are checked by the reader
    raise DataError(None, str(e)) from None

  for line in notes:
    print(f"note: {line}", file=sys.stderr)
  if len(per) > 1:
    for name, r in per.items():
      print(f"{name}: " + " ".join(metric_lines(r)))
  print("\n".join(metric_lines(overall)))

  if args.json:
    out = {"iou_threshold": args.iou,
           "overall": {k: _json_value(v) for k, v in overall.items()},
           "per_sequence": {n: {k: _json_value(v) for k, v in r.items()} for n, r in per.items()},
           "files": {n: {"gt": os.path.abspath(g), "results": os.path.abspath(r)}
                     for n, (g, r) in pairs.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
    print(f"wrote {args.json}", file=sys.stderr)
  if args.table:
    os.makedirs(os.path.dirname(os.path.abspath(args.table)), exist_ok=True)
    with open(args.table, "w") as f:
      f.write(markdown_table(per, overall))
    print(f"wrote {args.table}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main)())
