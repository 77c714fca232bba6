"""Activation capture for ONNX models run by onnxruntime.

The model is parsed in memory, every node output of the main graph becomes an extra graph
output, and onnxruntime runs that copy from bytes. The model file is never written. External
data is read from the model's own folder.

Values computed only from initializers and Constant nodes (a QDQ model's weight
DequantizeLinear outputs, shape constants) are weights, not activations, so they are not capture
points. Nodes inside If and Loop bodies are not captured either, because their outputs cannot
become graph outputs.

Exposing intermediate values stops onnxruntime from fusing the nodes around them (Conv+Add+Relu,
DequantizeLinear+Conv+QuantizeLinear), so the captured graph may compute the model output with a
rounding difference. ``run(..., reference_outputs=True)`` therefore also runs the model unchanged,
returns that output and reports any difference as a notice.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from quantlens.capture.onnx_quantization import QuantizationSources
from quantlens.capture.records import Activation, CapturedRun, CapturePoint
from quantlens.capture.selection import Selection
from quantlens.errors import CaptureError
from quantlens.readers import onnx_proto
from quantlens.readers.onnx_reader import node_names, parse_model
from quantlens.records import Role, Tensor

logger = logging.getLogger(__name__)

EXTERNAL_DATA_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


class OnnxCapture:
    """Capture backend for an OnnxSession."""

    suffixed_names = False
    # Outputs equal the model's own run only with reference_outputs, which runs it a second time.
    reruns_for_exact_outputs = True

    def __init__(self, session: Any) -> None:
        self.session = session
        self.model = parse_model(session.path)
        graph = self.model.graph
        self._output_index: dict[str, int] = {}
        self.points = self._find_points(graph)
        self.quantization = QuantizationSources(graph, model_path=session.path)
        self._sessions: dict[frozenset[str] | None, tuple[Any, list[str]]] = {}

    def _find_points(self, graph: onnx_proto.GraphProto) -> list[CapturePoint]:
        constant = constant_values(graph)
        non_tensor = _non_tensor_values(self.model)
        points = []
        for node, layer in zip(graph.node, node_names(graph)):
            for index, output in enumerate(node.output):
                if output and output not in constant and output not in non_tensor:
                    points.append(CapturePoint(output, layer, node.op_type))
                    self._output_index[output] = index
        return points

    def run(self, inputs: np.ndarray, *, selection: Selection, reference_outputs: bool = True) -> CapturedRun:
        """Run the captured graph once; with ``reference_outputs`` also run the model unchanged."""
        inference, fetched = self._inference(selection)
        feed = {inference.get_inputs()[0].name: inputs}
        try:
            results = inference.run(fetched, feed)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise CaptureError(
                f"onnxruntime failed to run {self.session.path.name} with every value as an output, on "
                f"input of shape {inputs.shape} and dtype {inputs.dtype}: {_first_line(exc)}"
            ) from exc
        by_name = dict(zip(fetched, results))
        output_names = self.session.output_names
        outputs = tuple(by_name[name] for name in output_names)
        notices: list[str] = []
        activations = self._activations(selection, by_name, notices)
        if reference_outputs:
            outputs = self._reference(inputs, outputs, notices)
        return CapturedRun(activations=activations, outputs=outputs, notices=tuple(notices))

    def _activations(self, selection: Selection, by_name: dict[str, Any], notices: list[str]) -> tuple[Activation, ...]:
        activations = []
        for point in self.points:
            if not selection.keeps(point.name, point.layer):
                continue
            value = by_name[point.name]
            if not isinstance(value, np.ndarray):
                notices.append(f"{point.name} is a {type(value).__name__}, not a tensor; not captured")
                continue
            tensor = self._tensor(point.name, value, by_name, notices)
            activations.append(Activation(point.layer, point.op_type, self._output_index[point.name], tensor))
        return tuple(activations)

    def _tensor(self, name: str, value: np.ndarray, by_name: dict[str, Any], notices: list[str]) -> Tensor:
        quantization = None
        if value.dtype.kind in "iu":
            quantization = self.quantization.resolve(name, value, by_name, notices)
        if quantization is None:
            return Tensor(name, Role.ACTIVATION, value.shape, value.dtype.name, load_values=lambda: value)
        return Tensor(
            name, Role.ACTIVATION, value.shape, value.dtype.name, quantization=quantization, load_codes=lambda: value
        )

    def _reference(self, inputs: np.ndarray, captured: tuple[np.ndarray, ...], notices: list[str]) -> tuple[np.ndarray, ...]:
        reference = tuple(self.session.run(inputs))
        differences = [_max_difference(a, b) for a, b in zip(captured, reference)]
        worst = max(differences, default=0.0)
        if worst > 0:
            notices.append(
                "onnxruntime fuses fewer nodes when every value is an output, so the captured graph "
                f"computed the model output with a maximum absolute difference of {worst:.3g}; the "
                "outputs shown come from the unchanged model"
            )
        return reference

    def _inference(self, selection: Selection) -> tuple[Any, list[str]]:
        if selection.names not in self._sessions:
            self._sessions[selection.names] = self._build(selection)
        return self._sessions[selection.names]

    def _build(self, selection: Selection) -> tuple[Any, list[str]]:
        import onnxruntime as ort

        model = onnx_proto.ModelProto()
        model.CopyFrom(self.model)
        existing = [output.name for output in model.graph.output]
        wanted = [p.name for p in self.points if selection.keeps(p.name, p.layer)]
        wanted += self.quantization.parameter_values(wanted)
        extra = list(dict.fromkeys(name for name in wanted if name not in existing))
        for name in extra:
            # An output without a type is accepted by onnxruntime, which takes the type from the node.
            model.graph.output.append(onnx_proto.ValueInfoProto(name=name))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry(EXTERNAL_DATA_FOLDER_KEY, str(self.session.path.resolve().parent))
        try:
            inference = ort.InferenceSession(
                model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise CaptureError(
                f"onnxruntime cannot load {self.session.path.name} with its node outputs added as graph "
                f"outputs: {_first_line(exc)}"
            ) from exc
        return inference, existing + extra


def constant_values(graph: onnx_proto.GraphProto) -> set[str]:
    """Return the names of values computed only from initializers and Constant nodes."""
    constant = {initializer.name for initializer in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (
            inputs and node.op_type not in NONDETERMINISTIC_OPS and all(name in constant for name in inputs)
        ):
            constant.update(name for name in node.output if name)
    return constant


# Ops whose outputs can be sequences, maps or optionals (control flow passes any type through).
# Only graphs with one of them need shape inference, which imports onnx.
NON_TENSOR_OPS = frozenset(
    {
        "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase", "SplitToSequence",
        "SequenceMap", "Optional", "OptionalGetElement", "If", "Loop", "Scan", "ZipMap", "CastMap",
    }
)


def _non_tensor_values(model: onnx_proto.ModelProto) -> set[str]:
    """Return the names of values whose inferred type is a sequence, map or optional."""
    if not any(node.op_type in NON_TENSOR_OPS for node in model.graph.node):
        return set()
    import onnx.shape_inference

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        logger.info("shape inference failed (%s); every node output is treated as a tensor", exc)
        return set()
    return {info.name for info in inferred.graph.value_info if info.type.WhichOneof("value") != "tensor_type"}


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind not in "fiu":
        return 0.0 if np.array_equal(a, b) else float("inf")
    with np.errstate(invalid="ignore"):
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    same_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
    difference[same_nan] = 0.0
    return float(difference.max()) if difference.size else 0.0


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
