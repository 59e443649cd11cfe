"""Re3's unroll curriculum: double the unroll length and halve the batch when the loss plateaus.

Stages are (unroll T, batch B) pairs; the paper's are (2,64) -> (4,32) -> (8,16) -> (16,8) -> (32,4)
(`PAPER_STAGES`), so every stage sees T*B = 128 frames per update.  The authors advanced by hand
when the loss stopped falling; here the decision is automatic and a PURE function of
(curriculum state, loss) -- `advance` -- so it is unit-testable and checkpointable:

  smoothed_n = EMA of the loss within the stage, bias-corrected:
               m_n = a*m_{n-1} + (1-a)*loss_n,  smoothed_n = m_n / (1 - a**n)   (a = `ema`)
  after `min_steps` steps in the stage, every step:
     if smoothed_n < best * (1 - min_delta):  best = smoothed_n, bad = 0      (relative improvement)
     else:                                    bad += 1
  advance to the next stage when bad >= patience (a plateau), or when the stage has run
  `max_stage_steps` steps (a cap, optional), and never past the last stage.
  With `stage_steps` given the rule is replaced by fixed lengths: stage i lasts stage_steps[i] steps.

A stage change resets the EMA, the best loss and the patience counter: longer unrolls have a
larger loss (later steps drift), so the old stage's best is no yardstick for the new one.

Schedules in the optax style (pure functions of an integer, here the stage index):
  p_pred(stage): probability of feeding the network's own prediction back as the next crop box.
    'paper': 0.25, 0.5, 0.75, 0.75, ... (rises with the unroll length; paper)
    a float: fixed (the authors' TF code uses 0.8).
The learning rate is a schedule of the global step (rolo_jax.train.optim.lr_schedule).

Each stage has one array shape (T, B), so the jitted update compiles once per stage.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union


class Stage(NamedTuple):
  unroll: int  # T, frames per sample
  batch: int   # B, samples per update


PAPER_STAGES: Tuple[Stage, ...] = tuple(Stage(t, b) for t, b in ((2, 64), (4, 32), (8, 16), (16, 8), (32, 4)))


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
  """Curriculum settings (see the module docstring for the rule).

  Attributes:
    stages: the (unroll, batch) stages in order.
    patience: steps without a relative improvement of the smoothed loss before advancing.
    min_delta: relative improvement that counts (0.01 = the smoothed loss must fall by 1%).
    ema: EMA factor a of the smoothed loss (0.95 ~ a 20-step memory).
    min_steps: steps at the start of a stage before the plateau test runs (the EMA settles).
    max_stage_steps: optional cap on a stage's length (int for all stages, or one per stage).
    stage_steps: optional fixed lengths, one per stage (the last may be omitted: runs to the end);
      when given, the plateau rule is off.
    p_pred: 'paper' or a fixed probability in [0, 1].
  """
  stages: Tuple[Stage, ...] = PAPER_STAGES
  patience: int = 200
  min_delta: float = 0.01
  ema: float = 0.95
  min_steps: int = 20
  max_stage_steps: Optional[Union[int, Tuple[int, ...]]] = None
  stage_steps: Optional[Tuple[int, ...]] = None
  p_pred: Union[str, float] = "paper"

  def __post_init__(self):
    object.__setattr__(self, "stages", tuple(Stage(int(t), int(b)) for t, b in self.stages))
    if not self.stages:
      raise ValueError("a curriculum needs at least one stage")
    if any(s.unroll < 1 or s.batch < 1 for s in self.stages):
      raise ValueError(f"stages must have unroll >= 1 and batch >= 1, got {self.stages}")
    if not 0.0 <= self.ema < 1.0:
      raise ValueError(f"ema must be in [0, 1), got {self.ema}")
    if self.stage_steps is not None:
      object.__setattr__(self, "stage_steps", tuple(int(s) for s in self.stage_steps))
      if len(self.stage_steps) < len(self.stages) - 1 or any(s < 1 for s in self.stage_steps):
        raise ValueError(f"stage_steps needs >= {len(self.stages) - 1} positive lengths, got {self.stage_steps}")
      if len(self.stage_steps) > len(self.stages):
        raise ValueError(f"stage_steps has {len(self.stage_steps)} lengths for {len(self.stages)} "
                         f"stages: {self.stage_steps}")
    if isinstance(self.p_pred, str) and self.p_pred != "paper":
      raise ValueError(f"p_pred must be 'paper' or a number, got {self.p_pred!r}")
    if not isinstance(self.p_pred, str) and not 0.0 <= float(self.p_pred) <= 1.0:
      raise ValueError(f"p_pred must be in [0, 1], got {self.p_pred}")


class CurriculumState(NamedTuple):
  """Everything the stage decision depends on (saved in every checkpoint).

  stage: index into the stages; steps: steps taken in this stage; ema: the raw (not bias-corrected)
  EMA accumulator; best: best smoothed loss in this stage (inf before the first test);
  bad: steps since the last relative improvement (the patience counter).
  """
  stage: int = 0
  steps: int = 0
  ema: float = 0.0
  best: float = math.inf
  bad: int = 0

  def to_json(self) -> dict:
    d = self._asdict()
    d["best"] = None if math.isinf(self.best) else self.best
    return d

  @staticmethod
  def from_json(d: dict) -> "CurriculumState":
    best = math.inf if d.get("best") is None else float(d["best"])
    return CurriculumState(int(d["stage"]), int(d["steps"]), float(d["ema"]), best, int(d["bad"]))


def smoothed(cfg: CurriculumConfig, state: CurriculumState) -> float:
  """The bias-corrected EMA of the losses seen in this stage (nan before the first)."""
  if state.steps == 0:
    return math.nan
  return state.ema / (1.0 - cfg.ema ** state.steps)


def _cap(cfg: CurriculumConfig, stage: int) -> Optional[int]:
  if cfg.max_stage_steps is None:
    return None
  if isinstance(cfg.max_stage_steps, int):
    return cfg.max_stage_steps
  return cfg.max_stage_steps[stage] if stage < len(cfg.max_stage_steps) else None


def advance(cfg: CurriculumConfig, state: CurriculumState, loss: float) -> CurriculumState:
  """The curriculum after one more training step with loss `loss` (pure).

  Returns the next state; its `stage` is state.stage + 1 when this step ends the stage (the next
  update then uses the new stage's shapes), with the EMA, best and patience counter reset.
  Raises ValueError for a non-finite loss (the training loop stops before that).
  """
  loss = float(loss)
  if not math.isfinite(loss):
    raise ValueError(f"curriculum got a non-finite loss {loss}")
  last = state.stage >= len(cfg.stages) - 1
  n = state.steps + 1
  ema = cfg.ema * state.ema + (1.0 - cfg.ema) * loss
  best, bad = state.best, state.bad
  if cfg.stage_steps is not None:
    end = (not last) and n >= cfg.stage_steps[state.stage]
  else:
    if n > cfg.min_steps:
      s = ema / (1.0 - cfg.ema ** n)
      if s < best * (1.0 - cfg.min_delta) or math.isinf(best):
        best, bad = s, 0
      else:
        bad += 1
    cap = _cap(cfg, state.stage)
    end = (not last) and (bad >= cfg.patience or (cap is not None and n >= cap))
  if end:
    return CurriculumState(state.stage + 1, 0, 0.0, math.inf, 0)
  return CurriculumState(state.stage, n, ema, best, bad)


def stage_of(cfg: CurriculumConfig, state: CurriculumState) -> Stage:
  return cfg.stages[state.stage]


def p_pred_schedule(p_pred: Union[str, float]) -> Callable[[int], float]:
  """stage -> probability of feeding the prediction back ('paper': min(0.25 (stage+1), 0.75))."""
  if isinstance(p_pred, str):
    if p_pred != "paper":
      raise ValueError(f"p_pred must be 'paper' or a number, got {p_pred!r}")
    return lambda stage: min(0.25 * (int(stage) + 1), 0.75)
  value = float(p_pred)
  return lambda stage: value


def parse_stages(text: str) -> Tuple[Stage, ...]:
  """'2x64,4x32' -> (Stage(2, 64), Stage(4, 32))."""
  out = []
  for part in text.split(","):
    part = part.strip()
    if not part:
      continue
    try:
      t, b = part.lower().split("x")
      out.append(Stage(int(t), int(b)))
    except ValueError:
      raise ValueError(f"stage {part!r}: expected UNROLLxBATCH, e.g. 4x32") from None
  if not out:
    raise ValueError(f"no stages in {text!r}")
  return tuple(out)


def scaled_stages(frames_per_update: int, unrolls: Sequence[int] = (2, 4, 8, 16, 32)) -> Tuple[Stage, ...]:
  """Stages that keep T*B = frames_per_update (the paper's halve-the-batch rule), B >= 1."""
  return tuple(Stage(t, max(1, frames_per_update // t)) for t in unrolls)
