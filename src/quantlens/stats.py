"""Statistics over tensors: summaries, histograms, integer-code histograms and range analysis.

Pure numpy, no framework import. NaN and infinite values are counted but excluded from min, max,
mean, std and the float histograms. Empty and all-NaN arrays give a Summary whose value fields
are None instead of raising or returning NaN, so callers never print "nan" for "nothing".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from quantlens.errors import InputError

CHUNK = 1 << 20  # elements per pass; large enough for numpy, small enough to stay in cache


@dataclass(frozen=True)
class Summary:
    """Summary statistics of one array. Value fields are None when no finite value exists."""

    count: int
    finite_count: int
    nan_count: int
    inf_count: int
    zero_count: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None

    @property
    def zero_fraction(self) -> float | None:
        """Share of elements equal to zero, in 0-1; None for an empty array."""
        return self.zero_count / self.count if self.count else None

    def to_dict(self) -> dict[str, float | int | None]:
        data: dict[str, float | int | None] = asdict(self)
        data["zero_fraction"] = self.zero_fraction
        return data


@dataclass(frozen=True, repr=False, eq=False)
class Histogram:
    """Bin ``edges`` (length bins + 1, ascending) and ``counts`` per bin.

    ``total`` counts every element that was binned; ``excluded`` counts those left out (NaN,
    infinite, or outside the histogram's range).
    """

    edges: np.ndarray
    counts: np.ndarray
    total: int
    excluded: int = 0

    @property
    def bins(self) -> int:
        return int(self.counts.size)

    @property
    def percent(self) -> np.ndarray:
        """Each bin's share of ``total`` in percent (zeros when ``total`` is 0)."""
        if self.total == 0:
            return np.zeros(self.counts.shape, dtype=np.float64)
        return self.counts * (100.0 / self.total)

    def __repr__(self) -> str:
        return (
            f"Histogram({self.bins} bins over [{self.edges[0]:.6g}, {self.edges[-1]:.6g}], "
            f"total={self.total})"
        )


@dataclass(frozen=True)
class RangeCount:
    """How many elements lie in the closed interval [low, high]."""

    low: float
    high: float
    inside: int
    total: int

    @property
    def percent(self) -> float:
        """``inside`` as a percentage of ``total``; 0.0 for an empty array."""
        return 100.0 * self.inside / self.total if self.total else 0.0


@dataclass(frozen=True)
class Saturation:
    """Share of integer codes at the ends of the quantized range, where clipping happened."""

    qmin: int
    qmax: int
    at_qmin: int
    at_qmax: int
    total: int

    @property
    def percent_at_qmin(self) -> float:
        return 100.0 * self.at_qmin / self.total if self.total else 0.0

    @property
    def percent_at_qmax(self) -> float:
        return 100.0 * self.at_qmax / self.total if self.total else 0.0


def summarize(values: np.ndarray) -> Summary:
    """Compute count, NaN/Inf/zero counts, min, max, mean and population std (ddof=0).

    Works on any numeric array, in chunks, accumulating in float64. Example: ``[1, 2, 3, nan]``
    gives count 4, nan_count 1, min 1, max 3, mean 2 and std sqrt(2/3) = 0.8165.
    """
    flat = np.asarray(values).reshape(-1)
    accumulator = StreamingSummary()
    for start in range(0, flat.size, CHUNK):
        accumulator.update(flat[start : start + CHUNK])
    return accumulator.result()


class StreamingSummary:
    """Summary statistics merged batch by batch, in memory independent of the number of batches.

    Means and variances merge with Chan et al.'s parallel update ("Updating formulae and a
    pairwise algorithm for computing sample variances", 1979), which stays accurate when the
    mean is large compared with the spread.
    """

    def __init__(self) -> None:
        self.count = 0
        self.nan_count = 0
        self.inf_count = 0
        self.zero_count = 0
        self.finite_count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, values: np.ndarray) -> None:
        """Add the elements of ``values`` (any shape) to the running statistics."""
        flat = np.asarray(values).reshape(-1)
        self.count += flat.size
        if flat.size == 0:
            return
        self.zero_count += int(np.count_nonzero(flat == 0))
        if flat.dtype.kind == "f":
            finite_mask = np.isfinite(flat)
            finite_count = int(np.count_nonzero(finite_mask))
            if finite_count != flat.size:
                nan_count = int(np.count_nonzero(np.isnan(flat)))
                self.nan_count += nan_count
                self.inf_count += flat.size - finite_count - nan_count
                flat = flat[finite_mask]
        if flat.size == 0:
            return
        self._merge(flat)

    def _merge(self, finite: np.ndarray) -> None:
        n = finite.size
        batch_mean = float(np.sum(finite, dtype=np.float64)) / n
        centered = finite.astype(np.float64, copy=False) - batch_mean
        batch_m2 = float(np.dot(centered, centered))
        total = self.finite_count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta * delta * self.finite_count * n / total
        self.finite_count = total
        self.min = min(self.min, float(finite.min()))
        self.max = max(self.max, float(finite.max()))

    def result(self) -> Summary:
        """Return the statistics of everything added so far."""
        has_values = self.finite_count > 0
        return Summary(
            count=self.count,
            finite_count=self.finite_count,
            nan_count=self.nan_count,
            inf_count=self.inf_count,
            zero_count=self.zero_count,
            min=self.min if has_values else None,
            max=self.max if has_values else None,
            mean=self.mean if has_values else None,
            std=math.sqrt(max(self.m2, 0.0) / self.finite_count) if has_values else None,
        )


