"""The models the app lists: the bundled ones plus the files and folders it was started with.

The app opens only files in this catalog. The model selector offers catalog labels, and
:meth:`ModelCatalog.choice` rejects any other label, so no UI input can name an arbitrary path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quantlens.errors import ModelNotFoundError
from quantlens.zoo.bundled import MODEL_SUFFIXES, bundled_models, find_model_files

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """One selectable model: its label in the selector, its file and a one-line description."""

    label: str
    path: Path
    description: str
    bundled: bool


@dataclass(frozen=True)
class ModelCatalog:
    """The selectable models in display order, plus the given paths that could not be listed."""

    choices: tuple[ModelChoice, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def labels(self) -> list[str]:
        return [choice.label for choice in self.choices]

    @property
    def default_label(self) -> str | None:
        """The first model the user gave, else the first bundled ONNX model, else the first one.

        A bundled ONNX model comes first because it opens without importing PyTorch, which
        keeps the app's first page quick. None for an empty catalog.
        """
        user_models = [choice for choice in self.choices if not choice.bundled]
        onnx = [choice for choice in self.choices if choice.path.suffix.lower() == ".onnx"]
        for group in (user_models, onnx, list(self.choices)):
            if group:
                return group[0].label
        return None

    def choice(self, label: str) -> ModelChoice:
        """Return the model listed under ``label``; any other label raises ModelNotFoundError."""
        for choice in self.choices:
            if choice.label == label:
                return choice
        raise ModelNotFoundError(
            f"model {label!r} is not in the app's model list; start the app with the file or its "
            "folder to list it (`quantlens app PATH`)"
        )


def build_catalog(paths: Sequence[Path], *, include_bundled: bool = True) -> ModelCatalog:
    """List the bundled models, then each given file and the model files directly in each folder.

    A folder lists files with a model extension (``.onnx``, ``.pt``, ...), not its subfolders.
    Missing paths and files without a model extension are reported in ``problems``, not listed.
    Each file is listed once, and labels stay unique by adding the parent folder when names clash.
    """
    problems: list[str] = []
    entries: list[tuple[Path, str, bool]] = []
    if include_bundled:
        entries.extend((model.path, model.description, True) for model in bundled_models())
    for path in paths:
        entries.extend((found, "", False) for found in _expand(path, problems))

    seen: set[Path] = set()
    unique: list[tuple[Path, str, bool]] = []
    for path, description, bundled in entries:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, description, bundled))
    return ModelCatalog(choices=tuple(_label_choices(unique)), problems=tuple(problems))


def _expand(path: Path, problems: list[str]) -> list[Path]:
    if path.is_dir():
        found = find_model_files(path)
        if not found:
            problems.append(
                f"folder {str(path)!r} contains no model files (extensions {', '.join(MODEL_SUFFIXES)})"
            )
        return found
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            problems.append(
                f"{str(path)!r} is not listed: its extension is not one of {', '.join(MODEL_SUFFIXES)}"
            )
            return []
        return [path]
    problems.append(f"model path not found: {str(path)!r}")
    return []


def _label_choices(entries: Iterable[tuple[Path, str, bool]]) -> list[ModelChoice]:
    entries = list(entries)
    name_counts: dict[str, int] = {}
    for path, _, _ in entries:
        name_counts[path.name] = name_counts.get(path.name, 0) + 1
    choices = []
    for path, description, bundled in entries:
        label = path.name
        if name_counts[path.name] > 1:
            label = f"{path.name} (bundled)" if bundled else f"{path.name} ({path.parent})"
        choices.append(ModelChoice(label=label, path=path, description=description, bundled=bundled))
    return choices
