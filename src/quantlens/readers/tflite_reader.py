"""TFLite reader: the flatbuffer is parsed with LiteRT's generated schema classes, no interpreter.

Every operator of the main subgraph (subgraph 0) is a layer, in the file's operator order, which
is the order the interpreter executes them in. A layer is named after its first output tensor,
and its op_type is the builtin operator name (``CONV_2D``) or a custom operator's code. Its
tensors are its constant inputs, the ones whose buffer contains data. The filter or weights input
is the ``weight``, the bias input the ``bias``, and every other constant a ``parameter``. A float16
weight that reaches its conv through a DEQUANTIZE op is the weight of the DEQUANTIZE layer.

Quantized tensors follow ``r = scale * (q - zero_point)``. A tensor with more than one scale is
quantized per channel along its ``quantized_dimension``. Values are read from the file's bytes
only when a tensor's ``values`` or ``codes`` is first accessed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from quantlens.errors import MissingDependencyError, ModelFormatError, UnsupportedModelError
from quantlens.readers.registry import Reader, register
from quantlens.records import INPUT_METADATA_KEY, INTEGER_RANGES, InputSpec, Layer, Model, Quantization, Role, Tensor

logger = logging.getLogger(__name__)

IDENTIFIER = b"TFL3"
INSTALL_LINE = 'pip install "quantlens[tflite]"'

# TensorType names to the dtype names the records use. INT4 and UINT4 pack two values per byte.
DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "BFLOAT16": "bfloat16",
    "INT4": "int4", "UINT4": "uint4", "INT8": "int8", "UINT8": "uint8", "INT16": "int16",
    "UINT16": "uint16", "INT32": "int32", "UINT32": "uint32", "INT64": "int64", "UINT64": "uint64",
    "BOOL": "bool",
}
PACKED_4BIT = ("int4", "uint4")

# Input positions of the weight and bias of the ops that have them, as the TFLite kernels read them.
INPUT_ROLES: dict[str, dict[int, Role]] = {
    "CONV_2D": {1: Role.WEIGHT, 2: Role.BIAS},
    "DEPTHWISE_CONV_2D": {1: Role.WEIGHT, 2: Role.BIAS},
    "CONV_3D": {1: Role.WEIGHT, 2: Role.BIAS},
    "FULLY_CONNECTED": {1: Role.WEIGHT, 2: Role.BIAS},
    "TRANSPOSE_CONV": {1: Role.WEIGHT, 3: Role.BIAS},
    "CONV_3D_TRANSPOSE": {1: Role.WEIGHT, 3: Role.BIAS},
    "BATCH_MATMUL": {1: Role.WEIGHT},
    "EMBEDDING_LOOKUP": {1: Role.WEIGHT},
}


def import_schema() -> ModuleType:
    """Import the generated TFLite schema module that the ai-edge-litert package ships."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as error:
        raise MissingDependencyError(
            "reading and running TFLite models needs the ai-edge-litert package (LiteRT), which "
            f"ships the TFLite flatbuffer schema; install it with: {INSTALL_LINE}"
        ) from error
    return schema_py_generated


def sniff(head: bytes) -> bool:
    """Return True when bytes 4-8 are the TFLite file identifier ``TFL3``."""
    return head[4:8] == IDENTIFIER


