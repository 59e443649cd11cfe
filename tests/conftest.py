"""Test-wide set-up.

- Import rolo_jax first so its backend choice (CPU when no NVIDIA device is present) happens before
  any test module imports jax.
- The suite runs on pytest-xdist workers: `-n auto` in pyproject.toml's addopts, and the number
  `pytest_xdist_auto_num_workers` below picks.
- The command-line tests run the experiments in child processes, and many of them compile the same
  smoke-sized programs. A persistent JAX compilation cache shared by those children (a folder under
  the worker's pytest temporary directory) lets such a program compile once per worker instead of
  once per child. Only the children read it: jax reads JAX_COMPILATION_CACHE_DIR when it is
  imported, and this process imported jax before the variables are set. A cached executable is the
  one the compiler would build, so no result depends on it.
"""
import os

import pytest

import rolo_jax  # noqa: F401
import jax  # noqa: F401  (imported before the cache variables below are set: they are for children)

MAX_WORKERS = 2


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: two workers, or one on a one-core machine.

  Two workers take the suite from ~8.5 to ~5.5 minutes on a 2-core machine (WORKSPACE.md, Test
  suite). No more than two: a worker peaks at ~4.5 GB of memory, and XLA already runs each test on
  several threads. PYTEST_XDIST_AUTO_NUM_WORKERS=N sets another number; `-n 0` runs the tests in
  the pytest process itself.
  """
  env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
  if env:
    if not env.strip().isdigit():
      raise pytest.UsageError(f"PYTEST_XDIST_AUTO_NUM_WORKERS={env!r}: expected a whole number of "
                              "workers >= 0 (0: run the tests in the pytest process)")
    return int(env)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, min(MAX_WORKERS, cores))


@pytest.fixture(scope="session", autouse=True)
def _children_share_a_compilation_cache(tmp_path_factory):
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:   # the caller's own cache: leave it
    yield
    return
  with pytest.MonkeyPatch.context() as mp:   # (monkeypatch itself is per test)
    mp.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
    mp.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    mp.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    yield
