"""Test-wide set-up.

- Import rolo_jax first so its backend choice (CPU when no NVIDIA device is present) happens before
  any test module imports jax.
- The command-line tests run the experiments in child processes, and most of them compile the same
  smoke-sized programs. A persistent JAX compilation cache shared by those children (a folder under
  the session's pytest temporary directory) lets each program compile once per test session instead
  of once per child. Only the children read it: jax reads JAX_COMPILATION_CACHE_DIR when it is
  imported, and this process imported jax before the variables are set. A cached executable is the
  one the compiler would build, so no result depends on it; a test that sets its own cache folder
  (the kill -9 test) keeps its own.
"""
import os

import pytest

import rolo_jax  # noqa: F401
import jax  # noqa: F401  (imported before the cache variables below are set: they are for children)


@pytest.fixture(scope="session", autouse=True)
def _children_share_a_compilation_cache(tmp_path_factory):
  names = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")
  saved = {n: os.environ.get(n) for n in names}
  if saved["JAX_COMPILATION_CACHE_DIR"] is None:
    os.environ.update({names[0]: str(tmp_path_factory.mktemp("jax_cache")), names[1]: "0",
                       names[2]: "-1"})
  yield
  for n, v in saved.items():
    if v is None:
      os.environ.pop(n, None)
    else:
      os.environ[n] = v
