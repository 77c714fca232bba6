"""Read TorchScript archives without importing torch.

``import torch`` takes about a second here, longer than reading a ResNet-50-sized archive. A
TorchScript archive's ``data.pkl`` is a pickle of the module tree. Each module is an object of a
``__torch__.<path>.<Class>`` class whose state is a dict of attributes. Tensors are
``torch._utils._rebuild_tensor_v2`` and ``_rebuild_qtensor`` calls on storages in ``data/``.
``code/`` contains each class's source, whose ``__parameters__`` and ``__buffers__`` lines name
the attributes that are parameters and buffers.

This module unpickles that file with placeholder classes and reads the same layers and tensors
that ``torch.jit.load`` plus ``torch_modules.layers_from_module`` give: module order, class
names as op types, packed weights and biases of quantized Linear and ConvNd modules, their
output scale and zero_point, parameters and buffers. Quantized values are dequantized as torch
does, ``float32(scale) * (q - zero_point)``. Anything else (other classes with a custom
``__getstate__``, unknown globals, compressed or big-endian archives) raises NotReadable, and
the caller uses ``torch.jit.load``.
"""

from __future__ import annotations

import functools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.readers import torch_archive
from quantlens.readers.torch_archive import StoredTensor
from quantlens.readers.torch_modules import INPUT_EXTRA_FILE, PACKED_PARAMS, state_dict_key
from quantlens.readers.torch_tensors import build_layers, input_spec_from_metadata, role_for_key, scalar_record
from quantlens.records import INTEGER_RANGES, Layer, Model, Quantization, Role, Tensor

# Quantized storage class -> integer type of its elements.
_QUANTIZED_STORAGES = {"QInt8Storage": "int8", "QUInt8Storage": "uint8", "QInt32Storage": "int32"}
_PER_TENSOR = ("per_tensor_affine", "per_tensor_symmetric")
_PER_CHANNEL = ("per_channel_affine", "per_channel_symmetric")

