"""python -m rolo_jax.summary: parameter tables, last line total_params=N, clear errors."""
import os
import subprocess
import sys

import rolo_jax  # noqa: F401

from rolo_jax import summary
from rolo_jax.data.paths import PROJECT_ROOT


def run_main(capsys, *argv):
  rc = summary.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


def test_paper_and_small_totals(capsys):
  for config, total in (("paper", 190_004_324), ("small", 85_699_684)):
    rc, out, _ = run_main(capsys, "re3", "--config", config)
    lines = out.rstrip("\n").split("\n")
    assert rc == 0
    assert lines[-1] == f"total_params={total}"
    # the per-layer rows add up to the total
    counts = [int(l.split()[-1].replace(",", "")) for l in lines if "/" in l.split()[0]]
    assert sum(counts) == total
    assert any(l.startswith("fc6/w ") for l in lines)


def test_table_rows_name_shape_count(capsys):
  _, out, _ = run_main(capsys, "re3", "--config", "paper")
  row = next(l for l in out.splitlines() if l.startswith("conv2/w "))
  assert "(5, 5, 48, 256)" in row and row.split()[-1] == f"{5 * 5 * 48 * 256:,}"


def test_param_table_and_count_on_a_plain_pytree():
  import jax.numpy as jnp
  params = {"b": {"w": jnp.zeros((2, 3))}, "a": jnp.zeros((4,))}
  assert summary.param_table(params) == [("a", (4,), 4), ("b/w", (2, 3), 6)]
  assert summary.count_params(params) == 10


def test_unknown_model_and_config_exit_2_listing_choices(capsys):
  rc, out, err = run_main(capsys, "yolo9", "--config", "paper")
  assert rc == 2 and "unknown model 'yolo9'" in err and "re3" in err and out == ""
  rc, _, err = run_main(capsys, "re3", "--config", "huge")
  assert rc == 2 and "unknown config 'huge'" in err and "paper, small, tiny" in err


def test_registered_but_missing_module(capsys, monkeypatch):
  monkeypatch.setitem(summary.MODELS, "ghost", "rolo_jax.models.ghost_model_that_does_not_exist")
  rc, _, err = run_main(capsys, "ghost")
  assert rc == 2 and "does not exist yet" in err and "re3" in err


def test_command_line_subprocess():
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  res = subprocess.run([sys.executable, "-m", "rolo_jax.summary", "re3", "--config", "small"],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
  assert res.returncode == 0, res.stderr
  assert res.stdout.rstrip("\n").split("\n")[-1] == "total_params=85699684"
  res = subprocess.run([sys.executable, "-m", "rolo_jax.summary", "nosuch"],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
  assert res.returncode == 2 and "choose from" in res.stderr
