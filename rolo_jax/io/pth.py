"""Read (and write) PyTorch ``.pth`` state_dicts without PyTorch.

Supported on reading (`load_state_dict`, `load_pth`):

* The zip format written by ``torch.save`` since torch 1.6 (the default since then): a zip archive
  with one top-level folder (any name; torch uses ``archive`` or the file's stem) holding
  ``data.pkl`` (the pickled object), ``data/<key>`` (one raw storage per key, stored or deflated),
  optionally ``byteorder`` (``little``/``big``; absent means little-endian) and ``version``.
* The legacy non-zip format of torch < 1.6 (``torch.save(..., _use_new_zipfile_serialization=False)``):
  pickles of the magic number, protocol version 1001 and system info, then the object pickle, then
  the list of storage keys, then per key an int64 element count and the raw bytes.  Storage views
  (``view_metadata``) are resolved.  The older tar format (torch < 0.4) is refused with a message
  asking for a re-save with torch >= 1.6.
* Tensors rebuilt by ``torch._utils._rebuild_tensor_v2`` (also ``_rebuild_tensor`` and, for saved
  ``nn.Parameter`` objects, ``_rebuild_parameter`` / ``_rebuild_parameter_with_state``), on dense
  CPU or CUDA storages (the location is ignored: arrays always land in host memory), with any
  storage offset and any non-negative strides (several tensors may share one storage).  A tensor
  that is its whole storage in row-major order is returned without a copy (writable; two such
  tensors on one storage share memory, as in torch); any other view is copied out C-contiguously.
* Storage types (legacy typed names and ``UntypedStorage``, module ``torch`` or ``torch.storage``):
  Float/Double/Half/BFloat16 (needs ``ml_dtypes``, which comes with jax), Long/Int/Short/Char/Byte,
  Bool, ComplexFloat/ComplexDouble, UntypedStorage (bytes: uint8).
* Containers: ``collections.OrderedDict``, plain dicts, lists, tuples, and plain values (ints,
  floats, strings, None) as plain pickle writes them.

Everything else (any other global: quantized or sparse tensors, ``torch.device``, pickled modules,
optimiser classes, numpy objects, arbitrary callables) is refused with a `DataError` naming the
global: the restricted ``pickle.Unpickler`` resolves no global outside the list above, so it never
imports a module or calls anything else, whatever the file says.

`save_state_dict` writes the same zip format (protocol-2 pickle written opcode by opcode, records
uncompressed and 64-byte aligned like torch's writer, ``byteorder`` = little), or with
``legacy=True`` the pre-1.6 format.  numpy views of one base array are written as views of one
shared storage (offset and strides kept), everything else as its own contiguous storage.  Checked
against torch 2.13 (CPU): ``torch.load`` (weights_only True and False, and ``mmap=True`` for the zip
format) reads both, with the views' strides, offsets and shared storages intact; and this reader
reads torch 2.13's own zip and legacy files (float32/16, bfloat16, int64, uint8, bool, views,
transposes, 0-d and empty tensors, nested dicts, saved Parameters).
"""
from __future__ import annotations

import collections
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, Dict, Mapping

import numpy as np

from rolo_jax.errors import DataError

