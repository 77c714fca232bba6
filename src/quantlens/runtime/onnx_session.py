"""onnxruntime inference session with the input adapter read from the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quantlens.adapter import InputAdapter, adapter_from_spec
from quantlens.errors import CaptureError, ModelFormatError
from quantlens.records import INPUT_METADATA_KEY, InputSpec
from quantlens.runtime.session import Session

# onnxruntime's type strings to numpy dtype names.
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OnnxSession(Session):
    """A model run by onnxruntime on the CPU execution provider."""

    format = "onnx"

    def __init__(self, path: Path, *, model_bytes: bytes | None = None) -> None:
        import onnxruntime as ort

        self.path = path
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.inference = ort.InferenceSession(
                model_bytes if model_bytes is not None else str(path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            if model_bytes is None:
                from quantlens.readers.onnx_reader import parse_model

                # A file that is not ONNX at all raises the reader's error, which names the problem.
                parse_model(path)
            raise ModelFormatError(
                f"onnxruntime cannot load {str(path)!r}: {str(exc).strip().splitlines()[0][:300]}. "
                "The weights can still be inspected with `quantlens layers`/`stats`."
            ) from exc
        self.adapter = self._adapter()

    def _adapter(self) -> InputAdapter:
        first = self.inference.get_inputs()[0]
        metadata = self.inference.get_modelmeta().custom_metadata_map
        if INPUT_METADATA_KEY in metadata:
            spec = InputSpec.from_metadata(json.loads(metadata[INPUT_METADATA_KEY]), source="metadata")
            spec = InputSpec(**{**spec.__dict__, "name": first.name})
        else:
            shape = tuple(d if isinstance(d, int) else None for d in first.shape)
            spec = InputSpec(
                name=first.name, layout=None, shape=shape, dtype=ORT_TYPES.get(first.type, "float32")
            )
        return adapter_from_spec(spec)

    @property
    def output_names(self) -> list[str]:
        return [output.name for output in self.inference.get_outputs()]

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        feed = {self.inference.get_inputs()[0].name: inputs}
        try:
            return list(self.inference.run(None, feed))
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise CaptureError(
                f"onnxruntime failed to run {self.path.name} on input of shape {inputs.shape} "
                f"and dtype {inputs.dtype}: {str(exc).strip().splitlines()[0][:300]}"
            ) from exc
