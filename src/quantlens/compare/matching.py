"""Match the layers of a float model with those of its quantized version, in any pair of formats.

Stages, each applied to the layers the earlier ones left unmatched:

1. ``mapping``: a user mapping (float name -> quantized name) overrides everything else;
2. ``exact``: equal layer names;
3. ``normalized``: equal names once quantizer suffixes are removed (``/preprocess/Mul_quant``),
   then after :func:`quantlens.compare.naming.normalize_name` (``/stack1/conv1/Conv_quant`` and
   ``stack1.conv1``), in both cases only when the name is unique on both sides;

Stages 2 and 3 never pair a quantize or dequantize op with a layer of another kind, because
converters name these ops after the value they convert. For example, the TFLite converter names
the final DEQUANTIZE output of an int8 model after the model output. In the float model, that
name belongs to the output of the last FULLY_CONNECTED.
4. ``order``: layers with a weight are grouped by op family and weight shape, with dimension
   sizes in any order because layouts differ between formats. When a group has as many float
   as quantized layers, they are paired in graph order;
5. ``cosine``: in groups of unequal size, pairs are chosen greedily by the cosine similarity of
   the float and the dequantized weights, above ``min_cosine``.

Layers that no stage pairs are reported in ``unmatched_float`` and ``unmatched_quant``. When
the quantized model has no BatchNorm at all, the quantizer folded each of them away. So a float
BatchNorm that directly follows a convolution or linear layer is attached to that layer as
``float_batchnorm`` instead of being matched on its own.
"""

from __future__ import annotations

import difflib
import enum
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlens.compare.folding import align, comparable_tensor, float_weight, op_family
from quantlens.compare.metrics import cosine_similarity
from quantlens.compare.naming import normalize_name, strip_quantizer_suffixes
from quantlens.errors import ComparisonError, InputError
from quantlens.records import Layer, Model

logger = logging.getLogger(__name__)

DEFAULT_MIN_COSINE = 0.5
# op_family of the ops that only convert between float and integer values.
CONVERSION_FAMILIES = frozenset({"quantize", "dequantize", "quantizelinear", "dequantizelinear", "quantstub", "dequantstub"})


class MatchMethod(str, enum.Enum):
    """The stage that paired two layers."""

    MAPPING = "mapping"
    EXACT = "exact"
    NORMALIZED = "normalized"
    ORDER = "order"
    COSINE = "cosine"

    def __str__(self) -> str:
        return self.value

    @property
    def description(self) -> str:
        """Return how the two layers were paired, in words (``"exact name"``)."""
        return {
            MatchMethod.MAPPING: "the given name mapping",
            MatchMethod.EXACT: "exact name",
            MatchMethod.NORMALIZED: "normalized name",
            MatchMethod.ORDER: "position, op type and weight shape",
            MatchMethod.COSINE: "weight similarity (cosine)",
        }[self]


@dataclass(frozen=True, repr=False, eq=False)
class LayerMatch:
    """A float layer, the quantized layer that computes the same thing, and how they were paired.

    ``float_batchnorm`` is the float model's BatchNorm that the quantizer folded into this layer;
    weight errors are measured after folding it into the float weight.
    """

    float_layer: Layer
    quant_layer: Layer
    method: MatchMethod
    float_batchnorm: Layer | None = None

    @property
    def float_name(self) -> str:
        return self.float_layer.name

    @property
    def quant_name(self) -> str:
        return self.quant_layer.name

    def __repr__(self) -> str:
        folded = f", folds {self.float_batchnorm.name!r}" if self.float_batchnorm is not None else ""
        return f"LayerMatch({self.float_name!r} -> {self.quant_name!r}, {self.method}{folded})"


@dataclass(frozen=True, repr=False, eq=False)
class LayerMatching:
    """Matched pairs in float graph order, and the layers of each side left unmatched."""

    matches: tuple[LayerMatch, ...]
    unmatched_float: tuple[Layer, ...]
    unmatched_quant: tuple[Layer, ...]

    def for_float(self, name: str) -> LayerMatch | None:
        """Return the match of the float layer called ``name``, or None when it is unmatched."""
        return next((m for m in self.matches if m.float_name == name), None)

    def for_quant(self, name: str) -> LayerMatch | None:
        """Return the match of the quantized layer called ``name``, or None when it is unmatched."""
        return next((m for m in self.matches if m.quant_name == name), None)

    def __repr__(self) -> str:
        return (
            f"LayerMatching({len(self.matches)} matches, {len(self.unmatched_float)} float and "
            f"{len(self.unmatched_quant)} quantized layers unmatched)"
        )