# torch.ao quantized ConvNd modules pickle this 15-item tuple (their __getstate__): the weight is
# item 10, the bias item 11, the output scale and zero_point items 12 and 13.
_CONV_STATE_LENGTH = 15
_CONV_CLASSES = frozenset(
    {"Conv1d", "Conv2d", "Conv3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "ConvAdd2d", "ConvAddReLU2d"}
)


class NotReadable(Exception):
    """The archive contains something this reader does not interpret; use torch.jit.load."""


class _ScriptObject:
    """A pickled TorchScript object: its class's qualified name and the state pickle gave it."""

    qualified_name = ""
    state: Any = None

    def __new__(cls, *args: Any) -> _ScriptObject:  # noqa: ARG004  (NEWOBJ passes the class's args)
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def class_name(self) -> str:
        return self.qualified_name.rpartition(".")[2]


@functools.cache
def _script_class(module: str, name: str) -> type[_ScriptObject]:
    return type(name, (_ScriptObject,), {"qualified_name": f"{module}.{name}"})


class _QuantizedTensor:
    """A quantized tensor from ``_rebuild_qtensor``: integer elements and torch's quantizer params."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, params: Any, *_: Any) -> None:
        if not isinstance(storage, torch_archive._Storage) or storage.torch_dtype not in _QUANTIZED_STORAGES.values():
            raise NotReadable("a quantized tensor has a storage of an unexpected type")
        self.codes = torch_archive._rebuild_tensor(storage, offset, size, stride)
        if not isinstance(params, tuple) or not params or params[0] not in (*_PER_TENSOR, *_PER_CHANNEL):
            raise NotReadable(f"unsupported quantizer parameters {str(params)[:80]}")
        self.params = params

    def quantization(self) -> Quantization:
        storage = self.codes.dtype
        qmin, qmax = INTEGER_RANGES[storage]
        if self.params[0] in _PER_TENSOR:
            _, scale, zero_point = self.params
            return Quantization(
                scale=np.float32(scale), zero_point=np.int64(zero_point), axis=None, qmin=qmin, qmax=qmax,
                storage_dtype=storage,
            )
        _, scales, zero_points, axis = self.params
        if not isinstance(scales, StoredTensor) or not isinstance(zero_points, StoredTensor):
            raise NotReadable("per-channel scales or zero points are not tensors")
        return Quantization(
            scale=np.asarray(scales.load(), dtype=np.float64),
            zero_point=np.asarray(zero_points.load(), dtype=np.int64),
            axis=int(axis),
            qmin=qmin,
            qmax=qmax,
            storage_dtype=storage,
        )


def _codes(tensor: _QuantizedTensor) -> np.ndarray:
    return np.array(tensor.codes.elements)


def _dequantized(tensor: _QuantizedTensor, quantization: Quantization) -> np.ndarray:
    codes = tensor.codes.elements.astype(np.int32)
    scale = np.asarray(quantization.scale, dtype=np.float32)
    zero_point = np.asarray(quantization.zero_point, dtype=np.int32)
    if quantization.axis is not None:
        shape = [1] * codes.ndim
        shape[quantization.axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return (scale * (codes - zero_point).astype(np.float32)).astype(np.float32)


def _identity(value: Any, *_: Any) -> Any:
    return value


# torch.jit._pickle functions that rebuild typed lists and restore a value's type tag: for
# reading, each returns its first argument.
_JIT_PICKLE = frozenset(
    {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_genericlist", "restore_type_tag"}
)


class _Unpickler(torch_archive._Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _script_class(module, name)
        if module == "torch.jit._pickle" and name in _JIT_PICKLE:
            return _identity
        if (module, name) == ("torch._utils", "_rebuild_qtensor"):
            return _QuantizedTensor
        if module == "torch" and name in (*_PER_TENSOR, *_PER_CHANNEL):
            return name
        if module == "torch" and name in _QUANTIZED_STORAGES:
            storage = _QUANTIZED_STORAGES[name]
            return torch_archive._StorageType(np.dtype(storage).newbyteorder("<").str, storage)
        try:
            return super().find_class(module, name)
        except torch_archive.NotPlainArchive as reason:
            raise NotReadable(str(reason)) from reason


class _Classes:
    """``__parameters__`` and ``__buffers__`` of each class, from the archive's code/ sources."""

    _CLASS = re.compile(r"^class (\w+)\(", re.MULTILINE)
    _NAMES = re.compile(r'^  (__parameters__|__buffers__) = \[(.*)\]$', re.MULTILINE)

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._cache: dict[str, dict[str, dict[str, list[str]]]] = {}

    def members(self, qualified_name: str) -> dict[str, list[str]]:
        """Return the attribute names of a ``__torch__`` class, by ``__parameters__`` and ``__buffers__``."""
        module, _, name = qualified_name.rpartition(".")
        if module not in self._cache:
            source_name = f"{self._prefix}code/{module.replace('.', '/')}.py"
            try:
                source = self._archive.read(source_name).decode("utf-8")
            except KeyError as error:
                raise NotReadable(f"no source {source_name} for class {qualified_name}") from error
            self._cache[module] = self._parse(source)
        found = self._cache[module].get(name)
        if found is None:
            raise NotReadable(f"class {qualified_name} is not defined in its source file")
        return found

    def _parse(self, source: str) -> dict[str, dict[str, list[str]]]:
        classes: dict[str, dict[str, list[str]]] = {}
        starts = [(match.start(), match.group(1)) for match in self._CLASS.finditer(source)]
        for index, (start, name) in enumerate(starts):
            end = starts[index + 1][0] if index + 1 < len(starts) else len(source)
            body = source[start:end]
            members = {"__parameters__": [], "__buffers__": []}
            for match in self._NAMES.finditer(body):
                members[match.group(1)] = re.findall(r'"([^"]*)"', match.group(2))
            classes[name] = members
        return classes


def read_torchscript_archive(path: Path, *, extra_file_names: list[str]) -> Model:
    """Read a TorchScript archive's layers without torch; raise NotReadable when it cannot."""
    try:
        archive = torch_archive._Archive(path)
        root = _Unpickler(archive.pickle, archive).load()
        with zipfile.ZipFile(path) as handle:
            classes = _Classes(handle, archive.prefix)
            if not isinstance(root, _ScriptObject):
                raise NotReadable("the pickled root is not a TorchScript module")
            layers = _layers(root, classes)
            metadata = {
                name: handle.read(f"{archive.prefix}extra/{name}").decode("utf-8", errors="replace")
                for name in extra_file_names
            }
    except NotReadable:
        raise
    except torch_archive.NotPlainArchive as reason:
        raise NotReadable(str(reason)) from reason
    except Exception as error:  # noqa: BLE001  (a damaged archive raises many types; torch.jit.load reports it)
        raise NotReadable(f"{type(error).__name__}: {error}") from error
    input_spec = input_spec_from_metadata(
        metadata.get(INPUT_EXTRA_FILE), path=path, where=f"extra file {INPUT_EXTRA_FILE}"
    )
    return Model(path=path, format="torchscript", layers=layers, input_spec=input_spec, metadata=metadata)


def _is_module(value: object) -> bool:
    return isinstance(value, _ScriptObject) and (
        (isinstance(value.state, dict) and "training" in value.state) or _is_conv_state(value)
    )


def _is_conv_state(value: _ScriptObject) -> bool:
    state = value.state
    return (
        value.class_name in _CONV_CLASSES
        and isinstance(state, tuple)
        and len(state) == _CONV_STATE_LENGTH
        and isinstance(state[10], _QuantizedTensor)
    )


def _named_modules(root: _ScriptObject) -> Iterator[tuple[str, _ScriptObject]]:
    """Yield modules depth first in attribute order, each object once, as ``named_modules()`` does."""
    seen: set[int] = set()
    stack: list[tuple[str, _ScriptObject]] = [("", root)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        yield name, module
        if isinstance(module.state, dict):
            children = []
            for attribute, value in module.state.items():
                if _is_module(value):
                    children.append((f"{name}.{attribute}" if name else attribute, value))
                elif isinstance(value, _ScriptObject) and attribute != PACKED_PARAMS:
                    raise NotReadable(f"attribute {attribute!r} of {name or 'the root'} is a {value.qualified_name}")
            stack.extend(reversed(children))


def _layers(root: _ScriptObject, classes: _Classes) -> tuple[Layer, ...]:
    grouped: dict[str, list[Tensor]] = {}
    op_types: dict[str, str] = {}
    for name, module in _named_modules(root):
        if name.rpartition(".")[2] == PACKED_PARAMS:
            continue
        tensors = _module_tensors(name, module, classes)
        is_leaf = not (isinstance(module.state, dict) and any(_is_module(value) for value in module.state.values()))
        if tensors or is_leaf:
            grouped[name] = tensors
            op_types[name] = module.class_name
    return build_layers(grouped, op_types)


def _module_tensors(name: str, module: _ScriptObject, classes: _Classes) -> list[Tensor]:
    if _is_conv_state(module):
        state = module.state
        if state[11] is not None and not isinstance(state[11], StoredTensor):
            raise NotReadable(f"module {name!r} has a bias of an unexpected type")
        return list(_packed(name, state[10], state[11], state[12], state[13]))
    if not isinstance(module.state, dict):
        raise NotReadable(f"module {name!r} of class {module.qualified_name} pickles a custom state")
    state = module.state
    tensors: list[Tensor] = []
    packed = state.get(PACKED_PARAMS)
    if isinstance(packed, _ScriptObject) and isinstance(packed.state, dict):
        packed = packed.state.get(PACKED_PARAMS)
    if packed is not None:
        tensors.extend(_linear_packed(name, module, packed))
    members = classes.members(module.qualified_name)
    for kind in ("__parameters__", "__buffers__"):
        for attribute in state:
            if attribute in members[kind] and state[attribute] is not None:
                tensors.append(_tensor(state_dict_key(name, attribute), state[attribute], role=role_for_key(attribute)))
    return tensors


def _linear_packed(name: str, module: _ScriptObject, packed: Any) -> Iterator[Tensor]:
    if not isinstance(packed, _ScriptObject) or packed.class_name != "LinearPackedParamsBase":
        raise NotReadable(f"module {name!r} has packed params of an unknown kind")
    state = packed.state
    if not (isinstance(state, tuple) and len(state) >= 2 and isinstance(state[0], _QuantizedTensor)):
        raise NotReadable(f"module {name!r} has packed Linear params this reader cannot unpack")
    yield from _packed(name, state[0], state[1], module.state.get("scale"), module.state.get("zero_point"))


def _packed(name: str, weight: _QuantizedTensor, bias: Any, scale: Any, zero_point: Any) -> Iterator[Tensor]:
    yield _tensor(state_dict_key(name, "weight"), weight, role=Role.WEIGHT)
    if bias is not None:
        yield _tensor(state_dict_key(name, "bias"), bias, role=Role.BIAS)
    for attribute, value in (("scale", scale), ("zero_point", zero_point)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield scalar_record(state_dict_key(name, attribute), value)


def _tensor(name: str, value: Any, *, role: Role) -> Tensor:
    if isinstance(value, _QuantizedTensor):
        quantization = value.quantization()
        return Tensor(
            name=name,
            role=role,
            shape=value.codes.shape,
            dtype=quantization.storage_dtype,
            quantization=quantization,
            load_values=functools.partial(_dequantized, value, quantization),
            load_codes=functools.partial(_codes, value),
        )
    if isinstance(value, StoredTensor):
        return Tensor(name=name, role=role, shape=value.shape, dtype=value.dtype, load_values=value.load)
    raise NotReadable(f"attribute {name!r} is a {type(value).__name__}, not a tensor")
