"""rolo_jax._malloc: glibc allocator settings applied by `import rolo_jax`, and the opt-out.

The speed they buy is measured by commands (the module docstring names them and their figures), not
here; these tests check that the settings are applied, that glibc accepts them, and
that the environment switch turns them off (or warns on a bad value) in a fresh process.
"""
import os
import platform
import subprocess
import sys

import pytest

from rolo_jax import _malloc

GLIBC = platform.libc_ver()[0] == "glibc"
PROBE = "import rolo_jax; print(rolo_jax._malloc_settings._applied)"


def _run(env_value):
  env = dict(os.environ)
  env.pop(_malloc.ENV, None)
  if env_value is not None:
    env[_malloc.ENV] = env_value
  r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  return r.stdout.strip(), r.stderr


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's mallopt parameters")
def test_import_applies_all_four_settings_and_glibc_accepts_them():
  out, _ = _run(None)
  want = {"M_MMAP_THRESHOLD": 32 << 20, "M_TRIM_THRESHOLD": 1 << 30, "M_TOP_PAD": 256 << 20, "M_ARENA_MAX": 1}
  assert out == repr(want)
  assert _malloc.SETTINGS["M_MMAP_THRESHOLD"][1] == 32 << 20   # glibc's maximum on 64-bit
  assert _run("tuned")[0] == repr(want)


def test_opt_out_keeps_glibcs_settings():
  assert _run("default")[0] == "None"


def test_bad_value_warns_and_applies_nothing():
  out, err = _run("fast")
  assert out == "None"
  assert "ROLO_JAX_MALLOC='fast'" in err and "'tuned'" in err and "'default'" in err