__all__ = ["load_state_dict", "load_pth", "save_state_dict", "storage_dtypes"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _bfloat16():
  try:
    import ml_dtypes  # pylint: disable=import-outside-toplevel
  except ImportError:  # pragma: no cover - ml_dtypes comes with jax
    return None
  return np.dtype(ml_dtypes.bfloat16)


def storage_dtypes() -> Dict[str, np.dtype]:
  """Storage class name -> numpy dtype for every storage type the reader accepts."""
  table = {
      "FloatStorage": np.dtype(np.float32),
      "DoubleStorage": np.dtype(np.float64),
      "HalfStorage": np.dtype(np.float16),
      "LongStorage": np.dtype(np.int64),
      "IntStorage": np.dtype(np.int32),
      "ShortStorage": np.dtype(np.int16),
      "CharStorage": np.dtype(np.int8),
      "ByteStorage": np.dtype(np.uint8),
      "BoolStorage": np.dtype(np.bool_),
      "ComplexFloatStorage": np.dtype(np.complex64),
      "ComplexDoubleStorage": np.dtype(np.complex128),
      "UntypedStorage": np.dtype(np.uint8),
  }
  bf16 = _bfloat16()
  if bf16 is not None:
    table["BFloat16Storage"] = bf16
  return table


class _Refused(Exception):
  """Raised inside the unpickler; turned into a DataError naming the file."""


class _StorageType:
  """Stand-in for a torch storage class in a pickle (carries the element dtype)."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name = name
    self.dtype = dtype

  def __repr__(self):
    return f"torch.{self.name}"


class _Storage:
  """One storage record: dtype, element count and (once read) its flat data."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key = key
    self.dtype = dtype
    self.numel = int(numel)
    self.data: np.ndarray | None = None


class _StorageView:
  """Legacy format: a storage that is a window on another (root) storage."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root = root
    self.offset = int(offset)
    self.numel = int(numel)
    self.dtype = root.dtype


class _TensorRef:
  """A tensor found in the pickle, materialised once the storages are read."""

  def __init__(self, storage, offset, size, stride):
    if not isinstance(storage, (_Storage, _StorageView)):
      raise _Refused(f"tensor rebuilt from {type(storage).__name__}, expected a storage")
    self.storage = storage
    self.offset = int(offset)
    self.size = tuple(int(s) for s in size)
    self.stride = tuple(int(s) for s in stride)
    if len(self.size) != len(self.stride):
      raise _Refused(f"tensor with size {self.size} but stride {self.stride}")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


_REBUILDERS = {
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only the globals a state_dict needs; storages via persistent ids."""

  def __init__(self, file, persistent_load):
    super().__init__(file)
    self._persistent_load = persistent_load
    self._storage_types = storage_dtypes()

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name in _REBUILDERS:
      return _REBUILDERS[name]
    if module in ("torch", "torch.storage", "torch.cuda") and name in self._storage_types:
      return _StorageType(name, self._storage_types[name])
    if module in ("torch", "torch.cuda") and name == "BFloat16Storage":
      raise _Refused("bfloat16 tensors need the ml_dtypes package (installed with jax)")
    hint = ""
    if module.startswith("torch.nn"):
      hint = " (the file holds a pickled nn.Module: save and load model.state_dict() instead)"
    raise _Refused(
        f"refusing to unpickle global '{module}.{name}': only tensors (torch._utils._rebuild_tensor_v2"
        f", _rebuild_parameter), torch storage types and collections.OrderedDict are allowed{hint}")

  def persistent_load(self, pid):
    return self._persistent_load(pid)


def _unpickle(data_or_file, persistent_load):
  import io  # pylint: disable=import-outside-toplevel
  f = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
  return _RestrictedUnpickler(f, persistent_load).load()


def _no_persistent(pid):
  raise _Refused(f"unexpected persistent id {pid!r}")


def _check_storage_pid(pid, expected_len):
  if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
    raise _Refused(f"unsupported persistent id {pid!r} (only 'storage' records are supported)")
  if len(pid) != expected_len:
    raise _Refused(f"storage persistent id with {len(pid)} fields, expected {expected_len}: {pid!r}")
  if not isinstance(pid[1], _StorageType):
    raise _Refused(f"storage persistent id without a storage type: {pid!r}")


def _materialise(ref: _TensorRef, what: str) -> np.ndarray:
  st = ref.storage
  base_offset = 0
  if isinstance(st, _StorageView):
    base_offset, limit, st = st.offset, st.numel, st.root
  else:
    limit = st.numel
  flat = st.data
  if flat is None:
    raise _Refused(f"{what}: storage {st.key!r} was never read")
  if any(s < 0 for s in ref.size):
    raise _Refused(f"{what}: negative size {ref.size}")
  if any(s < 0 for s in ref.stride):
    raise _Refused(f"{what}: negative stride {ref.stride}")
  if any(s == 0 for s in ref.size):
    return np.zeros(ref.size, dtype=flat.dtype.newbyteorder("="))
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  if ref.offset < 0 or last >= limit:
    raise _Refused(f"{what}: size {ref.size}, stride {ref.stride}, offset {ref.offset} reads element "
                   f"{last} of a storage with {limit} elements")
  window = flat[base_offset:base_offset + limit]
  item = window.dtype.itemsize
  if (ref.offset == 0 and int(np.prod(ref.size)) == limit and window.dtype.isnative
      and ref.stride == _contiguous_strides(ref.size)):
    return window.reshape(ref.size)  # the whole storage, row-major: no copy
  view = np.lib.stride_tricks.as_strided(
      window[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride),
      writeable=False)
  return np.array(view, dtype=window.dtype.newbyteorder("="), order="C")


def _contiguous_strides(size) -> tuple:
  strides, acc = [], 1
  for n in reversed(size):
    strides.append(acc)
    acc *= n
  return tuple(reversed(strides))


def _resolve(obj, what="") -> Any:
  """Replace every _TensorRef in a loaded tree with its numpy array."""
  if isinstance(obj, _TensorRef):
    return _materialise(obj, what or "tensor")
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _resolve(v, f"{what}.{k}" if what else str(k))
    if isinstance(obj, collections.OrderedDict) and getattr(obj, "_metadata", None) is not None:
      out._metadata = obj._metadata  # pylint: disable=protected-access
    return out
  if isinstance(obj, list):
    return [_resolve(v, f"{what}[{i}]") for i, v in enumerate(obj)]
  if isinstance(obj, tuple):
    return tuple(_resolve(v, f"{what}[{i}]") for i, v in enumerate(obj))
  if isinstance(obj, (_Storage, _StorageView, _StorageType)):
    raise _Refused(f"{what or 'object'}: bare storages are not supported, only tensors")
  return obj


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise DataError(path, f"zip archive is not a torch.save file: expected one '<folder>/data.pkl', "
                      f"found {len(pkl)} (records: {names[:5]}{' ...' if len(names) > 5 else ''})")
    prefix = pkl[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise DataError(path, f"byteorder record says {byteorder!r}, expected 'little' or 'big'")
    storages: Dict[str, _Storage] = {}

    def persistent_load(pid):
      _check_storage_pid(pid, 5)
      _, stype, key, _location, numel = pid
      key = str(key)
      if key in storages:
        return storages[key]
      name = f"{prefix}data/{key}"
      if name not in names:
        raise _Refused(f"storage record '{name}' is missing from the archive")
      dtype = stype.dtype.newbyteorder("<" if byteorder == "little" else ">")
      size = zf.getinfo(name).file_size
      if size != int(numel) * dtype.itemsize:
        raise _Refused(f"storage record '{name}' has {size} bytes, expected {numel} x "
                       f"{dtype.itemsize} for {stype!r}")
      raw = bytearray(size)  # writable, read once (a 600 MB fc6 is not copied again)
      with zf.open(name) as fh:
        if fh.readinto(raw) != size:
          raise _Refused(f"storage record '{name}' is truncated")
      st = _Storage(key, dtype, numel)
      st.data = np.frombuffer(raw, dtype=dtype)
      storages[key] = st
      return st

    tree = _unpickle(zf.read(pkl[0]), persistent_load)
  return _resolve(tree)


def _load_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    try:
      magic = _unpickle(f, _no_persistent)
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
      raise DataError(path, f"not a PyTorch file (neither a zip archive nor a legacy pickle): {e}")
    if magic != _LEGACY_MAGIC:
      raise DataError(path, "not a PyTorch file: a pickle without torch's magic number (a plain pickle, "
                      "not torch.save output)")
    protocol = _unpickle(f, _no_persistent)
    if protocol != _LEGACY_PROTOCOL:
      raise DataError(path, f"legacy torch file with protocol {protocol!r}, expected {_LEGACY_PROTOCOL}")
    sys_info = _unpickle(f, _no_persistent)
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    roots: Dict[str, _Storage] = {}

    def persistent_load(pid):
      _check_storage_pid(pid, 6)
      _, stype, root_key, _location, numel, view_metadata = pid
      root_key = str(root_key)
      if root_key not in roots:
        dtype = stype.dtype.newbyteorder("<" if little else ">")
        roots[root_key] = _Storage(root_key, dtype, numel)
      root = roots[root_key]
      if view_metadata is None:
        return root
      _view_key, offset, view_size = view_metadata
      return _StorageView(root, offset, view_size)

    tree = _unpickle(f, persistent_load)
    keys = _unpickle(f, _no_persistent)
    for key in keys:
      key = str(key)
      if key not in roots:
        raise _Refused(f"storage {key!r} listed but never referenced")
      st = roots[key]
      head = f.read(8)
      if len(head) != 8:
        raise _Refused(f"file ends before storage {key!r}")
      numel = struct.unpack("<q" if little else ">q", head)[0]
      if numel < 0:
        raise _Refused(f"storage {key!r} has a negative element count {numel}")
      nbytes = numel * st.dtype.itemsize
      raw = bytearray(nbytes)
      got = f.readinto(raw)
      if got != nbytes:
        raise _Refused(f"file ends inside storage {key!r} ({got} of {nbytes} bytes)")
      st.numel = numel  # the file's count is authoritative
      st.data = np.frombuffer(raw, dtype=st.dtype)
  return _resolve(tree)


def load_pth(path: os.PathLike | str) -> Any:
  """Load a ``torch.save`` file into plain Python: tensors become numpy arrays.

  Args:
    path: a ``.pth``/``.pt`` file (zip format of torch >= 1.6, or the legacy pickle format).
  Returns:
    The saved object with every tensor replaced by a writable, C-contiguous, native-byte-order
    numpy array of the tensor's dtype and shape (OrderedDicts, dicts, lists, tuples and plain values kept).
  Raises:
    DataError: the file is missing a record, is not a torch file, or holds anything besides tensors
      and containers (the message names the refused global).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  if os.path.isdir(path):
    raise DataError(path, "is a folder, expected a .pth file")
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    with open(path, "rb") as f:
      head = f.read(4)
    if head == b"PK\x03\x04":  # a zip's first record, but no central directory at the end
      raise DataError(path, f"starts like a PyTorch zip file (torch >= 1.6) but its end is missing "
                            f"({os.path.getsize(path)} bytes): truncated, e.g. an interrupted "
                            "download or copy?")
    if tarfile.is_tarfile(path):
      raise DataError(path, "legacy tar format of torch < 0.4 is not supported: re-save it with "
                      "torch >= 1.6 (torch.save(torch.load(f), f2))")
    return _load_legacy(path)
  except _Refused as e:
    raise DataError(path, str(e)) from None
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
    raise DataError(path, f"corrupt PyTorch file: {type(e).__name__}: {e}") from None


def load_state_dict(path: os.PathLike | str) -> Dict[str, np.ndarray]:
  """Load a state_dict (name -> array) from a ``.pth`` file without PyTorch.

  Nested mappings are flattened with dots (``{'state_dict': {'fc6.weight': W}}`` gives
  ``'state_dict.fc6.weight'``); non-tensor entries (an ``'epoch'`` counter, hyper-parameters) are
  left out.

  Returns:
    dict name -> numpy array (dtype and shape as saved), in file order.
  Raises:
    DataError: see `load_pth`; also when the file holds no mapping or no tensor at all.
  """
  obj = load_pth(path)
  if not isinstance(obj, Mapping):
    raise DataError(path, f"expected a state_dict (a mapping of names to tensors), found {type(obj).__name__}")
  out: Dict[str, np.ndarray] = {}

  def walk(prefix, m):
    for k, v in m.items():
      name = f"{prefix}{k}"
      if isinstance(v, np.ndarray):
        out[name] = v
      elif isinstance(v, Mapping):
        walk(name + ".", v)

  walk("", obj)
  if not out:
    raise DataError(path, "the file holds a mapping but no tensors")
  return out


# ----------------------------------------------------------------------------------------------
# Writer.

def _writer_storage_names() -> Dict[np.dtype, str]:
  return {dt: name for name, dt in storage_dtypes().items() if name != "UntypedStorage"}


class _PickleWriter:
  """Just enough protocol-2 pickle opcodes to write a state_dict the way torch does."""

  def __init__(self):
    self.parts = [b"\x80\x02"]  # PROTO 2

  def global_(self, module: str, name: str):
    self.parts.append(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

  def str_(self, s: str):
    b = s.encode("utf-8")
    self.parts.append(b"X" + struct.pack("<I", len(b)) + b)

  def int_(self, x: int):
    x = int(x)
    if 0 <= x < 256:
      self.parts.append(b"K" + bytes([x]))
    elif -(2 ** 31) <= x < 2 ** 31:
      self.parts.append(b"J" + struct.pack("<i", x))
    else:
      n = (x.bit_length() + 8) // 8
      self.parts.append(b"\x8a" + bytes([n]) + x.to_bytes(n, "little", signed=True))

  def bool_(self, b: bool):
    self.parts.append(b"\x88" if b else b"\x89")

  def int_tuple(self, xs):
    if not xs:
      self.parts.append(b")")  # EMPTY_TUPLE
      return
    self.parts.append(b"(")  # MARK
    for x in xs:
      self.int_(x)
    self.parts.append(b"t")  # TUPLE

  def ordered_dict(self):
    self.global_("collections", "OrderedDict")
    self.parts.append(b")R")  # EMPTY_TUPLE REDUCE

  def raw(self, b: bytes):
    self.parts.append(b)

  def getvalue(self) -> bytes:
    return b"".join(self.parts + [b"."])  # STOP


def _storage_of(a: np.ndarray):
  """(root array to store, element offset, element strides) — a view keeps its base's storage."""
  root = a
  while isinstance(root.base, np.ndarray):
    root = root.base
  item = a.dtype.itemsize
  if (root is not a and root.dtype == a.dtype and root.flags.c_contiguous and a.size > 0
      and all(s >= 0 and s % item == 0 for s in a.strides)):
    delta = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    if delta >= 0 and delta % item == 0:
      return root, delta // item, tuple(s // item for s in a.strides)
  c = a.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
  strides = [0] * c.ndim
  acc = 1
  for i in range(c.ndim - 1, -1, -1):
    strides[i] = acc
    acc *= c.shape[i]
  return c, 0, tuple(strides)


def _state_dict_pickle(tensors: Mapping[str, np.ndarray], legacy: bool):
  """(protocol-2 pickle of the OrderedDict of tensors, [(key, root array)]) as torch.save writes it.

  Each tensor is ``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` with the
  storage as a persistent id ``('storage', torch.<Type>Storage, key, 'cpu', numel)`` (zip format)
  or ``(..., numel, None)`` (legacy format: the last field is the view metadata).
  """
  names = _writer_storage_names()
  roots: Dict[int, tuple] = {}  # id(root) -> (key, root array)
  pw = _PickleWriter()
  pw.ordered_dict()
  pw.raw(b"(")  # MARK for SETITEMS
  for name, value in tensors.items():
    a = np.asarray(value)
    dt = a.dtype.newbyteorder("=")
    if dt not in names:
      raise ValueError(f"{name}: dtype {a.dtype} has no torch storage type")
    root, offset, strides = _storage_of(a)
    if id(root) not in roots:
      roots[id(root)] = (str(len(roots)), root)
    key = roots[id(root)][0]
    pw.str_(str(name))
    pw.global_("torch._utils", "_rebuild_tensor_v2")
    pw.raw(b"(")  # MARK args
    pw.raw(b"(")  # MARK persistent id tuple
    pw.str_("storage")
    pw.global_("torch", names[dt])
    pw.str_(key)
    pw.str_("cpu")
    pw.int_(root.size)
    if legacy:
      pw.raw(b"N")  # NONE: no view metadata
    pw.raw(b"tQ")  # TUPLE, BINPERSID
    pw.int_(offset)
    pw.int_tuple(a.shape)
    pw.int_tuple(strides)
    pw.bool_(False)
    pw.ordered_dict()
    pw.raw(b"tR")  # TUPLE, REDUCE
  pw.raw(b"u")  # SETITEMS
  return pw.getvalue(), list(roots.values())


def _little_bytes(root: np.ndarray) -> memoryview:
  flat = root.astype(root.dtype.newbyteorder("<"), order="C", copy=False).reshape(-1)
  return memoryview(flat.view(np.uint8))


def save_state_dict(path: os.PathLike | str, tensors: Mapping[str, np.ndarray], *,
                    legacy: bool = False) -> None:
  """Write name -> array as a ``.pth`` file that ``torch.load`` reads (weights_only or not).

  Each value becomes a CPU tensor of the same dtype and shape (float32/64/16, bfloat16, int64/32/16/8,
  uint8, bool, complex64/128).  Arrays that are views of one numpy base array share one storage
  record, with their offsets and strides (as torch views do); others get their own contiguous
  storage.  Default layout (torch >= 1.6 zip format): ``archive/data.pkl``, ``archive/data/<i>``,
  ``archive/byteorder`` (``little``), ``archive/version`` (``3``), ``archive/.data/version``; records
  uncompressed, their data aligned to 64 bytes (so ``torch.load(mmap=True)`` works too).
  ``legacy=True`` writes the pre-1.6 pickle-stream format instead (for testing that reader).
  """
  data_pkl, roots = _state_dict_pickle(tensors, legacy)
  if legacy:
    with open(os.fspath(path), "wb") as f:
      for obj in (_LEGACY_MAGIC, _LEGACY_PROTOCOL,
                  {"protocol_version": _LEGACY_PROTOCOL, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        f.write(pickle.dumps(obj, protocol=2))
      f.write(data_pkl)
      f.write(pickle.dumps([key for key, _ in roots], protocol=2))
      for _, root in roots:
        f.write(struct.pack("<q", root.size))
        f.write(_little_bytes(root))
    return
  records = [("data.pkl", data_pkl), ("byteorder", b"little")]
  records += [(f"data/{key}", _little_bytes(root)) for key, root in roots]
  records += [("version", b"3\n"), (".data/version", b"3\n")]
  with open(os.fspath(path), "wb") as f:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
      for rec, data in records:
        arcname = "archive/" + rec
        nbytes = len(data) if isinstance(data, bytes) else data.nbytes
        zinfo = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        zinfo.compress_type = zipfile.ZIP_STORED
        zinfo.file_size = nbytes
        zip64 = nbytes * 1.05 > zipfile.ZIP64_LIMIT
        # Local header: 30 bytes + name + extra (+ 20 bytes of zip64 sizes); pad the extra so the
        # data starts on a 64-byte boundary, with torch's 'FB' extra-field id.
        start = f.tell() + 30 + len(arcname.encode()) + 4 + (20 if zip64 else 0)
        pad = (-start) % 64
        zinfo.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        with zf.open(zinfo, "w", force_zip64=zip64) as out:
          out.write(data)
