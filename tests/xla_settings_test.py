"""rolo_jax._xla: the XLA:CPU flag `import rolo_jax` adds, when it adds it, and the opt-outs.

The speed it buys is measured by a benchmark command (the module docstring and WORKSPACE.md, Re3,
"Session 22"), not here; these tests check, in fresh processes, that the flag reaches XLA_FLAGS
on the jaxlib it was measured on, that XLA accepts it (a computation runs), and that the
environment switch and a user's own value keep it out.
"""
import os
import subprocess
import sys

import pytest

from rolo_jax import _xla

PROBE = ("import os, rolo_jax, jax, jax.numpy as jnp; print(os.environ.get('XLA_FLAGS', '')); "
         "print(rolo_jax._xla_settings._applied); print(float(jax.jit(lambda x: jnp.sum(x * x))(jnp.ones(3))))")
KNOWN = _xla.known_jaxlib()


def _run(**env_set):
  env = dict(os.environ)
  env.pop(_xla.ENV, None)
  env.pop("XLA_FLAGS", None)
  env.update(env_set)
  r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  flags, applied, value = r.stdout.rstrip("\n").split("\n")
  assert value == "3.0"   # XLA started with these flags
  return flags, applied, r.stderr


@pytest.mark.skipif(not KNOWN, reason="the flag is passed only to the jaxlib releases it was measured on")
def test_import_adds_the_flag_and_xla_accepts_it():
  flags, applied, _ = _run()
  assert flags == _xla.FLAG and applied == _xla.FLAG
  flags, applied, _ = _run(**{_xla.ENV: "tuned", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"})
  assert flags == "--xla_cpu_enable_fast_math=false " + _xla.FLAG   # appended to the user's flags


def test_opt_out_and_a_users_own_value_are_kept():
  assert _run(**{_xla.ENV: "default"})[:2] == ("", "None")
  mine = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION" if KNOWN else ""
  assert _run(XLA_FLAGS=mine)[:2] == (mine, "None")


def test_bad_value_warns_and_applies_nothing():
  flags, applied, err = _run(**{_xla.ENV: "fast"})
  assert (flags, applied) == ("", "None")
  assert "ROLO_JAX_XLA='fast'" in err and "'tuned'" in err and "'default'" in err


@pytest.mark.parametrize("version,known", [((0, 10, 2), True), ((0, 10, 5), True), ((0, 10, 1), False),
                                           ((0, 11, 0), False), ((0, 9, 9), False), (None, False)])
def test_only_the_measured_jaxlib_releases_get_the_flag(monkeypatch, version, known):
  monkeypatch.delenv(_xla.ENV, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(_xla, "_applied", None)
  monkeypatch.setattr(_xla, "_jaxlib_version", lambda: version)
  assert _xla.known_jaxlib() is known
  assert _xla.tune() == (_xla.FLAG if known else None)
  assert os.environ["XLA_FLAGS"] == (_xla.FLAG if known else "")
