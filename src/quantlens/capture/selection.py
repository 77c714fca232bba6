"""Activation selection: every capture point, or the requested activation and layer names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quantlens.capture.records import Activation, CapturePoint
from quantlens.errors import LayerNotFoundError

LIST_HINT = "list them with `quantlens activations MODEL --list-layers`"
# Separators that eager capture appends to a module name: tuple index, dict key, repeated call.
SUFFIX_SEPARATORS = (":", ".", "#")


@dataclass(frozen=True)
class Selection:
    """The requested activation or layer names; ``names`` None means every capture point.

    A requested name matches an activation whose name or layer equals it, so a layer name selects
    every output of that layer.
    """

    names: frozenset[str] | None = None

    def keeps(self, name: str, layer: str) -> bool:
        """True when the activation ``name`` of ``layer`` was requested."""
        return self.names is None or name in self.names or layer in self.names

    def may_produce(self, layer: str) -> bool:
        """True when ``layer`` or an output name derived from it (``layer:1``) was requested."""
        if self.names is None or layer in self.names:
            return True
        return any(_derives_from(name, layer) for name in self.names)

    def check_found(self, activations: Iterable[Activation], *, model: str) -> None:
        """Raise LayerNotFoundError for a requested name that no captured activation matched."""
        if self.names is None:
            return
        found = {a.name for a in activations} | {a.layer for a in activations}
        missing = sorted(self.names - found)
        if missing:
            raise LayerNotFoundError(
                f"{model} produced no activation {missing[0]!r} in this run (a module that forward() "
                f"did not call, or an output suffix that does not exist); {LIST_HINT}"
            )


def _derives_from(name: str, layer: str) -> bool:
    return any(name.startswith(layer + separator) for separator in SUFFIX_SEPARATORS)


def select(
    points: Sequence[CapturePoint],
    requested: Iterable[str] | None,
    *,
    model: str,
    suffixes: bool = False,
) -> Selection:
    """Check requested names against the capture points and return the Selection.

    ``suffixes`` also accepts a point name followed by an eager output suffix (``block:1``,
    ``heads.cls``), which only a run can confirm. Raises LayerNotFoundError for the first unknown
    name, with close matches.
    """
    if requested is None:
        return Selection()
    names = [str(name) for name in requested]
    if not names:
        raise LayerNotFoundError("the list of requested layers is empty; pass None to capture every activation")
    known = {point.name for point in points} | {point.layer for point in points}
    for name in names:
        if name in known:
            continue
        if suffixes and any(_derives_from(name, point.name) for point in points):
            continue
        raise _unknown_name(name, known, model=model, count=len(points))
    return Selection(frozenset(names))


def select_indices(points: Sequence[CapturePoint], indices: Iterable[int], *, model: str) -> Selection:
    """Return the Selection of the capture points at ``indices`` (0-based, as --list-layers numbers them)."""
    names = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(points):
            raise LayerNotFoundError(
                f"layer index {index!r} is out of range: {model} has capture points 0-{len(points) - 1}; "
                f"{LIST_HINT}"
            )
        names.append(points[index].name)
    return Selection(frozenset(names))


def _unknown_name(name: str, known: set[str], *, model: str, count: int) -> LayerNotFoundError:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ";"
    return LayerNotFoundError(f"no layer or activation {name!r} in {model} ({count} capture points){hint} {LIST_HINT}")
