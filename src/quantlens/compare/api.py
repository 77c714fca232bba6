"""One call from two model files to a ranked comparison report."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from quantlens.compare.activations import DEFAULT_BATCH_SIZE, ActivationComparison, compare_activations
from quantlens.compare.folding import BATCHNORM_EPS
from quantlens.compare.matching import LayerMatching, match_layers
from quantlens.compare.report import ComparisonReport, LayerResult, rank_layers
from quantlens.compare.weights import compare_weights
from quantlens.errors import ComparisonError
from quantlens.inputs import parse_input
from quantlens.readers import open_model
from quantlens.records import Model
from quantlens.runtime import open_session

logger = logging.getLogger(__name__)


def build_report(
    float_model: Model,
    quant_model: Model,
    matching: LayerMatching,
    *,
    activations: ActivationComparison | None = None,
    inputs: str | None = None,
) -> ComparisonReport:
    """Measure the weight error of every match and rank the layers into a report.

    A weight comparison that fails (shapes that cannot be aligned) leaves that layer's weight
    empty with the reason in ``weight_note``, so one odd layer does not stop the report.
    """
    results = []
    for match in matching.matches:
        weight, note = None, None
        try:
            weight = compare_weights(match)
        except ComparisonError as exc:
            logger.warning("weights of %s and %s not compared: %s", match.float_name, match.quant_name, exc)
            note = str(exc)
        activation = None if activations is None else activations.for_layer(match)
        results.append(LayerResult(match=match, weight=weight, activation=activation, weight_note=note))
    notes = list(activations.notes) if activations is not None else []
    if any(match.float_batchnorm is not None for match in matching.matches):
        notes.append(
            f"BatchNorm layers of the float model were folded into the layer before them (eps {BATCHNORM_EPS:g}, "
            "PyTorch's default) before their weights were compared, as the quantizer folded them"
        )
    return ComparisonReport(
        float_model=float_model,
        quant_model=quant_model,
        matching=matching,
        layers=rank_layers(results, by_activation=activations is not None),
        activations=activations,
        inputs=inputs,
        notes=tuple(notes),
    )


def compare_models(
    float_path: str | os.PathLike[str],
    quant_path: str | os.PathLike[str],
    *,
    inputs: str | Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    trust: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    local: bool = True,
    progress: bool = False,
) -> ComparisonReport:
    """Compare a float model file with its quantized version.

    Without ``inputs`` only weights are compared. With ``inputs`` (the syntax of
    :func:`quantlens.inputs.parse_input`: ``cifar10:0-99``, ``random:SEED`` or image paths) both
    models run on the same inputs and every paired activation is compared as well.
    ``mapping`` (float layer name -> quantized layer name) overrides the layer matcher.
    """
    float_model = open_model(float_path, trust=trust)
    quant_model = open_model(quant_path, trust=trust)
    matching = match_layers(float_model, quant_model, mapping=mapping)
    if inputs is None:
        return build_report(float_model, quant_model, matching)
    float_session = open_session(float_path, trust=trust)
    quant_session = open_session(quant_path, trust=trust)
    batch = parse_input(inputs, data_dir=data_dir, size=float_session.adapter.image_size)
    activations = compare_activations(
        float_session, quant_session, batch, matching=matching, batch_size=batch_size, local=local, progress=progress
    )
    description = inputs if isinstance(inputs, str) else " ".join(inputs)
    return build_report(float_model, quant_model, matching, activations=activations, inputs=description)
