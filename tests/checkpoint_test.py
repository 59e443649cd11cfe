"""Checkpoints: exact round trips, params-only vs training layout, non-finite refusal, and a process
killed (SIGKILL) in the middle of a save leaving no checkpoint that restores."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import optax
import pytest

import rolo_jax  # noqa: F401
from rolo_jax.train import checkpoint as ck

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_params(seed=0):
  rng = np.random.default_rng(seed)
  return {"conv1": {"w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
                    "b": rng.normal(size=(4,)).astype(np.float32)},
          "fc_out": {"w": rng.normal(size=(5, 4)).astype(np.float32),
                     "b": np.arange(4, dtype=np.float32)}}


def assert_tree_equal(a, b):
  import jax
  fa, ta = jax.tree_util.tree_flatten(a)
  fb, tb = jax.tree_util.tree_flatten(b)
  assert ta == tb
  for x, y in zip(fa, fb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(x).dtype == np.asarray(y).dtype


def test_params_only_round_trip(tmp_path):
  p = make_params()
  meta = {"model": "re3", "config": {"crop_size": 67, "conv_channels": (1, 2)}, "source": "x.pth"}
  ck.save_params(str(tmp_path / "out"), p, meta)
  q, m = ck.load_params(str(tmp_path / "out"))
  assert_tree_equal(p, q)
  assert m == {"model": "re3", "config": {"crop_size": 67, "conv_channels": [1, 2]}, "source": "x.pth",
               "step": 0, "params_item": "params"}
  # The checkpoints folder itself is accepted too.
  q2, _ = ck.load_params(str(tmp_path / "out" / "checkpoints"))
  assert_tree_equal(p, q2)


def test_training_checkpoint_round_trip_and_latest(tmp_path):
  p = make_params()
  opt = optax.adam(1e-3)
  o = opt.init(p)
  grads = make_params(1)
  _, o = opt.update(grads, o, p)   # non-trivial moments and count
  c = ck.Checkpointer(str(tmp_path), max_to_keep=2)
  assert c.latest_step() is None
  train = {"step": 5, "curriculum": {"stage": 1, "best": None}, "rng_key": [0, 42], "ema": 0.1 + 0.2}
  assert c.save(5, params=p, opt_state=o, train=train, meta={"model": "re3"})
  assert not c.save(5, params=p, opt_state=o, train=train, meta={"model": "re3"})  # exists already
  p7 = make_params(7)
  assert c.save(7, params=p7, opt_state=o, train=dict(train, step=7), meta={"model": "re3"})
  assert c.save(9, params=p, opt_state=o, train=dict(train, step=9), meta={"model": "re3"})
  assert c.all_steps() == [7, 9]   # max_to_keep=2
  r = c.restore(params_like=p, opt_state_like=opt.init(p), step=7)
  assert_tree_equal(p7, r["params"])
  assert_tree_equal(o, r["opt_state"])
  assert isinstance(r["opt_state"][0], optax.ScaleByAdamState)
  assert r["train"] == dict(train, step=7)   # the float round-trips exactly through JSON
  # load_params on a training workdir: the latest step's params and meta.
  q, m = ck.load_params(str(tmp_path))
  assert_tree_equal(p, q)
  assert m["step"] == 9 and m["model"] == "re3"
  q7, m7 = ck.load_params(str(tmp_path), step=7)
  assert_tree_equal(p7, q7)


def test_a_parameter_average_is_what_load_params_serves_unless_raw(tmp_path):
  p, avg = make_params(), make_params(3)
  opt = optax.adam(1e-3)
  c = ck.Checkpointer(str(tmp_path))
  assert c.save(4, params=p, opt_state=opt.init(p), train={"step": 4}, meta={"model": "re3"},
                ema_params=avg)
  q, m = ck.load_params(str(tmp_path))
  assert_tree_equal(avg, q)
  assert m["params_item"] == "ema_params" and m["step"] == 4
  q, m = ck.load_params(str(tmp_path), raw=True)
  assert_tree_equal(p, q)
  assert m["params_item"] == "params"
  # The training restore is unaffected by the extra item.
  assert_tree_equal(p, c.restore(params_like=p, opt_state_like=opt.init(p))["params"])
  bad = {k: {n: x * np.nan for n, x in v.items()} for k, v in avg.items()}
  with pytest.raises(ck.NonFiniteCheckpointError, match="ema_params"):
    c.save(5, params=p, opt_state=opt.init(p), train={"step": 5}, meta={}, ema_params=bad)
  assert c.all_steps() == [4]
  # A damaged average is named as such (raw=True still reads the raw weights).
  import shutil
  step_dir = os.path.join(str(tmp_path), "checkpoints", "4")
  shutil.rmtree(os.path.join(step_dir, "ema_params", "d"))
  shutil.rmtree(os.path.join(step_dir, "ema_params", "ocdbt.process_0"))
  from rolo_jax.errors import DataError
  with pytest.raises(DataError, match="ema_params: cannot read its stored arrays .*damaged"):
    ck.load_params(str(tmp_path))
  assert_tree_equal(p, ck.load_params(str(tmp_path), raw=True)[0])


def _folder_bytes(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def test_the_optimisers_average_is_stored_once_and_restored_in_place(tmp_path, monkeypatch):
  from rolo_jax.train import optim
  rng = np.random.default_rng(0)
  p = {"w": rng.normal(size=(256, 256)).astype(np.float32), "b": np.zeros(256, np.float32)}
  opt = optim.make_optimizer(1e-3, ema_decay=0.9)
  o = opt.init(p)
  for k in range(3):   # an average that differs from the params and from its start
    u, o = opt.update({"w": np.full_like(p["w"], k + 1.0), "b": np.ones(256, np.float32)}, o, p)
    p = optax.apply_updates(p, u)
  avg = optim.ema_params(o)
  assert not np.array_equal(avg["w"], p["w"])

  def save(workdir):
    c = ck.Checkpointer(str(tmp_path / workdir))
    assert c.save(3, params=p, opt_state=o, train={"step": 3}, meta={"model": "re3"}, ema_params=avg)
    return c

  once = save("once")
  # Written once: the opt_state item holds Adam's moments but not the 256 KB average...
  step_dir = lambda w: os.path.join(str(tmp_path / w), "checkpoints", "3")
  assert once.read_json(3)["train"] == {"step": 3, ck.EMA_MARKER: "ema_params"}
  # ... and the restore puts it back: the whole optimiser state as it was, the train JSON as given.
  r = once.restore(params_like=p, opt_state_like=opt.init(p))
  assert_tree_equal(o, r["opt_state"])
  assert r["train"] == {"step": 3}
  assert_tree_equal(avg, optim.ema_params(r["opt_state"]))
  assert_tree_equal(avg, ck.load_params(str(tmp_path / "once"))[0])
  # Session 15's layout (the average in both items, no marker) still restores as it is, and is
  # larger by one copy of the average.
  monkeypatch.setattr(ck, "_same_tree", lambda a, b: False)
  twice = save("twice")
  assert ck.EMA_MARKER not in twice.read_json(3)["train"]
  assert_tree_equal(o, twice.restore(params_like=p, opt_state_like=opt.init(p))["opt_state"])
  extra = _folder_bytes(os.path.join(step_dir("twice"), "opt_state")) - \
      _folder_bytes(os.path.join(step_dir("once"), "opt_state"))
  assert extra >= 0.8 * avg["w"].nbytes, extra   # (orbax compresses what it writes)
  monkeypatch.undo()
  # An average other than the optimiser's (a custom hook) is not mistaken for it: both are kept.
  other = ck.Checkpointer(str(tmp_path / "other"))
  assert other.save(3, params=p, opt_state=o, train={"step": 3}, meta={}, ema_params=make_params())
  assert ck.EMA_MARKER not in other.read_json(3)["train"]
  assert_tree_equal(o, other.restore(params_like=p, opt_state_like=opt.init(p))["opt_state"])
  # A run without an average cannot restore a checkpoint whose average lives only in ema_params.
  from rolo_jax.errors import DataError
  with pytest.raises(DataError, match="averages the parameters and this run's does not"):
    once.restore(params_like=p, opt_state_like=optim.make_optimizer(1e-3).init(p))


def test_non_finite_values_are_never_saved(tmp_path):
  p = make_params()
  o = optax.adam(1e-3).init(p)
  c = ck.Checkpointer(str(tmp_path))
  c.save(1, params=p, opt_state=o, train={"step": 1}, meta={})
  bad = make_params()
  bad["fc_out"]["w"][2, 1] = np.nan
  with pytest.raises(ck.NonFiniteCheckpointError, match=r"fc_out.*w"):
    c.save(2, params=bad, opt_state=o, train={"step": 2}, meta={})
  bad_o = optax.adam(1e-3).init(p)
  bad_o = (bad_o[0]._replace(nu={**bad_o[0].nu, "conv1": {"w": np.full((3, 3, 3, 4), np.inf, np.float32),
                                                          "b": bad_o[0].nu["conv1"]["b"]}}),) + bad_o[1:]
  with pytest.raises(ck.NonFiniteCheckpointError, match="opt_state"):
    c.save(3, params=p, opt_state=bad_o, train={"step": 3}, meta={})
  with pytest.raises(ck.NonFiniteCheckpointError):
    ck.save_params(str(tmp_path / "p"), bad, {})
  assert c.all_steps() == [1]
  assert not os.path.exists(tmp_path / "p" / "checkpoints" / "0")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="checkpoints"):
    ck.load_params(str(tmp_path / "nothing"))
  os.makedirs(tmp_path / "empty" / "checkpoints")
  with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
    ck.load_params(str(tmp_path / "empty"))


def _damage(step_dir, how):
  """Damages a saved checkpoint step the ways a disk or a careless copy does."""
  import shutil
  item, what = how.split(":")
  folder = os.path.join(step_dir, item)
  if what == "json":
    with open(os.path.join(folder, "metadata"), "w") as f:
      f.write('{"model": "re3", oops}')
  elif what == "json_list":
    with open(os.path.join(folder, "metadata"), "w") as f:
      f.write("[1]")
  elif what == "no_data":
    shutil.rmtree(os.path.join(folder, "d"))
    shutil.rmtree(os.path.join(folder, "ocdbt.process_0"))
  elif what == "no_process_data":   # the per-process sub-database's data files (params-only saves)
    sub = os.path.join(folder, "ocdbt.process_0", "d")
    for name in os.listdir(sub):
      os.remove(os.path.join(sub, name))
  elif what == "cut":   # every data file cut to 100 bytes (a copy that stopped early)
    for name in os.listdir(os.path.join(folder, "d")):
      os.truncate(os.path.join(folder, "d", name), 100)
  elif what == "no_manifest":
    os.remove(os.path.join(folder, "manifest.ocdbt"))
  elif what == "gone":
    shutil.rmtree(folder)
  else:
    raise ValueError(how)


# A damaged item must be one DataError, and nothing after it: orbax, left to find the damage, gave
# up mid-read and the reads still in flight then reported "Event loop is closed" (tens to hundreds
# of traceback lines on a command's stderr; session 18).
NO_STRAY_ERRORS = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


LOAD_DAMAGES = [
    ("meta:json", "", "cannot read this checkpoint (JSONDecodeError"),
    ("params:no_data", "/params", "cannot read its stored arrays (ValueError"),
    ("params:cut", "/params", "cannot read its stored arrays (ValueError"),
    ("params:no_process_data", "/params", "cannot read its stored arrays (ValueError: a/0: no bytes"),
    ("params:no_manifest", "/params", "its manifest.ocdbt is missing"),
    ("params:gone", "", "no params/ folder"),
]


@NO_STRAY_ERRORS
@pytest.mark.parametrize("damage, where, message", LOAD_DAMAGES, ids=[d[0] for d in LOAD_DAMAGES])
def test_damaged_checkpoint_names_its_folder(tmp_path, damage, where, message):
  from rolo_jax.errors import DataError
  # Random values (they do not compress to a few bytes), so they are stored in data files.
  a = np.random.default_rng(0).normal(size=30000).astype(np.float32)
  step_dir = ck.save_params(str(tmp_path / "w"), {"a": a}, {"model": "re3"})
  _damage(step_dir, damage)
  with pytest.raises(DataError) as e:
    ck.load_params(str(tmp_path / "w"))
  assert str(e.value).startswith(f"{step_dir}{where}: {message}"), str(e.value)


RESUME_DAMAGES = [
    ("opt_state:cut", "/opt_state", "cannot read its stored arrays"),
    ("opt_state:no_data", "/opt_state", "cannot read its stored arrays"),
    ("ema_params:cut", "/ema_params", "cannot read its stored arrays"),
    ("params:gone", "", "no params/ folder"),
    ("train:json", "", "cannot read this checkpoint's settings (JSONDecodeError"),
    ("train:json_list", "/train", "expected a JSON object, found [1]"),
    ("meta:gone", "", "cannot read this checkpoint's settings"),
]


@NO_STRAY_ERRORS
@pytest.mark.parametrize("damage, where, message", RESUME_DAMAGES, ids=[d[0] for d in RESUME_DAMAGES])
def test_a_damaged_training_checkpoint_is_one_clear_error(tmp_path, damage, where, message):
  """What a resume reads (`read_json`, then `restore`): every damage is a DataError naming the
  folder, before orbax touches the arrays."""
  from rolo_jax.errors import DataError
  from rolo_jax.train import optim
  p = make_params()
  state = optim.make_optimizer(1e-3, ema_decay=0.9).init(p)
  c = ck.Checkpointer(str(tmp_path))
  assert c.save(4, params=p, opt_state=state, train={"step": 4}, meta={"model": "re3"},
                ema_params=optim.ema_params(state))
  step_dir = os.path.join(c.directory, "4")
  _damage(step_dir, damage)
  with pytest.raises(DataError) as e:
    c.read_json()
    c.restore(params_like=p, opt_state_like=state)
  assert str(e.value).startswith(f"{step_dir}{where}: {message}"), str(e.value)


KILL_MID_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, optax
    import rolo_jax
    from rolo_jax.train import checkpoint as ck
    from orbax.checkpoint._src.path import atomicity

    workdir = sys.argv[1]
    p = {"w": np.ones((4, 4), np.float32), "b": np.zeros(4, np.float32)}
    o = optax.adam(1e-3).init(p)
    c = ck.Checkpointer(workdir)
    c.save(1, params=p, opt_state=o, train={"step": 1}, meta={"model": "re3"})

    # Step 2: every item is written to the temporary folder, then the process dies (SIGKILL, no
    # cleanup, no Python exit handlers) right before orbax's finalisation (commit marker + rename).
    async def die(self, *a, **k):
      os.kill(os.getpid(), signal.SIGKILL)
    atomicity.AtomicRenameTemporaryPath.finalize = die
    c.save(2, params={"w": np.full((4, 4), 2, np.float32), "b": np.ones(4, np.float32)},
           opt_state=o, train={"step": 2}, meta={"model": "re3"})
    print("not reached")
""")


