"""Cached loading of models, inference sessions and captures for the app, with typed outcomes.

marimo's ``run`` mode serves every browser session from threads of one process, so these caches
are shared by all viewers: a model is read once and a capture is computed once per input.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from quantlens.app.catalog import ModelCatalog, ModelChoice
from quantlens.capture.records import CaptureResult
from quantlens.datasets.cifar10 import CLASS_NAMES, load_split, resolve_data_dir
from quantlens.errors import (
    CaptureError,
    DatasetError,
    DatasetNotFoundError,
    InputError,
    QuantlensError,
    UntrustedPickleError,
)
from quantlens.inputs import InputBatch, cifar10_samples, load_image_bytes, random_input
from quantlens.readers import open_model
from quantlens.records import Model
from quantlens.runtime import Session, open_session

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE_CIFAR10 = "CIFAR-10 test image"
SOURCE_RANDOM = "random input"
SOURCE_UPLOAD = "uploaded image"
SOURCES = (SOURCE_CIFAR10, SOURCE_RANDOM, SOURCE_UPLOAD)
PREVIEW_SIZE = 128  # pixels per side of the input preview

# One capture at a time per process: PyTorch capture registers hooks on the shared module, and
# the Compare view captures through the same cached sessions.
CAPTURE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of an app action: ``value`` on success, else ``error``, a message for the user."""

    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def attempt(action: Callable[..., T], /, *args: object, **kwargs: object) -> Outcome[T]:
    """Run ``action`` and turn any exception into an Outcome with its message.

    The app shows errors as callouts, never as tracebacks, so every exception is caught here.
    quantlens errors carry their own message; others get their type name in front. The full
    traceback goes to the log.
    """
    try:
        return Outcome(value=action(*args, **kwargs))
    except QuantlensError as error:
        logger.warning("%s failed: %s", getattr(action, "__name__", action), error)
        return Outcome(error=str(error))
    except Exception as error:  # noqa: BLE001  (any failure must become a callout)
        logger.exception("%s failed", getattr(action, "__name__", action))
        return Outcome(error=f"{type(error).__name__}: {error}")


def load_model(path: Path, trust: bool = False) -> Model:
    """Read a model file once per (path, trust, modification time); later calls share the record."""
    return _load_model(path, trust, modified_ns(path))


def load_session(path: Path, trust: bool = False) -> Session:
    """Load an inference session once per (path, trust, modification time)."""
    return _load_session(path, trust, modified_ns(path))


@functools.lru_cache(maxsize=8)
def _load_model(path: Path, trust: bool, modified_ns: int) -> Model:
    return open_model(path, trust=trust)


@functools.lru_cache(maxsize=4)
def _load_session(path: Path, trust: bool, modified_ns: int) -> Session:
    return open_session(path, trust=trust)


def modified_ns(path: Path) -> int:
    """Return the file's modification time in ns, a cache key; -1 when it cannot be read.

    open_model and open_session then raise ModelNotFoundError for a missing file.
    """
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@dataclass(frozen=True)
class InputRequest:
    """The input the user chose for a capture; hashable, so captures can be cached by it.

    ``source`` is one of ``SOURCES``. ``index`` is the CIFAR-10 test index, ``seed`` the random
    seed; an upload is kept as its file name and bytes, compared by their SHA-256 digest.
    """

    source: str
    index: int = 0
    seed: int = 0
    upload_name: str | None = None
    upload_data: bytes | None = field(default=None, repr=False, compare=False)
    upload_digest: str | None = None

    @classmethod
    def from_widgets(
        cls, source: str, *, index: float | None, seed: float | None, upload: tuple[str, bytes] | None
    ) -> InputRequest:
        """Build the request from widget values; raises InputError naming the missing value."""
        if source not in SOURCES:
            raise InputError(f"unknown input source {source!r}; choose one of {', '.join(SOURCES)}")
        if source == SOURCE_CIFAR10:
            if index is None:
                raise InputError("the CIFAR-10 index field is empty: enter a whole number from 0 to 9999")
            if not float(index).is_integer():
                raise InputError(f"CIFAR-10 index must be a whole number from 0 to 9999, got {index!r}")
            return cls(source=source, index=int(index))
        if source == SOURCE_RANDOM:
            if seed is None:
                raise InputError("the random seed field is empty: enter a whole number >= 0")
            if not float(seed).is_integer() or seed < 0:
                raise InputError(f"random seed must be a whole number >= 0, got {seed!r}")
            return cls(source=source, seed=int(seed))
        if upload is None:
            raise InputError("no image uploaded: upload a PNG or JPEG file, or choose another input source")
        name, data = upload
        return cls(source=source, upload_name=name, upload_data=data, upload_digest=hashlib.sha256(data).hexdigest())


def build_batch(request: InputRequest, *, image_size: tuple[int, int] | None, data_dir: Path | None) -> InputBatch:
    """Turn a request into an input batch; uploads are resized to ``image_size`` when given."""
    if request.source == SOURCE_CIFAR10:
        return cifar10_samples([request.index], data_dir=data_dir)
    if request.source == SOURCE_RANDOM:
        return random_input(request.seed)
    if request.upload_data is None or request.upload_name is None:
        raise InputError("no image uploaded: upload a PNG or JPEG file")
    return load_image_bytes(request.upload_data, name=request.upload_name, size=image_size)


