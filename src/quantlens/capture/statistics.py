"""Per-activation statistics over many inputs, merged batch by batch.

Memory grows with the number of activations times the histogram bins, not with the number of
inputs: each batch is captured, folded into running statistics and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from quantlens.capture.api import capture_backend, fixed_batch_size, run_batched, selection_for
from quantlens.capture.records import Activation
from quantlens.errors import InputError
from quantlens.inputs import InputBatch
from quantlens.records import Quantization
from quantlens.runtime.session import Session
from quantlens.stats import Histogram, Saturation, StreamingSummary, Summary
from quantlens.streaming import DEFAULT_BINS, StreamingCodeHistogram, StreamingHistogram

logger = logging.getLogger(__name__)

# Bytes of activations that capture_statistics captures per model run (see _RunSizing).
# onnxruntime keeps every exposed value of a run alive at once, and its memory arena keeps that
# peak. Over 1000 CIFAR-10 images the bundled resnet8.onnx peaked at 1.37x the memory of its own
# inference with 16 MiB, and at 0.85x with 4 MiB (loading the images then sets the peak), for
# 12% more time.
MAX_CAPTURE_BYTES = 4 << 20


@dataclass(frozen=True, repr=False, eq=False)
class ActivationStatistics:
    """Statistics of one activation over every input seen.

    ``summary`` and ``histogram`` cover the float values (dequantized for quantized tensors).
    ``code_histogram`` and ``saturation`` cover the integer codes of a quantized activation whose
    scale and zero_point stayed the same in every batch; otherwise they are None. ``shape`` is
    the shape of one sample, without the batch dimension.
    """

    name: str
    layer: str
    op_type: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    summary: Summary
    histogram: Histogram
    code_histogram: Histogram | None
    saturation: Saturation | None

    def __repr__(self) -> str:
        return f"ActivationStatistics({self.name!r}, {self.op_type}, {self.summary.count} values)"


@dataclass(frozen=True, repr=False, eq=False)
class StatisticsResult:
    """Per-activation statistics of ``samples`` inputs, and top-1 hits on the labelled ones."""

    model: str
    samples: int
    activations: tuple[ActivationStatistics, ...]
    labelled: int
    correct: int
    notices: tuple[str, ...] = ()

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy in percent over the labelled inputs; None when no input had a label."""
        return 100.0 * self.correct / self.labelled if self.labelled else None

    def __repr__(self) -> str:
        return f"StatisticsResult({self.model!r}, {self.samples} samples, {len(self.activations)} activations)"


class _Accumulator:
    """Running statistics of one activation."""

    def __init__(self, activation: Activation, bins: int) -> None:
        tensor = activation.tensor
        # Only the description is kept, because the activation contains a whole batch of values.
        self.name, self.layer, self.op_type, self.dtype = activation.name, activation.layer, activation.op_type, tensor.dtype
        self.shape = tuple(tensor.shape[1:])
        self.summary = StreamingSummary()
        self.histogram = StreamingHistogram(bins)
        self.quantization = tensor.quantization
        self.codes: StreamingCodeHistogram | None = None
        if self.quantization is not None:
            self.codes = StreamingCodeHistogram(self.quantization.qmin, self.quantization.qmax)

    def update(self, activation: Activation, notices: dict[str, None]) -> None:
        tensor = activation.tensor
        values = tensor.values
        self.summary.update(values)
        self.histogram.update(values)
        if self.codes is None:
            return
        if tensor.quantization is None or not _same(tensor.quantization, self.quantization):
            notices[f"{activation.name}: scale or zero_point changed between batches; no code histogram"] = None
            self.codes = None
            return
        self.codes.update(tensor.codes)

    def result(self) -> ActivationStatistics:
        code_histogram = self.codes.result() if self.codes is not None else None
        return ActivationStatistics(
            name=self.name,
            layer=self.layer,
            op_type=self.op_type,
            shape=self.shape,
            dtype=self.dtype,
            quantization=self.quantization,
            summary=self.summary.result(),
            histogram=self.histogram.result(),
            code_histogram=code_histogram,
            saturation=_saturation(code_histogram, self.quantization),
        )


def _same(a: Quantization, b: Quantization | None) -> bool:
    return b is not None and a.axis == b.axis and np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


def _saturation(histogram: Histogram | None, quantization: Quantization | None) -> Saturation | None:
    if histogram is None or quantization is None:
        return None
    return Saturation(
        qmin=quantization.qmin,
        qmax=quantization.qmax,
        at_qmin=int(histogram.counts[0]),
        at_qmax=int(histogram.counts[-1]),
        total=histogram.total + histogram.excluded,
    )