@dataclass(frozen=True)
class Operator:
    """One operator of the main subgraph: its layer name, op_type and tensor indices (-1: unused)."""

    index: int
    name: str
    op_type: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _enum_names(enum_class: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _format_error(path: Path, reason: str) -> ModelFormatError:
    return ModelFormatError(
        f"Error loading TFLite model {str(path)!r}: {reason}. The file may be truncated or not a "
        "TFLite model; convert or download it again"
    )


class TfliteFile:
    """A parsed ``.tflite`` file: its bytes, the unpacked ModelT and the main subgraph's operators.

    Parsing unpacks every table at once, so a corrupt or truncated file fails here and not when
    a value is first read. Buffer data stays a view of the file's bytes until a tensor is loaded.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema = import_schema()
        self.data = path.read_bytes()
        if len(self.data) < 8 or self.data[4:8] != IDENTIFIER:
            raise _format_error(path, f"bytes 4-8 are {self.data[4:8]!r}, expected the identifier {IDENTIFIER!r}")
        try:
            self.model = self.schema.ModelT.InitFromPackedBuf(self.data, 0)
        except Exception as error:  # the generated code raises struct.error, IndexError, ValueError...
            raise _format_error(path, f"the flatbuffer cannot be parsed ({type(error).__name__}: {error})") from error
        if not self.model.subgraphs:
            raise _format_error(path, "it has no subgraph")
        if len(self.model.subgraphs) > 1:
            # NOTE: operators of other subgraphs (bodies of WHILE, IF, CALL_ONCE) are not layers.
            logger.warning(
                "%s has %d subgraphs; only the operators of subgraph 0 are read as layers",
                path.name, len(self.model.subgraphs),
            )
        self.subgraph = self.model.subgraphs[0]
        self.tensors = list(self.subgraph.tensors or [])
        self.buffers = list(self.model.buffers or [])
        self._type_names = _enum_names(self.schema.TensorType)
        self._check_constants()

    @cached_property
    def operators(self) -> tuple[Operator, ...]:
        """The main subgraph's operators in execution order, with unique layer names."""
        op_names = _enum_names(self.schema.BuiltinOperator)
        operators: list[Operator] = []
        used: set[str] = set()
        for index, op in enumerate(self.subgraph.operators or []):
            op_type = self._op_type(op.opcodeIndex, op_names)
            outputs = tuple(int(i) for i in (op.outputs if op.outputs is not None else ()))
            base = self.tensor_name(outputs[0]) if outputs and outputs[0] >= 0 else f"{op_type}_{index}"
            name, count = base, 1
            while name in used:
                count += 1
                name = f"{base} #{count}"
            used.add(name)
            inputs = tuple(int(i) for i in (op.inputs if op.inputs is not None else ()))
            operators.append(Operator(index, name, op_type, inputs, outputs))
        return tuple(operators)

    def _op_type(self, opcode_index: int, op_names: dict[int, str]) -> str:
        codes = self.model.operatorCodes or []
        if not 0 <= opcode_index < len(codes):
            raise _format_error(self.path, f"an operator uses opcode index {opcode_index} of {len(codes)}")
        code = codes[opcode_index]
        # Files written before builtin_code existed store the code in deprecated_builtin_code only.
        # Newer files store 127 (PLACEHOLDER_FOR_GREATER_OP_CODES) there, so the larger one is right.
        builtin = max(int(code.deprecatedBuiltinCode), int(code.builtinCode))
        if op_names.get(builtin) == "CUSTOM":
            return _text(code.customCode) or "CUSTOM"
        return op_names.get(builtin, f"BUILTIN_{builtin}")

    def tensor_name(self, index: int) -> str:
        return _text(self.tensors[index].name) or f"tensor_{index}"

    def tensor_shape(self, index: int) -> tuple[int, ...]:
        shape = self.tensors[index].shape
        return tuple(int(d) for d in shape) if shape is not None else ()

    def tensor_dtype(self, index: int) -> str:
        """Return the dtype name of a tensor, e.g. ``"int8"``, or raise UnsupportedModelError for other types."""
        type_name = self._type_names.get(int(self.tensors[index].type), str(self.tensors[index].type))
        if type_name not in DTYPES:
            raise UnsupportedModelError(
                f"{self.path.name}: tensor {self.tensor_name(index)!r} has TensorType {type_name}, "
                f"which quantlens does not read; supported: {', '.join(DTYPES)}"
            )
        return DTYPES[type_name]

    def _raw_buffer(self, index: int) -> np.ndarray | None:
        """Return the bytes of a tensor's buffer, or None when the tensor is not a constant."""
        buffer_index = int(self.tensors[index].buffer)
        if buffer_index <= 0 or buffer_index >= len(self.buffers):
            return None
        buffer = self.buffers[buffer_index]
        if buffer.data is not None and len(buffer.data):
            return np.asarray(buffer.data, dtype=np.uint8)
        # Models over 2 GB keep buffers after the flatbuffer, at a file offset. Offset 1 is a placeholder.
        if buffer.offset > 1 and buffer.size > 0:
            return np.frombuffer(self.data, dtype=np.uint8, count=int(buffer.size), offset=int(buffer.offset))
        return None

    def is_constant(self, index: int) -> bool:
        return index >= 0 and self._raw_buffer(index) is not None

    def _check_constants(self) -> None:
        for index, tensor in enumerate(self.tensors):
            buffer_index = int(tensor.buffer)
            if buffer_index >= len(self.buffers):
                raise _format_error(self.path, f"tensor {self.tensor_name(index)!r} names buffer {buffer_index} of {len(self.buffers)}")
            buffer = self.buffers[buffer_index] if buffer_index > 0 else None
            if buffer is not None and buffer.offset > 1 and buffer.offset + buffer.size > len(self.data):
                raise _format_error(
                    self.path,
                    f"tensor {self.tensor_name(index)!r} needs bytes {buffer.offset}-{buffer.offset + buffer.size} "
                    f"but the file has {len(self.data)}",
                )

    def quantization(self, index: int) -> Quantization | None:
        """Return the quantization of a tensor, or None when it has no scales."""
        params = self.tensors[index].quantization
        if params is None or params.scale is None or len(params.scale) == 0:
            return None
        name = self.tensor_name(index)
        if params.details is not None:
            raise UnsupportedModelError(
                f"{self.path.name}: tensor {name!r} uses custom or blockwise quantization "
                f"(details type {params.detailsType}), which quantlens does not read"
            )
        dtype = self.tensor_dtype(index)
        if dtype not in INTEGER_RANGES:
            raise UnsupportedModelError(f"{self.path.name}: tensor {name!r} of dtype {dtype} has quantization scales")
        scale = np.asarray(params.scale, dtype=np.float32)
        zero_point = np.asarray(params.zeroPoint if params.zeroPoint is not None else [], dtype=np.int64)
        if zero_point.size == 0:
            zero_point = np.zeros_like(scale, dtype=np.int64)
        # A single scale is read as per-tensor whatever quantized_dimension is, because the
        # dequantized values are the same.
        axis = int(params.quantizedDimension) if scale.size > 1 else None
        qmin, qmax = INTEGER_RANGES[dtype]
        return Quantization(scale=scale, zero_point=zero_point, axis=axis, qmin=qmin, qmax=qmax, storage_dtype=dtype)

    def _expected_bytes(self, index: int) -> int:
        count = int(np.prod(self.tensor_shape(index), dtype=np.int64))
        dtype = self.tensor_dtype(index)
        if dtype in PACKED_4BIT:
            return (count + 1) // 2
        return count * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)

    def constant_array(self, index: int) -> np.ndarray:
        """Return a constant's stored array: integer codes of quantized tensors, floats otherwise.

        int4 and uint4 come unpacked into int8 and uint8 (low nibble first), and bfloat16 as float32.
        """
        raw = self._raw_buffer(index)
        name = self.tensor_name(index)
        if raw is None:
            raise ModelFormatError(f"{self.path.name}: tensor {name!r} is not a constant")
        if self.tensors[index].sparsity is not None:
            raise UnsupportedModelError(
                f"{self.path.name}: tensor {name!r} is stored sparse, which quantlens does not read; "
                "convert the model without sparsity"
            )
        expected = self._expected_bytes(index)
        if raw.size != expected:
            raise ModelFormatError(
                f"{self.path.name}: tensor {name!r} of shape {self.tensor_shape(index)} and dtype "
                f"{self.tensor_dtype(index)} needs {expected} bytes, but its buffer holds {raw.size}"
            )
        return _decode(raw, self.tensor_dtype(index), self.tensor_shape(index))

    def constant_tensor(self, index: int, role: Role) -> Tensor:
        """Build the record of a constant tensor whose values load on first access."""
        quantization = self.quantization(index)
        common: dict[str, Any] = dict(
            name=self.tensor_name(index),
            role=role,
            shape=self.tensor_shape(index),
            dtype=self.tensor_dtype(index),
            quantization=quantization,
        )
        if quantization is not None:
            return Tensor(**common, load_codes=lambda: self.constant_array(index))
        return Tensor(**common, load_values=lambda: self.constant_array(index))

    def metadata(self) -> dict[str, str]:
        """Return the model description and every metadata entry whose buffer is UTF-8 text."""
        entries: dict[str, str] = {}
        if self.model.description:
            entries["description"] = _text(self.model.description)
        for entry in self.model.metadata or []:
            buffer_index = int(entry.buffer)
            buffer = self.buffers[buffer_index] if 0 < buffer_index < len(self.buffers) else None
            if buffer is None or buffer.data is None:
                continue
            try:
                entries[_text(entry.name)] = bytes(buffer.data).rstrip(b"\x00").decode("utf-8")
            except UnicodeDecodeError:
                logger.debug("%s: metadata %r is binary; left out", self.path.name, _text(entry.name))
        return entries


