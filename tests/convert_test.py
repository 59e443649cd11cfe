"""PyTorch .pth reading/writing without torch, and the Re3 weight import checked against a forward
pass written independently in numpy (NCHW, from the state_dict itself)."""
import base64
import dataclasses
import json
import pickle
import re
import zipfile
import zlib

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from rolo_jax import convert  # (first: rolo_jax picks the JAX platform before jax is imported)
import jax
from rolo_jax.errors import DataError
from rolo_jax.io import pth
from rolo_jax.models import re3
from rolo_jax.train.checkpoint import load_params

# --------------------------------------------------------------------------------------------------
# .pth reader / writer


def test_roundtrip_dtypes_and_strided_views(tmp_path):
  rng = np.random.default_rng(0)
  base = np.arange(60, dtype=np.float32)
  halfbase = rng.standard_normal((5, 4)).astype(np.float16)
  tensors = {
      "f32": rng.standard_normal((3, 4)).astype(np.float32),
      "f16": rng.standard_normal((2, 5)).astype(np.float16),
      "i64": np.array([-(2 ** 40), -1, 0, 7, 2 ** 62], np.int64),
      # Views of one base: offset 13, strides (20, 3) elements; and a plain slice, offset 5.
      "view": base.reshape(6, 10)[1:5:2, 3::3],
      "slice": base[5:20],
      "f16_t": halfbase.T,            # transposed: strides (1, 4) on its own storage
      "scalar": np.float32(-2.5),
      "empty": np.zeros((0, 3), np.float32),
  }
  f = tmp_path / "t.pth"
  pth.save_state_dict(f, tensors)
  back = pth.load_state_dict(f)
  assert list(back) == list(tensors)
  for k, v in tensors.items():
    v = np.asarray(v)
    assert back[k].dtype == v.dtype, k
    assert back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v, err_msg=k)
  # Hand-computed values of the strided view: rows 1 and 3, columns 3, 6, 9 of arange(60) as 6x10.
  np.testing.assert_array_equal(back["view"], [[13, 16, 19], [33, 36, 39]])
  # One storage record for the shared base (its 60 floats), not one per view.
  with zipfile.ZipFile(f) as zf:
    data = sorted(n for n in zf.namelist() if "/data/" in n)
    sizes = {n: zf.getinfo(n).file_size for n in data}
  # f32, f16, i64, the shared base, halfbase, scalar, empty: 7 storages.
  assert len(data) == 7, data
  assert 60 * 4 in sizes.values()


def test_shared_storage_offsets_in_pickle(tmp_path):
  """The writer records views with their storage offset and strides (torch's view semantics)."""
  base = np.arange(24, dtype=np.int64)
  f = tmp_path / "v.pth"
  pth.save_state_dict(f, {"a": base[2:10:3], "b": base.reshape(4, 6)[:, 1]})
  with zipfile.ZipFile(f) as zf:
    text = zf.read("archive/data.pkl")
    assert [n for n in zf.namelist() if "/data/" in n] == ["archive/data/0"]
  # _rebuild_tensor_v2(storage, offset, size, stride, ...): check the offsets/strides by re-reading.
  got = pth.load_state_dict(f)
  np.testing.assert_array_equal(got["a"], [2, 5, 8])
  np.testing.assert_array_equal(got["b"], [1, 7, 13, 19])
  assert b"LongStorage" in text


def test_data_records_are_64_byte_aligned(tmp_path):
  f = tmp_path / "a.pth"
  pth.save_state_dict(f, {"x": np.ones(3, np.float32), "y": np.arange(5, dtype=np.int64)})
  raw = f.read_bytes()
  with zipfile.ZipFile(f) as zf:
    for info in zf.infolist():
      head = raw[info.header_offset:info.header_offset + 30]
      name_len = int.from_bytes(head[26:28], "little")
      extra_len = int.from_bytes(head[28:30], "little")
      start = info.header_offset + 30 + name_len + extra_len
      assert start % 64 == 0, info.filename
      assert raw[start:start + info.file_size] == zf.read(info.filename)


def test_legacy_format_roundtrip(tmp_path):
  base = np.arange(12, dtype=np.float32)
  tensors = {"w": base.reshape(3, 4)[:, ::2], "h": np.array([1.5, -2], np.float16),
             "i": np.arange(4, dtype=np.int64)}
  f = tmp_path / "legacy.pth"
  pth.save_state_dict(f, tensors, legacy=True)
  assert not zipfile.is_zipfile(f)
  back = pth.load_state_dict(f)
  for k, v in tensors.items():
    assert back[k].dtype == v.dtype
    np.testing.assert_array_equal(back[k], v)


