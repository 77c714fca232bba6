"""ONNX's protobuf classes and the few onnx helpers quantlens needs, without importing onnx.

``import onnx`` takes about 0.6 s here, most of it loading its ml_dtypes dependency, which is
most of the time to open a large model. The classes themselves live in the package's generated
``onnx_ml_pb2.py``, which depends only on protobuf. This module loads that file by path under
its own module name. protobuf keeps one class per message type, so these are the very classes
``onnx`` uses: a model parsed here works with onnx's functions once something imports onnx.
When the file cannot be loaded that way, ``import onnx`` supplies the classes instead.

``to_array``, ``numpy_dtype`` and ``attribute_value`` cover the standard numeric types and
attribute kinds; the rest (bfloat16, float8, int4, strings) go through onnx's own helpers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _load_classes() -> ModuleType:
    spec = importlib.util.find_spec("onnx")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    generated = Path(locations[0]) / "onnx_ml_pb2.py" if locations else None
    if generated is not None and generated.is_file():
        try:
            module_spec = importlib.util.spec_from_file_location("quantlens.readers._onnx_ml_pb2", generated)
            if module_spec is not None and module_spec.loader is not None:
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
                return module
        except Exception as error:  # any failure means: let onnx load its classes itself
            logger.debug("loading %s by path failed (%s); importing onnx", generated, error)
    return importlib.import_module("onnx.onnx_ml_pb2")


_classes = _load_classes()

ModelProto: Any = _classes.ModelProto
GraphProto: Any = _classes.GraphProto
NodeProto: Any = _classes.NodeProto
TensorProto: Any = _classes.TensorProto
AttributeProto: Any = _classes.AttributeProto
SparseTensorProto: Any = _classes.SparseTensorProto
ValueInfoProto: Any = _classes.ValueInfoProto

# TensorProto data types numpy represents natively, and the typed field each is stored in when
# raw_data is empty. int32_data carries the narrower integer types, bool and float16 bit patterns.
_NUMPY_TYPES: dict[int, tuple[str, str]] = {
    TensorProto.FLOAT: ("<f4", "float_data"),
    TensorProto.UINT8: ("u1", "int32_data"),
    TensorProto.INT8: ("i1", "int32_data"),
    TensorProto.UINT16: ("<u2", "int32_data"),
    TensorProto.INT16: ("<i2", "int32_data"),
    TensorProto.INT32: ("<i4", "int32_data"),
    TensorProto.INT64: ("<i8", "int64_data"),
    TensorProto.BOOL: ("?", "int32_data"),
    TensorProto.FLOAT16: ("<f2", "int32_data"),
    TensorProto.DOUBLE: ("<f8", "double_data"),
    TensorProto.UINT32: ("<u4", "uint64_data"),
    TensorProto.UINT64: ("<u8", "uint64_data"),
}


def load_model(path: str | Path) -> Any:
    """Parse an ONNX file (binary protobuf) without reading its external data.

    Raises ``google.protobuf.message.DecodeError`` when the bytes are not a ModelProto.
    """
    model = ModelProto()
    model.ParseFromString(Path(path).read_bytes())
    return model


def numpy_dtype(data_type: int) -> np.dtype:
    """Return the numpy dtype of a TensorProto data type (``TensorProto.FLOAT`` gives float32)."""
    known = _NUMPY_TYPES.get(data_type)
    if known is not None:
        return np.dtype(known[0]).newbyteorder("=")
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))


def to_array(tensor: Any) -> np.ndarray:
    """Decode an inline TensorProto into a numpy array, as ``onnx.numpy_helper.to_array`` does."""
    known = _NUMPY_TYPES.get(tensor.data_type)
    if known is None or tensor.data_location == TensorProto.EXTERNAL:
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)
    stored, field = known
    shape = tuple(tensor.dims)
    if tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype=stored)
    elif tensor.data_type == TensorProto.FLOAT16:
        values = np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16)
    else:
        values = np.asarray(getattr(tensor, field), dtype=stored)
    return values.astype(np.dtype(stored).newbyteorder("="), copy=False).reshape(shape)


def attribute_value(attribute: Any) -> Any:
    """Return an AttributeProto's value, as ``onnx.helper.get_attribute_value`` does."""
    kind = attribute.type
    scalars = {
        AttributeProto.FLOAT: "f",
        AttributeProto.INT: "i",
        AttributeProto.STRING: "s",
        AttributeProto.TENSOR: "t",
        AttributeProto.GRAPH: "g",
        AttributeProto.SPARSE_TENSOR: "sparse_tensor",
        AttributeProto.TYPE_PROTO: "tp",
    }
    lists = {
        AttributeProto.FLOATS: "floats",
        AttributeProto.INTS: "ints",
        AttributeProto.STRINGS: "strings",
        AttributeProto.TENSORS: "tensors",
        AttributeProto.GRAPHS: "graphs",
        AttributeProto.SPARSE_TENSORS: "sparse_tensors",
        AttributeProto.TYPE_PROTOS: "type_protos",
    }
    if kind in scalars:
        return getattr(attribute, scalars[kind])
    if kind in lists:
        return list(getattr(attribute, lists[kind]))
    raise ValueError(f"attribute {attribute.name!r} has unsupported type {kind}")


def make_tensor(name: str, data_type: int, dims: list[int], values: list[float] | list[int]) -> Any:
    """Build an inline TensorProto of FLOAT or INT64 ``values`` with shape ``dims``."""
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = data_type
    tensor.dims.extend(dims)
    if data_type == TensorProto.FLOAT:
        tensor.float_data.extend(float(value) for value in values)
    elif data_type == TensorProto.INT64:
        tensor.int64_data.extend(int(value) for value in values)
    else:
        raise ValueError(f"make_tensor supports FLOAT and INT64, got data type {data_type}")
    return tensor
