"""Per-activation statistics over many inputs, merged batch by batch.

Memory grows with the number of activations times the histogram bins, not with the number of
inputs: each batch is captured, folded into running statistics and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from quantlens.capture.api import capture_backend, fixed_batch_size, run_batched, selection_for
from quantlens.capture.records import Activation
from quantlens.errors import InputError
from quantlens.inputs import InputBatch
from quantlens.records import Quantization
from quantlens.runtime.session import Session
from quantlens.stats import Histogram, Saturation, StreamingSummary, Summary
from quantlens.streaming import DEFAULT_BINS, StreamingCodeHistogram, StreamingHistogram

logger = logging.getLogger(__name__)


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
        self.activation = activation
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
        head = self.activation
        code_histogram = self.codes.result() if self.codes is not None else None
        return ActivationStatistics(
            name=head.name,
            layer=head.layer,
            op_type=head.op_type,
            shape=self.shape,
            dtype=head.tensor.dtype,
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
    if batch.images is None:
        yield batch
        return
    for start in range(0, len(batch), size):
        stop = start + size
        yield InputBatch(
            images=batch.images[start:stop],
            labels=batch.labels[start:stop],
            descriptions=batch.descriptions[start:stop],
            notices=batch.notices if start == 0 else (),
            class_names=batch.class_names,
        )


def capture_statistics(
    session: Session,
    batches: Iterable[InputBatch],
    *,
    layers: str | Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
    total: int | None = None,
    device: str | None = None,
) -> StatisticsResult:
    """Capture every batch and merge per-activation statistics; memory is O(activations x bins).

    ``bins`` is the number of float histogram bins (even, default 64); ``total`` the number of
    batches, for the progress bar only. Labelled inputs (CIFAR-10) also count top-1 hits of the
    first model output.
    """
    selection = selection_for(session, layers=layers, device=device)
    backend = capture_backend(session, device=device)
    batch_size = fixed_batch_size(session)
    accumulators: dict[str, _Accumulator] = {}
    notices: dict[str, None] = {}
    samples = labelled = correct = 0
    for batch in tqdm(batches, total=total, desc=f"capture {session.path.name}", unit="batch", disable=not progress):
        inputs = session.adapter.prepare(batch)
        run = run_batched(backend, inputs, selection=selection, batch_size=batch_size, reference_outputs=False)
        for activation in run.activations:
            if activation.name not in accumulators:
                accumulators[activation.name] = _Accumulator(activation, bins)
            accumulators[activation.name].update(activation, notices)
        notices.update(dict.fromkeys(run.notices))
        samples += len(batch)
        hits, count = _top1_hits(run.outputs, batch)
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