# Written by torch 2.13.0 (CPU):
#   sd = OrderedDict(w=torch.arange(6.).view(2, 3), h=torch.arange(6).half().view(2, 3).t(),
#                    i=torch.arange(10)[3:7], m=torch.arange(10)[::4])
#   torch.save(sd, f)                      (zip format)   /  torch.save(sd, f, _use_new_zipfile_serialization=False)
# 'i' and 'm' are views of one int64 storage (offset 3, and stride 4).
_TORCH_FILES = {  # zlib-compressed, base64
    "zip": (
        "eNqlVUtv00AQ3sSJk5iSPngkbaGUp4JUUufR1uHRIqsYJCORBoGqChG5iRtbuHHX2bQqB6iEUglOlB+AOPQvIH4DBw5w5gZS"
        "4cSdE7u249ouTZV2lc1Y8XzffLM7MymKVAiAaBTsWX1gAEhGRVFX5fGqhKT0yjNN4ONgwbM2gpWKrmlyBal6vcE8MKqyIVdn"
        "1QpiILhagoHUfACTrcFgBemYLV1uIlVrMGVDXmyqWrWM5HpDN8qrWQZSqdR8BDs3sKdUk2HIgjCCpkvoofUjA8MmIQvpeQrb"
        "ykoTRkQaweicCMSgSG3CmEiJgU3IvFaIgGMI9pTgcROkwLiCgyht4nuStuTw9pouGdinmHz9hI8Sg5twQAwQ2hMW30kET5Xg"
        "adNZhQkP3329XnP4kqZLFg5iPgbBoTnMFmrBYTHQgmcsrrMIjpTgOdNxGY5aXEpSsSHnTQkteIHgLlqQSwheLsErzXRRjETf"
        "DO98XMdgsov7XmQC8M5Fppd0Y1lC5VXZaOALE/hp3312uzJEx6c/31+RHMjeX8cQmNrVYd9xWdLUWn1ZriOBzx1GymSeCJhZ"
        "g7+DOESwo4B+MOMIWFxHsk6KVeBvHOUINBUhTSYaWrd+DNI4Ct1RQxxMe7pqnBX460cQYLFuzOCv2/iD9wbeH24TRYm3O1tJ"
        "/CJ5gKIxr6KMwKdAF/Fv4sg8mAV3SMy/w1+2e/CPPQfE5LwxswKfB4fP3yo9YFcAWZRtQ7YN25a2bcS2bXEx25Ictn+2nhbJ"
        "c8ccekHOycFpp/Fuk8gxJOLX97VHB9fvCMjuNpB5bA3ZUHEHPZfI9C2rVYFPdymA5fKFPMdx+anC5ASb56ZyEyzLFdhMLs+S"
        "d/ixwOa4CfNcXixspbCOlKkyYB51W6d7FPXtUe7/H/Gj3QMk4UF+DoD9hpefxD0Ehjwkc0HQYfL4edyN3O/h+ebicQaIH+7u"
        "urgH/pgCvt73Y93d48X+8mMzfqy7ar3YJyEfNuvHuuuv14MdDQN/le8J7CqLEQ/4nQv8/4ItijQ91i5v6pqDjPnsXbuvObrd"
        "prTZwS+ju+1fFMO0hYmZ/pbvP7V04qQ="
    ),
    "legacy": (
        "eNptkstu00AUhseXOO1ASynXci0FWrOJ0lwbCYkIlQppKFB34w2ygjOtBw12jj0uAqlSNomAZ2DBklfjEZBYcHyhtCgjz/zy"
        "mXO+/3g8Y/0rlb+/7fxafffj9UptrO/+NHA9BmK7S4SQURypyI+kd8TjREQhaJjgLuCOFEpJ7vFwKAYh6J9dikH1ccS9RHzi"
        "CRjHYNpuBYNJEMUKKkx3DXwToQKLma6ZMaLwEKrMTFP09NFGcl+hS0JfxUMe8+G28BUF8sgBzXY1rPgAuq+i2A9qXqqETKgX"
        "87epkENP8TCJYu+oQcGwbbeaGWPm4JCDWZTQHRkN1H4RpFBxFzGn12r2Ot1Wt9XudhtbYOU9+qMU27JeKpjbY4TpzJjCPDOY"
        "NgX6JcjaOafgvAMLeU8BLAZoGfy1eT6QBycuF/65dDqb9UZzs9mBpaCgX8zoBtOnsMy0zORSQb+s4IoDV3O6gGtn6C/wzE7o"
        "10/T672tdrveghWkU6Tf2EO2OYGbTJvArYJ8W8EdB+7m5PewWpCDmZh7JWYtb3IC9zPWgwLzUMG6AxvZb3uTXZUZ5dqsD9dn"
        "nbnBa9ndOT20UvVSjVLNUiulWqVWS50rdf6/fRyPSZ88JdvkmXXGafwElz4+OMc4v/f/AJr8rxo="
    ),
}
_TORCH_EXPECTED = {
    "w": np.arange(6, dtype=np.float32).reshape(2, 3),
    "h": np.arange(6, dtype=np.float16).reshape(2, 3).T,
    "i": np.arange(3, 7, dtype=np.int64),
    "m": np.array([0, 4, 8], np.int64),
}


