"""Activation capture for TorchScript modules, quantized int8 archives included.

Forward hooks do not fire in loaded TorchScript archives, so this backend rewrites a copy of the
forward graph instead. The copy has every method call inlined and returns every Tensor value of
its top-level block as an extra output. It runs as a new function whose first input is the
module. The module and its own graph stay unchanged.

Names follow the module a value was computed in:

- a value that leaves its module (the module's output) is named by the module path,
  ``stack1.conv1``;
- a value used only inside its module is named ``MODULE/OP``, ``stack1/add``;
- a value computed in ``forward`` of the root module is named by its operator, ``add_relu``;
- a repeated name gets ``#1``, ``#2``, ... in graph order, and the outputs of a node with several
  Tensor outputs get ``:0``, ``:1``.

``op_type`` is the node kind, such as ``quantized::conv2d_relu`` or ``aten::add``.

NOTE: values computed inside ``prim::If`` and ``prim::Loop`` blocks are not captured, because
they are out of scope at the graph's return. The outputs of those nodes are captured.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantlens.capture.records import Activation, CapturedRun, CapturePoint
from quantlens.capture.selection import Selection
from quantlens.capture.torch_values import activation_record, flatten_outputs
from quantlens.errors import CaptureError

logger = logging.getLogger(__name__)

MARKER_PREFIX = "quantlens.call:"
# Nodes whose Tensor outputs are not activations (parameters, constants) or repeat another value.
SKIPPED_KINDS = frozenset({"prim::Constant", "prim::GetAttr"})
ALIAS_KINDS = {"prim::TupleUnpack": "prim::TupleConstruct", "prim::ListUnpack": "prim::ListConstruct"}
HIERARCHY_SEGMENT = re.compile(r"([^.()]+)\([^()]*\)")
# Hierarchy entries that name no submodule: a call of another method of the same module, and a
# call of a free function.
PSEUDO_INSTANCES = frozenset({"SELF", "UNKNOWN_INSTANCE"})


@dataclass(frozen=True)
class GraphValue:
    """One captured value of the inlined graph, with the module path it was computed in."""

    value: Any
    name: str
    layer: str
    op_type: str
    output_index: int


class TorchScriptCapture:
    """Capture backend for a TorchSession whose module is a TorchScript module."""

    suffixed_names = False

    def __init__(self, session: Any, *, device: str | None = None) -> None:
        import torch

        self.session = session
        self.module = session.module
        self.device = torch.device(device) if device is not None else session.device
        self.points = [CapturePoint(v.name, v.layer, v.op_type) for v in self._analyse()[1]]
        self._functions: dict[frozenset[str] | None, tuple[Any, list[GraphValue], int]] = {}

    def _analyse(self) -> tuple[Any, list[GraphValue]]:
        import torch

        graph = self.module.forward.graph.copy()
        markers = _mark_calls(graph)
        try:
            torch._C._jit_pass_inline(graph)
        except RuntimeError as exc:
            raise CaptureError(f"cannot inline the TorchScript graph of {self.session.path.name}: {exc}") from exc
        paths = _module_paths(graph)
        for marker in markers:
            marker.destroy()
        return graph, _name_values(graph, paths)

    def run(self, inputs: np.ndarray, *, selection: Selection, reference_outputs: bool = True) -> CapturedRun:
        """Run the rewritten graph once and return the selected values and the model outputs.

        The rewritten graph computes the model output with the same nodes as the module, so
        ``reference_outputs`` is not needed.
        """
        import torch

        function, values, output_count = self._function(selection)
        moved = self.device != self.session.device
        try:
            if moved:
                self.module.to(self.device)
            tensor = torch.from_numpy(np.ascontiguousarray(inputs)).to(self.device)
            with torch.no_grad():
                results = function(self.module._c, tensor)
        except Exception as exc:  # the TorchScript interpreter raises RuntimeError and others
            first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise CaptureError(
                f"{self.session.path.name} failed on input of shape {tuple(inputs.shape)} "
                f"({self.session.adapter.describe()}): {first_line}"
            ) from exc
        finally:
            if moved:
                self.module.to(self.session.device)
        outputs = tuple(_output_array(t) for item in results[:output_count] for _, t in flatten_outputs(item, ""))
        activations = tuple(
            Activation(v.layer, v.op_type, v.output_index, activation_record(v.name, t.detach().to("cpu")))
            for v, t in zip(values, results[output_count:])
        )
        return CapturedRun(activations=activations, outputs=outputs)

    def _function(self, selection: Selection) -> tuple[Any, list[GraphValue], int]:
        if selection.names not in self._functions:
            self._functions[selection.names] = self._build(selection)
        return self._functions[selection.names]

    def _build(self, selection: Selection) -> tuple[Any, list[GraphValue], int]:
        import torch

        graph, values = self._analyse()
        values = [v for v in values if selection.keeps(v.name, v.layer)]
        captured = [v.value for v in values]
        if _has_in_place_ops(graph):
            # A later in-place op (aten::relu_) would change a returned value after it was computed.
            captured = [_insert_clone(graph, value) for value in captured]
        output_count = _return_all(graph, captured)
        try:
            function = torch._C._create_function_from_graph("quantlens_capture", graph)
        except RuntimeError as exc:
            raise CaptureError(f"cannot build the capture graph of {self.session.path.name}: {exc}") from exc
        return function, values, output_count


def _mark_calls(graph: Any) -> list[Any]:
    """Put a string constant before and after every top-level method call, naming its module path.

    Inlining replaces each call by the callee's nodes, which land between the two constants.
    """
    import torch

    markers = []
    for node in list(graph.nodes()):
        if node.kind() != "prim::CallMethod":
            continue
        path = ".".join(_attribute_path(node.inputsAt(0)))
        for edge in ("begin", "end"):
            marker = graph.create("prim::Constant")
            marker.s_("value", f"{MARKER_PREFIX}{edge}:{path}")
            marker.output().setType(torch._C.StringType.get())
            if edge == "begin":
                marker.insertBefore(node)
            else:
                marker.insertAfter(node)
            markers.append(marker)
    return markers


def _attribute_path(value: Any) -> list[str]:
    """Return the attribute names from the module ``self`` to ``value``, e.g. ``["stack1", "conv1"]``."""
    names: list[str] = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.inputsAt(0).node()
    return names[::-1]


def _marker_text(node: Any) -> str | None:
    if node.kind() != "prim::Constant" or "value" not in node.attributeNames():
        return None
    if node.kindOf("value") != "s":
        return None
    text = node.s("value")
    return text if text.startswith(MARKER_PREFIX) else None


def _module_paths(graph: Any) -> dict[Any, tuple[str, ...]]:
    """Map each top-level node to the module path it runs in; root-level nodes get ``()``."""
    paths: dict[Any, tuple[str, ...]] = {}
    region: tuple[str, ...] = ()
    for node in graph.nodes():
        text = _marker_text(node)
        if text is not None:
            kind, _, path = text[len(MARKER_PREFIX):].partition(":")
            region = tuple(path.split(".")) if kind == "begin" and path else ()
            continue
        segments = HIERARCHY_SEGMENT.findall(node.getModuleHierarchy())
        inner = tuple(segment for segment in segments if segment not in PSEUDO_INSTANCES)
        if region and inner and inner[0] == region[-1]:
            inner = inner[1:]
        paths[node] = region + inner
    return paths


def _name_values(graph: Any, paths: dict[Any, tuple[str, ...]]) -> list[GraphValue]:
    found: list[GraphValue] = []
    used: dict[str, int] = {}
    for node, path in paths.items():
        tensors = [v for v in node.outputs() if v.type().kind() == "TensorType"]
        if not tensors or node.kind() in SKIPPED_KINDS or _is_alias(node):
            continue
        for index, value in enumerate(tensors):
            base = _base_name(node, value, path, paths)
            if len(tensors) > 1:
                base = f"{base}:{index}"
            count = used.get(base, 0)
            used[base] = count + 1
            name = base if count == 0 else f"{base}#{count}"
            found.append(GraphValue(value, name, ".".join(path) or name, node.kind(), index))
    return found


def _base_name(node: Any, value: Any, path: tuple[str, ...], paths: dict[Any, tuple[str, ...]]) -> str:
    operator = node.kind().partition("::")[2]
    if not path:
        return operator
    module = ".".join(path)
    for use in value.uses():
        if paths.get(use.user, ())[: len(path)] != path:
            return module
    return f"{module}/{operator}"


def _is_alias(node: Any) -> bool:
    source = ALIAS_KINDS.get(node.kind())
    return source is not None and node.inputsAt(0).node().kind() == source


def _has_in_place_ops(graph: Any) -> bool:
    for node in graph.nodes():
        operator = node.kind().partition("::")[2]
        if operator.endswith("_") and not operator.endswith("__"):
            return True
    return False


def _insert_clone(graph: Any, value: Any) -> Any:
    import torch

    none = graph.create("prim::Constant")
    none.output().setType(torch._C.NoneType.get())
    clone = graph.create("aten::clone", [value, none.output()])
    clone.output().setType(value.type())
    none.insertAfter(value.node())
    clone.insertAfter(none)
    return clone.output()


def _return_all(graph: Any, captured: list[Any]) -> int:
    """Make the graph return one tuple: its own outputs, then ``captured``. Return the own count."""
    import torch

    own = list(graph.outputs())
    items = own + captured
    pack = graph.create("prim::TupleConstruct", items)
    pack.output().setType(torch._C.TupleType([item.type() for item in items]))
    pack.insertBefore(graph.return_node())
    for index in reversed(range(len(own))):
        graph.eraseOutput(index)
    graph.registerOutput(pack.output())
    return len(own)


def _output_array(value: Any) -> np.ndarray:
    value = value.detach().cpu()
    return (value.dequantize() if value.is_quantized else value).numpy()
