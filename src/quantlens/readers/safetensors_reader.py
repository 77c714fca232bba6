"""safetensors reader: a JSON header of names, dtypes and shapes, then raw tensor data.

Opening reads only the header, and each tensor's values are read from the file on first access.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from quantlens.errors import ModelFormatError
from quantlens.readers.torch_tensors import (
    GUESSED_OP_TYPES,
    OP_TYPES_KEY,
    architecture_module_types,
    build_layers_by_key,
    group_keys_by_layer,
    input_spec_from_metadata,
    role_for_key,
    to_numpy,
)
from quantlens.records import INPUT_METADATA_KEY, Model, Tensor

logger = logging.getLogger(__name__)

# Largest header size the sniffer accepts: safetensors itself rejects headers over 100,000,000 bytes.
MAX_HEADER_SIZE = 100_000_000

# safetensors dtype codes -> the numpy/torch dtype names quantlens reports.
_DTYPE_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def sniff_safetensors(head: bytes) -> bool:
    """Return True when the head is an 8-byte little-endian header size followed by ``{``."""
    if len(head) < 9:
        return False
    header_size = int.from_bytes(head[:8], "little")
    return 2 <= header_size <= MAX_HEADER_SIZE and head[8:9] == b"{"


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``layers.2`` before ``layers.10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in name.split("."))


def _load_values(path: Path, key: str) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return to_numpy(handle.get_tensor(key))


def _tensor_record(path: Path, key: str, dtype_code: str, shape: list[int]) -> Tensor:
    return Tensor(
        name=key,
        role=role_for_key(key),
        shape=tuple(int(d) for d in shape),
        dtype=_DTYPE_NAMES.get(dtype_code, dtype_code.lower()),
        load_values=functools.partial(_load_values, path, key),
    )


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    """Return the header metadata and a lazily loaded Tensor record per tensor name."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {}
            for key in handle.keys():
                view = handle.get_slice(key)
                tensors[key] = _tensor_record(path, key, str(view.get_dtype()), view.get_shape())
    except SafetensorError as error:
        raise ModelFormatError(
            f"{str(path)!r} is not a valid safetensors file ({error}). The file may be truncated "
            "or in another format."
        ) from error
    return metadata, tensors


def _layer_order(layers: list[str], architecture: object) -> list[str]:
    """Order layers by a bundled architecture's module order when known, else by natural name order.

    NOTE: safetensors files do not keep the order in which tensors were saved, so without a
    known architecture the order is by name, which puts ``block.bn`` before ``block.conv``.
    """
    module_order = {name: index for index, name in enumerate(architecture_module_types(architecture) or {})}
    return sorted(layers, key=lambda layer: (module_order.get(layer, len(module_order)), _natural_key(layer)))


def load_safetensors(path: Path, *, trust: bool = False) -> Model:
    """Read a safetensors file into a Model. ``trust`` is ignored because safetensors has no pickle.

    Header metadata goes into ``Model.metadata``. Its ``architecture`` entry, when it names a
    bundled architecture, supplies op types and layer order, and its ``quantlens.input`` entry
    (JSON text) becomes the input spec.
    """
    del trust
    metadata, tensors = _read_header(path)
    architecture = metadata.get("architecture")
    names_by_layer = group_keys_by_layer(sorted(tensors, key=_natural_key))
    grouped = {
        layer: [tensors[name] for name in names_by_layer[layer]]
        for layer in _layer_order(list(names_by_layer), architecture)
    }

    layers, guessed = build_layers_by_key(grouped, architecture=architecture)
    if guessed:
        metadata[OP_TYPES_KEY] = GUESSED_OP_TYPES
    input_spec = input_spec_from_metadata(
        metadata.get(INPUT_METADATA_KEY), path=path, where=f"header metadata {INPUT_METADATA_KEY!r}"
    )
    return Model(
        path=path,
        format="safetensors",
        layers=layers,
        input_spec=input_spec,
        metadata=metadata,
    )
