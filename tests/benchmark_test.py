"""experiments.benchmark: the Re3 training benchmark's records (structure and consistency)."""
import argparse
import math

import rolo_jax  # noqa: F401  (backend choice before jax)
from experiments import benchmark


def test_re3_train_records_per_stage_with_pipeline_ratio():
  args = argparse.Namespace(re3_train_config="tiny", re3_train_stages="2x2", re3_train_steps=2,
                            re3_train_pool=2, repeats=1)
  recs = benchmark.BENCHMARKS["re3_train"](args)
  assert [r["config"] for r in recs] == ["tiny 2x2"]
  r = recs[0]
  assert r["frames"] == 2 * 2 * 2 and r["unroll"] == 2 and r["targets"] == 2
  assert r["frames_per_s"] > 0 and r["pipeline_frames_per_s"] > 0 and r["compile_s"] > 0
  assert math.isclose(r["pipeline_ratio"], r["pipeline_frames_per_s"] / r["frames_per_s"])
  assert "pipeline_ratio" in benchmark.format_table(recs)
