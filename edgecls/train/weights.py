"""A torch-free reader of PyTorch's legacy (pre-zip) ``torch.save`` files: pretrained weights as numpy arrays.

The legacy layout (``torch/serialization.py``, ``_legacy_save``) is five things one after another:
three small pickles (the magic number ``0x1950a86a20f9469cfc6c``, the protocol version 1001, and a
dict of system info: byte order and type sizes), then the pickled object (here a state dict, an
``OrderedDict`` of name -> tensor) whose tensors refer to their storages by persistent id
``('storage', storage type, key, location, element count, view)``, then a pickled list of the
storage keys, then for each key in that order an int64 element count and the storage's raw bytes.

The object is read by an unpickler that resolves only the few globals a state dict needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage types, each mapped
to a harmless stand-in here): any other global (``os.system``, ``builtins.eval``, a class of some
package) is refused before it is resolved, so a hostile file cannot run code. Every failure —
a truncated or damaged file, a refused global, a tensor outside its storage, a file of the wrong
kind — is one `EdgeclsError` naming the file.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: storage type name -> little-endian numpy dtype
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}
MAX_DIMS = 8


class WeightsError(EdgeclsError):
    """A weights file that is not what it should be (damaged, truncated, unexpected content)."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lies, checks nothing yet."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage reference")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= MAX_DIMS
            and all(isinstance(v, int) and v >= 0 for v in size + stride)
            and isinstance(storage_offset, int) and storage_offset >= 0):
        raise pickle.UnpicklingError("a tensor with a malformed size, stride or offset")
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks")
    return _TensorRef(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict needs; storages come back as `_Storage` records.

    Every object a global resolves to is made for this unpickler: a pickle can change the objects it
    is given (its BUILD opcode sets their attributes), so a refused file must not leave a changed
    storage type or rebuild function behind for the next file read in the same process."""

    def __init__(self, f, storages: dict[str, _Storage]):
        super().__init__(f)
        self.storages = storages

        def rebuild(*args, **kwargs):
            return _rebuild_tensor_v2(*args, **kwargs)

        kinds = {name: _StorageType(name) for name in STORAGE_DTYPES}
        self._kind_names = {id(k): name for name, k in kinds.items()}  # by identity: a changed .name is ignored
        self._kinds = kinds
        self.allowed = {("collections", "OrderedDict"): OrderedDict,
                        ("torch._utils", "_rebuild_tensor_v2"): rebuild,
                        **{("torch", name): k for name, k in kinds.items()}}

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (a state dict of tensors needs only "
                                         "OrderedDict, _rebuild_tensor_v2 and storage types)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:60]}")
        _, kind, key, _location, numel, view = pid
        kind_name = self._kind_names.get(id(kind))
        if kind_name is None or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage reference {str(pid)[:60]}")
        if view is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        dtype = np.dtype(STORAGE_DTYPES[kind_name])
        known = self.storages.setdefault(key, _Storage(key, dtype, numel))
        if (known.dtype, known.numel) != (dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} is referenced with two different types or sizes")
        return known


def _load(f, storages: dict[str, _Storage]):
    return _Unpickler(f, storages).load()


def _tensor(ref: _TensorRef, name: str) -> np.ndarray:
    s = ref.storage
    if any(d == 0 for d in ref.shape):
        return np.zeros(ref.shape, s.dtype)
    last = ref.offset + sum((d - 1) * st for d, st in zip(ref.shape, ref.stride))
    if last >= s.numel:
        raise pickle.UnpicklingError(f"tensor {name} reaches element {last} of a storage of {s.numel}")
    count = int(np.prod(ref.shape, dtype=object))
    if count > s.numel - ref.offset or any(st == 0 and d > 1 for d, st in zip(ref.shape, ref.stride)):
        # a state dict's tensors never repeat elements: a zero stride (or more elements than the storage
        # holds) would let a few bytes claim gigabytes once copied
        raise pickle.UnpicklingError(f"tensor {name} of shape {ref.shape} claims more elements than its storage "
                                     f"of {s.numel} holds (zero or overlapping strides)")
    if not ref.shape:  # a scalar (batch-norm's num_batches_tracked)
        return np.array(s.data[ref.offset])
    strides = tuple(st * s.dtype.itemsize for st in ref.stride)
    view = np.lib.stride_tricks.as_strided(s.data[ref.offset:], ref.shape, strides, writeable=False)
    return np.ascontiguousarray(view)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy ``torch.save`` state dict as name -> numpy array (little-endian, contiguous copies).

    Args:
        path: the ``.pth`` file.

    Raises:
        WeightsError: the file is missing, truncated or damaged, is a zip-format (torch >= 1.6) file,
            names a global other than the few a state dict needs, or holds anything but tensors.

    Example:
        >>> sd = read_state_dict("efficientnet-lite0-57934424.pth")  # doctest: +SKIP
        >>> sd["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({e.strerror or e})") from e
    if raw[:4] == b"PK\x03\x04":
        raise WeightsError(f"{path}: a zip-format (torch >= 1.6) checkpoint; only the legacy format is read")
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    try:
        magic, protocol, info = _load(f, storages), _load(f, storages), _load(f, storages)
        if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
            raise pickle.UnpicklingError("not a legacy torch.save file (bad magic number or protocol)")
        if not isinstance(info, dict) or not info.get("little_endian"):
            raise pickle.UnpicklingError("saved on a big-endian machine (not supported)")
        obj = _load(f, storages)
        keys = _load(f, storages)
        if not isinstance(keys, list) or sorted(keys) != sorted(storages) or len(set(keys)) != len(keys):
            raise pickle.UnpicklingError("the storage key list does not match the storages the tensors use")
        for key in keys:
            s = storages[key]
            head = f.read(8)
            if len(head) < 8:
                raise EOFError
            numel = int.from_bytes(head, "little", signed=True)
            if numel != s.numel:
                raise pickle.UnpicklingError(f"storage {key} holds {numel} elements, its reference says {s.numel}")
            body = f.read(numel * s.dtype.itemsize)
            if len(body) < numel * s.dtype.itemsize:
                raise EOFError
            s.data = np.frombuffer(body, s.dtype)
        if f.read(1):
            raise pickle.UnpicklingError("bytes after the last storage")
        if not isinstance(obj, dict) or not obj:
            raise pickle.UnpicklingError(f"expected a state dict of tensors, found {type(obj).__name__}")
        out = {}
        for name, ref in obj.items():
            if not isinstance(name, str) or not isinstance(ref, _TensorRef):
                raise pickle.UnpicklingError(f"entry {str(name)[:60]!r} is not a named tensor")
            out[name] = _tensor(ref, name)
        return out
    except EOFError:
        raise WeightsError(f"{path}: truncated weights file (ends at byte {len(raw)} before its last "
                           "tensor); reinstall the package that provides it") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError) as e:
        raise WeightsError(f"{path}: damaged or unexpected weights file ({e})") from None


def check_shapes(state: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], where: str | Path,
                 ignore: tuple[str, ...] = ()) -> None:
    """Refuse a state dict that has not exactly the `expected` tensors (names and shapes), besides `ignore`d
    suffixes (e.g. ``num_batches_tracked``). The message names the file and the first difference."""
    names = {n for n in state if not n.endswith(ignore)}
    missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or extra:
        what = (f"missing {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                if missing else f"unexpected tensor {extra[0]}" + (f" (and {len(extra) - 1} more)"
                                                                   if len(extra) > 1 else ""))
        raise WeightsError(f"{where}: not the expected weights: {what}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise WeightsError(f"{where}: not the expected weights: {name} has shape {tuple(state[name].shape)}, "
                               f"expected {tuple(shape)}")
        if state[name].dtype.kind == "f" and not np.isfinite(state[name]).all():
            raise WeightsError(f"{where}: not the expected weights: {name} has NaN or infinite values")
