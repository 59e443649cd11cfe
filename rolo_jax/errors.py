"""Errors with a message a user can act on: the file, the line and what was expected."""
from __future__ import annotations

import argparse
import os
from typing import Optional


class DataError(ValueError):
  """Malformed or missing input data.

  The message always starts with the offending path (and line, when there is one), e.g.
  ``/data/Basketball/groundtruth_rect.txt, line 12: expected 4 numbers (x,y,w,h), got 3: '1,2,3'``.
  Command-line entry points catch it and print the message without a traceback (exit status 2).
  """

  def __init__(self, path: Optional[os.PathLike | str], message: str, line: Optional[int] = None):
    self.path = None if path is None else os.fspath(path)
    self.line = line
    self.detail = message
    where = self.path or "<input>"
    if line is not None:
      where += f", line {line}"
    super().__init__(f"{where}: {message}")


class NonFiniteError(FloatingPointError):
  """Training produced a NaN/Inf loss or gradient; nothing was saved for that step."""

  def __init__(self, step: int, what: str, value: float):
    self.step, self.what, self.value = step, what, value
    super().__init__(f"non-finite {what} ({value}) at step {step}; stopping without saving a "
                     f"checkpoint for it (the last good checkpoint is kept)")


class ConfigMismatchError(ValueError):
  """The workdir holds a checkpoint of a different model/task configuration.

  ``saved_values`` maps (section, field) to the checkpoint's value for each setting that differs,
  e.g. ``{("optimizer", "lr"): 0.0007}``; ``ABSENT`` stands for a field the checkpoint does not
  hold. Command-line entry points use it to name the flags that would resume the run; it is empty
  when the difference is not field by field (a different model, a list of stages)."""

  ABSENT = "<absent>"

  def __init__(self, message: str, saved_values: Optional[dict] = None):
    self.saved_values = dict(saved_values or {})
    super().__init__(message)

  def with_hint(self, hint: str) -> str:
    """The message, ending with the flags that match the checkpoint when there are any."""
    return str(self) + (f"; the flags that match it: {hint}" if hint else "")


class NonFiniteCheckpointError(ValueError):
  """Refused to save a checkpoint holding NaN or Inf (nothing was written)."""


def _nearest_existing(path: str) -> str:
  """`path` itself when it exists, else its nearest existing ancestor ('' if none)."""
  p = os.path.abspath(path)
  while p and not os.path.exists(p):
    up = os.path.dirname(p)
    if up == p:
      return ""
    p = up
  return p


def _check_can_write_below(path: str, start: str, flag: str, what: str) -> None:
  """DataError when nothing can be made at `path`: the nearest existing one of `start` and its
  ancestors is a file, or is a folder this process cannot create files in.

  The write test creates (and at once removes) one temporary file in that folder, because
  `os.access` answers yes to root on folders where writing still fails (a read-only mount, /sys).
  Without it a read-only output folder was found only when the first result was written, after the
  training or tracking (session-8 open work)."""
  anc = _nearest_existing(start)
  if not anc:
    return
  if not os.path.isdir(anc):
    raise DataError(path, f"{flag}: {anc} is a file, so no {what} below it")
  import tempfile

  try:
    with tempfile.TemporaryFile(dir=anc, prefix=".rolo_jax_write_test_"):
      pass
  except OSError as e:
    raise DataError(path, f"{flag}: cannot write in {anc} ({e.strerror or e}); expected a "
                          f"folder this user may write in") from None


def same_file(a: str, b: str) -> bool:
  """Whether paths `a` and `b` name one file (after links; hard links too when both exist)."""
  real = lambda p: os.path.normcase(os.path.realpath(p))
  if real(a) == real(b):
    return True
  try:
    return os.path.samefile(a, b)
  except OSError:
    return False


