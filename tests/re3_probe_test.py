"""rolo_jax.eval.re3_probe: the arithmetic of the box-response probe on models with known answers."""
import jax.numpy as jnp
import numpy as np
import pytest

from rolo_jax.data import synthetic
from rolo_jax.eval import re3_probe
from rolo_jax.models import re3


@pytest.fixture(scope="module")
def seqs():
  return [synthetic.make_sequence(7, synthetic.SyntheticConfig(num_frames=12))]


def _fake_step(box_in_crop):
  """A model whose output is always the same box in crop coordinates (x output_scale)."""
  def step(params, state, pair, *, cfg):
    out = jnp.broadcast_to(jnp.asarray(box_in_crop, jnp.float32) * cfg.output_scale, (pair.shape[0], 4))
    return state, (out, {})
  return step


def _cfg(name):
  # A config name of its own: the tracker's jitted steps are cached per (static) config, so a fake
  # step is never mixed up with one traced earlier in the same process.
  return re3.CONFIGS["tiny"].replace(name=f"tiny-{name}")


def test_a_model_that_copies_the_box_corrects_nothing(monkeypatch, seqs):
  cfg = _cfg("copy")
  monkeypatch.setattr(re3, "step", _fake_step([0.25, 0.25, 0.75, 0.75]))   # the crop box itself
  rows = re3_probe.box_response(None, cfg, seqs, sizes=(0.7, 1.0, 1.3), offsets=(0.0, 0.25), every=3)
  assert len(rows) == 6 and all(r["frames"] == rows[0]["frames"] > 0 for r in rows)
  for r in rows:
    assert r["size_ratio"] == pytest.approx(r["size"], rel=1e-4)
    assert r["centre_error"] == pytest.approx(r["offset"], abs=1e-4)
    if r["size"] != 1.0:
      assert r["size_correction"] == pytest.approx(0.0, abs=1e-3)
    if r["offset"] != 0.0:
      assert r["centre_correction"] == pytest.approx(0.0, abs=1e-3)
    else:
      assert r["centre_correction"] is None


def test_a_shrinking_model_reports_its_bias(monkeypatch, seqs):
  # Output 0.4 of the window wide (the crop box is 0.5): width = 0.8 x the crop box's width.
  cfg = _cfg("shrink")
  monkeypatch.setattr(re3, "step", _fake_step([0.3, 0.3, 0.7, 0.7]))
  rows = re3_probe.box_response(None, cfg, seqs, sizes=(1.0, 1.3), offsets=(0.0,), every=3)
  assert rows[0]["size_ratio"] == pytest.approx(0.8, rel=1e-4)
  assert rows[1]["size_ratio"] == pytest.approx(1.04, rel=1e-4)
  assert rows[1]["size_correction"] == pytest.approx((1.3 - 1.04) / 0.3, rel=1e-3)
  assert "| 1.30 | +0.00 | 1.040 |" in re3_probe.format_rows(rows)


def test_no_labelled_pair_is_a_clear_error(seqs):
  import dataclasses
  s = seqs[0]
  empty = dataclasses.replace(s, boxes=np.full_like(np.asarray(s.boxes, np.float64), np.nan))
  with pytest.raises(ValueError, match="no frame pair"):
    re3_probe.box_response(None, re3.CONFIGS["tiny"], [empty])


def test_oracle_runs_of_a_model_that_copies_the_box(monkeypatch, seqs):
  # The copying model keeps the first box forever: 'tracker' scores the static box, 'true centre'
  # has zero centre error (P@20 = 1) with the first frame's size, 'true box' scores the ground truth.
  from rolo_jax.eval import otb

  cfg = _cfg("oracle")
  monkeypatch.setattr(re3, "step", _fake_step([0.25, 0.25, 0.75, 0.75]))
  rows = re3_probe.oracle_runs(None, cfg, seqs, modes=re3_probe.ORACLE_MODES)
  by = {r["mode"]: r for r in rows}
  gt = np.asarray(seqs[0].boxes, np.float64)
  static = np.tile(gt[0], (len(gt), 1))
  assert by["tracker"]["auc"] == pytest.approx(otb.score_sequence(gt, static).auc, abs=1e-4)
  assert by["true box"]["auc"] == pytest.approx(otb.score_sequence(gt, gt).auc, abs=1e-6)
  assert by["true centre"]["precision_20"] == pytest.approx(1.0)
  sized = static.copy()
  ok = np.all(np.isfinite(gt), axis=1)
  sized[ok, 2:] = gt[ok, 2:]                       # first centre, true size (what 'true size' feeds)
  sized[ok, :2] = gt[0, :2] + gt[0, 2:] / 2 - gt[ok, 2:] / 2
  assert by["true size"]["auc"] == pytest.approx(otb.score_sequence(gt, sized).auc, abs=1e-4)
  assert "| true centre |" in re3_probe.format_oracle_rows(rows)
  with pytest.raises(ValueError, match="unknown modes"):
    re3_probe.oracle_runs(None, cfg, seqs, modes=("psychic",))