@pytest.mark.parametrize("which", ["zip", "legacy"])
def test_reads_files_written_by_torch(tmp_path, which):
  f = tmp_path / f"{which}.pth"
  f.write_bytes(zlib.decompress(base64.b64decode("".join(_TORCH_FILES[which]))))
  got = pth.load_state_dict(f)
  assert list(got) == list(_TORCH_EXPECTED)
  for k, v in _TORCH_EXPECTED.items():
    assert got[k].dtype == v.dtype, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_refuses_arbitrary_globals(tmp_path):
  """A pickle naming os.system is refused before anything is called."""
  f = tmp_path / "evil.pth"
  payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
  with zipfile.ZipFile(f, "w") as zf:
    zf.writestr("archive/data.pkl", payload)
  with pytest.raises(DataError, match=r"refusing to unpickle global 'os\.system'"):
    pth.load_state_dict(f)


def test_not_a_torch_file(tmp_path):
  f = tmp_path / "plain.pth"
  f.write_bytes(pickle.dumps({"a": 1}, protocol=2))
  with pytest.raises(DataError, match="magic number"):
    pth.load_state_dict(f)
  g = tmp_path / "text.pth"
  g.write_text("hello")
  with pytest.raises(DataError, match="not a PyTorch file"):
    pth.load_state_dict(g)
  with pytest.raises(FileNotFoundError):
    pth.load_state_dict(tmp_path / "missing.pth")
  full = tmp_path / "full.pth"
  pth.save_state_dict(full, {"w": np.arange(4000, dtype=np.float32)})
  cut = tmp_path / "cut.pth"
  cut.write_bytes(full.read_bytes()[:9000])
  with pytest.raises(DataError, match=r"cut.pth: starts like a PyTorch zip file \(torch >= 1.6\) but "
                                      r"its end is missing \(9000 bytes\): truncated"):
    pth.load_state_dict(cut)


# --------------------------------------------------------------------------------------------------
# Re3: independent numpy forward pass from the published (PyTorch) layout

CFG = re3.Re3Config(name="convert-test", crop_size=99, conv_channels=(8, 16, 24, 24, 16),
                    skip_channels=(4, 6, 8), fc6_units=32, lstm_hidden=16, cell="caffe")
# crop 99: conv1 (99 - 11)/4 + 1 = 23, pool1 11, conv2 11, pool2 5, conv3-5 5, pool5 2.
GATES = ("block_input", "input_gate", "forget_gate", "output_gate")


