"""Local error: one quantized ONNX layer run on the float model's input to that layer.

The accumulated error of a layer's output mixes the layer's own quantization error with
everything upstream. To isolate the first, the quantized model's nodes between the layer's
input and its output are cut out into a small model: the input QuantizeLinear and
DequantizeLinear, the weight DequantizeLinear, the layer, and the output QuantizeLinear and
DequantizeLinear. That model is fed the float model's activation, and its output is compared
with the float model's output of that layer.

Available for quantized ONNX models: QDQ (the cut starts at the float value before the input's
QuantizeLinear) and QOperator (the cut starts at the integer input, fed the float activation
quantized with that input's scale and zero_point). NOTE: not available for TorchScript, eager
PyTorch or TFLite quantized models; their layers are not cut out and run alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from quantlens.compare.pairing import ActivationPair
from quantlens.errors import ComparisonError
from quantlens.readers.onnx_reader import node_names
from quantlens.records import Quantization

logger = logging.getLogger(__name__)

LOCAL_UNAVAILABLE = "local error needs a quantized ONNX model (QDQ or QOperator)"


@dataclass(frozen=True, repr=False, eq=False)
class LocalLayer:
    """A quantized layer cut out of its model, ready to run on float activations.

    ``float_input`` is the float activation fed to it; ``input_quantization`` quantizes that
    activation first (QOperator); ``output_quantization`` dequantizes an integer output.
    """

    pair: ActivationPair
    float_input: str
    input_quantization: Quantization | None
    output_quantization: Quantization | None
    session: Any  # onnxruntime.InferenceSession

    def run(self, float_input: np.ndarray) -> np.ndarray:
        """Run the layer on the float model's input activation and return its dequantized output."""
        feed = float_input if self.input_quantization is None else quantize(float_input, self.input_quantization)
        name = self.session.get_inputs()[0].name
        output = self.session.run(None, {name: feed})[0]
        if self.output_quantization is not None and output.dtype.kind in "iu":
            return self.output_quantization.dequantize(output)
        return output

    def __repr__(self) -> str:
        return f"LocalLayer({self.pair.quant_layer!r} fed {self.float_input!r})"


def quantize(values: np.ndarray, quantization: Quantization) -> np.ndarray:
    """Return ``clip(round(x / scale) + zero_point, qmin, qmax)`` as the storage dtype.

    Rounds half to even, as ONNX QuantizeLinear does. Example: x = [0.26, -1] with scale 0.1,
    zero_point 0 and int8 give [3, -10].
    """
    scale, zero_point = quantization.broadcast(values.ndim)
    codes = np.rint(values.astype(np.float32) / scale) + zero_point
    return np.clip(codes, quantization.qmin, quantization.qmax).astype(quantization.storage_dtype)


def extract_subgraph(model: onnx.ModelProto, input_name: str, output_name: str, input_dtype: np.dtype) -> onnx.ModelProto:
    """Cut out the nodes that compute ``output_name`` from ``input_name`` and constants only.

    Raises ComparisonError when the output also depends on another graph input or on a value
    that no node produces.
    """
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {init.name: init for init in graph.initializer}
    needed: set[int] = set()
    pending, seen = [output_name], set()
    while pending:
        name = pending.pop()
        if not name or name in seen or name == input_name or name in initializers:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None:
            raise ComparisonError(f"{output_name!r} also depends on {name!r}, which is not computed from {input_name!r}")
        needed.add(id(node))
        pending.extend(node.input)
    nodes = [node for node in graph.node if id(node) in needed]
    used = {name for node in nodes for name in node.input}
    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype))
    subgraph = helper.make_graph(
        nodes,
        f"local_{output_name}",
        [helper.make_tensor_value_info(input_name, elem_type, None)],
        [onnx.ValueInfoProto(name=output_name)],
        initializer=[init for name, init in initializers.items() if name in used],
    )
    return helper.make_model(subgraph, opset_imports=model.opset_import, ir_version=model.ir_version)


class LocalBuilder:
    """Build :class:`LocalLayer` objects for the matched layers of one quantized ONNX model."""

    def __init__(self, model: onnx.ModelProto, pairs: tuple[ActivationPair, ...], quantizations: dict[str, Quantization]) -> None:
        self.model = model
        self.pairs = pairs
        self.quantizations = quantizations
        self.nodes = dict(zip(node_names(model.graph), model.graph.node))
        self.producers = {output: node for node in model.graph.node for output in node.output}

    def build(self, pair: ActivationPair) -> LocalLayer:
        """Cut out the quantized layer of ``pair`` (a matched layer's output pair)."""
        node = self.nodes.get(pair.quant_layer)
        if node is None or not node.input:
            raise ComparisonError(f"quantized layer {pair.quant_layer!r} is not a node with inputs")
        source, input_pair = self._source(node.input[0])
        input_quantization = self.quantizations.get(source) if source == node.input[0] else None
        dtype = np.dtype(input_quantization.storage_dtype) if input_quantization is not None else np.dtype(np.float32)
        sub_model = extract_subgraph(self.model, source, pair.quant_name, dtype)
        return LocalLayer(
            pair=pair,
            float_input=input_pair.float_name,
            input_quantization=input_quantization,
            output_quantization=self.quantizations.get(pair.quant_name),
            session=_session(sub_model, pair.quant_layer),
        )

    def _source(self, value: str) -> tuple[str, ActivationPair]:
        """Return the value to cut at and the pair whose float activation feeds it."""
        input_pair = next((p for p in self.pairs if value in p.quant_aliases), None)
        if input_pair is None:
            raise ComparisonError(f"input {value!r} has no float counterpart to feed")
        dequantize = self.producers.get(value)
        if dequantize is not None and dequantize.op_type == "DequantizeLinear":
            quantize_node = self.producers.get(dequantize.input[0])
            if quantize_node is not None and quantize_node.op_type == "QuantizeLinear":
                return quantize_node.input[0], input_pair
        return value, input_pair


def _session(model: onnx.ModelProto, layer: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ComparisonError(f"onnxruntime cannot run layer {layer!r} alone: {first_line}") from exc