def histogram(
    values: np.ndarray, bins: int = 50, *, value_range: tuple[float, float] | None = None
) -> Histogram:
    """Bin the finite values into ``bins`` equal-width bins over ``value_range`` (default min-max).

    A constant array is binned over [v - 0.5, v + 0.5] so that its one value falls in the middle
    bin; an array with no finite value gives all-zero counts over [0, 1]. Values outside an
    explicit ``value_range`` are counted in ``excluded``.
    """
    _check_bins(bins)
    flat = np.asarray(values).reshape(-1)
    finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    low, high = value_range if value_range is not None else _data_range(finite)
    if low > high:
        raise InputError(f"histogram range is inverted: low {low} > high {high}")
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    binned = int(counts.sum())
    return Histogram(edges=edges, counts=counts.astype(np.int64), total=binned, excluded=flat.size - binned)


def _data_range(finite: np.ndarray) -> tuple[float, float]:
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def _check_bins(bins: int) -> None:
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise InputError(f"bins must be a positive integer, got {bins!r}")


def integer_histogram(codes: np.ndarray, qmin: int, qmax: int) -> Histogram:
    """Count each integer code from ``qmin`` to ``qmax``: one bin per code, edges at +-0.5.

    Example: int8 codes with qmin -128 and qmax 127 give 256 bins with edges -128.5 ... 127.5.
    Codes outside [qmin, qmax] are counted in ``excluded``. Ranges wider than 16 bits (int32
    biases) are rejected because one bin per code would need billions of bins.
    """
    width = qmax - qmin + 1
    if width < 1:
        raise InputError(f"integer histogram needs qmin <= qmax, got qmin {qmin} and qmax {qmax}")
    if width > 1 << 16:
        raise InputError(
            f"integer histogram over [{qmin}, {qmax}] would need {width} bins; "
            "use a float histogram for codes wider than 16 bits"
        )
    flat = np.asarray(codes).reshape(-1).astype(np.int64, copy=False)
    inside = (flat >= qmin) & (flat <= qmax)
    counts = np.bincount(flat[inside] - qmin, minlength=width)
    edges = np.arange(qmin, qmax + 2, dtype=np.float64) - 0.5
    binned = int(counts.sum())
    return Histogram(edges=edges, counts=counts.astype(np.int64), total=binned, excluded=flat.size - binned)


def saturation(codes: np.ndarray, qmin: int, qmax: int) -> Saturation:
    """Count codes equal to ``qmin`` and to ``qmax``."""
    flat = np.asarray(codes).reshape(-1)
    return Saturation(
        qmin=qmin,
        qmax=qmax,
        at_qmin=int(np.count_nonzero(flat == qmin)),
        at_qmax=int(np.count_nonzero(flat == qmax)),
        total=int(flat.size),
    )


def count_in_range(values: np.ndarray, low: float, high: float) -> RangeCount:
    """Count elements in the closed interval [low, high]; NaN never counts as inside.

    Example: ``[-2, -1, 0, 1, 2]`` with low -1 and high 1 gives 3 of 5 inside, 60%.
    """
    for name, bound in (("low", low), ("high", high)):
        if not isinstance(bound, (int, float, np.number)) or isinstance(bound, bool) or math.isnan(bound):
            raise InputError(f"range {name} must be a number, got {bound!r}")
    if low > high:
        raise InputError(f"range minimum {low} is greater than maximum {high}; swap them")
    flat = np.asarray(values).reshape(-1)
    inside = int(np.count_nonzero((flat >= low) & (flat <= high)))
    return RangeCount(low=float(low), high=float(high), inside=inside, total=int(flat.size))


def channel_ranges(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-channel minimum and maximum along ``axis`` (NaN-aware).

    Example: a conv weight of shape ``(16, 3, 3, 3)`` gives two arrays of shape ``(16,)``.
    """
    array = np.asarray(values)
    if array.ndim == 0 or array.shape[axis] == 0:
        raise InputError(f"channel ranges need a non-empty axis {axis}, got shape {array.shape}")
    moved = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    if moved.shape[1] == 0:
        raise InputError(f"channel ranges need elements in each channel, got shape {array.shape}")
    with np.errstate(invalid="ignore"):
        return np.nanmin(moved, axis=1), np.nanmax(moved, axis=1)