def capture_activations(path: Path, trust: bool, request: InputRequest, data_dir: Path | None) -> CaptureResult:
    """Run the model on the requested input and capture every layer's output.

    Cached per (model file and its modification time, trust, input, data folder). Raises
    CaptureError when the capture returns no activations, because an empty capture means the
    backend saw none of the model's layers.
    """
    return _capture(path, trust, request, data_dir, modified_ns(path))


@functools.lru_cache(maxsize=4)
def _capture(path: Path, trust: bool, request: InputRequest, data_dir: Path | None, modified_ns: int) -> CaptureResult:
    from quantlens.capture import capture

    session = load_session(path, trust)
    batch = build_batch(request, image_size=session.adapter.image_size, data_dir=data_dir)
    with CAPTURE_LOCK:
        result = capture(session, batch)
    if len(result) == 0:
        raise CaptureError(
            f"capturing {path.name} on {batch.descriptions[0]} returned no activations; "
            "check that the model lists layers with `quantlens layers`"
        )
    return result


@dataclass(frozen=True, repr=False, eq=False)
class LoadedModel:
    """A catalog entry and the model read from its file."""

    choice: ModelChoice
    model: Model


def load_choice(catalog: ModelCatalog, label: str, *, trust: bool) -> LoadedModel:
    """Read the model listed under ``label``; labels outside the catalog raise ModelNotFoundError.

    A file that needs full unpickling raises UntrustedPickleError, whose message gives the
    command that restarts the app with ``--trust``.
    """
    choice = catalog.choice(label)
    return LoadedModel(choice=choice, model=load_model_in_app(choice.path, trust))


def load_model_in_app(path: Path, trust: bool) -> Model:
    """Read a model like :func:`load_model`, with the app's ``--trust`` hint on pickled files."""
    try:
        return load_model(path, trust)
    except UntrustedPickleError as error:
        raise UntrustedPickleError(
            f"{str(error).rstrip('.')}. In the app: if you trust this file, restart it with `quantlens app --trust "
            f"{path}`; otherwise choose another model."
        ) from error


def run_capture(
    choice: ModelChoice,
    *,
    source: str,
    index: float | None,
    seed: float | None,
    upload: tuple[str, bytes] | None,
    data_dir: Path | None,
    trust: bool,
) -> CaptureResult:
    """Capture every activation of ``choice`` on the input the widgets describe.

    A missing or damaged CIFAR-10 folder raises the dataset error with a pointer to the inputs
    that do not need it.
    """
    request = InputRequest.from_widgets(source, index=index, seed=seed, upload=upload)
    try:
        return capture_activations(choice.path, trust, request, data_dir)
    except (DatasetNotFoundError, DatasetError) as error:
        raise type(error)(f"{error} Random input and uploaded images work without CIFAR-10.") from error


def cifar10_problem(data_dir: Path | None) -> str | None:
    """Return why the CIFAR-10 test split cannot be read from ``data_dir`` (or the default folders).

    None when it can. The split is read once per folder and modification time of the folder.
    """
    try:
        folder = resolve_data_dir(data_dir)
    except QuantlensError as error:
        return str(error)
    return _split_problem(folder.resolve(), modified_ns(folder))


@functools.lru_cache(maxsize=4)
def _split_problem(folder: Path, modified_ns: int) -> str | None:
    try:
        load_split(folder, "test")
    except QuantlensError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class Prediction:
    """One of the model's top classes for the input: name and softmax probability in 0-1."""

    name: str
    probability: float


def top_predictions(result: CaptureResult, k: int = 3) -> list[Prediction]:
    """Return the ``k`` most probable classes; class names are CIFAR-10's for 10 outputs."""
    logits = np.asarray(result.outputs[0]).reshape(len(result.inputs), -1)
    names = result.inputs.class_names if logits.shape[1] == len(result.inputs.class_names) else ()
    return [
        Prediction(name=names[index] if names else f"class {index}", probability=probability)
        for index, probability in result.top_k(k)
    ]


def capture_notices(result: CaptureResult) -> list[str]:
    """Return the notices of the input and of the capture once each, in order."""
    return list(dict.fromkeys(result.inputs.notices + result.notices))


def true_label(batch: InputBatch) -> str | None:
    """Return the class name of the first input's label, or None when it has none."""
    label = batch.labels[0] if batch.labels else None
    if label is None:
        return None
    names = batch.class_names or CLASS_NAMES
    return names[label] if 0 <= label < len(names) else str(label)


def preview_png(batch: InputBatch, *, size: int = PREVIEW_SIZE) -> bytes | None:
    """Return the first input image as PNG, upscaled to ``size`` pixels with nearest neighbour.

    Random input has no image (it is drawn in the model's shape later), so it returns None.
    """
    from PIL import Image

    if batch.images is None or len(batch.images) == 0:
        return None
    image = Image.fromarray(np.asarray(batch.images[0], dtype=np.uint8))
    scale = max(1, size // max(image.width, image.height))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
