"""loop.check_meta: which saved configurations a workdir may resume or re-evaluate with."""
import dataclasses

import pytest

from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import loop, yolo_task


@dataclasses.dataclass(frozen=True)
class Cfg:
  name: str = "tiny"
  hidden: int = 128
  hold_detection: bool = False   # "added later": absent from older checkpoints


def saved_without_new_field(cfg):
  d = ckpt_lib.to_jsonable(cfg)
  d.pop("hold_detection")
  return {"config": d}


def test_same_config_resumes():
  loop.check_meta({"config": ckpt_lib.to_jsonable(Cfg())}, {"config": Cfg()}, "wd")


def test_a_field_added_later_matches_only_at_its_default():
  loop.check_meta(saved_without_new_field(Cfg()), {"config": Cfg()}, "wd")
  with pytest.raises(loop.ConfigMismatchError, match="wd: its checkpoint was trained with a different 'config'"):
    loop.check_meta(saved_without_new_field(Cfg()), {"config": Cfg(hold_detection=True)}, "wd")


def test_a_changed_or_removed_field_is_a_mismatch():
  with pytest.raises(loop.ConfigMismatchError):
    loop.check_meta({"config": ckpt_lib.to_jsonable(Cfg(hidden=64))}, {"config": Cfg()}, "wd")
  extra = dict(ckpt_lib.to_jsonable(Cfg()), dropped_field=1)
  with pytest.raises(loop.ConfigMismatchError):
    loop.check_meta({"config": extra}, {"config": Cfg()}, "wd")
  # Plain (non-dataclass) entries compare exactly.
  with pytest.raises(loop.ConfigMismatchError):
    loop.check_meta({"task": {"a": 1}}, {"task": {"a": 1, "b": 2}}, "wd")


def test_the_rolo_loop_raises_the_same_error_class():
  assert yolo_task.ConfigMismatchError is loop.ConfigMismatchError
  assert yolo_task.NonFiniteError is loop.NonFiniteError


def test_optimizer_curriculum_and_data_are_compared_and_named():
  opt = {"lr": 7e-4, "total_steps": 3000, "warmup_steps": 50}
  loop.check_meta({"optimizer": opt}, {"optimizer": dict(opt)}, "wd")
  with pytest.raises(loop.ConfigMismatchError,
                     match=r"wd: its checkpoint was trained with a different 'optimizer' than this run "
                           r"\(lr: 0.0007 -> 0.005\); use another --workdir"):
    loop.check_meta({"optimizer": opt}, {"optimizer": dict(opt, lr=5e-3)}, "wd")
  with pytest.raises(loop.ConfigMismatchError, match=r"'curriculum' .*stages: \[\[2, 2\], \[4, 1\]\] -> "
                                                     r"\[\[2, 2\], \[2, 2\]\]"):
    loop.check_meta({"curriculum": {"stages": [[2, 2], [4, 1]]}},
                    {"curriculum": {"stages": [[2, 2], [2, 2]]}}, "wd")
  with pytest.raises(loop.ConfigMismatchError, match=r"'data' than this run \('synthetic:3' -> 'synthetic:5'\)"):
    loop.check_meta({"data": "synthetic:3"}, {"data": "synthetic:5"}, "wd")
