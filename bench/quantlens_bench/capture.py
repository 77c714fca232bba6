"""Case: capture every layer's activation, against the same model's plain inference.

Eager PyTorch: ``quantlens.capture.capture`` (forward hooks on every submodule) against calling
the module under ``torch.no_grad``. onnxruntime: ``capture`` (every node output made a graph
output) against ``InferenceSession.run`` of the unchanged model. Same process, same batch, same
thread settings; each side is called once to warm up, then alternately ``repeats`` times, and
the median is reported.

On an ONNX model the target row times ``capture(..., exact_outputs=False)``, one run of the
graph that exposes every value. The default ``capture`` also runs the unchanged model once more,
so that the outputs it returns are exactly the model's own. A second row reports that time.

The cold comparison with ``onnxruntime.quantization.qdq_loss_debug`` runs each side in a fresh
process from the model file to numpy activations: quantlens ``open_session`` + ``capture``, and
``modify_model_output_intermediate_tensors`` + ``collect_activations``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from quantlens_bench.measure import Quantity, Row, format_quantity, median, repeat_worker, run_worker

EAGER_TARGET = 1.3
ONNXRUNTIME_TARGET = 2.0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def random_images(batch: int, image_size: int, *, seed: int = 0) -> np.ndarray:
    """Return uint8 RGB images ``(batch, image_size, image_size, 3)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, image_size, image_size, 3), dtype=np.uint8)