def split_batch(batch: InputBatch, size: int) -> Iterator[InputBatch]:
    """Yield ``batch`` in consecutive slices of at most ``size`` inputs (random input: whole)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"batch size must be a positive integer, got {size!r}")
    return _runs(batch, lambda: size)


def _runs(batch: InputBatch, size: Callable[[], int]) -> Iterator[InputBatch]:
    """Yield ``batch`` in consecutive slices, asking ``size()`` for each slice's length (random input: whole)."""
    if batch.images is None:
        yield batch
        return
    start = 0
    while start < len(batch):
        stop = start + size()
        yield InputBatch(
            images=batch.images[start:stop],
            labels=batch.labels[start:stop],
            descriptions=batch.descriptions[start:stop],
            notices=batch.notices if start == 0 else (),
            class_names=batch.class_names,
        )
        start = stop


class _RunSizing:
    """Inputs per model run, chosen after the first run so that a run captures about ``budget`` bytes.

    The first run takes the smallest batch the model accepts (its fixed batch size, else 1).
    Later runs take as many inputs as fit the budget at the first run's bytes per input, at
    least one, and a multiple of a fixed batch size.
    """

    def __init__(self, fixed: int | None, budget: int) -> None:
        self.fixed = fixed
        self.budget = budget
        self.per_run: int | None = None

    def samples(self) -> int:
        return self.per_run if self.per_run is not None else (self.fixed or 1)

    def observe(self, activations: Sequence[Activation], count: int) -> None:
        if self.per_run is not None or count == 0:
            return
        captured = sum(_captured_bytes(activation) for activation in activations)
        per_run = max(1, int(self.budget // max(captured / count, 1.0)))
        if self.fixed:
            per_run = max(self.fixed, per_run // self.fixed * self.fixed)
        self.per_run = per_run


def _captured_bytes(activation: Activation) -> int:
    tensor = activation.tensor
    codes = tensor.codes
    return tensor.values.nbytes + (codes.nbytes if codes is not None else 0)


def capture_statistics(
    session: Session,
    batches: Iterable[InputBatch],
    *,
    layers: str | Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
    total: int | None = None,
    device: str | None = None,
    max_capture_bytes: int = MAX_CAPTURE_BYTES,
) -> StatisticsResult:
    """Capture every batch and merge per-activation statistics; memory is O(activations x bins).

    ``bins`` is the number of float histogram bins (even, default 64); ``total`` the number of
    batches, for the progress bar only. Labelled inputs (CIFAR-10) also count top-1 hits of the
    first model output.

    Each batch is run in slices whose captured activations take about ``max_capture_bytes``
    (default 4 MiB), as ``_RunSizing`` chooses them. Peak memory then stays near that of the
    model's own inference, whatever the batch size. Summaries, code histograms and top-1 hits do not depend
    on the slicing. The float histograms' range starts from the first run's values and doubles
    as later values need, so their bins can differ from those of one run over every input.
    """
    # Imported here because importing tqdm reads package metadata, which slows `import quantlens`.
    from tqdm import tqdm

    if isinstance(max_capture_bytes, bool) or not isinstance(max_capture_bytes, int) or max_capture_bytes < 1:
        raise InputError(f"max_capture_bytes must be a positive integer, got {max_capture_bytes!r}")
    selection = selection_for(session, layers=layers, device=device)
    backend = capture_backend(session, device=device)
    batch_size = fixed_batch_size(session)
    sizing = _RunSizing(batch_size, max_capture_bytes)
    accumulators: dict[str, _Accumulator] = {}
    notices: dict[str, None] = {}
    samples = labelled = correct = 0
    for batch in tqdm(batches, total=total, desc=f"capture {session.path.name}", unit="batch", disable=not progress):
        for part in _runs(batch, sizing.samples):
            inputs = session.adapter.prepare(part)
            run = run_batched(backend, inputs, selection=selection, batch_size=batch_size, reference_outputs=False)
            for activation in run.activations:
                if activation.name not in accumulators:
                    accumulators[activation.name] = _Accumulator(activation, bins)
                accumulators[activation.name].update(activation, notices)
            sizing.observe(run.activations, len(part))
            notices.update(dict.fromkeys(run.notices))
            samples += len(part)
            hits, count = _top1_hits(run.outputs, part)
            correct += hits
            labelled += count
    if samples == 0:
        raise InputError("no input batches were given; pass at least one input")
    return StatisticsResult(
        model=session.path.name,
        samples=samples,
        activations=tuple(accumulator.result() for accumulator in accumulators.values()),
        labelled=labelled,
        correct=correct,
        notices=tuple(notices),
    )


def _top1_hits(outputs: tuple[np.ndarray, ...], batch: InputBatch) -> tuple[int, int]:
    known = [(index, label) for index, label in enumerate(batch.labels) if label is not None]
    if not known or not outputs:
        return 0, 0
    predictions = np.asarray(outputs[0]).reshape(len(batch), -1).argmax(axis=1)
    return sum(int(predictions[index] == label) for index, label in known), len(known)
