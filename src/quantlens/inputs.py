"""Model inputs: CIFAR-10 samples, random input and image files, parsed from one syntax.

The input syntax, shared by the CLI and the API:

- ``cifar10:3``: test sample 3 (0-9999); ``cifar10:0-99`` a range (both ends included);
  ``cifar10:1,5,9`` a list;
- ``random`` or ``random:SEED``: one random input drawn from the model's expected range;
- any other text: an image file path (PNG or JPEG), converted to RGB and resized.

Image-like inputs become uint8 RGB arrays ``(N, H, W, 3)``; the adapter in
:mod:`quantlens.adapter` turns them into the model's layout, scaling and dtype.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantlens.datasets.cifar10 import CLASS_NAMES, load_split
from quantlens.errors import DatasetError, InputError

logger = logging.getLogger(__name__)

CIFAR10_TEST_SIZE = 10000
MAX_IMAGE_PIXELS = 50_000_000  # larger files are rejected before decoding (decompression bombs)


@dataclass(frozen=True, repr=False, eq=False)
class InputBatch:
    """A batch of inputs before adaptation to a model.

    ``images`` is uint8 RGB ``(N, H, W, 3)`` for image-like inputs, else None; ``random_seed``
    is set for random input, which is drawn later in the model's own shape and range.
    ``labels`` holds the CIFAR-10 label per sample or None; ``notices`` lists what was changed
    on the way in (resizing, conversion to RGB).
    """

    images: np.ndarray | None
    labels: tuple[int | None, ...]
    descriptions: tuple[str, ...]
    random_seed: int | None = None
    notices: tuple[str, ...] = field(default=())
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.descriptions)

    def __repr__(self) -> str:
        return f"InputBatch({len(self)} inputs: {', '.join(self.descriptions[:3])}{'...' if len(self) > 3 else ''})"


def parse_indices(text: str) -> list[int]:
    """Parse ``"3"``, ``"0-99"`` or ``"1,5,9"`` into CIFAR-10 test indices (0-9999).

    Raises InputError naming the offending text for non-numbers, reversed ranges and indices
    outside 0-9999.
    """
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError(
                f"invalid CIFAR-10 index {part!r}: use a number 0-{CIFAR10_TEST_SIZE - 1}, "
                "a range like 0-99, or a list like 1,5,9"
            )
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise InputError(f"invalid CIFAR-10 range {part!r}: the end is before the start")
        for index in (start, stop):
            if index >= CIFAR10_TEST_SIZE:
                raise InputError(
                    f"CIFAR-10 index {index} is out of range: the test set has indices "
                    f"0-{CIFAR10_TEST_SIZE - 1}"
                )
        indices.extend(range(start, stop + 1))
    return indices


def cifar10_samples(indices: Sequence[int], *, data_dir: str | os.PathLike[str] | None = None) -> InputBatch:
    """Load CIFAR-10 test samples by index from the pickle layout or class folders."""
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < CIFAR10_TEST_SIZE:
            raise InputError(
                f"CIFAR-10 index {index!r} is out of range: use 0-{CIFAR10_TEST_SIZE - 1}"
            )
    split = load_split(data_dir, "test")
    if len(split) <= max(indices, default=0):
        raise DatasetError(
            f"the CIFAR-10 test split in {str(split.source)!r} has only {len(split)} images; "
            f"index {max(indices)} is not in it"
        )
    chosen = np.asarray(indices, dtype=np.int64)
    labels = tuple(int(v) for v in split.labels[chosen])
    descriptions = tuple(f"cifar10 test #{i} ({CLASS_NAMES[label]})" for i, label in zip(indices, labels))
    return InputBatch(images=split.images[chosen], labels=labels, descriptions=descriptions)


def random_input(seed: int = 0) -> InputBatch:
    """Request one random input, which the adapter draws in the model's shape and range."""
    return InputBatch(images=None, labels=(None,), descriptions=(f"random (seed {seed})",), random_seed=seed)


