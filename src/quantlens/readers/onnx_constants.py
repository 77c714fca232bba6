"""Constant tensors of an ONNX graph: initializers and Constant node outputs, read on request.

The graph is parsed without its external data. A tensor stored in an external file is read from
that file at its offset and length on first access. Files are only opened for reading.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from quantlens.errors import ModelFormatError, UnsupportedModelError
from quantlens.readers import onnx_proto
from quantlens.readers.onnx_proto import TensorProto
from quantlens.records import ArrayLoader, Quantization, Role, Tensor

logger = logging.getLogger(__name__)

STANDARD_DOMAINS = ("", "ai.onnx")


class Constants:
    """The constant tensors of a graph by name, with their shape, dtype and a lazy value loader.

    At construction every external data file is checked to exist and to be long enough, so a
    missing file fails when the model is opened and not when a value is first read.
    """

    def __init__(self, graph: onnx_proto.GraphProto, *, model_path: Path) -> None:
        self._model_path = model_path
        self._protos: dict[str, TensorProto] = {}
        if len(graph.sparse_initializer):
            names = ", ".join(repr(_sparse_name(t)) for t in graph.sparse_initializer[:3])
            raise UnsupportedModelError(
                f"{model_path.name}: quantlens does not read sparse initializers ({names}). "
                "Convert them to dense initializers, for example with onnx.numpy_helper."
            )
        for initializer in graph.initializer:
            self._protos[initializer.name] = initializer
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
                self._add_constant_node(node)
        for name, proto in self._protos.items():
            if proto.data_location == TensorProto.EXTERNAL:
                self._check_external(name, proto)

    def __contains__(self, name: str) -> bool:
        return name in self._protos

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._protos[name].dims)

    def dtype(self, name: str) -> str:
        """Return the numpy dtype name of the stored tensor, e.g. ``"int8"`` or ``"float32"``."""
        data_type = self._protos[name].data_type
        try:
            return np.dtype(onnx_proto.numpy_dtype(data_type)).name
        except (KeyError, TypeError, ValueError):
            raise ModelFormatError(
                f"{self._model_path.name}: tensor {name!r} has an unknown data_type {data_type}. "
                "The file may be corrupt or newer than the installed onnx package."
            ) from None

    def array(self, name: str) -> np.ndarray:
        """Read the tensor at once, as the reader does for the small scale and zero_point tensors."""
        return self._read(name)

    def loader(self, name: str) -> ArrayLoader:
        """Return a function that reads the tensor when called, so opening a model stays cheap."""
        if name not in self._protos:
            raise KeyError(f"no constant tensor {name!r}")
        return lambda: self._read(name)

    def tensor(self, name: str, role: Role, *, quantization: Quantization | None = None) -> Tensor:
        """Return the record of constant ``name``; with ``quantization`` its values are the codes."""
        shape, dtype, loader = self.shape(name), self.dtype(name), self.loader(name)
        if quantization is None:
            return Tensor(name=name, role=role, shape=shape, dtype=dtype, load_values=loader)
        return Tensor(
            name=name, role=role, shape=shape, dtype=dtype, quantization=quantization, load_codes=loader
        )

    def _read(self, name: str) -> np.ndarray:
        proto = self._protos[name]
        if proto.data_location == TensorProto.EXTERNAL:
            return self._read_external(name, proto)
        return onnx_proto.to_array(proto)

    def _add_constant_node(self, node: onnx_proto.NodeProto) -> None:
        if len(node.attribute) != 1:
            raise ModelFormatError(
                f"{self._model_path.name}: Constant node {node.name!r} needs exactly one value "
                f"attribute, got {len(node.attribute)}"
            )
        attribute = node.attribute[0]
        if attribute.name == "sparse_value":
            raise UnsupportedModelError(
                f"{self._model_path.name}: Constant node {node.name!r} contains a sparse tensor, "
                "which quantlens does not read. Store it as a dense tensor."
            )
        proto = _constant_attribute_tensor(attribute, name=node.output[0])
        if proto is None:
            # String constants (value_string, value_strings) are labels, not numeric tensors.
            logger.info(
                "skipping Constant node %r because its %s attribute is not numeric", node.name, attribute.name
            )
            return
        self._protos[node.output[0]] = proto

    def _external_fields(self, name: str, proto: TensorProto) -> tuple[Path, int, int | None]:
        entries = {entry.key: entry.value for entry in proto.external_data}
        location = entries.get("location")
        if not location:
            raise ModelFormatError(
                f"{self._model_path.name}: tensor {name!r} is marked as external data but has no "
                "location, so the file is corrupt. Export it again."
            )
        base = Path(os.path.normpath(self._model_path.parent.absolute()))
        path = Path(os.path.normpath(base / location))
        if not path.is_relative_to(base):
            raise ModelFormatError(
                f"{self._model_path.name}: external data location {location!r} of tensor {name!r} "
                f"is outside the model folder {str(base)!r}. Move the data file beside the model "
                "and set its location to the file name."
            )
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else None
        return path, offset, length

    def _check_external(self, name: str, proto: TensorProto) -> None:
        path, offset, length = self._external_fields(name, proto)
        if not path.is_file():
            raise ModelFormatError(
                f"{self._model_path.name}: external data file {str(path)!r} of tensor {name!r} "
                "is missing. Copy it into the model's folder."
            )
        size = path.stat().st_size
        end = offset + (length or 0)
        if end > size:
            raise ModelFormatError(
                f"{self._model_path.name}: tensor {name!r} needs bytes {offset}..{end} of "
                f"{path.name}, which has {size} bytes. The data file may be truncated."
            )

    def _read_external(self, name: str, proto: TensorProto) -> np.ndarray:
        path, offset, length = self._external_fields(name, proto)
        try:
            raw = np.fromfile(path, dtype=np.uint8, count=-1 if length is None else length, offset=offset)
        except OSError as error:
            raise ModelFormatError(
                f"{self._model_path.name}: failed to read tensor {name!r} from external data file "
                f"{str(path)!r}: {error}"
            ) from error
        if length is not None and raw.size != length:
            raise ModelFormatError(
                f"{self._model_path.name}: tensor {name!r} expected {length} bytes at offset {offset} "
                f"of {path.name}, got {raw.size}. The data file may be truncated."
            )
        # Decode through numpy_helper so packed and non-numpy types (int4, bfloat16) stay correct.
        inline = TensorProto()
        inline.CopyFrom(proto)
        del inline.external_data[:]
        inline.data_location = TensorProto.DEFAULT
        inline.raw_data = raw.tobytes()
        return onnx_proto.to_array(inline)


def _sparse_name(sparse: onnx_proto.SparseTensorProto) -> str:
    return sparse.values.name


def _constant_attribute_tensor(attribute: onnx_proto.AttributeProto, *, name: str) -> TensorProto | None:
    """Convert the value attribute of a Constant node to a tensor; None for string values."""
    if attribute.name == "value":
        proto = TensorProto()
        proto.CopyFrom(attribute.t)
        proto.name = name
        return proto
    if attribute.name == "value_float":
        return onnx_proto.make_tensor(name, TensorProto.FLOAT, [], [attribute.f])
    if attribute.name == "value_floats":
        return onnx_proto.make_tensor(name, TensorProto.FLOAT, [len(attribute.floats)], list(attribute.floats))
    if attribute.name == "value_int":
        return onnx_proto.make_tensor(name, TensorProto.INT64, [], [attribute.i])
    if attribute.name == "value_ints":
        return onnx_proto.make_tensor(name, TensorProto.INT64, [len(attribute.ints)], list(attribute.ints))
    return None
