"""Top-1 accuracy of a model on the CIFAR-10 test split, overall and per class."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from quantlens.datasets.cifar10 import CLASS_NAMES, load_split
from quantlens.errors import InputError
from quantlens.runtime.session import Session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy in percent over ``count`` test images, overall and per class."""

    model: str
    count: int
    correct: int
    per_class_correct: tuple[int, ...]
    per_class_count: tuple[int, ...]

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.count if self.count else 0.0

    @property
    def per_class_accuracy(self) -> dict[str, float | None]:
        return {
            name: (100.0 * hit / total if total else None)
            for name, hit, total in zip(CLASS_NAMES, self.per_class_correct, self.per_class_count)
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "count": self.count,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy,
        }


def evaluate(
    session: Session,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int = 250,
    progress: bool = True,
) -> EvalResult:
    """Run the first ``limit`` test images (all 10,000 when None) and count top-1 hits.

    Models whose first output has no batch dimension (export with a fixed batch of 1) are run
    one image at a time.
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    split = load_split(data_dir, "test")
    count = len(split) if limit is None else min(limit, len(split))
    if limit is not None and limit > len(split):
        logger.warning("limit %d is more than the %d test images; evaluating all %d", limit, len(split), len(split))
    batch = _batch_size_for(session, batch_size)
    predictions = np.empty(count, dtype=np.int64)
    for start in tqdm(range(0, count, batch), desc=f"eval {session.path.name}", disable=not progress, unit="batch"):
        images = split.images[start : min(start + batch, count)]
        logits = session.run(session.adapter.from_pixels(images))[0]
        predictions[start : start + len(images)] = np.asarray(logits).reshape(len(images), -1).argmax(axis=1)
    labels = split.labels[:count]
    hits = predictions == labels
    per_class_count = np.bincount(labels, minlength=len(CLASS_NAMES))
    per_class_correct = np.bincount(labels[hits], minlength=len(CLASS_NAMES))
    return EvalResult(
        model=session.path.name,
        count=count,
        correct=int(hits.sum()),
        per_class_correct=tuple(int(v) for v in per_class_correct),
        per_class_count=tuple(int(v) for v in per_class_count),
    )


def _batch_size_for(session: Session, requested: int) -> int:
    first = session.adapter.shape[0] if session.adapter.shape else None
    if isinstance(first, int):
        logger.info("%s has a fixed batch size of %d", session.path.name, first)
        return first
    return requested