def _decode(raw: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Convert little-endian buffer bytes into a new array of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    if dtype in PACKED_4BIT:
        low = raw & 0x0F
        high = raw >> 4
        nibbles = np.stack([low, high], axis=-1).reshape(-1)[:count].astype(np.int8)
        if dtype == "int4":
            nibbles = np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)
        else:
            nibbles = nibbles.astype(np.uint8)
        return nibbles.reshape(shape)
    if dtype == "bfloat16":
        # bfloat16 is the upper half of a float32, so shifting the bits left by 16 is exact.
        bits = raw.view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    little_endian = np.dtype(dtype).newbyteorder("<")
    return raw.view(little_endian).astype(dtype).reshape(shape)


def _weight_roles(tflite: TfliteFile) -> dict[int, Role]:
    """Map the constant input of each DEQUANTIZE op to the role its output has in the consuming op.

    Float16 models store weights this way: a float16 constant, DEQUANTIZE, then the conv.
    """
    roles: dict[int, Role] = {}
    for op in tflite.operators:
        for position, tensor_index in enumerate(op.inputs):
            role = INPUT_ROLES.get(op.op_type, {}).get(position)
            if role is not None:
                roles.setdefault(tensor_index, role)
    dequantized: dict[int, Role] = {}
    for op in tflite.operators:
        if op.op_type == "DEQUANTIZE" and op.outputs and op.outputs[0] in roles:
            dequantized[op.inputs[0]] = roles[op.outputs[0]]
    return dequantized


