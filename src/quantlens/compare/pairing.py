"""Pair the activations of a float model with those of its quantized version.

The quantized side is compared on the value the next layer consumes. In a QDQ model that is the
output of the DequantizeLinear that follows a QuantizeLinear, and the raw value before them and
the integer codes between them are aliases of that one activation. In a QOperator or PyTorch
model it is the integer output itself, dequantized. Pairs come from, in order:

1. ``layer``: the output of each matched layer (see :mod:`quantlens.compare.matching`);
2. ``exact``: equal names, also once quantizer suffixes are removed (``X_DequantizeLinear_Output``
   and ``X_quantized`` pair with ``X``);
3. ``normalized``: equal :func:`quantlens.compare.naming.normalize_name`, unique on both sides.

Quantizers fuse BatchNorm and ReLU into the layer before them. A quantized output is therefore
paired with the float value at the end of the BatchNorm/ReLU chain that follows the float layer.
That is the ReLU output when the quantized layer has ReLU in its op type (``ConvReLU2d``,
``quantized::conv2d_relu``) or when its output zero_point equals qmin. A zero_point at qmin
makes the representable range start at 0, which is how onnxruntime's QOperator models encode a
removed ReLU. Otherwise it is the last BatchNorm output.
BatchNorm joins the chain only when the quantized model has no BatchNorm of its own. A later
chain member whose name is one of the quantized aliases wins over that rule.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx

from quantlens.capture.records import Activation
from quantlens.compare.folding import op_family
from quantlens.compare.matching import LayerMatch, LayerMatching
from quantlens.compare.naming import normalize_name, strip_quantizer_suffixes
from quantlens.records import Quantization

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationPair:
    """A float activation and the quantized activation that carries the same value.

    ``quant_aliases`` are the quantized model's names for this one value: raw output, integer
    codes and dequantized output. ``layer_match`` is set for the output of a matched layer.
    """

    float_name: str
    quant_name: str
    float_layer: str
    quant_layer: str
    method: str
    quant_aliases: tuple[str, ...] = ()
    layer_match: LayerMatch | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class QuantValue:
    """One activation of the quantized model with every name it goes by."""

    activation: Activation
    aliases: tuple[str, ...]
    producer: str
    op_type: str
    quantization: Quantization | None

    @property
    def name(self) -> str:
        return self.activation.name

    def relu_fused(self, layer_op_type: str = "") -> bool:
        """True when this value went through a ReLU the quantizer fused away (module docstring)."""
        if "relu" in self.op_type.lower() or "relu" in layer_op_type.lower():
            return True
        q = self.quantization
        # NOTE: an output whose calibrated range starts at 0 without any ReLU also passes this
        # test (a pooling of ReLU outputs, say). It then pairs with a float ReLU right after it.
        return q is not None and q.axis is None and int(q.zero_point) == q.qmin


def quant_values(activations: Sequence[Activation], graph: onnx.GraphProto | None) -> list[QuantValue]:
    """Group the quantized model's activations into values, one per QuantizeLinear/DequantizeLinear chain."""
    by_name = {a.name: a for a in activations}
    represented: dict[str, str] = {}
    if graph is not None:
        for earlier, later in _qdq_links(graph):
            if earlier in by_name and later in by_name:
                represented[earlier] = later
    aliases: dict[str, list[str]] = defaultdict(list)
    for name in by_name:
        final = name
        while final in represented:
            final = represented[final]
        aliases[final].append(name)
    values = []
    for activation in activations:
        if activation.name not in aliases:
            continue
        names = aliases[activation.name]
        first = by_name[names[0]]
        quantization = next((by_name[n].tensor.quantization for n in names if by_name[n].tensor.quantization), None)
        values.append(QuantValue(activation, tuple(names), first.layer, first.op_type, quantization))
    return values


def _qdq_links(graph: onnx.GraphProto) -> Iterable[tuple[str, str]]:
    """Yield (input, output) of every QuantizeLinear and DequantizeLinear node."""
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input and node.output:
            yield node.input[0], node.output[0]


def onnx_consumers(graph: onnx.GraphProto) -> dict[str, set[str]]:
    """Map each value name to the output names of the nodes that consume it."""
    consumers: dict[str, set[str]] = defaultdict(set)
    for node in graph.node:
        for name in node.input:
            consumers[name].update(node.output)
    return consumers


