"""Unroll curriculum: the plateau rule on hand-made loss sequences, fixed stage lengths, schedules."""
import math

import pytest

from rolo_jax.train import curriculum as cur

THREE = ((2, 8), (4, 4), (8, 2))


def run(cfg, losses):
  """Feeds losses one step at a time; returns the states after each step."""
  s = cur.CurriculumState()
  out = []
  for x in losses:
    s = cur.advance(cfg, s, x)
    out.append(s)
  return out


def advance_steps(states):
  """1-based step numbers after which the stage changed."""
  prev, steps = 0, []
  for i, s in enumerate(states, 1):
    if s.stage != prev:
      steps.append(i)
      prev = s.stage
  return steps


def test_plateau_rule_without_smoothing_advances_at_the_hand_computed_step():
  # ema=0: smoothed loss = loss. Relative improvement needed: 10%.
  cfg = cur.CurriculumConfig(stages=THREE, patience=3, min_delta=0.1, ema=0.0, min_steps=0)
  # step1 10 -> best 10; step2 8 (< 9) -> best 8; steps 3,4,5: 7.5, 7.4, 7.3 (none < 7.2) -> bad 1,2,3
  # -> advance after step 5.  Stage 1: 5 -> best; 4.4 (< 4.5) best; 4.0 (< 3.96? no) bad 1;
  # 3.9 (< 3.96) best; then 3.9, 3.8, 3.7 (>= 3.51) -> bad 1,2,3 -> advance after step 5 + 7 = 12.
  losses = [10, 8, 7.5, 7.4, 7.3] + [5, 4.4, 4.0, 3.9, 3.9, 3.8, 3.7] + [1.0] * 10
  states = run(cfg, losses)
  assert advance_steps(states) == [5, 12]
  assert states[3] == cur.CurriculumState(0, 4, 7.4, 8.0, 2)  # ema=0: the EMA is the last loss
  # The new stage starts from scratch: EMA, best and the patience counter reset.
  assert states[4] == cur.CurriculumState(1, 0, 0.0, math.inf, 0)
  # The last stage never advances, however flat the loss.
  assert all(s.stage == 2 for s in states[12:])
  assert states[-1].bad == 9


def test_plateau_rule_with_ema_and_min_steps():
  # ema=0.5 with bias correction: m1 = 0.5*4 = 2, s1 = 2/(1-0.5) = 4;
  # m2 = 0.5*2 + 0.5*2 = 2, s2 = 2/(1-0.25) = 8/3.
  cfg = cur.CurriculumConfig(stages=THREE, patience=2, min_delta=0.0, ema=0.5, min_steps=1)
  s1 = cur.advance(cfg, cur.CurriculumState(), 4.0)
  assert cur.smoothed(cfg, s1) == pytest.approx(4.0)
  assert s1.best == math.inf and s1.bad == 0  # min_steps=1: no test at step 1
  s2 = cur.advance(cfg, s1, 2.0)
  assert cur.smoothed(cfg, s2) == pytest.approx(8.0 / 3.0)
  assert s2.best == pytest.approx(8.0 / 3.0) and s2.bad == 0
  # A constant loss of 8/3 from here: smoothed stays >= best -> bad 1, then advance.
  m3 = 0.5 * s2.ema + 0.5 * 3.0
  s3 = cur.advance(cfg, s2, 3.0)
  assert s3.ema == pytest.approx(m3) and s3.bad == 1 and s3.stage == 0
  s4 = cur.advance(cfg, s3, 3.0)
  assert s4.stage == 1


def test_plateau_needs_relative_not_absolute_improvement():
  cfg = cur.CurriculumConfig(stages=THREE, patience=1, min_delta=0.5, ema=0.0, min_steps=0)
  # 100 -> 60 is a 40% drop (< 50%): a plateau by this rule, so the stage ends at step 2.
  assert advance_steps(run(cfg, [100, 60, 1])) == [2]
  # 100 -> 40 is a 60% drop: an improvement; 40 -> 30 is 25%: plateau at step 3.
  assert advance_steps(run(cfg, [100, 40, 30])) == [3]


def test_fixed_stage_steps_and_cap():
  cfg = cur.CurriculumConfig(stages=THREE, stage_steps=(3, 2))
  states = run(cfg, [1.0] * 10)
  assert advance_steps(states) == [3, 5]
  assert states[-1].stage == 2
  capped = cur.CurriculumConfig(stages=THREE, patience=1000, ema=0.0, max_stage_steps=4)
  assert advance_steps(run(capped, [10.0 - i for i in range(12)])) == [4, 8]
  per_stage = cur.CurriculumConfig(stages=THREE, patience=1000, max_stage_steps=(2, 5))
  assert advance_steps(run(per_stage, [1.0] * 12)) == [2, 7]


def test_non_finite_loss_is_refused():
  cfg = cur.CurriculumConfig(stages=THREE)
  with pytest.raises(ValueError, match="non-finite"):
    cur.advance(cfg, cur.CurriculumState(), float("nan"))


def test_p_pred_schedules():
  paper = cur.p_pred_schedule("paper")
  assert [paper(i) for i in range(5)] == [0.25, 0.5, 0.75, 0.75, 0.75]
  assert cur.p_pred_schedule(0.8)(0) == cur.p_pred_schedule(0.8)(4) == 0.8
  with pytest.raises(ValueError):
    cur.p_pred_schedule("linear")


def test_stages_parse_and_scale():
  assert cur.parse_stages("2x64, 4x32") == (cur.Stage(2, 64), cur.Stage(4, 32))
  assert cur.PAPER_STAGES == tuple(cur.Stage(t, 128 // t) for t in (2, 4, 8, 16, 32))
  assert cur.scaled_stages(64) == ((2, 32), (4, 16), (8, 8), (16, 4), (32, 2))
  with pytest.raises(ValueError, match="UNROLLxBATCH"):
    cur.parse_stages("2x64,4-32")
  with pytest.raises(ValueError):
    cur.CurriculumConfig(stages=((2, 0),))
  with pytest.raises(ValueError):
    cur.CurriculumConfig(stages=THREE, stage_steps=(3,))   # needs one length per non-final stage


def test_state_json_round_trip():
  for s in (cur.CurriculumState(), cur.CurriculumState(2, 17, 0.1 + 0.2, 1.0 / 3.0, 5)):
    assert cur.CurriculumState.from_json(s.to_json()) == s
  import json
  assert json.loads(json.dumps(cur.CurriculumState().to_json()))["best"] is None
