"""The capture entry points: pick the backend for a session, select values, run in batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from quantlens.capture.records import Activation, CapturedRun, CapturePoint, CaptureResult
from quantlens.capture.selection import Selection, select, select_indices
from quantlens.errors import CaptureError, InputError
from quantlens.inputs import InputBatch
from quantlens.records import Tensor
from quantlens.runtime.session import Session

logger = logging.getLogger(__name__)


class CaptureBackend(Protocol):
    """One runtime's way to record intermediate values.

    ``run`` returns the selected activations in execution order and the model outputs.
    With ``reference_outputs`` the ONNX backend takes the outputs from an unchanged run. The
    torch backends ignore it because their capture run is a plain call of the model.
    """

    points: list[CapturePoint]
    # True when run() may return names that extend a point name (eager ``block:1``).
    suffixed_names: bool

    def run(self, inputs: np.ndarray, *, selection: Selection, reference_outputs: bool = True) -> CapturedRun: ...


# Session attribute that caches its backends by device. A backend refers to its session, so the
# cache lives on the session and is freed with it.
CACHE_ATTRIBUTE = "_quantlens_capture_backends"


def capture_backend(session: Session, *, device: str | None = None) -> CaptureBackend:
    """Return the capture backend for ``session``, built once per session and device."""
    cached: dict[str | None, CaptureBackend] = session.__dict__.setdefault(CACHE_ATTRIBUTE, {})
    if device not in cached:
        cached[device] = _new_backend(session, device=device)
    return cached[device]


def _new_backend(session: Session, *, device: str | None) -> CaptureBackend:
    if session.format in ("onnx", "tflite") and device is not None:
        raise InputError(f"device {device!r} applies to PyTorch models only; {session.format} models run on the CPU")
    if session.format == "onnx":
        from quantlens.capture.onnx_runtime import OnnxCapture

        return OnnxCapture(session)
    if session.format == "tflite":
        from quantlens.capture.tflite_capture import TfliteCapture

        return _ReferenceFree(TfliteCapture(session))  # type: ignore[arg-type]
    module = getattr(session, "module", None)
    if module is None:
        raise CaptureError(f"no capture backend for {session.path.name} (format {session.format!r})")
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        from quantlens.capture.torchscript import TorchScriptCapture

        return TorchScriptCapture(session, device=device)
    from quantlens.capture.torch_eager import EagerCapture

    return EagerCapture(session, device=device)


class _ReferenceFree:
    """Adapt a backend whose ``run`` takes no ``reference_outputs`` (its run is a plain run)."""

    suffixed_names = False

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.points: list[CapturePoint] = backend.points

    def run(self, inputs: np.ndarray, *, selection: Selection, reference_outputs: bool = True) -> CapturedRun:
        return self.backend.run(inputs, selection=selection)


def list_capture_points(session: Session) -> list[CapturePoint]:
    """List the values :func:`capture` can record, in execution order, without running the model.

    Each item is a ``CapturePoint(name, layer, op_type)``. Eager PyTorch models list their
    modules. A module whose output is a tuple or dict yields suffixed names (``block:0``) when run.
    """
    return list(capture_backend(session).points)


def selection_for(
    session: Session,
    *,
    layers: str | Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    device: str | None = None,
) -> Selection:
    """Check layer names or capture-point indices against the model and return the Selection."""
    backend = capture_backend(session, device=device)
    model = session.path.name
    if indices is not None:
        return select_indices(backend.points, indices, model=model)
    requested = [layers] if isinstance(layers, str) else layers
    return select(backend.points, requested, model=model, suffixes=backend.suffixed_names)


def capture(
    session: Session,
    batch: InputBatch,
    *,
    layers: str | Sequence[str] | None = None,
    device: str | None = None,
    exact_outputs: bool = True,
) -> CaptureResult:
    """Run ``batch`` through the model and record every intermediate value.

    ``layers`` restricts the capture to these activation or layer names (a layer name selects
    all of its outputs); an unknown name raises LayerNotFoundError. ``device`` (PyTorch only,
    default: the session's device, the CPU) runs the module there; values are copied to the CPU.
    Models with a fixed batch size are run in batches of that size and the results concatenated.

    ``exact_outputs`` (default True) makes the outputs of an ONNX model those of its own,
    unchanged run: onnxruntime fuses fewer nodes in the graph that exposes every value, which
    can change the output by rounding, so the model runs a second time. With False it runs
    once, about half the time, and the outputs come from the captured graph (a notice says so).
    PyTorch and TFLite captures always run once and return the model's own outputs.
    """
    selection = selection_for(session, layers=layers, device=device)
    return capture_selected(session, batch, selection=selection, device=device, exact_outputs=exact_outputs)


def capture_selected(
    session: Session,
    batch: InputBatch,
    *,
    selection: Selection,
    device: str | None = None,
    exact_outputs: bool = True,
) -> CaptureResult:
    """Run :func:`capture` with an already checked Selection."""
    backend = capture_backend(session, device=device)
    inputs = session.adapter.prepare(batch)
    run = run_batched(
        backend, inputs, selection=selection, batch_size=fixed_batch_size(session), reference_outputs=exact_outputs
    )
    notices = [*batch.notices, *adapter_notices(session), *run.notices]
    if not exact_outputs and getattr(backend, "reruns_for_exact_outputs", False):
        notices.append(
            "outputs come from the captured graph, where onnxruntime fuses fewer nodes, so they can differ "
            "from the model's own run by rounding; capture with exact outputs to get the model's own"
        )
    return CaptureResult(
        model=session.path.name,
        inputs=batch,
        adapter=session.adapter,
        activations=run.activations,
        outputs=run.outputs,
        notices=tuple(dict.fromkeys(notices)),
    )


def adapter_notices(session: Session) -> list[str]:
    """Return what the user should know about how the input was fed."""
    adapter = session.adapter
    if adapter.source == "probe":
        return [f"{session.path.name} records no input shape; probing chose {adapter.describe()}"]
    if not adapter.is_image:
        return [f"model input is not image-shaped ({adapter.describe()}); only random input can be fed"]
    return []


def fixed_batch_size(session: Session) -> int | None:
    """Return the batch size a model's input fixes, or None when the batch dimension is dynamic."""
    shape = session.adapter.shape
    first = shape[0] if shape else None
    return first if isinstance(first, int) else None


def run_batched(
    backend: CaptureBackend,
    inputs: np.ndarray,
    *,
    selection: Selection,
    batch_size: int | None,
    reference_outputs: bool = True,
) -> CapturedRun:
    """Run ``inputs`` at once, or in slices of a model's fixed ``batch_size`` joined on axis 0."""
    count = inputs.shape[0] if inputs.ndim else 1
    if batch_size is None or count == batch_size:
        return backend.run(inputs, selection=selection, reference_outputs=reference_outputs)
    if batch_size < 1 or count % batch_size:
        raise InputError(f"the model takes batches of exactly {batch_size} inputs; got {count}")
    logger.info("running %d inputs in batches of %d, the model's fixed batch size", count, batch_size)
    runs = [
        backend.run(inputs[start : start + batch_size], selection=selection, reference_outputs=reference_outputs)
        for start in range(0, count, batch_size)
    ]
    return join_runs(runs)


def join_runs(runs: Sequence[CapturedRun]) -> CapturedRun:
    """Concatenate the activations and outputs of consecutive runs along the batch axis."""
    first = runs[0]
    activations = tuple(_join_activations([run.activations[i] for run in runs]) for i in range(len(first.activations)))
    outputs = tuple(np.concatenate([run.outputs[i] for run in runs]) for i in range(len(first.outputs)))
    notices = tuple(dict.fromkeys(notice for run in runs for notice in run.notices))
    return CapturedRun(activations=activations, outputs=outputs, notices=notices)


def _join_activations(parts: list[Activation]) -> Activation:
    head = parts[0]
    quantization = head.tensor.quantization
    for part in parts[1:]:
        if part.name != head.name or not _same_quantization(part.tensor, head.tensor):
            raise CaptureError(
                f"activation {head.name!r} changed its name or quantization between batches "
                "(dynamic quantization?); capture as many inputs as the model's fixed batch size"
            )
    values = np.concatenate([part.tensor.values for part in parts])
    codes = np.concatenate([part.tensor.codes for part in parts]) if quantization is not None else None
    tensor = Tensor(
        name=head.tensor.name,
        role=head.tensor.role,
        shape=tuple(values.shape),
        dtype=head.tensor.dtype,
        quantization=quantization,
        load_values=lambda: values,
        load_codes=None if codes is None else (lambda: codes),
    )
    return Activation(head.layer, head.op_type, head.output_index, tensor)


def _same_quantization(a: Tensor, b: Tensor) -> bool:
    qa, qb = a.quantization, b.quantization
    if qa is None or qb is None:
        return qa is qb
    return (
        qa.axis == qb.axis
        and np.array_equal(qa.scale, qb.scale)
        and np.array_equal(qa.zero_point, qb.zero_point)
    )
