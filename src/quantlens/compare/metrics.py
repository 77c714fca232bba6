"""Error metrics between a float reference ``x`` and its quantized counterpart ``y``.

Pure numpy, no framework import. ``x`` is always the float (reference) tensor and ``y`` the
dequantized one; both are compared element by element in float64.

The array functions return NaN when either input contains NaN or inf, because an error against a
non-finite value is undefined, and raise ComparisonError for empty or differently shaped inputs.
:class:`TensorComparison` instead leaves non-finite pairs out and counts them in ``nonfinite``,
so that one bad element does not hide the error of the rest of a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quantlens.errors import ComparisonError

# Floor for both norms of the SQNR: float32 machine epsilon, 1.1920929e-07.
EPSILON = float(np.finfo(np.float32).eps)
# RMSE / scale of ideal round-to-nearest with no clipping: the error is uniform on
# [-scale/2, scale/2], whose standard deviation is scale / sqrt(12).
IDEAL_RMSE_OVER_SCALE = 1.0 / math.sqrt(12.0)


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ComparisonError(f"cannot compare tensors of shapes {a.shape} and {b.shape}: shapes must be equal")
    if a.size == 0:
        raise ComparisonError("cannot compare empty tensors")
    return a, b


def _any_nonfinite(a: np.ndarray, b: np.ndarray) -> bool:
    return not (np.isfinite(a).all() and np.isfinite(b).all())


def sqnr_from_norms(signal_norm: float, noise_norm: float) -> float:
    """Return ``20 * log10(signal_norm / noise_norm)`` in dB, both norms floored at EPSILON.

    A noise norm of exactly 0 (identical tensors) gives +inf. Example: norms 10 and 0.1 give 40 dB.
    """
    if noise_norm == 0.0:
        return math.inf
    return 20.0 * math.log10(max(signal_norm, EPSILON) / max(noise_norm, EPSILON))


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``20 * log10(||x|| / ||x - y||)`` in dB.

    Example: x = [3, 4] and y = [3, 3.9] give ||x|| = 5, ||x - y|| = 0.1 and 33.98 dB.
    Identical inputs give +inf.
    """
    a, b = _pair(x, y)
    if _any_nonfinite(a, b):
        return math.nan
    return sqnr_from_norms(float(np.linalg.norm(a)), float(np.linalg.norm(a - b)))


