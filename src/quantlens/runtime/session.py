"""One Session interface over onnxruntime, PyTorch and LiteRT, with the model's input adapter."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from quantlens.adapter import InputAdapter
from quantlens.errors import ModelNotFoundError, UnsupportedModelError
from quantlens.inputs import InputBatch
from quantlens.readers.registry import choose_reader

logger = logging.getLogger(__name__)


class Session(ABC):
    """A loaded model ready to run; ``adapter`` turns inputs into the tensor it expects."""

    path: Path
    format: str
    adapter: InputAdapter

    @abstractmethod
    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Run the model on one adapted input tensor and return every model output."""

    def predict(self, batch: InputBatch) -> np.ndarray:
        """Adapt ``batch``, run the model and return its first output (the logits)."""
        return self.run(self.adapter.prepare(batch))[0]

    def close(self) -> None:
        """Release the runtime's resources (nothing to do by default)."""


def open_session(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    layout: str | None = None,
    scaling: str | None = None,
) -> Session:
    """Load ``path`` (a file, or a bundled model's name) into an inference session.

    ``layout`` ("NHWC"/"NCHW") and ``scaling`` ("raw", "unit", "standardize") override what the
    model records or what probing finds. ``trust`` allows full unpickling of PyTorch files.
    """
    from quantlens.zoo.bundled import resolve_model

    file_path = resolve_model(path)
    if not file_path.is_file():
        raise ModelNotFoundError(f"model path is not a file: {str(file_path)!r}")
    session: Session
    reader_name = choose_reader(file_path).name
    if reader_name == "onnx":
        from quantlens.runtime.onnx_session import OnnxSession

        session = OnnxSession(file_path)
    elif reader_name == "tflite":
        from quantlens.runtime.tflite_session import TfliteSession

        session = TfliteSession(file_path)
    elif reader_name == "keras":
        raise UnsupportedModelError(
            f"running Keras models needs TensorFlow, which quantlens does not use, so {file_path.name} "
            "can only be inspected (`quantlens layers`/`stats`) and compared by weights (`quantlens compare` "
            "without --input); convert it to TFLite or ONNX to run it"
        )
    else:
        from quantlens.runtime.torch_session import load_torch_session

        session = load_torch_session(file_path, trust=trust, layout=layout)
    if layout is not None or scaling is not None:
        session.adapter = session.adapter.with_options(layout=layout, scaling=scaling)
    logger.info("%s input: %s", file_path.name, session.adapter.describe())
    return session
