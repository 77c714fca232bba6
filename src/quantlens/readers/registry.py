"""Reader registry: pick the reader for a file by its content first and its extension second."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quantlens.errors import ModelFormatError
from quantlens.records import Model

logger = logging.getLogger(__name__)

HEAD_SIZE = 64


@dataclass(frozen=True)
class Reader:
    """One file format: a cheap ``sniff`` over the first bytes and a ``load`` that reads the file.

    ``sniff(head)`` gets the first 64 bytes and returns True when they are this format's
    signature. ``load(path, trust=...)`` returns the Model; ``trust`` allows full unpickling and
    only matters for formats that can contain pickles.
    """

    name: str
    extensions: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    load: Callable[..., Model]


_READERS: list[Reader] = []
_builtins_loaded = False


def register(reader: Reader) -> Reader:
    """Add ``reader`` to the registry; later registrations are tried after earlier ones."""
    _READERS.append(reader)
    return reader


def readers() -> list[Reader]:
    """Return the registered readers, loading the built-in ones on first use."""
    global _builtins_loaded
    if not _builtins_loaded:
        # A reader module imported earlier may already have registered itself, so a flag, not
        # an empty registry, records whether the built-in modules were imported.
        from quantlens.readers import (  # noqa: F401  (importing a reader module registers it)
            keras_reader,
            onnx_sniff,
            tflite_reader,
            torch_reader,
        )

        _builtins_loaded = True
    return list(_READERS)


def choose_reader(path: Path) -> Reader:
    """Return the reader for ``path``: a content signature match, else an extension match."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_SIZE)
    if not head:
        raise ModelFormatError(f"{str(path)!r} is empty (0 bytes); is the file complete?")
    for reader in readers():
        if reader.sniff(head):
            return reader
    suffix = path.suffix.lower()
    for reader in readers():
        if suffix in reader.extensions:
            logger.info("no signature matched %s; using the %s reader by extension", path, reader.name)
            return reader
    known = sorted({ext for r in readers() for ext in r.extensions})
    raise ModelFormatError(
        f"{str(path)!r} is not a model format quantlens reads (no known signature, extension "
        f"{suffix or 'none'!r}); supported extensions: {', '.join(known)}"
    )


def open_model(path: str | os.PathLike[str], *, trust: bool = False) -> Model:
    """Open a model file, or a bundled model by name, with the matching reader.

    ``trust=True`` allows full unpickling of PyTorch files, which can run arbitrary code: pass it
    only for files from a source you trust.
    """
    from quantlens.zoo.bundled import resolve_model

    file_path = resolve_model(path)
    if file_path.is_dir():
        raise ModelFormatError(f"{str(file_path)!r} is a folder; pass a model file")
    reader = choose_reader(file_path)
    logger.debug("opening %s with the %s reader", file_path, reader.name)
    return reader.load(file_path, trust=trust)
