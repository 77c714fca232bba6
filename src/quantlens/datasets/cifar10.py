"""CIFAR-10 readers for the python-pickle layout and for class folders of images.

Both layouts yield the same record: ``images`` as uint8 ``(N, 32, 32, 3)`` (channels last, RGB)
and ``labels`` as int64 ``(N,)`` in 0-9, in the order of CIFAR-10's class names.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantlens.errors import DatasetError, DatasetNotFoundError

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATA_DIR_ENV = "QUANTLENS_CIFAR10_DIR"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DOWNLOAD_HINT = (
    "Pass --data-dir DIR (or set QUANTLENS_CIFAR10_DIR) to a folder with the python-pickle layout "
    "(test_batch) or class folders of images, or run `quantlens data cifar10` to download it"
)


@dataclass(frozen=True, repr=False)
class Cifar10Split:
    """One CIFAR-10 split held in memory.

    ``images`` is uint8 ``(N, 32, 32, 3)``, channels last; ``labels`` is int64 ``(N,)``.
    """

    images: np.ndarray
    labels: np.ndarray
    source: Path
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Cifar10Split({len(self)} images from {str(self.source)!r})"


def default_data_dirs() -> list[Path]:
    """List the folders searched for CIFAR-10 when no directory is given, in order."""
    candidates: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        candidates.append(Path(env))
    candidates.append(Path.home() / ".cache" / "quantlens" / "cifar-10-batches-py")
    return candidates


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the CIFAR-10 folder to read: ``data_dir`` when given, else the first default found.

    Raises DatasetNotFoundError, naming the folders tried and how to get the data.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"CIFAR-10 folder not found: {str(path)!r}. {DOWNLOAD_HINT}.")
        return path
    tried = default_data_dirs()
    for path in tried:
        if path.is_dir():
            return path
    names = ", ".join(repr(str(p)) for p in tried)
    raise DatasetNotFoundError(f"CIFAR-10 not found (looked in {names}). {DOWNLOAD_HINT}.")


def load_split(data_dir: str | os.PathLike[str] | None, split: str = "test") -> Cifar10Split:
    """Load the ``"test"`` or ``"train"`` split from either supported layout.

    The pickle layout is tried first (``test_batch`` or ``data_batch_1..5``), then class folders
    (``DIR/<split>/<class>/*.jpg`` or ``DIR/<class>/*.jpg``).
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    root = resolve_data_dir(data_dir)
    pickle_names = ("test_batch",) if split == "test" else TRAIN_BATCHES
    for folder in (root, root / "cifar-10-batches-py"):
        if all((folder / name).is_file() for name in pickle_names):
            return _load_pickle_batches([folder / name for name in pickle_names])
    for folder in (root / split, root):
        if _looks_like_class_folders(folder):
            return load_image_folders(folder)
    raise DatasetNotFoundError(
        f"no CIFAR-10 {split} split in {str(root)!r}: expected "
        f"{' and '.join(pickle_names[:1])}{'..' + pickle_names[-1] if len(pickle_names) > 1 else ''} "
        f"or class folders ({split}/airplane/*.jpg, ...). {DOWNLOAD_HINT}."
    )


def _load_pickle_batches(paths: list[Path]) -> Cifar10Split:
    images, labels = [], []
    for path in paths:
        batch = _read_pickle_batch(path)
        images.append(batch[0])
        labels.append(batch[1])
    return Cifar10Split(np.concatenate(images), np.concatenate(labels), paths[0].parent)


def _read_pickle_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The batch files are pickles by format. A restricted unpickler accepts only the builtins and
    # numpy array reconstruction they need, so a planted file cannot run code.
    try:
        with path.open("rb") as handle:
            batch = _RestrictedUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(
            f"corrupt CIFAR-10 batch {str(path)!r}: {exc}. Replace the file with an intact copy."
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(
            f"CIFAR-10 batch {str(path)!r} has no b'data' and b'labels' entries; "
            "is this a CIFAR-10 python-version batch file?"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(
            f"CIFAR-10 batch {str(path)!r} has data of shape {data.shape} and dtype {data.dtype}; "
            "expected uint8 (N, 3072)"
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(
            f"CIFAR-10 batch {str(path)!r} has {labels.shape[0]} labels for {data.shape[0]} images "
            "or labels outside 0-9"
        )
    # Rows are channel-major (1024 red, 1024 green, 1024 blue); convert to (N, 32, 32, 3).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def _looks_like_class_folders(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir() if p.is_dir()}
    return set(CLASS_NAMES) <= names


def load_image_folders(folder: str | os.PathLike[str]) -> Cifar10Split:
    """Load class folders (``folder/<class name>/*.jpg``) into memory, files sorted by name."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                with Image.open(path) as image:
                    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise DatasetError(f"unreadable CIFAR-10 image {str(path)!r}: {exc}") from exc
            if array.shape != (32, 32, 3):
                raise DatasetError(
                    f"CIFAR-10 image {str(path)!r} is {array.shape[1]}x{array.shape[0]}; expected 32x32"
                )
            images.append(array)
            labels.append(label)
    if not images:
        raise DatasetError(f"no images found in the class folders under {str(root)!r}")
    logger.info("read %d images from class folders under %s", len(images), root)
    return Cifar10Split(np.stack(images), np.asarray(labels, dtype=np.int64), root)
