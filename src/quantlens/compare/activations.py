"""Activation error: run the same inputs through both models and compare every paired activation.

Both models are captured batch by batch (see :mod:`quantlens.capture`). Each pair's metrics are
sums that merge across batches, so the result over N inputs equals one comparison of the
activations concatenated over all N. The final outputs are compared as logits: top-1 agreement
and the mean KL divergence of the float softmax to the quantized softmax.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import onnx
from tqdm import tqdm

from quantlens.capture import CaptureResult, capture, split_batch
from quantlens.compare.folding import align
from quantlens.compare.local import LOCAL_UNAVAILABLE, LocalBuilder, LocalLayer
from quantlens.compare.matching import LayerMatch, LayerMatching
from quantlens.compare.metrics import TensorComparison, softmax_kl_divergence, top1_agreement
from quantlens.compare.pairing import ActivationPair, pair_activations
from quantlens.errors import ComparisonError
from quantlens.inputs import InputBatch
from quantlens.readers.onnx_reader import parse_model
from quantlens.runtime.session import Session

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100


@dataclass(frozen=True, repr=False, eq=False)
class ActivationResult:
    """Error of one paired activation over all inputs.

    ``accumulated`` compares the quantized model's activation with the float one, so it includes
    every upstream error. ``local`` (matched layers of quantized ONNX models only) compares the
    quantized layer run alone on the float input. ``local_note`` gives the reason when it is missing.
    """

    pair: ActivationPair
    accumulated: TensorComparison
    local: TensorComparison | None = None
    local_note: str | None = None

    @property
    def sqnr_db(self) -> float | None:
        return self.accumulated.sqnr_db

    @property
    def local_sqnr_db(self) -> float | None:
        return None if self.local is None else self.local.sqnr_db

    def __repr__(self) -> str:
        local = "" if self.local is None else f", local {self.local.sqnr_db:.4g} dB"
        return f"ActivationResult({self.pair.float_name!r} vs {self.pair.quant_name!r}, {self.accumulated!r}{local})"


@dataclass(frozen=True)
class OutputAgreement:
    """How often and how closely the two models' first outputs (logits) agree.

    ``top1_agreement`` is a fraction in 0-1; ``mean_kl_divergence`` is KL(float || quantized) of
    the softmax in nats, averaged over samples. ``float_correct`` and ``quant_correct`` count
    correct top-1 predictions among the ``labelled`` inputs.
    """

    samples: int
    top1_agreement: float
    mean_kl_divergence: float
    logits: TensorComparison
    labelled: int = 0
    float_correct: int = 0
    quant_correct: int = 0

    @property
    def float_accuracy(self) -> float | None:
        """Top-1 accuracy of the float model in percent; None without labels."""
        return 100.0 * self.float_correct / self.labelled if self.labelled else None

    @property
    def quant_accuracy(self) -> float | None:
        """Top-1 accuracy of the quantized model in percent; None without labels."""
        return 100.0 * self.quant_correct / self.labelled if self.labelled else None


@dataclass(frozen=True, repr=False, eq=False)
class ActivationComparison:
    """Every paired activation's error, in float graph order, and the output agreement.

    ``outputs`` is None when the two models' first outputs differ in shape; ``notes`` then
    gives the shapes.
    """

    results: tuple[ActivationResult, ...]
    outputs: OutputAgreement | None
    samples: int
    notes: tuple[str, ...] = ()

    def for_layer(self, match: LayerMatch) -> ActivationResult | None:
        """Return the result of a matched layer's output, or None when it has no pair."""
        return next((r for r in self.results if r.pair.layer_match is match), None)

    def __repr__(self) -> str:
        return f"ActivationComparison({len(self.results)} activations over {self.samples} inputs)"


def compare_activations(
    float_session: Session,
    quant_session: Session,
    batch: InputBatch,
    *,
    matching: LayerMatching,
    batch_size: int = DEFAULT_BATCH_SIZE,
    local: bool = True,
    progress: bool = False,
) -> ActivationComparison:
    """Capture ``batch`` through both models, ``batch_size`` inputs at a time, and compare.

    With ``local``, matched layers of a quantized ONNX model are also run alone on the float
    model's input (see :mod:`quantlens.compare.local`).
    """
    accumulator: _Accumulator | None = None
    total = math.ceil(len(batch) / batch_size)
    parts = split_batch(batch, batch_size)
    for part in tqdm(parts, total=total, desc="compare", unit="batch", disable=not progress):
        float_capture = capture(float_session, part)
        quant_capture = capture(quant_session, part)
        if accumulator is None:
            accumulator = _Accumulator(float_session, quant_session, float_capture, quant_capture, matching, local=local)
        accumulator.update(float_capture, quant_capture)
    if accumulator is None:
        raise ComparisonError("no inputs to compare: the input batch is empty")
    return accumulator.result()


def _onnx_graph(session: Session) -> onnx.GraphProto | None:
    return parse_model(session.path).graph if session.format == "onnx" else None


