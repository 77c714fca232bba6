"""The ONNX reader's registry entry, importable without onnx.

``sniff`` reads only bytes, and ``load`` imports :mod:`quantlens.readers.onnx_reader` (and with
it the onnx package) on first use, so opening a file of another format never imports onnx.
"""

from __future__ import annotations

from pathlib import Path

from quantlens.readers.registry import Reader, register
from quantlens.records import Model

# ModelProto field numbers and wire types that may follow ir_version (field 1) at the file start:
# producer_name 2, producer_version 3, domain 4, model_version 5 (varint), doc_string 6, graph 7,
# opset_import 8, metadata_props 14, training_info 20, functions 25, configuration 26.
_MODEL_FIELDS = {2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_MAX_IR_VERSION = 127


def _read_varint(data: bytes, start: int) -> tuple[int, int] | None:
    """Decode a protobuf varint at ``start`` into (value, next index), or None if the data ends first."""
    value = 0
    for index in range(start, min(len(data), start + 10)):
        value |= (data[index] & 0x7F) << (7 * (index - start))
        if not data[index] & 0x80:
            return value, index + 1
    return None


def sniff(head: bytes) -> bool:
    """Return True when ``head`` starts like a serialized ModelProto.

    Protobuf's official serializers write known fields in field-number order, so a model written
    by onnx or torch starts with ir_version: tag 0x08, a small varint (1 to 127), then the tag of
    another ModelProto field, e.g. 0x12 producer_name or 0x3a graph. The check reads at most a few
    bytes and never parses the file.
    """
    if len(head) < 3 or head[0] != 0x08:
        return False
    ir_version = _read_varint(head, 1)
    if ir_version is None or not 1 <= ir_version[0] <= _MAX_IR_VERSION:
        return False
    tag = _read_varint(head, ir_version[1])
    if tag is None:
        return False
    field_number, wire_type = tag[0] >> 3, tag[0] & 0x7
    return _MODEL_FIELDS.get(field_number) == wire_type


def load(path: Path, *, trust: bool = False) -> Model:
    """Open an ONNX model with :func:`quantlens.readers.onnx_reader.load`."""
    from quantlens.readers.onnx_reader import load as load_onnx

    return load_onnx(path, trust=trust)


register(Reader(name="onnx", extensions=(".onnx",), sniff=sniff, load=load))