def standardized(images: np.ndarray) -> np.ndarray:
    """Return NCHW float32 ``(pixels / 255 - mean) / std`` with ImageNet statistics."""
    unit = images.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(((unit - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))


def _input_batch(images: np.ndarray) -> object:
    from quantlens.inputs import InputBatch

    count = len(images)
    return InputBatch(images=images, labels=(None,) * count, descriptions=tuple(f"random #{i}" for i in range(count)))


def _alternate(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Time two functions alternately after one warm-up call each; return both lists of seconds."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for function, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return times


def _captured_bytes(result: object) -> int:
    return sum(activation.tensor.values.nbytes for activation in result.activations)  # type: ignore[attr-defined]


def time_eager(state_dict: str, base_width: int, input_spec: dict, batch: int, repeats: int) -> dict[str, object]:
    """Worker task: plain eager forward against ``capture`` of every submodule's output."""
    import torch

    from quantlens.capture import capture
    from quantlens.records import InputSpec
    from quantlens.runtime.torch_session import TorchSession
    from quantlens_bench.network import build_network

    network = build_network(base_width=base_width)
    network.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
    spec = InputSpec.from_metadata(input_spec, source="metadata")
    session = TorchSession(Path(state_dict), network, format="torch-module", spec=spec)
    images = random_images(batch, int(input_spec["shape"][2]))
    inputs = _input_batch(images)
    tensor = torch.from_numpy(session.adapter.prepare(inputs))

    def plain() -> None:
        with torch.no_grad():
            network(tensor)

    plain_times, capture_times = _alternate(plain, lambda: capture(session, inputs), repeats)
    result = capture(session, inputs)
    return {
        "plain": statistics.median(plain_times),
        "capture": statistics.median(capture_times),
        "activations": len(result.activations),
        "captured_bytes": _captured_bytes(result),
        "threads": torch.get_num_threads(),
    }


def time_onnxruntime(path: str, batch: int, repeats: int) -> dict[str, object]:
    """Worker task: ``InferenceSession.run`` against ``capture`` and the captured-graph run alone."""
    import onnxruntime as ort

    from quantlens.capture import capture
    from quantlens.capture.api import capture_backend
    from quantlens.capture.selection import Selection
    from quantlens.runtime import open_session

    session = open_session(path)
    image_size = session.adapter.image_size
    inputs = _input_batch(random_images(batch, image_size[0]))
    prepared = session.adapter.prepare(inputs)
    plain_session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {plain_session.get_inputs()[0].name: prepared}
    backend = capture_backend(session)

    start = time.perf_counter()
    result = capture(session, inputs, exact_outputs=False)
    first_call = time.perf_counter() - start
    plain_times, capture_times = _alternate(
        lambda: plain_session.run(None, feed), lambda: capture(session, inputs, exact_outputs=False), repeats
    )
    exact_times = [0.0] * repeats
    graph_only = [0.0] * repeats
    for index in range(repeats):
        start = time.perf_counter()
        capture(session, inputs)
        exact_times[index] = time.perf_counter() - start
        start = time.perf_counter()
        backend.run(prepared, selection=Selection(), reference_outputs=False)
        graph_only[index] = time.perf_counter() - start
    return {
        "plain": statistics.median(plain_times),
        "capture": statistics.median(capture_times),
        "exact": statistics.median(exact_times),
        "graph_only": statistics.median(graph_only),
        "first_call": first_call,
        "activations": len(result.activations),
        "captured_bytes": _captured_bytes(result),
    }


def capture_cold(path: str, mode: str, batch: int, image_size: int) -> dict[str, object]:
    """Worker task: from the model file to numpy activations of one batch, in this fresh process."""
    images = random_images(batch, image_size)
    if mode == "quantlens":
        from quantlens.capture import capture
        from quantlens.runtime import open_session

        result = capture(open_session(path), _input_batch(images))
        return {"activations": len(result.activations), "captured_bytes": _captured_bytes(result)}
    if mode == "qdq_loss_debug":
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            modify_model_output_intermediate_tensors,
        )

        with tempfile.TemporaryDirectory() as scratch:
            augmented = Path(scratch) / "augmented.onnx"
            modify_model_output_intermediate_tensors(path, str(augmented))
            collected = collect_activations(str(augmented), _OneBatch({"input": standardized(images)}))
        arrays = [array for values in collected.values() for array in values]
        return {"activations": len(collected), "captured_bytes": sum(array.nbytes for array in arrays)}
    raise ValueError(f"unknown capture mode {mode!r}")


class _OneBatch:
    """onnxruntime CalibrationDataReader that yields one feed; collect_activations iterates it."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feeds = iter([feed])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def __iter__(self) -> _OneBatch:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def rows(*, artifacts: object, variant: object, batch: int, repeats: int, cold_repeats: int) -> list[Row]:
    """Measure eager and onnxruntime capture in-process, then the cold qdq_loss_debug comparison."""
    eager_options = {
        "state_dict": str(artifacts.state_dict),  # type: ignore[attr-defined]
        "base_width": variant.base_width,  # type: ignore[attr-defined]
        "input_spec": variant.input_spec,  # type: ignore[attr-defined]
        "batch": batch,
        "repeats": repeats,
    }
    eager = run_worker("capture-eager", eager_options)
    small_pages = run_worker("capture-eager", eager_options, env={"THP_MEM_ALLOC_ENABLE": "0"})
    onnx = run_worker("capture-onnx", {"path": str(artifacts.onnx_float), "batch": batch, "repeats": repeats})  # type: ignore[attr-defined]
    shape = f"batch {batch} at {variant.image_size}x{variant.image_size}"  # type: ignore[attr-defined]
    table = [
        _ratio_row(
            "capture every layer, eager PyTorch", eager, EAGER_TARGET, "module(x) under no_grad", shape,
            extra=(
                "torch allocating with transparent huge pages, as quantlens sets it; with "
                f"THP_MEM_ALLOC_ENABLE=0 on both sides {format_quantity(small_pages.number('capture'), 's')} against "
                f"{format_quantity(small_pages.number('plain'), 's')} = "
                f"{small_pages.number('capture') / small_pages.number('plain'):.2f}x"
            ),
        ),
        _ratio_row(
            "capture every layer, onnxruntime (ONNX float)", onnx, ONNXRUNTIME_TARGET, "InferenceSession.run", shape,
            extra=(
                f"capture(..., exact_outputs=False); captured-graph run alone "
                f"{format_quantity(onnx.number('graph_only'), 's')} = {onnx.number('graph_only') / onnx.number('plain'):.2f}x; "
                f"first call (builds the capture session) {format_quantity(onnx.number('first_call'), 's')}"
            ),
        ),
        _exact_row(onnx, shape),
    ]
    table.extend(_cold_rows(artifacts.onnx_float, variant, batch, cold_repeats))  # type: ignore[attr-defined]
    return table


def _exact_row(result: object, shape: str) -> Row:
    exact = result.number("exact")  # type: ignore[attr-defined]
    plain = result.number("plain")  # type: ignore[attr-defined]
    floor = 1 + result.number("graph_only") / plain  # type: ignore[attr-defined]
    return Row(
        case="capture every layer with exact outputs, onnxruntime (ONNX float)",
        quantlens=Quantity(exact, "s"),
        compared=Quantity(plain, "s"),
        compared_label="InferenceSession.run",
        target="reported",
        met=None,
        notes=(
            f"{shape}; default capture(): the captured graph, then the unchanged model once more so that the "
            f"outputs are the model's own; floor: one plain run plus the captured graph = {floor:.2f}x"
        ),
    )


def _ratio_row(case: str, result: object, target: float, compared_label: str, shape: str, *, extra: str = "") -> Row:
    ours = result.number("capture")  # type: ignore[attr-defined]
    theirs = result.number("plain")  # type: ignore[attr-defined]
    data = result.data  # type: ignore[attr-defined]
    notes = f"{shape}; {data['activations']} activations, {format_quantity(float(data['captured_bytes']), 'bytes')} captured"
    if extra:
        notes += f"; {extra}"
    return Row(
        case=case,
        quantlens=Quantity(ours, "s"),
        compared=Quantity(theirs, "s"),
        compared_label=compared_label,
        target=f"<= {target}x",
        met=ours <= target * theirs,
        notes=notes,
    )


def _cold_rows(path: Path, variant: object, batch: int, repeats: int) -> list[Row]:
    options = {"path": str(path), "batch": batch, "image_size": variant.image_size}  # type: ignore[attr-defined]
    ours = repeat_worker("capture-cold", {**options, "mode": "quantlens"}, repeats)
    theirs = repeat_worker("capture-cold", {**options, "mode": "qdq_loss_debug"}, repeats)
    counts = f"{ours[0].data['activations']} vs {theirs[0].data['activations']} values captured"
    time_row = Row(
        case="capture cold, time: quantlens vs qdq_loss_debug (ONNX float)",
        quantlens=Quantity(median([r.wall for r in ours]), "s"),
        compared=Quantity(median([r.wall for r in theirs]), "s"),
        compared_label="modify_model_output_intermediate_tensors + collect_activations",
        target="reported",
        met=None,
        notes=f"fresh process from file to numpy, batch {batch}; {counts}",
    )
    memory_row = Row(
        case="capture cold, peak RSS: quantlens vs qdq_loss_debug (ONNX float)",
        quantlens=Quantity(median([r.number("peak_rss") for r in ours]), "bytes"),
        compared=Quantity(median([r.number("peak_rss") for r in theirs]), "bytes"),
        compared_label="modify_model_output_intermediate_tensors + collect_activations",
        target="reported",
        met=None,
        notes=f"captured {format_quantity(float(ours[0].data['captured_bytes']), 'bytes')} vs "
        f"{format_quantity(float(theirs[0].data['captured_bytes']), 'bytes')}",
    )
    return [time_row, memory_row]