def load_images(paths: Sequence[str | os.PathLike[str]], *, size: tuple[int, int] | None = None) -> InputBatch:
    """Read image files as uint8 RGB, resized to ``size`` (height, width) when given.

    Grayscale, palette, RGBA and 16-bit images are converted to 8-bit RGB; each conversion and
    resize is reported in ``notices``. Files that are not images raise InputError.
    """
    arrays, descriptions, notices = [], [], []
    for raw_path in paths:
        path = Path(raw_path).expanduser()
        if not path.is_file():
            raise InputError(f"image file not found: {str(path)!r}")
        array, note = _decode_image(path, label=str(path), size=size)
        if note:
            notices.append(f"{path.name}: {note}")
        arrays.append(array)
        descriptions.append(path.name)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"images of different sizes {sorted(shapes)} cannot form one batch; pass a size")
    for notice in notices:
        logger.info("%s", notice)
    return InputBatch(
        images=np.stack(arrays),
        labels=tuple(None for _ in arrays),
        descriptions=tuple(descriptions),
        notices=tuple(notices),
    )


def load_image_bytes(data: bytes, *, name: str, size: tuple[int, int] | None = None) -> InputBatch:
    """Decode one image file's bytes (an upload) as :func:`load_images` decodes a file.

    ``name`` is the file name shown in descriptions and error messages.
    """
    array, note = _decode_image(io.BytesIO(data), label=name, size=size)
    notices = (f"{name}: {note}",) if note else ()
    for notice in notices:
        logger.info("%s", notice)
    return InputBatch(images=array[np.newaxis], labels=(None,), descriptions=(name,), notices=notices)


def _decode_image(
    source: Path | io.BytesIO, *, label: str, size: tuple[int, int] | None
) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"image {label!r} is {image.width}x{image.height} pixels, more than "
                    f"the {MAX_IMAGE_PIXELS} quantlens decodes; downscale it first"
                )
            return _to_rgb(image, size)
    except UnidentifiedImageError as exc:
        # Pillow's message names the file object (a BytesIO for uploads), not the file.
        raise InputError(f"{label!r} is not a readable image: Pillow recognizes no image format in it; use PNG or JPEG") from exc
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{label!r} is not a readable image (PNG or JPEG): {exc}") from exc


def _to_rgb(image: object, size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    from PIL import Image

    assert isinstance(image, Image.Image)
    changes = []
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the top 8 bits rather than clipping at 255.
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8))
        changes.append("16-bit converted to 8-bit")
    if image.mode != "RGB":
        changes.append(f"mode {image.mode} converted to RGB")
        image = image.convert("RGB")
    if size is not None and (image.height, image.width) != tuple(size):
        changes.append(f"resized from {image.width}x{image.height} to {size[1]}x{size[0]}")
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8), ", ".join(changes)


def parse_input(
    specs: str | Sequence[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    size: tuple[int, int] | None = None,
) -> InputBatch:
    """Turn input specifications (see the module docstring) into one InputBatch.

    ``cifar10:...`` and ``random[:SEED]`` stand alone; several image paths form one batch.
    """
    items = [specs] if isinstance(specs, str) else list(specs)
    forms = "use cifar10:INDEX, cifar10:A-B, random[:SEED] or image file paths"
    if not items or not all(str(item).strip() for item in items):
        raise InputError(f"empty input: {forms}")
    first = items[0]
    is_random = first == "random" or first.startswith("random:")
    if first.startswith("cifar10:") or is_random:
        if len(items) > 1:
            raise InputError(f"{first!r} cannot be combined with other inputs; pass it alone")
        if first.startswith("cifar10:"):
            return cifar10_samples(parse_indices(first[len("cifar10:"):]), data_dir=data_dir)
        return random_input(_parse_seed(first))
    missing = [str(item) for item in items if not Path(item).expanduser().is_file()]
    if missing:
        # Whatever is not cifar10: or random: must be an image file.
        raise InputError(f"image file not found: {missing[0]!r}; {forms}")
    return load_images(items, size=size)


def _parse_seed(text: str) -> int:
    if text == "random":
        return 0
    match = re.fullmatch(r"random:(\d+)", text)
    if match is None:
        raise InputError(f"invalid random input {text!r}: use random or random:SEED with SEED a number >= 0")
    return int(match.group(1))