def np_conv(x, w, b, stride, pad, groups):
  """NCHW convolution by explicit windows: x [N, C, H, W], w [O, C/g, k, k] -> [N, O, Ho, Wo]."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  o, cg, k, _ = w.shape
  win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # [N, C, Ho, Wo, k, k]
  og = o // groups
  outs = [np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og])
          for g in range(groups)]
  return np.concatenate(outs, axis=1) + b[None, :, None, None]


def np_maxpool(x):
  return sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))


def np_lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
  """Caffe LRN across channels: x / (k + alpha/size * sum of squares over 5 neighbours)^beta."""
  sq = np.pad(x ** 2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
  s = sum(sq[:, i:i + x.shape[1]] for i in range(size))
  return x / (k + alpha / size * s) ** beta


def np_prelu(x, a):
  return np.where(x > 0, x, a[None, :, None, None] * x)


def np_encode(sd, crops_nhwc):
  """crops uint8 [N, S, S, 3] -> [N, D] features, the authors' way: NCHW, channel-first flatten."""
  x = crops_nhwc.astype(np.float64) - np.array(re3.MEAN_RGB)
  x = x.transpose(0, 3, 1, 2)
  relu = lambda v: np.maximum(v, 0)
  c = lambda n, v, stride, pad, g: relu(np_conv(v, sd[f"conv.{n}.weight"], sd[f"conv.{n}.bias"],
                                                stride, pad, g))
  skip = lambda j, v: np_prelu(np_conv(v, sd[f"conv_skip.{j}.weight"], sd[f"conv_skip.{j}.bias"], 1, 0, 1),
                               sd[f"prelu_skip.{j}.weight"])
  lrn1 = np_lrn(np_maxpool(c(0, x, 4, 0, 1)))
  s1 = skip(0, lrn1)
  lrn2 = np_lrn(np_maxpool(c(1, lrn1, 1, 2, 2)))
  s2 = skip(1, lrn2)
  conv5 = c(4, c(3, c(2, lrn2, 1, 1, 1), 1, 1, 2), 1, 1, 2)
  s5 = skip(2, conv5)
  pool5 = np_maxpool(conv5)
  n = x.shape[0]
  return np.concatenate([v.reshape(n, -1) for v in (s1, s2, s5, pool5)], axis=1)


def np_caffe_lstm(sd, name, x, h, c):
  sig = lambda v: 1 / (1 + np.exp(-v))
  lin = lambda g, v: v @ sd[f"{name}.{g}.weight"].T + sd[f"{name}.{g}.bias"]
  z = np.tanh(lin("block_input", np.concatenate([x, h], 1)))
  i = sig(lin("input_gate", np.concatenate([x, h, c], 1)))
  f = sig(lin("forget_gate", np.concatenate([x, h, c], 1)))
  c_new = i * z + f * c
  o = sig(lin("output_gate", np.concatenate([x, h, c_new], 1)))
  return o * np.tanh(c_new), c_new


def np_step(sd, state, prev_crops, cur_crops):
  """One Re3 step: state = (h1, c1, h2, c2); crops uint8 [B, S, S, 3]. Returns (state, out [B, 4])."""
  sd = {k: v.astype(np.float64) for k, v in sd.items()}
  feat = np.concatenate([np_encode(sd, prev_crops), np_encode(sd, cur_crops)], axis=1)
  fc6 = np.maximum(feat @ sd["fc6.weight"].T + sd["fc6.bias"], 0)
  h1, c1 = np_caffe_lstm(sd, "lstm1", fc6, state[0], state[1])
  h2, c2 = np_caffe_lstm(sd, "lstm2", np.concatenate([fc6, h1], 1), state[2], state[3])
  out = h2 @ sd["fc_output_out.weight"].T + sd["fc_output_out.bias"]
  return (h1, c1, h2, c2), out


def make_state_dict(cfg, seed=0):
  """Random weights in the published layout, scaled so every nonlinearity works in its active range
  (LRN divides by a factor well above 1, PReLU sees both signs, LSTM gates are not saturated)."""
  rng = np.random.default_rng(seed)
  shapes = convert.re3_expected_shapes(cfg)
  sd = {}
  for k, shp in shapes.items():
    if k.endswith("bias"):
      v = 0.1 * rng.standard_normal(shp)
    elif k.startswith("prelu"):
      v = rng.uniform(0.1, 0.5, shp)
    else:
      fan_in = int(np.prod(shp[1:]))
      v = rng.standard_normal(shp) / np.sqrt(fan_in)
    sd[k] = v.astype(np.float32)
  sd["conv.0.weight"] *= 1.5   # conv1 outputs of O(100): LRN's denominator ~1.5-3
  sd["fc6.weight"] *= 0.02     # features of O(100) -> fc6 of O(1)
  for layer in ("lstm1", "lstm2"):
    for g in GATES:
      sd[f"{layer}.{g}.bias"] = (0.5 * rng.standard_normal(shapes[f"{layer}.{g}.bias"])).astype(np.float32)
  return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("re3conv")
  sd = make_state_dict(CFG)
  pth_file = tmp / "re3.pth"
  pth.save_state_dict(pth_file, sd)
  cfg_file = tmp / "cfg.json"
  cfg_file.write_text(json.dumps({"base": "paper", "name": "convert-test", "crop_size": 99,
                                  "conv_channels": [8, 16, 24, 24, 16], "skip_channels": [4, 6, 8],
                                  "fc6_units": 32, "lstm_hidden": 16}))
  out = tmp / "ckpt"
  assert convert.main(["re3", "--config", str(cfg_file), "--pth", str(pth_file), "--out", str(out)]) == 0
  return sd, out