def mse(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error ``mean((x - y)**2)``. Example: [3, 4] vs [3, 3.9] give 0.005."""
    a, b = _pair(x, y)
    return float(np.mean((a - b) ** 2))


def max_abs_error(x: np.ndarray, y: np.ndarray) -> float:
    """Largest ``|x - y|``. Example: [3, 4] vs [3, 3.9] give 0.1."""
    a, b = _pair(x, y)
    return float(np.max(np.abs(a - b)))


def cosine_from_sums(dot: float, x_energy: float, y_energy: float) -> float:
    """Return ``dot / sqrt(x_energy * y_energy)``, with zero vectors handled explicitly.

    Two zero vectors are identical and give 1.0; one zero vector against a non-zero one gives 0.0.
    """
    if x_energy == 0.0 and y_energy == 0.0:
        return 1.0
    if x_energy == 0.0 or y_energy == 0.0:
        return 0.0
    return float(np.clip(dot / math.sqrt(x_energy * y_energy), -1.0, 1.0))


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine of the angle between x and y: ``x.y / (||x|| ||y||)``.

    Example: [1, 0] vs [1, 1] give 0.7071. Two zero vectors give 1.0, one zero vector gives 0.0.
    """
    a, b = _pair(x, y)
    if _any_nonfinite(a, b):
        return math.nan
    return cosine_from_sums(float(np.dot(a.ravel(), b.ravel())), float(np.sum(a * a)), float(np.sum(b * b)))


def _scaled_error(a: np.ndarray, b: np.ndarray, scale: np.ndarray | float, axis: int | None) -> np.ndarray:
    scales = np.asarray(scale, dtype=np.float64)
    if axis is not None and scales.ndim == 1:
        shape = [1] * a.ndim
        shape[axis] = -1
        scales = scales.reshape(shape)
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise ComparisonError(f"quantization scales must be finite and positive, got {scales.ravel()[:5]}")
    return (a - b) / scales


def rmse_over_scale(x: np.ndarray, y: np.ndarray, scale: np.ndarray | float, *, axis: int | None = None) -> float:
    """Root mean squared error in units of the quantization step: ``sqrt(mean(((x - y) / s)**2))``.

    ``scale`` is one scale, or one per slice along ``axis`` (per-channel quantization), so each
    element's error is divided by its own channel's scale. Ideal rounding without clipping gives
    1/sqrt(12) = 0.289. Example: x = [0.1, 0.2], y = [0.125, 0.175], scale 0.05 give 0.5.
    """
    a, b = _pair(x, y)
    return float(np.sqrt(np.mean(_scaled_error(a, b, scale, axis) ** 2)))


def _channels(x: np.ndarray, y: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(x, y)
    if a.ndim == 0:
        raise ComparisonError("per-channel metrics need at least one dimension, got a scalar")
    return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1), np.moveaxis(b, axis, 0).reshape(b.shape[axis], -1)


def sqnr_db_per_channel(x: np.ndarray, y: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """SQNR in dB of each slice along ``axis``; shape ``(x.shape[axis],)``. See :func:`sqnr_db`."""
    a, b = _channels(x, y, axis)
    return np.array([sqnr_db(row_a, row_b) for row_a, row_b in zip(a, b)])


def mse_per_channel(x: np.ndarray, y: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Mean squared error of each slice along ``axis``; shape ``(x.shape[axis],)``."""
    a, b = _channels(x, y, axis)
    return np.mean((a - b) ** 2, axis=1)


def max_abs_error_per_channel(x: np.ndarray, y: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Largest ``|x - y|`` of each slice along ``axis``; shape ``(x.shape[axis],)``."""
    a, b = _channels(x, y, axis)
    return np.max(np.abs(a - b), axis=1)


def cosine_similarity_per_channel(x: np.ndarray, y: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Cosine similarity of each slice along ``axis``; shape ``(x.shape[axis],)``."""
    a, b = _channels(x, y, axis)
    return np.array([cosine_similarity(row_a, row_b) for row_a, row_b in zip(a, b)])


def rmse_over_scale_per_channel(
    x: np.ndarray, y: np.ndarray, scale: np.ndarray | float, *, axis: int = 0
) -> np.ndarray:
    """RMSE / scale of each slice along ``axis``, each divided by its own scale when per-channel."""
    a, b = _channels(x, y, axis)
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1, 1), (a.shape[0], 1))
    return np.sqrt(np.mean(_scaled_error(a, b, scales, None) ** 2, axis=1))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis in float64, shifted by the maximum for stability."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_kl_divergence(float_logits: np.ndarray, quant_logits: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats per sample, ``sum(p * (log p - log q))`` with p, q the softmax of each row.

    Inputs are ``(N, classes)``. Example: logits [0, 0] vs [0, ln 3] (p = [0.5, 0.5],
    q = [0.25, 0.75]) give 0.1438 nats.
    """
    log_p = log_softmax(float_logits)
    log_q = log_softmax(quant_logits)
    return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


def top1_agreement(float_logits: np.ndarray, quant_logits: np.ndarray) -> float:
    """Fraction (0-1) of samples whose arg-max class is the same. Inputs are ``(N, classes)``."""
    a, b = _pair(float_logits, quant_logits)
    return float(np.mean(a.argmax(axis=-1) == b.argmax(axis=-1)))


@dataclass(frozen=True, repr=False)
class TensorComparison:
    """Error of a quantized tensor against its float reference, as sums that merge across batches.

    Fields are sums over the ``count`` compared elements, in float64: ``signal_energy`` = sum x^2,
    ``quant_energy`` = sum y^2, ``noise_energy`` = sum (x - y)^2, ``dot`` = sum x*y, and
    ``scaled_noise_energy`` = sum ((x - y) / s)^2 with s each element's quantization scale (None
    when no scale applies). ``nonfinite`` counts element pairs left out because x or y was NaN
    or inf. The metrics are properties, so a comparison merged over many batches gives the same
    numbers as one over the concatenated tensors.
    """

    count: int
    signal_energy: float
    quant_energy: float
    noise_energy: float
    dot: float
    max_abs_error: float
    scaled_noise_energy: float | None = None
    nonfinite: int = 0

    def __post_init__(self) -> None:
        if self.count < 0 or self.nonfinite < 0:
            raise ComparisonError(f"element counts must be >= 0, got count={self.count} nonfinite={self.nonfinite}")
        energies = (self.signal_energy, self.quant_energy, self.noise_energy, self.max_abs_error)
        if any(not value >= 0.0 for value in energies):
            raise ComparisonError(f"energies and max_abs_error must be >= 0, got {energies}")

    @classmethod
    def from_arrays(
        cls, x: np.ndarray, y: np.ndarray, *, scale: np.ndarray | float | None = None, axis: int | None = None
    ) -> TensorComparison:
        """Compare float ``x`` with dequantized ``y`` of the same shape.

        ``scale`` (one value, or one per slice along ``axis``) enables :attr:`rmse_over_scale`.
        """
        a, b = (np.asarray(v, dtype=np.float64) for v in (x, y))
        if a.shape != b.shape:
            raise ComparisonError(f"cannot compare tensors of shapes {a.shape} and {b.shape}: shapes must be equal")
        finite = np.isfinite(a) & np.isfinite(b)
        difference = np.where(finite, a - b, 0.0)
        a, b = np.where(finite, a, 0.0), np.where(finite, b, 0.0)
        scaled = None if scale is None else float(np.sum(_scaled_error(difference, 0.0, scale, axis) ** 2))
        return cls(
            count=int(finite.sum()),
            signal_energy=float(np.sum(a * a)),
            quant_energy=float(np.sum(b * b)),
            noise_energy=float(np.sum(difference * difference)),
            dot=float(np.sum(a * b)),
            max_abs_error=float(np.max(np.abs(difference))) if difference.size else 0.0,
            scaled_noise_energy=scaled,
            nonfinite=int(finite.size - finite.sum()),
        )

    def merge(self, other: TensorComparison) -> TensorComparison:
        """Return the comparison over the elements of both, as if their tensors were concatenated."""
        scaled = None
        if self.scaled_noise_energy is not None and other.scaled_noise_energy is not None:
            scaled = self.scaled_noise_energy + other.scaled_noise_energy
        return TensorComparison(
            count=self.count + other.count,
            signal_energy=self.signal_energy + other.signal_energy,
            quant_energy=self.quant_energy + other.quant_energy,
            noise_energy=self.noise_energy + other.noise_energy,
            dot=self.dot + other.dot,
            max_abs_error=max(self.max_abs_error, other.max_abs_error),
            scaled_noise_energy=scaled,
            nonfinite=self.nonfinite + other.nonfinite,
        )

    @property
    def sqnr_db(self) -> float | None:
        """SQNR in dB, ``20 * log10(||x|| / ||x - y||)``; +inf when identical, None when empty."""
        if self.count == 0:
            return None
        return sqnr_from_norms(math.sqrt(self.signal_energy), math.sqrt(self.noise_energy))

    @property
    def mse(self) -> float | None:
        """Mean squared error; None when no element was compared."""
        return self.noise_energy / self.count if self.count else None

    @property
    def rmse(self) -> float | None:
        """Root mean squared error; None when no element was compared."""
        return math.sqrt(self.noise_energy / self.count) if self.count else None

    @property
    def rmse_over_scale(self) -> float | None:
        """RMSE in quantization steps (0.289 for ideal rounding); None without a scale."""
        if self.scaled_noise_energy is None or self.count == 0:
            return None
        return math.sqrt(self.scaled_noise_energy / self.count)

    @property
    def cosine_similarity(self) -> float | None:
        """Cosine similarity of x and y (1.0 for two zero tensors); None when empty."""
        if self.count == 0:
            return None
        return cosine_from_sums(self.dot, self.signal_energy, self.quant_energy)

    def __repr__(self) -> str:
        parts = [f"count={self.count}", f"sqnr={_format(self.sqnr_db)} dB", f"mse={_format(self.mse)}"]
        parts.append(f"cosine={_format(self.cosine_similarity)}")
        parts.append(f"max_abs_error={self.max_abs_error:.4g}")
        if self.rmse_over_scale is not None:
            parts.append(f"rmse/scale={self.rmse_over_scale:.3f}")
        if self.nonfinite:
            parts.append(f"nonfinite={self.nonfinite}")
        return f"TensorComparison({', '.join(parts)})"


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