def read_layers(tflite: TfliteFile) -> tuple[Layer, ...]:
    """Build one layer per operator of the main subgraph, in execution order."""
    dequantized_roles = _weight_roles(tflite)
    layers: list[Layer] = []
    for op in tflite.operators:
        tensors: list[Tensor] = []
        for position, tensor_index in enumerate(op.inputs):
            if not tflite.is_constant(tensor_index):
                continue
            role = INPUT_ROLES.get(op.op_type, {}).get(position)
            if role is None and op.op_type == "DEQUANTIZE":
                role = dequantized_roles.get(tensor_index)
            tensors.append(tflite.constant_tensor(tensor_index, role or Role.PARAMETER))
        layers.append(Layer(name=op.name, op_type=op.op_type, tensors=tuple(tensors), index=op.index))
    return tuple(layers)


def read_input_spec(tflite: TfliteFile) -> InputSpec | None:
    """Describe the first subgraph input: shape (-1 as None), dtype, NHWC for rank 4 and input quantization.

    A ``quantlens.input`` metadata entry (JSON) sets layout, scaling, mean and std. Shape, dtype
    and quantization always come from the subgraph, because the interpreter accepts nothing else.
    """
    inputs = tflite.subgraph.inputs
    if inputs is None or len(inputs) == 0:
        return None
    index = int(inputs[0])
    tensor = tflite.tensors[index]
    signature = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    dimensions = [int(d) for d in signature] if signature is not None else []
    shape = tuple(None if d < 0 else d for d in dimensions)
    spec = InputSpec(
        name=tflite.tensor_name(index),
        layout="NHWC" if len(shape) == 4 else None,
        shape=shape,
        dtype=tflite.tensor_dtype(index),
        source="signature",
    )
    text = tflite.metadata().get(INPUT_METADATA_KEY)
    if text is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            data = None
            logger.warning("%s: metadata %r is not valid JSON (%s); using the subgraph input", tflite.path.name, INPUT_METADATA_KEY, error)
        if isinstance(data, dict):
            recorded = InputSpec.from_metadata(data, source="metadata")
            spec = replace(recorded, name=spec.name, shape=spec.shape, dtype=spec.dtype, layout=recorded.layout or spec.layout)
    quantization = tflite.quantization(index)
    if quantization is not None and quantization.axis is None:
        spec = replace(spec, input_scale=float(quantization.scale), input_zero_point=int(quantization.zero_point))
    return spec


def load(path: Path, *, trust: bool = False) -> Model:
    """Open a TFLite model. ``trust`` is ignored because TFLite files contain no pickles."""
    tflite = TfliteFile(Path(path))
    return Model(
        path=tflite.path,
        format="tflite",
        layers=read_layers(tflite),
        input_spec=read_input_spec(tflite),
        metadata=tflite.metadata(),
    )


register(Reader(name="tflite", extensions=(".tflite",), sniff=sniff, load=load))