def test_convert_writes_checkpoint_with_meta(converted):
  sd, out = converted
  params, meta = load_params(out)
  assert meta["model"] == "re3" and meta["config_name"] == "convert-test"
  assert meta["source"].endswith("re3.pth")
  assert convert.re3_config_from_dict(meta["config"]) == CFG
  # Layout spot checks against the state_dict by hand: OIHW -> HWIO, [out, in] -> [in, out].
  np.testing.assert_array_equal(params["conv2"]["w"][1, 3, 2, 7], sd["conv.1.weight"][7, 2, 1, 3])
  np.testing.assert_array_equal(params["lstm2"]["output_gate"]["w"][40, 9],
                                sd["lstm2.output_gate.weight"][9, 40])
  np.testing.assert_array_equal(params["skip5"]["prelu"], sd["prelu_skip.2.weight"])


def test_converted_forward_matches_numpy_reference(converted):
  sd, out = converted
  params, _ = load_params(out)
  rng = np.random.default_rng(1)
  s = CFG.crop_size
  # Two samples, two steps: step 1 (prev = cur, as at the first frame), step 2 with new crops.
  a = rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
  c = rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8)

  np_state = tuple(np.zeros((2, CFG.lstm_hidden)) for _ in range(4))
  state = re3.initial_state(CFG, 2)
  step = jax.jit(lambda p, st, x: re3.step(p, st, x, cfg=CFG))
  for prev, cur in ((a, a), (b, c)):
    np_state, np_out = np_step(sd, np_state, prev, cur)
    pair = re3.preprocess(np.stack([prev, cur], axis=1))
    state, (boxes, _) = step(params, state, pair)
    np.testing.assert_allclose(np.asarray(boxes), np_out, rtol=0, atol=1e-4)
    got = (state.lstm1.h, state.lstm1.c, state.lstm2.h, state.lstm2.c)
    for g, e in zip(got, np_state):
      np.testing.assert_allclose(np.asarray(g), e, rtol=0, atol=1e-4)
  # The reference's outputs are not trivially small, and the two steps differ.
  assert np.abs(np_out).max() > 0.1


def test_reference_exercises_lrn_and_gates():
  """Guard for the test itself: with these weights LRN changes values and the LSTM is not saturated."""
  sd = {k: v.astype(np.float64) for k, v in make_state_dict(CFG).items()}
  rng = np.random.default_rng(1)
  x = (rng.integers(0, 256, (1, CFG.crop_size, CFG.crop_size, 3)) - np.array(re3.MEAN_RGB)).transpose(0, 3, 1, 2)
  pool1 = np_maxpool(np.maximum(np_conv(x, sd["conv.0.weight"], sd["conv.0.bias"], 4, 0, 1), 0))
  ratio = pool1 / np.maximum(np_lrn(pool1), 1e-12)
  assert np.median(ratio[pool1 > 1]) > 1.2
  feat = np_encode(sd, rng.integers(0, 256, (1, CFG.crop_size, CFG.crop_size, 3)).astype(np.uint8))
  fc6 = np.maximum(np.concatenate([feat, feat], 1) @ sd["fc6.weight"].T + sd["fc6.bias"], 0)
  pre = np.concatenate([fc6, np.zeros((1, 32))], 1) @ sd["lstm1.input_gate.weight"].T
  assert 0.1 < np.abs(pre).mean() < 5


def test_paper_config_has_published_parameter_count():
  shapes = convert.re3_expected_shapes(re3.CONFIGS["paper"])
  assert sum(int(np.prod(s)) for s in shapes.values()) == 190_004_324
  assert shapes["fc6.weight"] == (2048, 74_208)
  assert shapes["conv.1.weight"] == (256, 48, 5, 5)       # groups 2
  assert shapes["lstm2.output_gate.weight"] == (1024, 2048 + 1024 + 2 * 1024)