def check_output_file(path: Optional[os.PathLike | str], flag: str) -> None:
  """Fails early (before any work) when `path` cannot be a file to write: an existing folder, a
  parent that is a file, a folder this process cannot write in, or an existing read-only file.
  The parent folder itself may be missing (the writers create it)."""
  if path is None:
    return
  path = os.fspath(path)
  if os.path.isdir(path):
    raise DataError(path, f"{flag}: this is a folder; expected the path of a file to write")
  _check_can_write_below(path, os.path.dirname(os.path.abspath(path)), flag, "file can be written")
  if os.path.exists(path) and not os.access(path, os.W_OK):
    raise DataError(path, f"{flag}: this file is read-only; expected a file that can be written")


def check_output_dir(path: Optional[os.PathLike | str], flag: str) -> None:
  """Fails early (before any work) when `path` cannot be a folder to write into: an existing file,
  a parent that is a file, or a folder (itself or its nearest existing parent) this process cannot
  write in. A missing folder is fine (the writers create it)."""
  if path is None:
    return
  path = os.fspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise DataError(path, f"{flag}: this is a file; expected a folder (existing or to be made)")
  _check_can_write_below(path, path, flag, "folder can be made")


def usage_error(message: str):
  """A command-line usage error: one line on stderr, ``error: <what> (see --help)``, and exit
  status 2, like every other bad input of the entry points."""
  import sys

  print(f"error: {message} (see --help)", file=sys.stderr)
  raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
  """argparse for the command-line entry points: a usage error is `usage_error`'s one line (plain
  argparse prints its whole usage block first)."""

  def error(self, message):
    usage_error(message)


# The project's own code, rolo_jax/ and (beside it in a checkout) experiments/: their warnings are
# notes. Not the checkout as a whole: the README's venv lives in it, and a library's warning
# there keeps its source and category.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_OWN_DIRS = tuple(d + os.sep for d in (_PACKAGE_DIR, os.path.join(os.path.dirname(_PACKAGE_DIR),
                                                                   "experiments")))


def _one_line_notes(show):
  """A `warnings.showwarning` that prints the project's own UserWarnings (a skipped folder, a cut
  sequence) as one 'note: ...' line instead of Python's two (file:line: UserWarning: ..., then the
  source line of the warn call); other warnings go to `show` as before. (So, inside `cli_main`,
  the project's warnings are printed, not recorded by an enclosing `catch_warnings(record=True)`.)"""
  import sys

  def note(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, UserWarning) and os.path.abspath(filename).startswith(_OWN_DIRS):
      print(f"note: {message}", file=file or sys.stderr)
    else:
      show(message, category, filename, lineno, file, line)

  return note


def cli_main(main, *, mismatch_hint=None):
  """Wrap an entry point so DataError / ConfigMismatchError / an OSError (a missing file, a folder
  where a file was expected, no permission, a full disk: its message names the path) print one
  clear line and exit 2, and NonFiniteError / NonFiniteCheckpointError one line and exit 1. While
  it runs, the project's own UserWarnings print as one 'note: ...' line each (`_one_line_notes`).

  mismatch_hint: saved_values -> the flags that match a refused workdir's checkpoint ('' for
  none; `experiments._args.resume_hint`), added to a ConfigMismatchError's line as "; the flags
  that match it: ...".
  """
  import sys
  import warnings

  def wrapped(*args, **kwargs):
    try:
      with warnings.catch_warnings():
        warnings.showwarning = _one_line_notes(warnings.showwarning)
        return main(*args, **kwargs)
    except BrokenPipeError:
      # Output piped into e.g. `head`, which closed early: not an error of ours.
      try:
        sys.stdout = open(os.devnull, "w")
      except OSError:
        pass
      raise SystemExit(0)
    except ConfigMismatchError as e:
      hint = mismatch_hint(e.saved_values) if mismatch_hint is not None else ""
      print(f"error: {e.with_hint(hint)}", file=sys.stderr)
      raise SystemExit(2)
    except (DataError, OSError) as e:
      print(f"error: {e}", file=sys.stderr)
      raise SystemExit(2)
    except (NonFiniteError, NonFiniteCheckpointError) as e:
      print(f"error: {e}", file=sys.stderr)
      raise SystemExit(1)

  return wrapped
