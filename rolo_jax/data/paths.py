"""Where real benchmark data lives.

`shared_data()` returns the folder from ``$ROLO_JAX_DATA`` when set, else ``../shared/data`` beside
the project root (the workspace layout), else None.  Tests that need real data skip when it is None.
"""
from __future__ import annotations

import os
from typing import Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shared_data() -> Optional[str]:
  env = os.environ.get("ROLO_JAX_DATA")
  if env:
    return env if os.path.isdir(env) else None
  cand = os.path.normpath(os.path.join(PROJECT_ROOT, "..", "shared", "data"))
  return cand if os.path.isdir(cand) else None
