"""argparse value types for the experiments' numeric flags: a value outside its meaning (a count of
0 steps, a NaN learning rate, a probability of 1.5) is a usage error naming the flag, not a
traceback later or a run that "succeeds" with nothing trained or scored."""
from __future__ import annotations

import argparse
import math
import os
from typing import Callable, Optional


def whole(minimum: int = 0) -> Callable[[str], int]:
  """A whole number >= minimum."""

  def convert(text: str) -> int:
    try:
      v = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if v < minimum:
      raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {v}")
    return v

  return convert


def real(low: Optional[float] = None, high: Optional[float] = None, *,
         low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
  """A finite number in [low, high] (or the open side(s) where asked)."""
  lo_s = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
  hi_s = "" if high is None else f"{high:g}" + (")" if high_open else "]")
  want = ("a finite number" + (f" in {lo_s}, {hi_s}" if low is not None and high is not None else
                               f" > {low:g}" if low is not None and low_open else
                               f" >= {low:g}" if low is not None else
                               f" <= {high:g}" if high is not None else ""))

  def convert(text: str) -> float:
    try:
      v = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
    bad = not math.isfinite(v)
    if low is not None:
      bad |= v <= low if low_open else v < low
    if high is not None:
      bad |= v >= high if high_open else v > high
    if bad:
      raise argparse.ArgumentTypeError(f"expected {want}, got {text}")
    return v

  return convert


POSITIVE = real(0.0, low_open=True)
NONNEGATIVE = real(0.0)
FRACTION = real(0.0, 1.0)


def whole_list(minimum: int = 1) -> Callable[[str], str]:
  """A comma-separated list of whole numbers >= minimum ('1,8,64'); kept as the text the code
  splits later, so '' (where a flag means 'the default') stays allowed."""

  def convert(text: str) -> str:
    for part in (p.strip() for p in text.split(",")):
      if not part:
        continue
      try:
        v = int(part)
      except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= {minimum}, "
                                         f"got {part!r} in {text!r}") from None
      if v < minimum:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= {minimum}, "
                                         f"got {v} in {text!r}")
    return text

  return convert


def check_paths(parser: argparse.ArgumentParser, *, out_dirs=(), out_files=(), in_dirs=()) -> None:
  """Usage errors (one line, exit 2), before any work, for paths a run would only trip over at its
  end: (flag, path) pairs of output folders (a file there, or below a file), output files (a folder
  there, or below a file) and input folders that must exist. None (and '' input) paths are skipped."""
  from rolo_jax.errors import DataError, check_output_dir, check_output_file

  try:
    for flag, path in out_dirs:
      check_output_dir(path, flag)
    for flag, path in out_files:
      check_output_file(path, flag)
  except DataError as e:
    parser.error(str(e))
  for flag, path in in_dirs:
    if path and not os.path.isdir(path):   # (None / '': the flag is off)
      parser.error(f"{flag} {path}: no such folder")


def usage_error(message: str):
  """A usage error outside argparse (a check that needs more than one flag's value): the same
  one line and exit status 2 as the parsers' (`rolo_jax.errors.usage_error`)."""
  from rolo_jax.errors import usage_error as one_line

  one_line(message)


def resume_hint(saved_values, flag_of, *, off_as_zero=(), false_flag: str = "--no{flag}") -> str:
  """The flags that give a refused workdir's checkpoint settings back, for the end of its
  ConfigMismatchError message: e.g. '--lr 0.001 --seed 3'; '' when a differing field has no flag
  or a value no flag takes (then the message's own list of differences is all there is to go by,
  and a hint is never partial).

  Args:
    saved_values: `ConfigMismatchError.saved_values`, {(section, field): the checkpoint's value}.
    flag_of: {(section, field): flag name without dashes} of the experiment.
    off_as_zero: flags whose "off" is 0 where the checkpoint stores None or nothing.
    false_flag: how a boolean flag is turned off (absl: '--no{flag}').
  """
  from rolo_jax.errors import ConfigMismatchError

  absent = ConfigMismatchError.ABSENT
  out = []
  for key, value in saved_values.items():
    flag = flag_of.get(key)
    if flag is None:
      return ""
    if flag in off_as_zero and (value is None or value == absent):
      value = 0
    if value is None or value == absent or isinstance(value, (list, dict)):
      return ""
    out.append((flag, f"--{flag}" if value is True else false_flag.format(flag=flag) if value is False
                else f"--{flag} {value}"))
  # One flag may set two recorded fields (a seed in the task and in the train state): named once;
  # two different values for one flag would be no hint at all.
  given = {}
  for flag, text in out:
    if given.setdefault(flag, text) != text:
      return ""
  return " ".join(given.values())
