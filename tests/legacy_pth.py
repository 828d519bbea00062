"""Write PyTorch's legacy (pre-zip) ``torch.save`` format without torch, for the reader's tests.

The layout is `_legacy_save`'s in ``torch/serialization.py``: three small pickles (magic number, protocol
version, system info), the state dict pickled with persistent ids for storages, the sorted storage keys, then
each storage as an int64 element count and its raw little-endian bytes. Tensor and storage globals are
written as ``torch._utils._rebuild_tensor_v2`` / ``torch.FloatStorage`` without importing torch.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
KINDS = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage", np.dtype("float16"): "HalfStorage"}


def _rebuild_tensor_v2():  # a stand-in: pickled by the name of torch's, never called
    raise AssertionError


_STORAGE_TYPES = {name: type(name, (), {}) for name in KINDS.values()}
_GLOBALS = {id(_rebuild_tensor_v2): b"torch._utils\n_rebuild_tensor_v2\n",
            **{id(t): f"torch\n{name}\n".encode() for name, t in _STORAGE_TYPES.items()}}


class _Storage:
    def __init__(self, key: str, array: np.ndarray, numel: int | None = None):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()
        self.numel = self.array.size if numel is None else numel
        self.kind = _STORAGE_TYPES[KINDS[self.array.dtype]]


class _Tensor:
    def __init__(self, storage: _Storage, shape, offset: int = 0, stride=None):
        self.storage, self.shape, self.offset = storage, tuple(shape), offset
        self.stride = stride if stride is not None else tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))

    def __reduce__(self):
        return _rebuild_tensor_v2, (self.storage, self.offset, self.shape, tuple(self.stride), False, OrderedDict())


class _Pickler(pickle._Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel, None)
        return None

    def save_global(self, obj, name=None):
        if id(obj) in _GLOBALS:
            self.write(pickle.GLOBAL + _GLOBALS[id(obj)])
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)  # functions are dispatched to the base class's save_global
    dispatch[type(_rebuild_tensor_v2)] = save_global


def legacy_bytes(tensors: dict, *, obj=None, magic: int = MAGIC_NUMBER, keys: list[str] | None = None) -> bytes:
    """The legacy file of a state dict `tensors` (name -> numpy array, or a `_Tensor`); `obj` replaces the
    pickled object (to write something other than a state dict), `keys` the storage key list."""
    storages: dict[str, _Storage] = {}
    state = OrderedDict()
    for i, (name, value) in enumerate(tensors.items()):
        if isinstance(value, _Tensor):
            state[name] = value
            storages[value.storage.key] = value.storage
        else:
            s = _Storage(str(1000 + i), value)
            storages[s.key] = s
            state[name] = _Tensor(s, value.shape)
    f = io.BytesIO()
    for head in (magic, 1001, {"protocol_version": 1001, "little_endian": True,
                               "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(head, f, protocol=2)
    _Pickler(f, protocol=2).dump(state if obj is None else obj)
    order = sorted(storages) if keys is None else keys
    pickle.dump(order, f, protocol=2)
    for key in sorted(storages):
        s = storages[key]
        f.write(int(s.numel).to_bytes(8, "little", signed=True))
        f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
    return f.getvalue()


def write_legacy(path: Path, tensors: dict, **kw) -> Path:
    path.write_bytes(legacy_bytes(tensors, **kw))
    return path
