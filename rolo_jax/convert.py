"""Import published weights into rolo_jax checkpoints (no PyTorch needed).

    python -m rolo_jax.convert re3 --config paper --pth re3_weights.pth --out checkpoints/re3_paper

reads the state_dict of the Re3 authors' PyTorch port (`rolo_jax.io.pth`), checks every expected
name and shape for the chosen config, maps it to `rolo_jax.models.re3` params and writes them with
`rolo_jax.train.checkpoint.save_params` (meta: ``{'model': 're3', 'config': <Re3Config fields>,
'config_name': ..., 'source': <pth path>}``). ``--config`` is a name in ``re3.CONFIGS`` or a JSON
file of `Re3Config` fields (``{"base": "paper", "crop_size": 99, ...}``; ``base`` defaults to
paper).  Any missing, unexpected or mis-shaped key is reported in one error (exit status 2).

Name mapping (PyTorch: conv weights OIHW, linear weights [out, in]; rolo_jax: HWIO and [in, out])::

    conv.{n}.weight        [O, I/g, k, k]   -> conv{n+1}.w = transpose(2, 3, 1, 0)   n = 0..4
    conv.{n}.bias          [O]              -> conv{n+1}.b
    conv_skip.{j}.weight   [S, C, 1, 1]     -> skip{1,2,5}[j].w = transpose(2, 3, 1, 0)
    conv_skip.{j}.bias     [S]              -> skip….b
    prelu_skip.{j}.weight  [S]              -> skip….prelu
    fc6.weight             [F, 2·D]         -> fc6.w = W.T      (rows: [prev crop, current crop],
    fc6.bias               [F]              -> fc6.b             each [skip1, skip2, skip5, pool5]
                                                                 flattened (C, H, W): the same order
                                                                 rolo_jax's encoder produces)
    lstm{1,2}.block_input.weight  [H, in + H]   -> lstm{1,2}.block_input.w = W.T   (reads [x, h])
    lstm{1,2}.{input,forget,output}_gate.weight [H, in + 2H] -> ….w = W.T       (reads [x, h, c])
    lstm{1,2}.*.bias        [H]             -> ….b
    fc_output_out.weight   [4, H]           -> fc_out.w = W.T
    fc_output_out.bias     [4]              -> fc_out.b

Groups need no reordering: PyTorch and ``lax.conv_general_dilated(feature_group_count=g)`` both
split input and output channels into g consecutive blocks.  A common key prefix (``module.`` from
DataParallel, ``state_dict.`` from a nested checkpoint dict) is detected from ``fc6.weight`` and
stripped.  Weights are stored float32 whatever the file's float dtype.

Only the Caffe-LSTM cell (the ``paper`` config, and any config with ``cell='caffe'``) has a
published PyTorch layout (the names above, from the spec).  The ``small`` config's diagonal-peephole
cell comes from the authors' TensorFlow code and no PyTorch naming for it is known here, so
``--config small`` (and ``tiny``) is refused with a message saying so rather than guessing names.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from rolo_jax.errors import ArgumentParser, DataError, cli_main
from rolo_jax.models import mistyped_fields

SKIPS = ("skip1", "skip2", "skip5")
GATES = ("block_input", "input_gate", "forget_gate", "output_gate")


# --------------------------------------------------------------------------------------------------
# Re3

def re3_config(spec: str):
  """A Re3Config from a CONFIGS name or a JSON file of fields (``base`` picks the starting config)."""
  from rolo_jax.models import re3

  if spec in re3.CONFIGS:
    return re3.CONFIGS[spec]
  if spec.endswith(".json") or os.path.isfile(spec):
    if not os.path.isfile(spec):
      raise FileNotFoundError(f"{spec}: no such config file")
    try:
      with open(spec) as f:
        fields = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(spec, f"not valid JSON: {e}", line=e.lineno) from None
    if not isinstance(fields, dict):
      raise DataError(spec, "expected a JSON object of Re3Config fields")
    return re3_config_from_dict(fields, what=spec)
  raise DataError("--config", f"unknown Re3 config {spec!r}: choose from {', '.join(re3.CONFIGS)} or give a "
                  ".json file of Re3Config fields")


def re3_config_from_dict(fields: Mapping, what: str = "config"):
  """Re3Config from a dict of fields (lists become tuples); ``base``/``name`` pick the defaults.

  Accepts what ``save_params`` stores in meta['config'] (all fields) as well as partial dicts.
  """
  from rolo_jax.models import re3

  try:   # older checkpoints' field names (use_lrn) in today's
    fields = re3.Re3Config.upgrade_saved(fields)
  except ValueError as e:
    raise DataError(what, str(e)) from None
  base_name = fields.pop("base", None) or fields.get("name") or "paper"
  base = re3.CONFIGS.get(base_name, re3.Re3Config())
  known = {f.name for f in dataclasses.fields(re3.Re3Config)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise DataError(what, f"unknown Re3Config field(s) {unknown}; known: {sorted(known)}")
  bad = mistyped_fields(base, fields)
  if bad:
    raise DataError(what, f"Re3Config field {bad[0]}")
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  try:
    return base.replace(**fields)
  except (TypeError, ValueError) as e:
    raise DataError(what, f"invalid Re3Config: {e}") from None


def re3_expected_shapes(cfg) -> Dict[str, Tuple[int, ...]]:
  """Every state_dict key of the authors' PyTorch Re3 (Caffe LSTM) with its shape, for ``cfg``."""
  from rolo_jax.models import re3

  if cfg.cell != "caffe":
    raise DataError(f"--config {cfg.name}", f"this config uses the {cfg.cell!r} LSTM cell: only the "
                    "Caffe cell (cell='caffe', as in the 'paper' config) has a published PyTorch weight "
                    "layout; no PyTorch naming for the other cells (the 'small' model's diagonal "
                    "peepholes) is known to this converter")
  shapes: Dict[str, Tuple[int, ...]] = {}
  c_in = 3
  for n in range(5):
    k, g, c = cfg.conv_kernels[n], cfg.conv_groups[n], cfg.conv_channels[n]
    shapes[f"conv.{n}.weight"] = (c, c_in // g, k, k)
    shapes[f"conv.{n}.bias"] = (c,)
    c_in = c
  sources = (cfg.conv_channels[0], cfg.conv_channels[1], cfg.conv_channels[4])
  for j, (c_src, c) in enumerate(zip(sources, cfg.skip_channels)):
    shapes[f"conv_skip.{j}.weight"] = (c, c_src, 1, 1)
    shapes[f"conv_skip.{j}.bias"] = (c,)
    shapes[f"prelu_skip.{j}.weight"] = (c,)
  d_pair = 2 * re3.feature_dim(cfg)
  f, h = cfg.fc6_units, cfg.lstm_hidden
  shapes["fc6.weight"] = (f, d_pair)
  shapes["fc6.bias"] = (f,)
  for layer, x_dim in (("lstm1", f), ("lstm2", f + h)):
    for gate in GATES:
      rows = x_dim + h if gate == "block_input" else x_dim + 2 * h
      shapes[f"{layer}.{gate}.weight"] = (h, rows)
      shapes[f"{layer}.{gate}.bias"] = (h,)
  shapes["fc_output_out.weight"] = (4, h)
  shapes["fc_output_out.bias"] = (4,)
  return shapes


def _strip_prefix(state: Mapping[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], str]:
  hits = [k[:-len("fc6.weight")] for k in state if k.endswith("fc6.weight")]
  prefix = hits[0] if len(hits) == 1 else ""
  if prefix and not prefix.endswith("."):
    prefix = ""
  if not prefix:
    return dict(state), ""
  return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, prefix


def check_state_dict(state: Mapping[str, np.ndarray], expected: Mapping[str, Tuple[int, ...]],
                     source: Optional[str] = None, what: str = "") -> None:
  """Raises one DataError listing every missing, unexpected, mis-shaped or non-float key."""
  missing = [k for k in expected if k not in state]
  unexpected = [k for k in state if k not in expected]
  bad_shape = [f"{k}: expected {list(expected[k])}, found {list(np.shape(state[k]))}"
               for k in expected if k in state and tuple(np.shape(state[k])) != tuple(expected[k])]
  bad_dtype = [f"{k}: dtype {np.asarray(state[k]).dtype} (expected a float type)"
               for k in expected if k in state and np.asarray(state[k]).dtype.kind != "f"
               and str(np.asarray(state[k]).dtype) != "bfloat16"]
  if not (missing or unexpected or bad_shape or bad_dtype):
    return
  lines = [f"state_dict does not match {what or 'the model'}:"]
  if missing:
    lines.append(f"  missing {len(missing)} key(s): {', '.join(missing)}")
  if unexpected:
    lines.append(f"  unexpected {len(unexpected)} key(s): {', '.join(unexpected)}")
  if bad_shape:
    lines.append(f"  {len(bad_shape)} key(s) with the wrong shape:")
    lines += [f"    {s}" for s in bad_shape]
  if bad_dtype:
    lines.append(f"  {len(bad_dtype)} key(s) that are not floating point:")
    lines += [f"    {s}" for s in bad_dtype]
  raise DataError(source, "\n".join(lines))


def re3_from_state_dict(state: Mapping[str, np.ndarray], cfg, source: Optional[str] = None):
  """The authors' PyTorch Re3 state_dict -> rolo_jax ``re3`` params (float32 numpy), checked.

  Args:
    state: name -> array (see the module docstring for names and shapes).
    cfg: a Re3Config with ``cell='caffe'``.
    source: file name for error messages.
  Returns:
    params with the structure and shapes of ``re3.init(key, cfg)``.
  Raises:
    DataError: listing every missing/unexpected/mis-shaped key; or the config's cell has no
      published layout.
  """
  import jax
  from rolo_jax.models import re3

  state, _ = _strip_prefix(state)
  expected = re3_expected_shapes(cfg)
  check_state_dict(state, expected, source, what=f"Re3 config {cfg.name!r}")
  f32 = lambda k: np.asarray(state[k], np.float32)
  oihw_to_hwio = lambda k: np.ascontiguousarray(f32(k).transpose(2, 3, 1, 0))
  linear = lambda k: np.ascontiguousarray(f32(k).T)
  params = {}
  for n in range(5):
    params[f"conv{n + 1}"] = {"w": oihw_to_hwio(f"conv.{n}.weight"), "b": f32(f"conv.{n}.bias")}
  for j, name in enumerate(SKIPS):
    params[name] = {"w": oihw_to_hwio(f"conv_skip.{j}.weight"), "b": f32(f"conv_skip.{j}.bias"),
                    "prelu": f32(f"prelu_skip.{j}.weight")}
  params["fc6"] = {"w": linear("fc6.weight"), "b": f32("fc6.bias")}
  for layer in ("lstm1", "lstm2"):
    params[layer] = {g: {"w": linear(f"{layer}.{g}.weight"), "b": f32(f"{layer}.{g}.bias")}
                     for g in GATES}
  params["fc_out"] = {"w": linear("fc_output_out.weight"), "b": f32("fc_output_out.bias")}

  # The model's own init fixes the target structure: any drift between this mapping and re3.py
  # shows up here rather than as a failure at tracking time.
  ref = jax.eval_shape(lambda k: re3.init(k, cfg), jax.random.PRNGKey(0))
  ref_flat = {jax.tree_util.keystr(p): v.shape for p, v in jax.tree_util.tree_flatten_with_path(ref)[0]}
  got_flat = {jax.tree_util.keystr(p): v.shape
              for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  if ref_flat != got_flat:
    diff = sorted(set(ref_flat.items()) ^ set(got_flat.items()))
    raise AssertionError(f"convert.re3 mapping out of sync with re3.init: {diff[:6]}")
  return params


def convert_re3(pth_path: str, out_dir: str, config: str = "paper") -> Tuple[str, int]:
  """Reads `pth_path`, converts it for `config` and saves to `out_dir`.

  Returns:
    (checkpoint step folder, number of parameters).
  """
  from rolo_jax.io.pth import load_state_dict
  from rolo_jax.train.checkpoint import save_params, to_jsonable

  cfg = re3_config(config)
  re3_expected_shapes(cfg)  # refuse a cell without a layout before reading a large file
  ckpt_dir = os.path.join(out_dir, "checkpoints")
  if os.path.isfile(out_dir):
    raise DataError(out_dir, "--out is a file; expected a new or empty folder for the checkpoint")
  if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise DataError(out_dir, f"already holds a checkpoint ({ckpt_dir}: "
                             f"{', '.join(sorted(os.listdir(ckpt_dir))[:5])}); choose a new or empty "
                             "--out folder (nothing was written)")
  state = load_state_dict(pth_path)
  for key, value in state.items():
    a = np.asarray(value)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
      raise DataError(pth_path, f"tensor {key!r} {tuple(a.shape)} holds NaN or Inf values; "
                                "nothing was written")
  params = re3_from_state_dict(state, cfg, source=pth_path)
  meta = {"model": "re3", "config": to_jsonable(cfg), "config_name": cfg.name,
          "source": os.path.abspath(pth_path)}
  where = save_params(out_dir, params, meta)
  return where, int(sum(np.size(v) for v in _leaves(params)))


def _leaves(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from _leaves(v)
  else:
    yield tree


# --------------------------------------------------------------------------------------------------
# CLI

def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m rolo_jax.convert",
                     description="Convert published weights to rolo_jax checkpoints.")
  # Sub-commands get the same one-line usage errors.
  sub = p.add_subparsers(dest="model", required=True, parser_class=ArgumentParser)
  r = sub.add_parser("re3", help="the Re3 authors' PyTorch state_dict (.pth)")
  r.add_argument("--config", default="paper",
                 help="Re3 config name (paper; small has no published PyTorch layout) or a .json "
                      "file of Re3Config fields")
  r.add_argument("--pth", required=True, help="the .pth file (torch.save of the state_dict)")
  r.add_argument("--out", required=True, help="output checkpoint folder (for --checkpoint)")
  return p


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  if args.model == "re3":
    where, n = convert_re3(args.pth, args.out, args.config)
    print(f"re3 ({args.config}): {n:,} parameters from {args.pth} written to {where}")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main)())
