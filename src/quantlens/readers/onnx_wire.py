"""Parse an ONNX file without copying its initializer data into memory.

``onnx.load`` copies every initializer's ``raw_data`` into a Python bytes object, which is most
of its time on a large model (0.12 s for 100 MB here, against 0.01 s for this walk). This
module walks the protobuf wire format of ModelProto, GraphProto and each initializer's
TensorProto just far enough to find the ``raw_data`` fields. Everything else is parsed with
onnx's protobuf classes. Every large initializer then points at its bytes in the model file
through ONNX's external-data fields: ``location`` is the file itself, with ``offset`` and
``length``. The reader reads external data lazily, so a tensor's bytes are read only when its
values are used.

Only the reader uses this. Capture and comparison build onnxruntime sessions from the parsed
model, so they parse the whole file.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from quantlens.readers import onnx_proto
from quantlens.readers.onnx_proto import TensorProto

# Field numbers from onnx.proto.
MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_RAW_DATA = 9

LENGTH_DELIMITED = 2

# Smaller raw data stays inline: reading it later would cost more than copying it now.
MIN_DEFERRED_BYTES = 4096


class WireError(ValueError):
    """The bytes are not a protobuf message this walker can read; the caller parses the whole file."""


def parse_deferred(path: Path) -> onnx_proto.ModelProto:
    """Parse ``path`` with large initializers left in the file. Raise WireError when it cannot."""
    with open(path, "rb") as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as error:  # an empty file cannot be mapped
            raise WireError(str(error)) from error
    with data:
        return _parse(data, path.name)


def _parse(data: mmap.mmap, location: str) -> onnx_proto.ModelProto:
    model_parts: list[bytes] = []
    graph_range: tuple[int, int] | None = None
    for number, wire, start, value_start, end in _fields(data, 0, len(data)):
        if number == MODEL_GRAPH and wire == LENGTH_DELIMITED:
            if graph_range is not None:
                raise WireError("the graph field occurs twice")
            graph_range = (value_start, end)
        else:
            model_parts.append(data[start:end])
    model = onnx_proto.ModelProto()
    model.ParseFromString(b"".join(model_parts))
    if graph_range is None:
        return model
    graph_parts: list[bytes] = []
    initializers: list[TensorProto] = []
    for number, wire, start, value_start, end in _fields(data, *graph_range):
        if number == GRAPH_INITIALIZER and wire == LENGTH_DELIMITED:
            initializers.append(_tensor(data, value_start, end, location))
        else:
            graph_parts.append(data[start:end])
    model.graph.ParseFromString(b"".join(graph_parts))
    model.graph.initializer.extend(initializers)
    return model


def _tensor(data: mmap.mmap, start: int, stop: int, location: str) -> TensorProto:
    parts: list[bytes] = []
    raw: tuple[int, int] | None = None
    for number, wire, field_start, value_start, end in _fields(data, start, stop):
        if number == TENSOR_RAW_DATA and wire == LENGTH_DELIMITED and end - value_start >= MIN_DEFERRED_BYTES:
            if raw is not None:
                raise WireError("raw_data occurs twice in one tensor")
            raw = (value_start, end)
        else:
            parts.append(data[field_start:end])
    tensor = TensorProto()
    tensor.ParseFromString(b"".join(parts))
    if raw is not None:
        if tensor.data_location == TensorProto.EXTERNAL:
            raise WireError(f"tensor {tensor.name!r} has both raw_data and external data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(raw[0])), ("length", str(raw[1] - raw[0]))):
            entry = tensor.external_data.add()
            entry.key = key
            entry.value = value
    return tensor


def _fields(data: mmap.mmap, start: int, stop: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, field start, value start, field end) for each field."""
    position = start
    while position < stop:
        field_start = position
        key, position = _varint(data, position, stop)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {field_start}")
        value_start = position
        if wire == 0:
            _, position = _varint(data, position, stop)
        elif wire == 1:
            position += 8
        elif wire == LENGTH_DELIMITED:
            length, value_start = _varint(data, position, stop)
            position = value_start + length
        elif wire == 5:
            position += 4
        else:
            raise WireError(f"wire type {wire} at byte {field_start}")
        if position > stop:
            raise WireError(f"field {number} at byte {field_start} runs past its message")
        yield number, wire, field_start, value_start, position


def _varint(data: mmap.mmap, position: int, stop: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if position >= stop or shift > 63:
            raise WireError(f"truncated or invalid varint at byte {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
