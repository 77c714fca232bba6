"""Selector options for the app (tabs, layers, tensors, activations) and the subject they pick.

Option dicts map the label shown in a dropdown to the name it stands for, in graph order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from quantlens.app.naming import LayerMatch, MatchRule, resolve_layer
from quantlens.app.views import Subject
from quantlens.capture.records import CaptureResult
from quantlens.records import Layer, Model


class Page(str, enum.Enum):
    """The app's tabs: one model's weights and activations, or a float and a quantized model compared."""

    INSPECT = "Inspect"
    COMPARE = "Compare"


class Mode(str, enum.Enum):
    """Inspector content: a layer's constant tensors or the captured activations."""

    WEIGHTS = "Weights"
    ACTIVATIONS = "Activations"


def layer_options(model: Model) -> dict[str, str]:
    """Return label -> layer name for every layer that has tensors, e.g. ``stack1.conv1 (Conv2d)``."""
    return {f"{layer.name or '(root)'} ({layer.op_type})": layer.name for layer in model.layers if layer.tensors}


def default_layer_label(model: Model) -> str | None:
    """Return the label of the first layer with a weight, else of the first layer with tensors."""
    options = layer_options(model)
    for label, name in options.items():
        if model.layer(name).weight is not None:
            return label
    return next(iter(options), None)


def tensor_options(layer: Layer) -> dict[str, str]:
    """Return label -> tensor name for a layer's tensors, weight first, e.g. ``weight: conv.weight``."""
    return {f"{tensor.role}: {tensor.name}": tensor.name for tensor in layer.tensors}


def activation_options(result: CaptureResult) -> dict[str, str]:
    """Return label -> activation name in graph order, numbered, e.g. ``12. stack1.conv1 (Conv2d)``.

    Numbers start at 0, as the indices of ``quantlens activations --list-layers`` and
    ``--layer-index`` do, so a number seen in the app selects the same tensor on the command line.
    """
    width = len(str(max(len(result.activations) - 1, 0)))
    return {
        f"{index:0{width}d}. {activation.name} ({activation.op_type})": activation.name
        for index, activation in enumerate(result.activations)
    }


def default_activation_label(result: CaptureResult, model: Model, layer_name: str | None) -> str | None:
    """Return the label of the first activation produced by ``layer_name``, else of the first one."""
    options = activation_options(result)
    if layer_name is not None:
        for label, activation in zip(options, result.activations):
            match = resolve_layer(activation.name, model.layers, producer=activation.layer)
            if match.layer is not None and match.layer.name == layer_name:
                return label
    return next(iter(options), None)


@dataclass(frozen=True, repr=False, eq=False)
class Pick:
    """The subject on display and, for an activation, the layer match of its weights."""

    subject: Subject
    match: LayerMatch | None = None


def pick_subject(
    model: Model,
    *,
    mode: Mode,
    layer_name: str | None,
    tensor_name: str | None,
    result: CaptureResult | None,
    activation_name: str | None,
) -> Pick | None:
    """Return what the selectors point at, or None when nothing is selected yet.

    Names that are no longer in the model or capture (after switching models) raise
    LayerNotFoundError with the name.
    """
    if mode is Mode.ACTIVATIONS:
        if result is None or activation_name is None:
            return None
        activation = result.activation(activation_name)
        match = resolve_layer(activation.name, model.layers, producer=activation.layer)
        return Pick(Subject.of_activation(activation), match)
    if layer_name is None or tensor_name is None:
        return None
    layer = model.layer(layer_name)
    return Pick(Subject.of_layer(layer, layer.tensor(tensor_name)))


def matching_weight(match: LayerMatch) -> Subject | None:
    """Return the weight of the matched layer as a subject; None without a match or a weight."""
    if match.layer is None or match.layer.weight is None:
        return None
    return Subject.of_layer(match.layer, match.layer.weight)


def weight_note(match: LayerMatch) -> str:
    """Describe the layer an activation was matched to; ``match`` must have a layer."""
    if match.layer is None:
        raise ValueError(f"activation {match.activation!r} matched no layer, so there is nothing to describe")
    layer = match.layer
    rule = "exact name" if match.rule is MatchRule.EXACT else "name prefix"
    weights = "" if layer.weight is not None else " That layer has no weight tensor."
    return f"Matched to layer {layer.name or '(root)'} ({layer.op_type}) by {rule}.{weights}"

