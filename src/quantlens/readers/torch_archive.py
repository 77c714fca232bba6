"""Read ``torch.save`` zip archives of plain tensors without importing torch.

``torch.save`` (PyTorch 1.6 and later) writes a zip archive whose ``<archive>/data.pkl`` is a
pickle in which every tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)``, and every storage is a persistent id ``("storage", torch.FloatStorage, key, location,
numel)`` naming the uncompressed entry ``<archive>/data/<key>``. ``<archive>/byteorder`` contains
``little`` or ``big`` (little when absent, as torch assumes).

This module unpickles ``data.pkl`` with an unpickler that accepts only dicts, OrderedDict,
tensors, parameters and the storage types below. It maps the archive into memory, so a tensor's
bytes are read only when its values are used. Loading never imports torch, which takes longer than
reading a 100 MB state_dict. Anything else raises NotPlainArchive, and the caller falls back to
``torch.load``: quantized tensors, other classes (which could run code), big-endian data,
compressed entries and entries that do not match the pickle.
"""

from __future__ import annotations

import codecs
import collections
import io
import math
import mmap
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Legacy storage class -> (numpy dtype of the stored bytes, torch dtype name).
STORAGE_TYPES = {
    "FloatStorage": ("<f4", "float32"),
    "DoubleStorage": ("<f8", "float64"),
    "HalfStorage": ("<f2", "float16"),
    "BFloat16Storage": ("<u2", "bfloat16"),
    "LongStorage": ("<i8", "int64"),
    "IntStorage": ("<i4", "int32"),
    "ShortStorage": ("<i2", "int16"),
    "CharStorage": ("i1", "int8"),
    "ByteStorage": ("u1", "uint8"),
    "BoolStorage": ("?", "bool"),
}
LOCAL_HEADER_SIZE = 30  # fixed part of a zip local file header, before the name and extra field


class NotPlainArchive(Exception):
    """The archive needs torch.load: it references other classes or stores data another way."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    numpy_dtype: str
    torch_dtype: str


@dataclass(frozen=True, slots=True)
class _Storage:
    data: np.ndarray
    torch_dtype: str


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """A tensor in a torch.save archive: torch dtype name, shape and its elements in the mapping.

    ``elements`` is a strided numpy view into the memory-mapped archive, so creating it reads
    nothing. bfloat16 elements are kept as their uint16 bit patterns.
    """

    dtype: str
    shape: tuple[int, ...]
    elements: np.ndarray

    def load(self) -> np.ndarray:
        """Return the values as numpy, bfloat16 widened to float32 as ``torch_tensors.to_numpy`` does."""
        if self.dtype == "bfloat16":
            return (self.elements.astype(np.uint32) << 16).view(np.float32)
        return self.elements


def _rebuild_tensor(storage: object, offset: object, size: object, stride: object, *_: object) -> StoredTensor:
    if not isinstance(storage, _Storage) or not _is_index(offset) or not _is_shape(size) or not _is_shape(stride):
        raise NotPlainArchive("a tensor is built from values of unexpected types")
    if len(size) != len(stride):  # type: ignore[arg-type]
        raise NotPlainArchive(f"a tensor has size {size} but stride {stride}")
    shape, steps = tuple(size), tuple(stride)  # type: ignore[arg-type]
    data = storage.data
    # The last element a view reaches must lie inside the storage, or numpy would read past it.
    if math.prod(shape) and offset + sum((n - 1) * s for n, s in zip(shape, steps)) >= data.size:  # type: ignore[operator]
        raise NotPlainArchive(f"a tensor of shape {shape} reaches past the end of its storage")
    strides = tuple(step * data.itemsize for step in steps)
    elements = np.lib.stride_tricks.as_strided(data[offset:], shape=shape, strides=strides)  # type: ignore[index]
    return StoredTensor(dtype=storage.torch_dtype, shape=shape, elements=elements)


def _rebuild_parameter(data: object, *_: object) -> object:
    return data


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_shape(value: object) -> bool:
    return isinstance(value, tuple) and all(_is_index(item) for item in value)


# Globals the unpickler may load. codecs.encode is how protocol 2 pickles bytes objects.
_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): codecs.encode,
    **{("torch", name): _StorageType(*types) for name, types in STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: _Archive) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise NotPlainArchive(f"the pickle references {module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise NotPlainArchive(f"unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_index(numel):
            raise NotPlainArchive(f"unknown storage {str(pid)[:80]}")
        if key not in self.storages:
            data = self.archive.entry_array(f"data/{key}", storage_type.numpy_dtype, numel)
            self.storages[key] = _Storage(data=data, torch_dtype=storage_type.torch_dtype)
        return self.storages[key]


class _Archive:
    """The memory-mapped zip file and the offsets of its stored entries."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            pickles = [info for info in infos if info.filename.rpartition("/")[2] == "data.pkl"]
            if len(pickles) != 1:
                raise NotPlainArchive(f"the archive has {len(pickles)} data.pkl entries")
            self.prefix = pickles[0].filename[: -len("data.pkl")]
            self.pickle = archive.read(pickles[0])
            byteorder = self.prefix + "byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise NotPlainArchive("the archive stores big-endian data")
        self.infos = {info.filename: info for info in infos}
        with path.open("rb") as handle:
            # Copy-on-write, like torch.load(mmap=True): the arrays are writable, the file never changes.
            self.mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)

    def entry_array(self, name: str, dtype: str, count: int) -> np.ndarray:
        """Return ``count`` elements of ``dtype`` at the start of the stored entry ``name``."""
        info = self.infos.get(self.prefix + name)
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            raise NotPlainArchive(f"entry {name!r} is missing or compressed")
        header = self.mapping[info.header_offset : info.header_offset + LOCAL_HEADER_SIZE]
        if len(header) != LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
            raise NotPlainArchive(f"entry {name!r} has no local file header")
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        start = info.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length
        size = np.dtype(dtype).itemsize * count
        if size > info.file_size or start + size > len(self.mapping):
            raise NotPlainArchive(f"entry {name!r} has {info.file_size} bytes, expected at least {size}")
        return np.frombuffer(self.mapping, dtype=dtype, count=count, offset=start)


def load_plain_archive(path: Path) -> object:
    """Unpickle a torch.save zip archive whose tensors are plain; raise NotPlainArchive otherwise.

    Returns the pickled object (a state_dict or a checkpoint dict) with StoredTensor in place of
    every tensor.
    """
    try:
        archive = _Archive(path)
        return _Unpickler(archive.pickle, archive).load()
    except NotPlainArchive:
        raise
    except Exception as error:  # noqa: BLE001  (a damaged pickle raises many types; torch.load then reports it)
        raise NotPlainArchive(f"{type(error).__name__}: {error}") from error