class _FloatSide:
    """The float activations in execution order, and which of them are taken."""

    def __init__(
        self, activations: Sequence[Activation], consumers: dict[str, set[str]] | None, *, batchnorm_folded: bool
    ) -> None:
        self.activations = list(activations)
        self.position = {a.name: i for i, a in enumerate(self.activations)}
        self.consumers = consumers
        self.fusable = ("batchnorm", "relu") if batchnorm_folded else ("relu",)
        self.used: set[str] = set()

    def chain(self, start: Activation) -> list[Activation]:
        """Return ``start`` and the BatchNorm/ReLU activations that directly follow it."""
        chain = [start]
        index = self.position[start.name]
        while index + 1 < len(self.activations) and op_family(chain[-1].op_type) != "relu":
            following = self.activations[index + 1]
            if op_family(following.op_type) not in self.fusable or not self._feeds(chain[-1], following):
                break
            chain.append(following)
            index += 1
        return chain

    def _feeds(self, earlier: Activation, later: Activation) -> bool:
        # NOTE: without a graph (eager PyTorch) the chain follows execution order only.
        return self.consumers is None or later.name in self.consumers.get(earlier.name, set())

    def partner(self, start: Activation, value: QuantValue, layer_op_type: str = "") -> Activation:
        chain = self.chain(start)
        # A later chain member named like the quantized value (a QDQ Conv output that kept the
        # name of the ReLU fused into it) identifies the partner directly.
        named = [a for a in chain[1:] if a.name in value.aliases]
        if named:
            return named[0]
        if value.relu_fused(layer_op_type):
            return chain[-1]
        before_relu = [a for a in chain if op_family(a.op_type) != "relu"]
        return before_relu[-1] if before_relu else chain[0]


def pair_activations(
    float_activations: Sequence[Activation],
    quant_activations: Sequence[Activation],
    matching: LayerMatching,
    *,
    float_graph: onnx.GraphProto | None = None,
    quant_graph: onnx.GraphProto | None = None,
) -> tuple[ActivationPair, ...]:
    """Pair float and quantized activations (module docstring), in float execution order.

    ``float_graph`` and ``quant_graph`` are the ONNX graphs when a model is ONNX: the first
    checks that a BatchNorm/ReLU really consumes the value before it, the second finds the
    QuantizeLinear/DequantizeLinear aliases of each value.
    """
    consumers = onnx_consumers(float_graph) if float_graph is not None else None
    folded = not any(op_family(a.op_type) == "batchnorm" for a in quant_activations)
    float_side = _FloatSide(float_activations, consumers, batchnorm_folded=folded)
    values = quant_values(quant_activations, quant_graph)
    pairs = _layer_pairs(float_side, values, matching)
    taken = {pair.quant_name for pair in pairs}
    free = [value for value in values if value.name not in taken]
    pairs += _name_pairs(float_side, free)
    order = float_side.position
    return tuple(sorted(pairs, key=lambda pair: order[pair.float_name]))


def _make_pair(float_activation: Activation, value: QuantValue, method: str, match: LayerMatch | None = None) -> ActivationPair:
    return ActivationPair(
        float_name=float_activation.name,
        quant_name=value.name,
        float_layer=float_activation.layer,
        quant_layer=value.producer,
        method=method,
        quant_aliases=value.aliases,
        layer_match=match,
    )


def _layer_pairs(float_side: _FloatSide, values: list[QuantValue], matching: LayerMatching) -> list[ActivationPair]:
    pairs = []
    for match in matching.matches:
        start = next((a for a in float_side.activations if a.layer == match.float_name), None)
        value = next((v for v in values if v.producer == match.quant_name), None)
        if start is None or value is None:
            logger.info("no activation pair for layer %s -> %s", match.float_name, match.quant_name)
            continue
        partner = float_side.partner(start, value, match.quant_layer.op_type)
        if partner.name in float_side.used:
            continue
        float_side.used.add(partner.name)
        pairs.append(_make_pair(partner, value, "layer", match))
    return pairs


def _name_pairs(float_side: _FloatSide, values: list[QuantValue]) -> list[ActivationPair]:
    pairs = []
    free_names = {a.name: a for a in float_side.activations if a.name not in float_side.used}
    normalized: dict[str, list[Activation]] = defaultdict(list)
    for activation in free_names.values():
        normalized[normalize_name(activation.name)].append(activation)
    quant_normalized: dict[str, int] = defaultdict(int)
    for value in values:
        quant_normalized[normalize_name(value.name)] += 1
    for value in values:
        start, method = _find_by_name(value, free_names, normalized, quant_normalized)
        if start is None:
            continue
        partner = float_side.partner(start, value)
        if partner.name in float_side.used:
            continue
        float_side.used.add(partner.name)
        pairs.append(_make_pair(partner, value, method))
    return pairs


def _find_by_name(
    value: QuantValue,
    free_names: dict[str, Activation],
    normalized: dict[str, list[Activation]],
    quant_normalized: dict[str, int],
) -> tuple[Activation | None, str]:
    for alias in value.aliases:
        for candidate in (alias, strip_quantizer_suffixes(alias)):
            if candidate in free_names:
                return free_names[candidate], "exact"
    key = normalize_name(value.name)
    if key and quant_normalized[key] == 1 and len(normalized.get(key, [])) == 1:
        return normalized[key][0], "normalized"
    return None, ""
