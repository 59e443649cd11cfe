"""experiments.benchmark: the Re3 training benchmark's records (structure and consistency)."""
import argparse
import math

import pytest

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


def test_only_name_config_entries_set_the_config_flags():
  args = argparse.Namespace(re3_configs="tiny,small,paper", memtrack_configs="cpu,paper",
                            re3_train_config="tiny", rolo_configs="tiny")
  assert benchmark.apply_only("re3:paper,memtrack,re3:tiny", args) == ["re3", "memtrack"]
  assert args.re3_configs == "paper,tiny" and args.memtrack_configs == "cpu,paper"
  assert benchmark.apply_only("re3_train:small", args) == ["re3_train"] and args.re3_train_config == "small"
  assert benchmark.apply_only("", args) == list(benchmark.BENCHMARKS)
  for bad, msg in [("nope", "unknown benchmark"), ("synthetic:x", "has no configs"),
                   ("re3_train:tiny,re3_train:small", "one config")]:
    try:
      benchmark.apply_only(bad, args)
    except ValueError as e:
      assert msg in str(e)
    else:
      raise AssertionError(f"--only {bad} was accepted")


def test_re3_records_carry_both_limits():
  args = argparse.Namespace(re3_configs="tiny", re3_targets="1", re3_frames=2, repeats=1)
  recs = benchmark.BENCHMARKS["re3"](args)
  r, machine = recs[0], recs[-1]
  assert r["config"] == "tiny" and r["targets"] == 1 and r["frames_per_s"] > 0
  assert machine["memory_bytes_per_s"] == max(machine["memory_bytes_per_s_sum"],
                                              machine["memory_bytes_per_s_matvec"])
  if "limit_frames_per_s" in r:  # XLA's cost analysis is best effort
    compute, memory = r["bound_compute_s"], r["bound_memory_s"]
    assert math.isclose(r["limit_frames_per_s"], 1 / max(compute, memory))
    assert math.isclose(r["serial_limit_frames_per_s"], 1 / (compute + memory))
    assert math.isclose(r["serial_limit_fraction"], r["frames_per_s"] * (compute + memory))
    assert r["serial_limit_fraction"] > r["limit_fraction"]


def test_unknown_configs_are_refused_before_any_run():
  import pytest
  args = argparse.Namespace(re3_configs="tiny,small,paper", memtrack_configs="cpu,paper",
                            re3_train_config="tiny", rolo_configs="tiny,tiny_heatmap,paper")
  benchmark.check_configs(list(benchmark.BENCHMARKS), args)   # the defaults are known
  benchmark.apply_only("re3:bogus", args)
  with pytest.raises(ValueError, match="unknown config.*bogus; known: paper, small, tiny"):
    benchmark.check_configs(["re3"], args)


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats: expected a whole number >= 1"),
    (["--re3_targets", "1,x"], "got 'x' in '1,x'"),
    (["--only", "re3", "--re3_targets", ","], "--re3_targets ',': no numbers"),
    (["--only", "memtrack", "--memtrack_targets", " , "], "--memtrack_targets ' , ': no numbers"),
    (["--only", "re3_train", "--re3_train_stages", "2y3"], "stage '2y3'"),
    (["--only", "rolo", "--rolo_detectors", "nope"], "unknown detector config(s) nope"),
    (["--rolo_windows", "0"], "--rolo_windows"),
    (["--json", "{tmp}"], "this is a folder"),
])
def test_bad_flags_stop_before_any_benchmark(tmp_path, capsys, argv, message):
  # Checked before anything is timed (the default run takes many minutes; these return at once).
  with pytest.raises(SystemExit) as e:
    benchmark.main([a.format(tmp=tmp_path) for a in argv])
  assert e.value.code == 2
  assert message in capsys.readouterr().err