class _Accumulator:
    """Pairs found on the first batch, and metric sums merged over all batches."""

    def __init__(
        self,
        float_session: Session,
        quant_session: Session,
        float_capture: CaptureResult,
        quant_capture: CaptureResult,
        matching: LayerMatching,
        *,
        local: bool,
    ) -> None:
        self.pairs = pair_activations(
            float_capture.activations,
            quant_capture.activations,
            matching,
            float_graph=_onnx_graph(float_session),
            quant_graph=_onnx_graph(quant_session),
        )
        self.orders: dict[ActivationPair, tuple[int, ...] | None] = {}
        self.sums: dict[ActivationPair, TensorComparison] = {}
        self.local_sums: dict[ActivationPair, TensorComparison] = {}
        self.notes: list[str] = []
        self.local_notes: dict[ActivationPair, str] = {}
        self.locals = self._build_locals(quant_session, quant_capture) if local else {}
        self.outputs: list[tuple[np.ndarray, np.ndarray]] = []
        self.labels: list[int | None] = []
        self.samples = 0

    def _build_locals(self, quant_session: Session, quant_capture: CaptureResult) -> dict[ActivationPair, LocalLayer]:
        layer_pairs = [pair for pair in self.pairs if pair.layer_match is not None]
        if quant_session.format != "onnx":
            self.local_notes.update({pair: LOCAL_UNAVAILABLE for pair in layer_pairs})
            return {}
        quantizations = {a.name: a.tensor.quantization for a in quant_capture.activations if a.tensor.quantization}
        builder = LocalBuilder(parse_model(quant_session.path), self.pairs, quantizations)
        built = {}
        for pair in layer_pairs:
            try:
                built[pair] = builder.build(pair)
            except ComparisonError as exc:
                logger.info("no local error for %s: %s", pair.quant_layer, exc)
                self.local_notes[pair] = str(exc)
        return built

    def update(self, float_capture: CaptureResult, quant_capture: CaptureResult) -> None:
        float_values = {a.name: a.tensor.values for a in float_capture.activations}
        quant_values = {a.name: a.tensor.values for a in quant_capture.activations}
        for pair in self.pairs:
            reference = float_values.get(pair.float_name)
            quantized = quant_values.get(pair.quant_name)
            if reference is None or quantized is None:
                continue
            self._add(self.sums, pair, reference, quantized)
            if pair in self.locals:
                local_output = self.locals[pair].run(float_values[self.locals[pair].float_input])
                self._add(self.local_sums, pair, reference, local_output)
        if not self.samples:
            # Later batches repeat the first batch's notices with other numbers.
            self.notes.extend(dict.fromkeys((*float_capture.notices, *quant_capture.notices)))
        self.outputs.append((_logits(float_capture), _logits(quant_capture)))
        self.labels.extend(float_capture.inputs.labels)
        self.samples += len(float_capture.inputs)

    def _add(self, sums: dict[ActivationPair, TensorComparison], pair: ActivationPair, reference: np.ndarray, quantized: np.ndarray) -> None:
        if pair not in self.orders:
            self.orders[pair] = self._order(pair, reference, quantized)
        order = self.orders[pair]
        if order is None:
            return
        comparison = TensorComparison.from_arrays(reference, np.transpose(quantized, order))
        sums[pair] = sums[pair].merge(comparison) if pair in sums else comparison

    def _order(self, pair: ActivationPair, reference: np.ndarray, quantized: np.ndarray) -> tuple[int, ...] | None:
        try:
            return align(np.asarray(quantized), np.asarray(reference))[1]
        except ComparisonError:
            self.notes.append(
                f"activations {pair.float_name!r} {reference.shape} and {pair.quant_name!r} {quantized.shape} "
                "have different shapes and are not compared"
            )
            return None

    def result(self) -> ActivationComparison:
        results = tuple(
            ActivationResult(
                pair=pair,
                accumulated=self.sums[pair],
                local=self.local_sums.get(pair),
                local_note=self.local_notes.get(pair),
            )
            for pair in self.pairs
            if pair in self.sums
        )
        outputs = self._agreement()
        return ActivationComparison(results=results, outputs=outputs, samples=self.samples, notes=tuple(self.notes))

    def _agreement(self) -> OutputAgreement | None:
        float_logits = np.concatenate([pair[0] for pair in self.outputs])
        quant_logits = np.concatenate([pair[1] for pair in self.outputs])
        if float_logits.shape != quant_logits.shape:
            self.notes.append(
                f"model outputs have different shapes, {float_logits.shape} (float) and {quant_logits.shape} "
                "(quantized), so their predictions are not compared"
            )
            return None
        labelled = [(i, label) for i, label in enumerate(self.labels) if label is not None]
        indices = np.array([i for i, _ in labelled], dtype=np.int64)
        truth = np.array([label for _, label in labelled], dtype=np.int64)
        return OutputAgreement(
            samples=len(float_logits),
            top1_agreement=top1_agreement(float_logits, quant_logits),
            mean_kl_divergence=float(np.mean(softmax_kl_divergence(float_logits, quant_logits))),
            logits=TensorComparison.from_arrays(float_logits, quant_logits),
            labelled=len(labelled),
            float_correct=int(np.sum(float_logits[indices].argmax(axis=-1) == truth)) if labelled else 0,
            quant_correct=int(np.sum(quant_logits[indices].argmax(axis=-1) == truth)) if labelled else 0,
        )


def _logits(result: CaptureResult) -> np.ndarray:
    if not result.outputs:
        raise ComparisonError(f"{result.model} returned no output to compare")
    return np.asarray(result.outputs[0], dtype=np.float64).reshape(len(result.inputs), -1)

