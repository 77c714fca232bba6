"""Activation capture: record every intermediate value of a model run.

Backends: forward hooks for eager ``nn.Module`` models, a rewritten graph for TorchScript, and
extra graph outputs for ONNX models run by onnxruntime. ``capture`` runs one batch;
``capture_statistics`` merges statistics over many batches in bounded memory.
"""

from quantlens.capture.api import capture, list_capture_points
from quantlens.capture.records import Activation, CapturePoint, CaptureResult
from quantlens.capture.statistics import ActivationStatistics, StatisticsResult, capture_statistics, split_batch

__all__ = [
    "Activation",
    "ActivationStatistics",
    "CapturePoint",
    "CaptureResult",
    "StatisticsResult",
    "capture",
    "capture_statistics",
    "list_capture_points",
    "split_batch",
]
