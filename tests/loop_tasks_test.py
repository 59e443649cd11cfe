"""The one training loop under the tasks without a curriculum (yolo_task.fit, MemTrack's hooks):
the per-step keys, resuming a checkpoint written before they shared the loop, and which metrics
the non-finite guard checks."""
import rolo_jax  # noqa: F401

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rolo_jax.train import checkpoint as ckpt_lib
from rolo_jax.train import loop, yolo_task

SEED = 7
META = {"model": "toy", "config": {"n": 3}}
OPT = optax.sgd(0.1)


def toy_run(workdir, seen, *, total=4, stop_after=None, logged=None):
  """fit on a 3-parameter least-squares problem; `seen` collects (step, key) of every update."""
  target = jnp.array([1.0, -2.0, 0.5])

  def init_fn():
    p = {"w": jnp.zeros(3)}
    return p, OPT.init(p)

  def update_fn(params, opt_state, batch, key):
    seen.append(np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                           else key))
    loss, g = jax.value_and_grad(lambda p: jnp.sum((p["w"] * batch - target) ** 2))(params)
    upd, opt_state = OPT.update(g, opt_state, params)
    return optax.apply_updates(params, upd), opt_state, {"loss": loss, "grad_norm": jnp.linalg.norm(g["w"])}

  return yolo_task.fit(workdir=workdir, init_fn=init_fn, update_fn=update_fn,
                       batch_fn=lambda step: np.float32(1.0 + 0.1 * step), total_steps=total, meta=META,
                       seed=SEED, checkpoint_every=2, progress=False, stop_after=stop_after, log=logged)


def expected_keys(steps):
  return [np.asarray(jax.random.fold_in(jax.random.PRNGKey(SEED), k)) for k in steps]


def test_fit_keys_are_fold_in_seed_step_and_resume_is_exact(tmp_path):
  seen_full = []
  p_full, s_full = toy_run(str(tmp_path / "full"), seen_full)
  assert s_full["steps"] == 4 and s_full["resumed_from"] is None
  for a, b in zip(seen_full, expected_keys(range(4))):
    np.testing.assert_array_equal(a, b)
  seen, lines = [], []
  toy_run(str(tmp_path / "part"), seen, stop_after=2)
  p_res, s = toy_run(str(tmp_path / "part"), seen, logged=lines.append)
  assert s["resumed_from"] == 2 and s["steps_this_run"] == 2
  assert lines == [f"resuming {tmp_path / 'part'} from step 2"]
  for a, b in zip(seen, expected_keys(range(4))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(np.asarray(p_full["w"]), np.asarray(p_res["w"]))
  # The loop's log rows and summary: the task's own metrics, one stage, no curriculum.
  rows = [json.loads(l) for l in open(tmp_path / "full" / "train_log.jsonl")]
  assert [r["step"] for r in rows] == [4] and rows[0]["stage"] == 0 and rows[0]["p_pred"] == 0.0
  assert s_full["last"]["loss"] == pytest.approx(rows[0]["loss"])
  assert os.path.isfile(tmp_path / "full" / "train_summary.json")


def test_a_checkpoint_from_before_the_shared_loop_resumes(tmp_path):
  """yolo_task.fit's own loop saved train = {step, seed} only (no curriculum, data position or key)."""
  wd = str(tmp_path / "old")
  seen_full = []
  p_full, _ = toy_run(str(tmp_path / "full"), seen_full)
  # The state after 2 steps, written the old way.
  seen = []
  p2, _ = toy_run(str(tmp_path / "two"), seen, total=2)
  old = ckpt_lib.Checkpointer(wd)
  r = ckpt_lib.Checkpointer(str(tmp_path / "two")).restore(
      params_like={"w": jnp.zeros(3)}, opt_state_like=OPT.init({"w": jnp.zeros(3)}))
  old.save(2, params=r["params"], opt_state=r["opt_state"], train={"step": 2, "seed": SEED},
           meta=dict(META, step=2))
  old.close()
  p_res, s = toy_run(wd, seen)
  assert s["resumed_from"] == 2 and s["steps_this_run"] == 2
  for a, b in zip(seen, expected_keys(range(4))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(np.asarray(p_full["w"]), np.asarray(p_res["w"]))


def run_with_metric(tmp_path, name, finite):
  def update(state, batch, key, p_pred):
    metrics = {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0),
               "peak_err": jnp.float32(np.nan if int(state.step) == 1 else 0.0)}
    return state._replace(step=state.step + 1), metrics

  cfg = loop.LoopConfig(workdir=str(tmp_path / name), total_steps=3, checkpoint_every=1, progress=False)
  return loop.train(init_fn=lambda key: loop.TrainState({"w": jnp.zeros(2)}, {"m": jnp.zeros(2)}, jnp.zeros((), jnp.int32)),
                    update_fn=update, batch_fn=lambda pos, stage: None, curriculum=loop.fixed_stage(),
                    config=cfg, meta=META, hooks=loop.TaskHooks(finite=finite))


def test_non_finite_guard_checks_the_named_metrics_or_all(tmp_path):
  # Default: loss and gradient norm only; a NaN elsewhere is logged, not fatal.
  _, s = run_with_metric(tmp_path, "default", ("loss", "grad_norm"))
  assert s["steps"] == 3
  # finite=None (MemTrack): every scalar metric; the run stops at step 2, nothing saved for it.
  with pytest.raises(loop.NonFiniteError, match="peak_err.*step 2|step 2.*peak_err"):
    run_with_metric(tmp_path, "all", None)
  assert ckpt_lib.Checkpointer(str(tmp_path / "all")).all_steps() == [1]


def test_a_workdir_of_another_run_is_refused_before_the_state_is_initialised(tmp_path):
  # The refusal reads the checkpoint's JSON only: no initialisation (seconds for the paper config),
  # no restore. The workdir's own settings then initialise once and resume.
  calls = []

  def init_fn(key):
    calls.append(1)
    return loop.TrainState({"w": jnp.zeros(2)}, {"m": jnp.zeros(2)}, jnp.zeros((), jnp.int32))

  def run(meta, seed=SEED):
    cfg = loop.LoopConfig(workdir=str(tmp_path / "w"), total_steps=2, checkpoint_every=1,
                          progress=False, seed=seed)
    return loop.train(init_fn=init_fn, update_fn=lambda s, b, k, p: (
        s._replace(step=s.step + 1), {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0)}),
        batch_fn=lambda pos, stage: None, curriculum=loop.fixed_stage(), config=cfg, meta=meta)

  run(META, seed=SEED)
  assert len(calls) == 1 and ckpt_lib.Checkpointer(str(tmp_path / "w")).all_steps() == [1, 2]
  with pytest.raises(loop.ConfigMismatchError, match=r"different 'config' than this run \(n: 3 -> 4\)"):
    run({"model": "toy", "config": {"n": 4}})
  with pytest.raises(loop.ConfigMismatchError, match=f"trained with a different seed than this run \\(seed: {SEED} -> 8\\)"):
    run(META, seed=8)
  assert len(calls) == 1
  _, summary = run(META)   # its own settings: initialised once more (the restore's template)
  assert len(calls) == 2 and summary["resumed_from"] == 2