def load_mapping(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a mapping file: one JSON object of float layer name -> quantized layer name."""
    file_path = Path(path)
    try:
        data = json.loads(file_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"mapping file not found: {str(file_path)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read mapping file {str(file_path)!r}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(
            f"mapping file {str(file_path)!r} must hold one JSON object of float layer name to quantized "
            'layer name strings, e.g. {"stack1.conv1": "/stack1/conv1/Conv_quant"}'
        )
    return data


class _Pairing:
    """The layers still free on each side, in graph order, and the pairs made so far."""

    def __init__(self, float_layers: Iterable[Layer], quant_layers: Iterable[Layer], folds: dict[int, Layer]) -> None:
        self.free_float = list(float_layers)
        self.free_quant = list(quant_layers)
        self.folds = folds
        self.matches: list[LayerMatch] = []

    def pair(self, float_layer: Layer, quant_layer: Layer, method: MatchMethod) -> None:
        self.free_float.remove(float_layer)
        self.free_quant.remove(quant_layer)
        batchnorm = self.folds.get(id(float_layer))
        self.matches.append(LayerMatch(float_layer, quant_layer, method, batchnorm))

    def result(self) -> LayerMatching:
        matches = sorted(self.matches, key=lambda m: m.float_layer.index)
        unmatched = list(self.free_float) + [self.folds[id(layer)] for layer in self.free_float if id(layer) in self.folds]
        return LayerMatching(
            matches=tuple(matches),
            unmatched_float=tuple(sorted(unmatched, key=lambda layer: layer.index)),
            unmatched_quant=tuple(self.free_quant),
        )


def match_layers(
    float_model: Model,
    quant_model: Model,
    *,
    mapping: Mapping[str, str] | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> LayerMatching:
    """Pair every layer of ``float_model`` with its counterpart in ``quant_model``.

    ``mapping`` (float name -> quantized name) is applied first and overrides the matcher; a
    name in it that a model does not contain raises ComparisonError naming every such name.
    See the module docstring for the stages.
    """
    folds = batchnorm_folds(float_model, quant_model)
    folded = {id(bn) for bn in folds.values()}
    pairing = _Pairing((l for l in float_model.layers if id(l) not in folded), quant_model.layers, folds)
    if mapping:
        _apply_mapping(pairing, mapping, float_model, quant_model, folded)
    _match_by_key(pairing, lambda layer: layer.name, MatchMethod.EXACT)
    _match_by_key(pairing, lambda layer: strip_quantizer_suffixes(layer.name), MatchMethod.NORMALIZED)
    _match_by_key(pairing, lambda layer: normalize_name(layer.name), MatchMethod.NORMALIZED)
    _match_by_shape(pairing, min_cosine=min_cosine)
    result = pairing.result()
    logger.info("matched %d layers by %s", len(result.matches), ", ".join(sorted({str(m.method) for m in result.matches})))
    return result


def batchnorm_folds(float_model: Model, quant_model: Model) -> dict[int, Layer]:
    """Map id(float conv or linear layer) -> the BatchNorm right after it that was folded away.

    Only when the quantized model has no BatchNorm layer, and only when the BatchNorm's channel
    count equals the layer's output channels (axis 0 of its weight).
    """
    if any(op_family(layer.op_type) == "batchnorm" for layer in quant_model.layers):
        return {}
    folds: dict[int, Layer] = {}
    layers = float_model.layers
    for layer, following in zip(layers, layers[1:]):
        if op_family(layer.op_type) not in ("conv", "linear") or op_family(following.op_type) != "batchnorm":
            continue
        if layer.weight is None or following.weight is None or not layer.weight.shape:
            continue
        if following.weight.shape == (layer.weight.shape[0],):
            folds[id(layer)] = following
    return folds


def _apply_mapping(
    pairing: _Pairing, mapping: Mapping[str, str], float_model: Model, quant_model: Model, folded: set[int]
) -> None:
    float_names = {layer.name: layer for layer in float_model.layers}
    quant_names = {layer.name: layer for layer in quant_model.layers}
    problems = _unknown(mapping.keys(), float_names, float_model) + _unknown(mapping.values(), quant_names, quant_model)
    repeated = sorted({name for name in mapping.values() if list(mapping.values()).count(name) > 1})
    problems += [f"quantized layer {name!r} is mapped more than once" for name in repeated]
    problems += [
        f"float layer {name!r} is a BatchNorm folded into the layer before it; map that layer instead"
        for name in mapping if name in float_names and id(float_names[name]) in folded
    ]
    if problems:
        raise ComparisonError("invalid layer mapping: " + "; ".join(problems))
    for float_name, quant_name in mapping.items():
        pairing.pair(float_names[float_name], quant_names[quant_name], MatchMethod.MAPPING)


def _unknown(names: Iterable[str], known: Mapping[str, Layer], model: Model) -> list[str]:
    problems = []
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        problems.append(f"{name!r} is not a layer of {model.path.name}{hint}")
    return problems


def _match_by_key(pairing: _Pairing, key: Callable[[Layer], str], method: MatchMethod) -> None:
    float_groups = _group(pairing.free_float, key)
    quant_groups = _group(pairing.free_quant, key)
    for name, float_layers in float_groups.items():
        quant_layers = quant_groups.get(name, [])
        if name and len(float_layers) == 1 and len(quant_layers) == 1 and _same_kind(float_layers[0], quant_layers[0]):
            pairing.pair(float_layers[0], quant_layers[0], method)


def _same_kind(float_layer: Layer, quant_layer: Layer) -> bool:
    """Return False when exactly one of the two layers is a quantize or dequantize op."""
    float_converts = op_family(float_layer.op_type) in CONVERSION_FAMILIES
    return float_converts == (op_family(quant_layer.op_type) in CONVERSION_FAMILIES)


def _group(layers: Iterable[Layer], key: Callable[[Layer], object]) -> dict[object, list[Layer]]:
    groups: dict[object, list[Layer]] = defaultdict(list)
    for layer in layers:
        groups[key(layer)].append(layer)
    return groups


def _shape_key(layer: Layer) -> tuple[str, tuple[int, ...]] | None:
    tensor = comparable_tensor(layer)
    if tensor is None or layer.weight is None:
        return None
    return op_family(layer.op_type), tuple(sorted(tensor.shape))


def _match_by_shape(pairing: _Pairing, *, min_cosine: float) -> None:
    float_groups = _group(pairing.free_float, _shape_key)
    quant_groups = _group(pairing.free_quant, _shape_key)
    for key, float_layers in float_groups.items():
        quant_layers = quant_groups.get(key, [])
        if key is None or not quant_layers:
            continue
        if len(float_layers) == len(quant_layers):
            for float_layer, quant_layer in zip(float_layers, quant_layers):
                pairing.pair(float_layer, quant_layer, MatchMethod.ORDER)
        else:
            _match_by_cosine(pairing, float_layers, quant_layers, min_cosine=min_cosine)


def _match_by_cosine(pairing: _Pairing, float_layers: list[Layer], quant_layers: list[Layer], *, min_cosine: float) -> None:
    scores = np.full((len(float_layers), len(quant_layers)), -np.inf)
    for i, float_layer in enumerate(float_layers):
        reference = float_weight(float_layer, pairing.folds.get(id(float_layer)))
        for j, quant_layer in enumerate(quant_layers):
            quantized = comparable_tensor(quant_layer)
            if reference is not None and quantized is not None:
                scores[i, j] = cosine_similarity(reference, align(np.asarray(quantized.values), reference)[0])
    while scores.size and np.nanmax(scores) >= min_cosine:
        i, j = np.unravel_index(int(np.nanargmax(scores)), scores.shape)
        pairing.pair(float_layers[i], quant_layers[j], MatchMethod.COSINE)
        scores[i, :] = -np.inf
        scores[:, j] = -np.inf
