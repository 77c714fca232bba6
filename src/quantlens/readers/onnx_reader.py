"""ONNX reader: float, QDQ and QOperator models into the records of ``quantlens.records``.

A layer is every node of the main graph that consumes a constant, either an initializer or a
Constant node output, directly or through a DequantizeLinear node. Layers keep the file's node
order, which ONNX requires to be topological. Values are read only when a tensor's ``values`` or
``codes`` is first accessed, and no file is ever written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from quantlens.errors import ModelFormatError
from quantlens.readers import onnx_proto, onnx_wire
from quantlens.readers.onnx_constants import STANDARD_DOMAINS, Constants
from quantlens.readers.onnx_qoperator import qoperator_tensors
from quantlens.readers.onnx_quant import (
    QDQ_OP_TYPES,
    QUANTIZATION_DOMAINS,
    UNREAD_QUANTIZED_OPS,
    DequantizedConstant,
    find_dequantized_constants,
    qoperator_spec,
)
from quantlens.readers.onnx_sniff import sniff  # noqa: F401  (re-exported: the reader's signature check)
from quantlens.records import INPUT_METADATA_KEY, InputSpec, Layer, Model, Role, Tensor

logger = logging.getLogger(__name__)

# Roles of constant inputs by op_type and input position. Any other constant input is a parameter.
# ConvInteger and MatMulInteger take zero points but no scale (a later Mul applies it), so their
# integer weights have no Quantization record and their zero points are listed as parameters.
INPUT_ROLES: dict[str, dict[int, Role]] = {
    "Conv": {1: Role.WEIGHT, 2: Role.BIAS},
    "ConvTranspose": {1: Role.WEIGHT, 2: Role.BIAS},
    "Gemm": {1: Role.WEIGHT, 2: Role.BIAS},
    "MatMul": {0: Role.WEIGHT, 1: Role.WEIGHT},
    "BatchNormalization": {1: Role.WEIGHT, 2: Role.BIAS, 3: Role.PARAMETER, 4: Role.PARAMETER},
    "ConvInteger": {1: Role.WEIGHT},
    "MatMulInteger": {0: Role.WEIGHT, 1: Role.WEIGHT},
}


def input_role(op_type: str, position: int) -> Role:
    """Return the role of a constant at input ``position`` of an ``op_type`` node."""
    return INPUT_ROLES.get(op_type, {}).get(position, Role.PARAMETER)


def parse_model(path: Path) -> onnx_proto.ModelProto:
    """Parse ``path`` without loading external data. Raise ModelFormatError if it is not ONNX."""
    try:
        model = onnx_proto.load_model(path)
    except DecodeError as error:
        raise ModelFormatError(
            f"Error loading ONNX model {str(path)!r}: {error}. The file may be truncated or not an "
            "ONNX model. Export or download it again."
        ) from error
    return _checked(model, path)


def parse_model_deferred(path: Path) -> onnx_proto.ModelProto:
    """Parse ``path`` like :func:`parse_model`, leaving large initializers' bytes in the file.

    Those initializers come back as external data that points into the model file itself (see
    ``onnx_wire``), so only the tensors whose values are read are ever copied. A file the wire
    walker cannot read is parsed whole, and protobuf's error names what is wrong.
    """
    try:
        model = onnx_wire.parse_deferred(path)
    except (onnx_wire.WireError, DecodeError) as error:
        logger.debug("%s: parsing the whole file instead (%s)", path.name, error)
        return parse_model(path)
    return _checked(model, path)


def _checked(model: onnx_proto.ModelProto, path: Path) -> onnx_proto.ModelProto:
    if model.ir_version == 0 or not model.HasField("graph"):
        raise ModelFormatError(
            f"Error loading ONNX model {str(path)!r}: it has no ir_version or no graph, so it is "
            "empty or not an ONNX model. Export or download it again."
        )
    return model


def node_names(graph: onnx_proto.GraphProto) -> list[str]:
    """Return a unique name for every node, in graph order.

    A node keeps its name verbatim (``/stack1/conv1/Conv``). An unnamed node is called
    ``<op_type>_<node index>``, e.g. ``Reshape_5``. A repeated name gets `` #2``, `` #3``, ...
    """
    names: list[str] = []
    used: set[str] = set()
    renamed: list[str] = []
    for index, node in enumerate(graph.node):
        base = node.name or f"{node.op_type}_{index}"
        name, count = base, 1
        while name in used:
            count += 1
            name = f"{base} #{count}"
        if name != base:
            renamed.append(name)
        used.add(name)
        names.append(name)
    if renamed:
        logger.warning(
            "renamed %d nodes of graph %r because an earlier node has the same name: %s",
            len(renamed),
            graph.name,
            ", ".join(map(repr, renamed[:5])) + (" ..." if len(renamed) > 5 else ""),
        )
    return names


def _is_layer_candidate(node: onnx_proto.NodeProto) -> bool:
    if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
        return False
    return not (node.op_type in QDQ_OP_TYPES and node.domain in QUANTIZATION_DOMAINS)


def _node_tensors(
    node: onnx_proto.NodeProto,
    node_name: str,
    constants: Constants,
    dequantized: dict[str, DequantizedConstant],
    *,
    file_name: str,
) -> list[Tensor]:
    spec = qoperator_spec(node)
    if spec is not None:
        return qoperator_tensors(node, node_name, spec, constants, file_name=file_name)
    tensors: list[Tensor] = []
    for position, name in enumerate(node.input):
        role = input_role(node.op_type, position)
        if name in constants:
            tensors.append(constants.tensor(name, role))
        elif name in dequantized:
            source = dequantized[name]
            tensors.append(constants.tensor(source.codes_name, role, quantization=source.quantization))
    return tensors


def _warn_unknown_quantized_ops(graph: onnx_proto.GraphProto, *, file_name: str) -> None:
    unknown = sorted(
        {
            node.op_type
            for node in graph.node
            if qoperator_spec(node) is None
            and (node.op_type.startswith("QLinear") or node.op_type in UNREAD_QUANTIZED_OPS)
        }
    )
    if unknown:
        logger.warning(
            "%s: quantlens does not know the input layout of quantized ops %s, so it lists all "
            "their constant inputs, scales and zero points included, as unquantized parameters",
            file_name,
            ", ".join(unknown),
        )


def read_layers(model: onnx_proto.ModelProto, *, path: Path) -> tuple[Layer, ...]:
    """Build the layers of the main graph in node order.

    NOTE: nodes inside subgraphs (If, Loop and Scan bodies) and their constants are not read.
    """
    graph = model.graph
    names = node_names(graph)
    constants = Constants(graph, model_path=path)
    dequantized = find_dequantized_constants(graph, constants, node_names=names, file_name=path.name)
    _warn_unknown_quantized_ops(graph, file_name=path.name)
    layers: list[Layer] = []
    for node, name in zip(graph.node, names):
        if not _is_layer_candidate(node):
            continue
        tensors = _node_tensors(node, name, constants, dequantized, file_name=path.name)
        if tensors:
            layers.append(Layer(name=name, op_type=node.op_type, tensors=tuple(tensors), index=len(layers)))
    return tuple(layers)


def _guess_layout(shape: tuple[int | None, ...]) -> str | None:
    """Guess NHWC or NCHW from a rank-4 shape whose channel count is 1 or 3, else return None."""
    if len(shape) != 4:
        return None
    channels_last = shape[3] in (1, 3)
    channels_first = shape[1] in (1, 3)
    if channels_last == channels_first:
        return None
    return "NHWC" if channels_last else "NCHW"


def _signature_input_spec(graph: onnx_proto.GraphProto) -> InputSpec | None:
    initializer_names = {initializer.name for initializer in graph.initializer}
    graph_input = next((i for i in graph.input if i.name not in initializer_names), None)
    if graph_input is None or not graph_input.type.HasField("tensor_type"):
        return None
    tensor_type = graph_input.type.tensor_type
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = np.dtype(onnx_proto.numpy_dtype(tensor_type.elem_type)).name
    layout = _guess_layout(shape) if shape is not None else None
    return InputSpec(name=graph_input.name, layout=layout, shape=shape, dtype=dtype, source="signature")


def read_input_spec(model: onnx_proto.ModelProto, metadata: dict[str, str], *, path: Path) -> InputSpec | None:
    """Read the input description from ``quantlens.input`` metadata, else from the graph's first input.

    Metadata that is not a JSON object is logged as a warning and ignored.
    """
    text = metadata.get(INPUT_METADATA_KEY)
    if text is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            data = None
            logger.warning(
                "%s: metadata %r is not valid JSON (%s), so the graph input is used instead",
                path.name, INPUT_METADATA_KEY, error,
            )
        if isinstance(data, dict):
            return InputSpec.from_metadata(data, source="metadata")
        if data is not None:
            logger.warning(
                "%s: metadata %r is not a JSON object, so the graph input is used instead",
                path.name, INPUT_METADATA_KEY,
            )
    return _signature_input_spec(model.graph)


def load(path: Path, *, trust: bool = False) -> Model:
    """Open an ONNX model. ``trust`` is ignored because ONNX files contain no pickles."""
    path = Path(path)
    model = parse_model_deferred(path)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    return Model(
        path=path,
        format="onnx",
        layers=read_layers(model, path=path),
        input_spec=read_input_spec(model, metadata, path=path),
        metadata=metadata,
    )


class GraphValue(NamedTuple):
    """A value that a node outputs: its name, the producing node's name and op_type."""

    name: str
    node_name: str
    op_type: str


def graph_value_names(path: str | Path) -> list[GraphValue]:
    """List every output of every node of the main graph in graph order.

    Node names are the ones the layers use. Constant and DequantizeLinear outputs are included,
    so filter on ``op_type`` to keep only activations.
    """
    graph = parse_model(Path(path)).graph
    return [
        GraphValue(output, name, node.op_type)
        for node, name in zip(graph.node, node_names(graph))
        for output in node.output
        if output
    ]
