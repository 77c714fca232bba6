"""Find the layer whose weights belong to a captured activation.

Capture backends name activations after graph values (ONNX: ``/stack1/conv1/Conv_output_0``)
or modules (PyTorch: ``stack1.conv1``), while readers name layers after nodes
(``/stack1/conv1/Conv``) or modules (``stack1.conv1``). Names are compared in a canonical form
in which ``/``, ``:`` and ``#`` become ``.``, so both spellings of one scope meet and output
suffixes (``block:1``, ``relu#2``) read as one more name part.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from quantlens.records import Layer


class MatchRule(str, enum.Enum):
    """Rule that matched an activation name to a layer."""

    EXACT = "exact"
    PREFIX = "prefix"
    NONE = "none"


@dataclass(frozen=True)
class LayerMatch:
    """The layer found for an activation (None when nothing matches) and the rule that found it."""

    activation: str
    layer: Layer | None
    rule: MatchRule

    @property
    def warning(self) -> str | None:
        """Text to show when no layer matches, else None."""
        if self.layer is not None:
            return None
        return (
            f"no layer of the model matches activation {self.activation!r}, so its weights "
            "cannot be shown next to it"
        )


def canonical_name(name: str) -> str:
    """Return ``name`` with ``/``, ``:`` and ``#`` as ``.`` and no leading or trailing dots.

    Example: ``/stack1/conv1/Conv_output_0`` gives ``stack1.conv1.Conv_output_0``.
    """
    return name.replace("/", ".").replace(":", ".").replace("#", ".").strip(".")


def resolve_layer(activation: str, layers: Sequence[Layer], *, producer: str | None = None) -> LayerMatch:
    """Find the layer of ``activation``: by exact name first, then by the longest name prefix.

    ``producer`` is the layer name the capture backend recorded for the activation, tried
    first. The rules, in order:

    1. exact: ``producer`` or ``activation`` equals a layer name, verbatim or canonical;
    2. prefix: the longest layer name that starts the activation name and ends at a ``.``,
       ``_`` or the end (``stack1.conv1`` and ``stack1.conv1.Conv`` both start
       ``stack1.conv1.Conv_output_0``);
    3. node: the layer name is the activation name plus one part that starts with an uppercase
       letter, as ONNX node names add the op (activation ``stack1.conv1`` and layer
       ``/stack1/conv1/Conv``). Lowercase parts are submodules, so block ``stack1`` does not
       match its ``stack1.conv1``.
    """
    by_canonical: dict[str, Layer] = {}
    for layer in layers:
        by_canonical.setdefault(canonical_name(layer.name), layer)

    for candidate in (producer, activation):
        if not candidate:
            continue
        for layer in layers:
            if layer.name == candidate:
                return LayerMatch(activation, layer, MatchRule.EXACT)
        if canonical_name(candidate) in by_canonical:
            return LayerMatch(activation, by_canonical[canonical_name(candidate)], MatchRule.EXACT)

    for candidate in (producer, activation):
        if not candidate:
            continue
        layer = _longest_prefix(canonical_name(candidate), by_canonical) or _node_of(
            canonical_name(candidate), by_canonical
        )
        if layer is not None:
            return LayerMatch(activation, layer, MatchRule.PREFIX)
    return LayerMatch(activation, None, MatchRule.NONE)


def _longest_prefix(name: str, by_canonical: dict[str, Layer]) -> Layer | None:
    best: str | None = None
    for layer_name in by_canonical:
        if not layer_name or not name.startswith(layer_name):
            continue
        rest = name[len(layer_name) :]
        if rest[:1] in (".", "_") and (best is None or len(layer_name) > len(best)):
            best = layer_name
    return by_canonical[best] if best is not None else None


def _node_of(name: str, by_canonical: dict[str, Layer]) -> Layer | None:
    if not name:
        return None
    for layer_name, layer in by_canonical.items():
        rest = layer_name[len(name) :]
        if layer_name.startswith(name + ".") and "." not in rest[1:] and rest[1:2].isupper():
            return layer
    return None
