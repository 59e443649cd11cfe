"""OTB-style success / precision plots and per-sequence tables.

`plot_success_precision` draws the two panels of the OTB papers: the success plot (fraction of
frames with IoU > threshold, thresholds 0..1, legend "[AUC]") and the precision plot (fraction of
frames with centre error <= threshold, 0..50 px, legend "[precision at 20 px]"); trackers are
listed best first.  `sequence_table` writes per-sequence AUC and precision@20 of every tracker as
Markdown and CSV, with a mean row (equal weight per sequence, as the curves).
"""
from __future__ import annotations

import csv
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from rolo_jax.eval import otb


def _ensure_dir(path: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)


def plot_success_precision(curves: Mapping[str, Mapping[str, Any]], out_png: str,
                           title: str = "OPE") -> str:
  """Writes the success and precision plots of several trackers side by side.

  Args:
    curves: tracker name -> `otb.aggregate` dict (needs 'success' [21], 'precision' [51], 'auc',
      'precision_20').
    out_png: output image path.
    title: used in both panel titles ("Success plots of <title>").
  Returns:
    out_png.
  """
  # The Agg canvas directly (no pyplot): no global backend state, works without a display.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if not curves:
    raise ValueError("plot_success_precision needs at least one tracker")
  fig = Figure(figsize=(12, 5))
  FigureCanvasAgg(fig)
  ax_s, ax_p = fig.subplots(1, 2)
  styles = ["-", "--", "-.", ":"]
  by_auc = sorted(curves, key=lambda k: -float(curves[k]["auc"]))
  by_prec = sorted(curves, key=lambda k: -float(curves[k]["precision_20"]))
  colours = {name: f"C{i % 10}" for i, name in enumerate(by_auc)}
  for i, name in enumerate(by_auc):
    c = curves[name]
    ax_s.plot(otb.SUCCESS_THRESHOLDS, np.asarray(c["success"]), styles[(i // 10) % 4],
              color=colours[name], linewidth=2, label=f"{name} [{float(c['auc']):.3f}]")
  for i, name in enumerate(by_prec):
    c = curves[name]
    ax_p.plot(otb.PRECISION_THRESHOLDS, np.asarray(c["precision"]), styles[(i // 10) % 4],
              color=colours[name], linewidth=2, label=f"{name} [{float(c['precision_20']):.3f}]")
  ax_s.set(xlim=(0, 1), ylim=(0, 1), xlabel="Overlap threshold", ylabel="Success rate",
           title=f"Success plots of {title}")
  ax_p.set(xlim=(0, 50), ylim=(0, 1), xlabel="Location error threshold", ylabel="Precision",
           title=f"Precision plots of {title}")
  ax_s.legend(loc="lower left", fontsize=9)
  ax_p.legend(loc="lower right", fontsize=9)
  for ax in (ax_s, ax_p):
    ax.grid(True, alpha=0.3)
  fig.tight_layout()
  _ensure_dir(out_png)
  fig.savefig(out_png, dpi=100)
  return out_png


def sequence_table(per_sequence: Mapping[str, Mapping[str, "otb.SequenceScore"]], out_md: str,
                   out_csv: Optional[str] = None) -> Dict[str, Dict[str, float]]:
  """Writes per-sequence AUC and precision@20 of each tracker, with a mean row.

  Rows are the union of the sequences (sorted without regard to case); a tracker without a
  sequence gets an empty cell there and its mean is over the sequences it has.

  Args:
    per_sequence: tracker -> {sequence -> SequenceScore}.
    out_md: Markdown output path.
    out_csv: CSV output path (columns sequence, <tracker> auc, <tracker> precision_20, ...), or None.
  Returns:
    tracker -> {'auc': mean AUC, 'precision_20': mean precision@20}.
  """
  trackers = list(per_sequence)
  seqs = sorted({s for t in trackers for s in per_sequence[t]}, key=lambda s: (s.lower(), s))
  means = {}
  for t in trackers:
    sc = list(per_sequence[t].values())
    means[t] = {"auc": float(np.mean([s.auc for s in sc])) if sc else float("nan"),
                "precision_20": float(np.mean([s.precision_20 for s in sc])) if sc else float("nan")}

  def cells(t, s):
    sc = per_sequence[t].get(s)
    return ("", "") if sc is None else (f"{sc.auc:.4f}", f"{sc.precision_20:.4f}")

  header = ["sequence"] + [f"{t} {m}" for t in trackers for m in ("AUC", "P@20")]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for s in seqs:
    lines.append("| " + " | ".join([s] + [c for t in trackers for c in cells(t, s)]) + " |")
  lines.append("| " + " | ".join(["**mean**"] + [f"**{means[t][m]:.4f}**" for t in trackers
                                                  for m in ("auc", "precision_20")]) + " |")
  _ensure_dir(out_md)
  with open(out_md, "w") as f:
    f.write("\n".join(lines) + "\n")
  if out_csv:
    _ensure_dir(out_csv)
    with open(out_csv, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["sequence"] + [f"{t} {m}" for t in trackers for m in ("auc", "precision_20")])
      for s in seqs:
        row = [s]
        for t in trackers:
          sc = per_sequence[t].get(s)
          row += ["", ""] if sc is None else [repr(sc.auc), repr(sc.precision_20)]
        w.writerow(row)
      w.writerow(["mean"] + [repr(means[t][m]) for t in trackers for m in ("auc", "precision_20")])
  return means
