"""Bring a float weight into the form its quantized counterpart has: BatchNorm folded, axes aligned.

Quantizers fold a BatchNorm that follows a convolution into the convolution's weight and bias
before quantizing. ONNX exporters already fold it in the float model, but a PyTorch state_dict
keeps the two apart. Comparing the unfolded float weight with the folded quantized one would measure the
fold, not the quantization, so the float weight is folded the same way first.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from quantlens.errors import ComparisonError
from quantlens.records import Layer, Role, Tensor

logger = logging.getLogger(__name__)

# PyTorch's default BatchNorm eps. NOTE: a state_dict does not store eps, so a model built with
# another eps is folded with a slightly wrong factor.
BATCHNORM_EPS = 1e-5


def op_family(op_type: str) -> str:
    """Group op types that do the same maths across formats and quantizers.

    Example: ``Conv``, ``Conv2d``, ``ConvReLU2d``, ``QLinearConv``, ``quantized::conv2d_relu``
    and ``CONV_2D`` all give ``"conv"``; ``Gemm``, ``Linear``, ``QGemm`` give ``"linear"``.
    """
    lower = op_type.lower()
    if "transpose" in lower and "conv" in lower:
        return "conv_transpose"
    if "conv" in lower:
        return "conv"
    if any(word in lower for word in ("gemm", "linear", "matmul", "fully_connected", "dense")):
        return "linear"
    if "batchnorm" in lower.replace("_", ""):
        return "batchnorm"
    if "relu" in lower or lower in ("clip", "hardtanh"):
        return "relu"
    for prefix in ("quantized::", "aten::", "qlinear"):
        if lower.startswith(prefix) and len(lower) > len(prefix):
            return lower[len(prefix):]
    return lower


def batchnorm_tensors(layer: Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (gamma, beta, running_mean, running_var) of a BatchNorm layer.

    Mean and variance are found by their PyTorch names (``running_mean``, ``running_var``), else
    as the first two 1-d parameters in input order, as ONNX BatchNormalization lists them.
    """
    gamma, beta = layer.weight, layer.bias
    parameters = [t for t in layer.tensors if t.role is Role.PARAMETER and len(t.shape) == 1]
    mean = next((t for t in parameters if t.name.endswith("running_mean")), None)
    var = next((t for t in parameters if t.name.endswith("running_var")), None)
    if (mean is None or var is None) and len(parameters) >= 2:
        mean, var = parameters[0], parameters[1]
    if gamma is None or beta is None or mean is None or var is None:
        raise ComparisonError(
            f"BatchNorm layer {layer.name!r} lacks weight, bias, running_mean or running_var; "
            f"its tensors: {', '.join(t.name for t in layer.tensors)}"
        )
    return tuple(np.asarray(t.values, dtype=np.float64) for t in (gamma, beta, mean, var))  # type: ignore[return-value]


def fold_batchnorm(
    weight: np.ndarray, bias: np.ndarray | None, batchnorm: Layer, *, eps: float = BATCHNORM_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Fold BatchNorm into the preceding layer's weight (output channels on axis 0) and bias.

    ``factor = gamma / sqrt(running_var + eps)``, ``W' = W * factor`` per output channel and
    ``b' = (b - running_mean) * factor + beta`` (b = 0 when the layer has no bias). Example: W = 2,
    gamma = 3, var = 4 - eps, mean = 1, beta = 0.5 and no bias give W' = 3 and b' = -1.
    """
    gamma, beta, mean, var = batchnorm_tensors(batchnorm)
    if gamma.shape[0] != weight.shape[0]:
        raise ComparisonError(
            f"BatchNorm {batchnorm.name!r} has {gamma.shape[0]} channels but the weight before it has "
            f"{weight.shape[0]} output channels"
        )
    factor = gamma / np.sqrt(var + eps)
    folded = np.asarray(weight, dtype=np.float64) * factor.reshape((-1,) + (1,) * (weight.ndim - 1))
    base = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=np.float64)
    return folded, (base - mean) * factor + beta


def comparable_tensor(layer: Layer) -> Tensor | None:
    """Return the tensor a layer's weight error is measured on: its weight, else its one constant.

    A layer without a weight role but with exactly one parameter (an ONNX Mul or Add constant)
    is compared on that parameter. Any other layer has nothing to compare and gives None.
    """
    if layer.weight is not None:
        return layer.weight
    parameters = [t for t in layer.tensors if t.role is Role.PARAMETER]
    return parameters[0] if len(parameters) == 1 else None


def float_weight(layer: Layer, batchnorm: Layer | None) -> np.ndarray | None:
    """Return the float layer's comparable weight, with ``batchnorm`` folded in when given."""
    tensor = comparable_tensor(layer)
    if tensor is None:
        return None
    if batchnorm is None:
        return np.asarray(tensor.values, dtype=np.float64)
    bias = layer.bias.values if layer.bias is not None else None
    return fold_batchnorm(tensor.values, bias, batchnorm)[0]


def float_bias(layer: Layer, batchnorm: Layer | None) -> np.ndarray | None:
    """Return the float layer's bias, with ``batchnorm`` folded in (a folded layer always has one)."""
    weight = comparable_tensor(layer)
    if batchnorm is not None and weight is not None:
        bias = layer.bias.values if layer.bias is not None else None
        return fold_batchnorm(weight.values, bias, batchnorm)[1]
    return None if layer.bias is None else np.asarray(layer.bias.values, dtype=np.float64)


def axis_permutations(source: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[int, ...]]:
    """List the axis orders that transpose an array of shape ``source`` into shape ``target``.

    Identity comes first when the shapes are equal. Example: (64, 3, 3, 32) to (64, 32, 3, 3)
    gives [(0, 3, 1, 2), (0, 3, 2, 1)]. Arrays of more than 6 dimensions only try the identity.
    """
    if sorted(source) != sorted(target):
        return []
    if len(source) > 6:
        return [tuple(range(len(source)))] if source == target else []
    return [p for p in itertools.permutations(range(len(source))) if tuple(source[i] for i in p) == target]


def align(values: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Transpose ``values`` to the shape of ``reference``, choosing the order most similar to it.

    Layouts differ between formats: TFLite stores convolution weights OHWI and PyTorch OIHW, and
    an ONNX MatMul weight is (in, out) where a Linear weight is (out, in). Among the axis orders
    that give the reference's shape, the one with the smallest squared difference wins.
    Returns the array and the order.
    """
    orders = axis_permutations(values.shape, reference.shape)
    if not orders:
        raise ComparisonError(
            f"weight shapes {reference.shape} (float) and {values.shape} (quantized) hold different "
            "numbers or sizes of dimensions, so they cannot be compared"
        )
    if len(orders) == 1:
        return np.transpose(values, orders[0]), orders[0]
    errors = [float(np.sum((np.transpose(values, order) - reference) ** 2)) for order in orders]
    best = orders[int(np.argmin(errors))]
    return np.transpose(values, best), best