def test_sigkill_mid_save_leaves_previous_checkpoint_latest(tmp_path):
  script = tmp_path / "kill.py"
  script.write_text(KILL_MID_SAVE)
  workdir = tmp_path / "w"
  proc = subprocess.run([sys.executable, str(script), str(workdir)], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert "not reached" not in proc.stdout
  entries = os.listdir(workdir / "checkpoints")
  # The unfinished step exists only as orbax's temporary folder, with step 2's data in it.
  assert any(e.startswith("2") and "tmp" in e for e in entries), entries
  assert "2" not in entries
  q, m = ck.load_params(str(workdir))
  assert m["step"] == 1
  np.testing.assert_array_equal(q["w"], np.ones((4, 4), np.float32))
  # A new manager removes the leftover (in the background) and can write step 2 for real.
  c = ck.Checkpointer(str(workdir))
  assert c.latest_step() == 1
  p = {"w": np.full((4, 4), 3, np.float32), "b": np.ones(4, np.float32)}
  assert c.save(2, params=p, opt_state=optax.adam(1e-3).init(p), train={"step": 2}, meta={})
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
  q, m = ck.load_params(str(workdir))
  assert m["step"] == 2 and float(q["w"][0, 0]) == 3.0


@NO_STRAY_ERRORS
@pytest.mark.parametrize("name", ["run#1", "a?b", "c%41d"])
def test_a_path_with_url_characters_is_read_and_checked(tmp_path, name):
  """The read check opens the store from a path, not a file:// URL, in which '#' and '?' broke a
  valid checkpoint and '%41' checked another folder ('A') and so nothing."""
  from rolo_jax.errors import DataError
  a = np.random.default_rng(0).normal(size=30000).astype(np.float32)
  step_dir = ck.save_params(str(tmp_path / name), {"a": a}, {"model": "re3"})
  np.testing.assert_array_equal(ck.load_params(str(tmp_path / name))[0]["a"], a)
  _damage(step_dir, "params:cut")
  with pytest.raises(DataError, match="cannot read its stored arrays"):
    ck.load_params(str(tmp_path / name))


def test_running_out_of_memory_is_not_called_damage(tmp_path, monkeypatch):
  """A MemoryError inside orbax's restore is the machine's, not the checkpoint's: it passes
  through instead of becoming 'cannot restore this checkpoint'."""
  p = make_params()
  opt = optax.adam(1e-3)
  c = ck.Checkpointer(str(tmp_path))
  assert c.save(1, params=p, opt_state=opt.init(p), train={"step": 1}, meta={"model": "re3"})

  def no_memory(*a, **k):
    raise MemoryError("out of memory")

  monkeypatch.setattr(c._mgr, "restore", no_memory)
  with pytest.raises(MemoryError):
    c.restore(params_like=p, opt_state_like=opt.init(p))
