"""Activation capture for TFLite models run by the LiteRT interpreter.

The session keeps every intermediate tensor (``experimental_preserve_all_tensors``), so after
``invoke()`` each operator output is read with ``interpreter.get_tensor``, in operator order.
An activation is named after its tensor and belongs to the layer named after the operator's
first output, as in the TFLite reader. Quantized outputs (int8, uint8, int16) carry their codes
and the tensor's scale and zero_point, and their values are ``scale * (q - zero_point)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from quantlens.capture.records import Activation, CapturedRun, CapturePoint, CaptureResult
from quantlens.capture.selection import Selection, select
from quantlens.errors import CaptureError
from quantlens.inputs import InputBatch
from quantlens.records import Role, Tensor
from quantlens.runtime.tflite_session import join_samples

if TYPE_CHECKING:
    from quantlens.runtime.tflite_session import TfliteSession

logger = logging.getLogger(__name__)


class TfliteCapture:
    """Capture backend for a TfliteSession; ``points`` lists every operator output in operator order."""

    def __init__(self, session: TfliteSession) -> None:
        self.session = session
        self.points: list[CapturePoint] = []
        self._indices: list[tuple[int, int]] = []  # (tensor index, output position) per point
        used: set[str] = set()
        for op in session.tflite.operators:
            for position, tensor_index in enumerate(op.outputs):
                if tensor_index < 0:
                    continue
                name = op.name if position == 0 else _unique(session.tflite.tensor_name(tensor_index), used)
                used.add(name)
                self.points.append(CapturePoint(name, op.name, op.op_type))
                self._indices.append((tensor_index, position))

    def run(self, inputs: np.ndarray, *, selection: Selection) -> CapturedRun:
        """Invoke the interpreter on ``inputs`` and read the selected operator outputs."""
        if not self.session.preserve_all_tensors:
            raise CaptureError(
                f"activations of {self.session.path.name} cannot be captured because the session "
                "frees intermediate tensors; open it with preserve_all_tensors=True (the default)"
            )
        chosen = [
            (point, index) for point, index in zip(self.points, self._indices) if selection.keeps(point.name, point.layer)
        ]
        interpreter = self.session.interpreter
        parts: list[list[np.ndarray]] = [[] for _ in chosen]
        output_parts: list[list[np.ndarray]] = [[] for _ in self.session.output_indices]
        per_sample = len(inputs) > 1 and self.session.runs_per_sample(inputs)
        for _ in self.session.invocations(inputs):
            for part, (_, (tensor_index, _)) in zip(parts, chosen):
                part.append(interpreter.get_tensor(tensor_index))
            for part, value in zip(output_parts, self.session.output_values()):
                part.append(value)
        activations = tuple(
            Activation(point.layer, point.op_type, position, self._record(point.name, tensor_index, join_samples(part)))
            for (point, (tensor_index, position)), part in zip(chosen, parts)
        )
        notices = ()
        if per_sample:
            notices = (f"{self.session.path.name} has a fixed batch size of 1, so the {len(inputs)} inputs ran one at a time",)
        return CapturedRun(activations=activations, outputs=tuple(join_samples(p) for p in output_parts), notices=notices)

    def _record(self, name: str, tensor_index: int, array: np.ndarray) -> Tensor:
        quantization = self.session.tflite.quantization(tensor_index)
        common = dict(name=name, role=Role.ACTIVATION, shape=tuple(array.shape), dtype=array.dtype.name)
        if quantization is not None:
            return Tensor(**common, quantization=quantization, load_codes=lambda: array)
        return Tensor(**common, load_values=lambda: array)


def _unique(name: str, used: set[str]) -> str:
    candidate, count = name, 1
    while candidate in used:
        count += 1
        candidate = f"{name} #{count}"
    return candidate


def capture_tflite(session: TfliteSession, batch: InputBatch, layers: Iterable[str] | None = None) -> CaptureResult:
    """Run ``batch`` through a TFLite session and return every operator output, in operator order.

    ``layers`` limits the capture to these layer or activation names; an unknown name raises
    LayerNotFoundError with close matches.
    """
    backend = TfliteCapture(session)
    selection = select(backend.points, layers, model=session.path.name)
    inputs = session.adapter.prepare(batch)
    run = backend.run(inputs, selection=selection)
    return CaptureResult(
        model=session.path.name,
        inputs=batch,
        adapter=session.adapter,
        activations=run.activations,
        outputs=run.outputs,
        notices=tuple(batch.notices) + run.notices,
    )