def test_bad_state_dict_reports_every_problem(tmp_path, capsys):
  sd = make_state_dict(CFG)
  del sd["lstm2.forget_gate.bias"]
  sd["fc6.weight"] = sd["fc6.weight"][:, :-1]
  sd["extra.weight"] = np.zeros(3, np.float32)
  f = tmp_path / "bad.pth"
  pth.save_state_dict(f, sd)
  with pytest.raises(DataError) as e:
    convert.re3_from_state_dict(pth.load_state_dict(f), CFG, source=str(f))
  msg = str(e.value)
  assert "missing 1 key(s): lstm2.forget_gate.bias" in msg
  assert "unexpected 1 key(s): extra.weight" in msg
  d = 2 * re3.feature_dim(CFG)
  assert f"fc6.weight: expected [32, {d}], found [32, {d - 1}]" in msg
  # The CLI: one error, exit status 2, no traceback, nothing written.
  from rolo_jax.errors import cli_main
  with pytest.raises(SystemExit) as ex:
    cli_main(convert.main)(["re3", "--config", "paper", "--pth", str(f), "--out", str(tmp_path / "o")])
  assert ex.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {f}: state_dict does not match Re3 config 'paper'")
  assert "Traceback" not in err
  assert not (tmp_path / "o").exists()


def test_module_prefix_is_stripped():
  sd = {"module." + k: v for k, v in make_state_dict(CFG).items()}
  params = convert.re3_from_state_dict(sd, CFG)
  np.testing.assert_array_equal(params["fc_out"]["b"], sd["module.fc_output_out.bias"])


def test_small_config_is_refused_with_reason():
  with pytest.raises(DataError, match="no published PyTorch|only the Caffe cell"):
    convert.re3_expected_shapes(re3.CONFIGS["small"])


def _cli_exit(argv, capsys):
  from rolo_jax.errors import cli_main
  with pytest.raises(SystemExit) as ex:
    cli_main(convert.main)(argv)
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
  return ex.value.code, err


def test_non_finite_weights_are_named_and_nothing_written(tmp_path, capsys):
  sd = make_state_dict(CFG)
  sd["lstm1.input_gate.weight"][3, 4] = np.nan
  f = tmp_path / "nan.pth"
  pth.save_state_dict(f, sd)
  code, err = _cli_exit(["re3", "--config", "paper", "--pth", str(f), "--out", str(tmp_path / "o")],
                        capsys)
  assert code == 2
  assert err.startswith(f"error: {f}: tensor 'lstm1.input_gate.weight' ")
  assert "holds NaN or Inf values; nothing was written" in err
  assert not (tmp_path / "o").exists()


def test_existing_checkpoint_is_not_overwritten(converted, tmp_path, capsys):
  _, out = converted
  before = sorted(p.name for p in (out / "checkpoints").iterdir())
  pth_file = out.parent / "re3.pth"
  code, err = _cli_exit(["re3", "--config", str(out.parent / "cfg.json"), "--pth", str(pth_file),
                         "--out", str(out)], capsys)
  assert code == 2
  assert err.startswith(f"error: {out}: already holds a checkpoint (")
  assert "choose a new or empty --out folder (nothing was written)" in err
  assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_config_dicts_saved_before_norm_keep_their_lrn():
  """Checkpoints written before Re3Config.norm store use_lrn (all fields); a 'tiny' one of those was
  trained with LRN, although tiny now defaults to group norm."""
  old_tiny = dataclasses.asdict(re3.CONFIGS["tiny"])
  del old_tiny["norm"], old_tiny["norm_groups"]
  old_tiny["use_lrn"] = True
  old_tiny = json.loads(json.dumps(old_tiny))   # the saved (JSON) form
  assert convert.re3_config_from_dict(old_tiny) == re3.CONFIGS["tiny"].replace(norm="lrn")
  assert convert.re3_config_from_dict(old_tiny | {"use_lrn": False}).norm == "none"
  assert convert.re3_config_from_dict({"base": "tiny"}).norm == "group"
  with pytest.raises(DataError, match="use_lrn='yes': expected true or false"):
    convert.re3_config_from_dict(old_tiny | {"use_lrn": "yes"})


@pytest.mark.parametrize("field,value,expect", [
    ("crop_size", "x", "Re3Config field 'crop_size': expected int (like 227), got 'x'"),
    ("crop_size", 99.5, "Re3Config field 'crop_size': expected int (like 227), got 99.5"),
    ("fc6_units", True, "Re3Config field 'fc6_units': expected int (like 2048), got True"),
])
def test_config_file_field_types(tmp_path, field, value, expect):
  cfg_file = tmp_path / "cfg.json"
  cfg_file.write_text(json.dumps({"base": "paper", field: value}))
  with pytest.raises(DataError, match=re.escape(f"{cfg_file}: {expect}")):
    convert.re3_config(str(cfg_file))
  assert convert.re3_config_from_dict({"base": "paper", "init_input_std": 64}).init_input_std == 64
