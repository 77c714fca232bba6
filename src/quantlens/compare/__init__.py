"""Float vs quantized comparison: match layers across two models and rank them by quantization error.

``compare_models(float_path, quant_path, inputs=...)`` returns a :class:`ComparisonReport`; the
steps behind it are importable on their own: :func:`match_layers`, :func:`compare_weights`,
:func:`compare_activations` and the metrics in :mod:`quantlens.compare.metrics`. Plotly figures
for the report live in :mod:`quantlens.compare.charts`.
"""

from quantlens.compare.activations import ActivationComparison, ActivationResult, OutputAgreement, compare_activations
from quantlens.compare.api import build_report, compare_models
from quantlens.compare.matching import LayerMatch, LayerMatching, MatchMethod, load_mapping, match_layers
from quantlens.compare.metrics import TensorComparison
from quantlens.compare.pairing import ActivationPair
from quantlens.compare.report import ActivationRow, ComparisonReport, LayerResult, ReportRow
from quantlens.compare.weights import WeightComparison, compare_weights

__all__ = [
    "ActivationComparison",
    "ActivationPair",
    "ActivationResult",
    "ActivationRow",
    "ComparisonReport",
    "LayerMatch",
    "LayerMatching",
    "LayerResult",
    "MatchMethod",
    "OutputAgreement",
    "ReportRow",
    "TensorComparison",
    "WeightComparison",
    "build_report",
    "compare_activations",
    "compare_models",
    "compare_weights",
    "load_mapping",
    "match_layers",
]
