"""Parameter tables for every model, without allocating a single weight.

    python -m rolo_jax.summary re3 --config paper

prints one row per parameter array (name, shape, count) and, on its last line, ``total_params=<N>``.
``init`` runs under ``jax.eval_shape``, so even the 190M-parameter Re3 model is instant.

A model plugs in by adding its module to ``MODELS``; the module must expose ``CONFIGS`` (name -> config)
and ``init(key, cfg) -> params``.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from typing import Any, List, Sequence, Tuple

from rolo_jax.errors import ArgumentParser

MODELS = {
    "re3": "rolo_jax.models.re3",
    "rolo": "rolo_jax.models.rolo",
    "yolo": "rolo_jax.models.yolo",
    "memtrack": "rolo_jax.models.memtrack",
    "association": "rolo_jax.models.association",
}


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def param_table(params: Any) -> List[Tuple[str, Tuple[int, ...], int]]:
  """[(name, shape, count)] for every array leaf of a params pytree (arrays or ShapeDtypeStructs).

  Names join the pytree path with '/', e.g. ``conv1/w``. Rows follow jax's flattening order (dict keys
  sorted).
  """
  import jax

  rows = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    shape = tuple(int(d) for d in leaf.shape)
    rows.append(("/".join(_key_name(k) for k in path), shape, math.prod(shape)))
  return rows


def count_params(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return sum(n for _, _, n in param_table(params))


def load_model(name: str):
  """Imports the model module registered under ``name``; ValueError with the choices otherwise."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
  try:
    return importlib.import_module(MODELS[name])
  except ModuleNotFoundError as e:
    if e.name == MODELS[name]:
      raise ValueError(f"model {name!r} is registered but its module {MODELS[name]} does not exist yet; "
                       f"available: {', '.join(n for n in MODELS if _available(n))}") from None
    raise


def _available(name: str) -> bool:
  return importlib.util.find_spec(MODELS[name]) is not None


def abstract_params(model: str, config: str):
  """Params of ``model`` at ``config`` as a pytree of jax.ShapeDtypeStruct (nothing allocated)."""
  import jax

  mod = load_model(model)
  if config not in mod.CONFIGS:
    raise ValueError(f"unknown config {config!r} for model {model!r}; choose from: {', '.join(mod.CONFIGS)}")
  cfg = mod.CONFIGS[config]
  return jax.eval_shape(lambda k: mod.init(k, cfg), jax.random.PRNGKey(0))


def format_table(rows) -> List[str]:
  name_w = max([len("name")] + [len(r[0]) for r in rows])
  shape_w = max([len("shape")] + [len(str(r[1])) for r in rows])
  lines = [f"{'name':<{name_w}}  {'shape':<{shape_w}}  {'count':>13}"]
  lines += [f"{n:<{name_w}}  {str(s):<{shape_w}}  {c:>13,}" for n, s, c in rows]
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  parser = ArgumentParser(prog="python -m rolo_jax.summary", description=__doc__.split("\n\n")[0])
  parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
  parser.add_argument("--config", default=None, help="config name (default: the model's first config)")
  args = parser.parse_args(argv)
  try:
    mod = load_model(args.model)
    config = args.config if args.config is not None else next(iter(mod.CONFIGS))
    params = abstract_params(args.model, config)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  rows = param_table(params)
  print(f"# {args.model} --config {config}")
  for line in format_table(rows):
    print(line)
  print(f"total_params={sum(r[2] for r in rows)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
