"""Statistics over tensors: summaries, histograms, integer-code histograms and range analysis.

Pure numpy, no framework import. NaN and infinite values are counted but excluded from min, max,
mean, std and the float histograms. Empty and all-NaN arrays give a Summary whose value fields
are None instead of raising or returning NaN, so callers never print "nan" for "nothing".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from quantlens import _kernels
from quantlens.errors import InputError

# Elements per step of the chunked loops. A float32 chunk and its float64 copy (768 KB together)
# fit in a typical L2 cache, and numpy's per-call overhead is negligible at this size.
CHUNK = 1 << 16


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
    accumulator = StreamingSummary()
    accumulator.update(values)
    return accumulator.result()


def summarize_with_histogram(values: np.ndarray, bins: int = 50) -> tuple[Summary, Histogram]:
    """Return ``summarize(values)`` and ``histogram(values, bins)``, reading the values once less.

    The summary's min and max are the histogram's default range, so the histogram does not
    search for them again.
    """
    summary = summarize(values)
    if summary.min is None or summary.max is None:
        return summary, histogram(values, bins)
    return summary, histogram(values, bins, value_range=(summary.min, summary.max))


def flat_view(values: np.ndarray) -> np.ndarray:
    """Return the elements as a 1-d array in memory order, without a copy when they are dense.

    Statistics do not depend on element order, so a transposed or channels-last array (such as a
    permuted activation) is read where it lies instead of being copied into C order.
    """
    return np.ravel(np.asarray(values), order="K")


def _chunks(flat: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, flat.size, CHUNK):
        yield flat[start : start + CHUNK]


def finite_chunks(values: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the finite elements of ``values`` in chunks of at most ``CHUNK``, in order.

    Chunks without NaN or infinity are views; only a chunk that has some is copied, masked.
    """
    for chunk in _chunks(flat_view(values)):
        if chunk.dtype.kind == "f" and not (math.isfinite(float(chunk.min())) and math.isfinite(float(chunk.max()))):
            chunk = chunk[np.isfinite(chunk)]
        yield chunk


class StreamingSummary:
    """Summary statistics merged batch by batch, in memory independent of the number of batches.

    Means and variances merge with Chan et al.'s parallel update ("Updating formulae and a
    pairwise algorithm for computing sample variances", 1979), which stays accurate when the
    mean is large compared with the spread. Each batch is read in chunks of ``CHUNK`` elements
    through one float64 scratch buffer, so an update allocates at most ``8 * CHUNK`` bytes.
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
        flat = flat_view(values)
        if _kernels.usable(flat):
            moments = _kernels.moments(flat)
            if moments is not None:
                self.count += moments.count
                self.zero_count += moments.zero_count
                self._merge_moments(moments.count, moments.mean, moments.m2, moments.min, moments.max)
                return
        self.count += flat.size
        scratch = np.empty(min(flat.size, CHUNK), dtype=np.float64)
        for chunk in _chunks(flat):
            self._update_chunk(chunk, scratch)

    def _update_chunk(self, chunk: np.ndarray, scratch: np.ndarray) -> None:
        self.zero_count += int(np.count_nonzero(chunk == 0))
        widened = scratch[: chunk.size]
        np.copyto(widened, chunk, casting="unsafe")
        total = float(widened.sum())
        # A finite sum proves that no element is NaN or infinite, so the masks are skipped.
        if math.isfinite(total) or chunk.dtype.kind != "f":
            low, high = float(chunk.min()), float(chunk.max())
        else:
            finite_mask = np.isfinite(chunk)
            finite_count = int(np.count_nonzero(finite_mask))
            nan_count = int(np.count_nonzero(np.isnan(chunk)))
            self.nan_count += nan_count
            self.inf_count += chunk.size - finite_count - nan_count
            if finite_count == 0:
                return
            widened = widened[finite_mask]
            total = float(widened.sum())
            low, high = float(widened.min()), float(widened.max())
        self._merge(widened, total, low, high)

    def _merge(self, widened: np.ndarray, total: float, low: float, high: float) -> None:
        """Merge a chunk's finite values (float64, overwritten here) with their sum, min and max."""
        n = widened.size
        batch_mean = total / n
        widened -= batch_mean
        # Square and sum with numpy's pairwise summation; np.dot would call BLAS, whose thread
        # start-up costs more than the arithmetic on one chunk.
        np.square(widened, out=widened)
        self._merge_moments(n, batch_mean, float(widened.sum()), low, high)

    def _merge_moments(self, n: int, batch_mean: float, batch_m2: float, low: float, high: float) -> None:
        count = self.finite_count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / count
        self.m2 += batch_m2 + delta * delta * self.finite_count * n / count
        self.finite_count = count
        self.min = min(self.min, low)
        self.max = max(self.max, high)

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

    A constant array is binned over [v - 0.5, v + 0.5] (wider where float64 cannot tell those
    apart from v) so that its one value falls in the middle bin. An array with no finite value
    gives all-zero counts over [0, 1]. Values outside an explicit ``value_range`` are counted in
    ``excluded``. Bin i contains ``edges[i] <= v < edges[i + 1]`` and the last bin also contains
    ``high``, as in ``np.histogram``. The edges are float64 (see :class:`BinCounter`).
    """
    _check_bins(bins)
    flat = flat_view(values)
    fast = _kernels.usable(flat)
    moments = _kernels.moments(flat) if fast and value_range is None else None
    if moments is not None:
        low, high, all_inside = moments.min, moments.max, True
    elif value_range is None:
        low, high, all_inside = _finite_range(flat)
    else:
        low, high, all_inside = float(value_range[0]), float(value_range[1]), False
    if low > high:
        raise InputError(f"histogram range is inverted: low {low} > high {high}")
    if low == high:
        # Far from zero, +-0.5 can be below float64's spacing, and equal edges cannot bin.
        pad = max(0.5, math.ulp(low) * bins)
        low, high = low - pad, high + pad
    if not math.isfinite(high - low):
        raise InputError(f"histogram range [{low}, {high}] is not finite in float64; pass a finite value_range")
    width = (high - low) / bins
    if width == 0 or not math.isfinite(1.0 / width):
        # A range of a few subnormal numbers: the reciprocal overflows, so let numpy bin it.
        finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
        counts, _ = np.histogram(finite, bins=bins, range=(low, high))
    elif fast:
        counter = BinCounter(np.linspace(low, high, bins + 1), size=1)
        counts, _ = _kernels.bin_counts(flat, counter.edges, counter.tolerance)
    else:
        counts = np.zeros(bins, dtype=np.int64)
        counter = BinCounter(np.linspace(low, high, bins + 1), size=max(min(flat.size, CHUNK), 1))
        for chunk in _chunks(flat):
            counts += counter.count(chunk if all_inside else _inside(chunk, low, high))
    binned = int(counts.sum())
    edges = np.linspace(low, high, bins + 1)
    return Histogram(edges=edges, counts=counts.astype(np.int64), total=binned, excluded=flat.size - binned)


class BinCounter:
    """Counts per equal-width bin, with the bin found from arithmetic and checked at the edges.

    ``edges`` are ascending and equally spaced; values passed to ``count`` must be finite and in
    [edges[0], edges[-1]]. A value's position ``(v - edges[0]) * bins / (edges[-1] - edges[0])``
    is computed in float64 and its integer part is the bin. Rounding can put a value that lies on
    an inner edge on the wrong side of it, and gridded data (integers, dequantized codes) often
    lies on edges. Values whose position is within a few float64 rounding errors of an inner
    edge are therefore placed with ``np.searchsorted`` on ``edges``. The result then follows the
    edges exactly: bin i contains ``edges[i] <= v < edges[i + 1]``, and the last bin also
    contains ``edges[-1]``, as in ``np.histogram``.
    """

    def __init__(self, edges: np.ndarray, *, size: int = CHUNK) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.bins = self.edges.size - 1
        low, high = float(self.edges[0]), float(self.edges[-1])
        width = (high - low) / self.bins
        self.low = np.float64(low)
        self.scale = np.float64(1.0 / width)
        # Error bound of the position in bins: a few float64 rounding steps (2**-52) of the
        # largest magnitude involved, expressed in bin widths.
        self.tolerance = 64 * 2.0**-52 * (self.bins + (abs(low) + abs(high)) / width)
        self.size = size
        self._position = np.empty(size, dtype=np.float64)
        self._nearest = np.empty(size, dtype=np.float64)
        self._index = np.empty(size, dtype=np.intp)

    def count(self, values: np.ndarray) -> np.ndarray:
        """Return the int64 counts per bin of the 1-d ``values``, read ``size`` elements at a time."""
        counts = np.zeros(self.bins, dtype=np.int64)
        for start in range(0, values.size, self.size):
            counts += self._count_chunk(values[start : start + self.size])
        return counts

    def _count_chunk(self, values: np.ndarray) -> np.ndarray:
        position = self._position[: values.size]
        nearest = self._nearest[: values.size]
        index = self._index[: values.size]
        # np.float64 operands make numpy compute in float64 even for float32 values.
        np.subtract(values, self.low, out=position)
        np.multiply(position, self.scale, out=position)
        np.copyto(index, position, casting="unsafe")
        # Distance to the nearest inner edge (1 .. bins-1); the outer edges need no check.
        np.rint(position, out=nearest)
        np.clip(nearest, 1, max(self.bins - 1, 1), out=nearest)
        np.subtract(position, nearest, out=nearest)
        np.abs(nearest, out=nearest)
        near = np.flatnonzero(nearest < self.tolerance) if self.bins > 1 else ()
        if len(near):
            exact = np.searchsorted(self.edges, values[near].astype(np.float64), side="right") - 1
            index[near] = exact
        np.minimum(index, self.bins - 1, out=index)
        return np.bincount(index, minlength=self.bins)


def _finite_range(flat: np.ndarray) -> tuple[float, float, bool]:
    """Return min and max of the finite values, and whether every value is finite.

    NaN and infinities show up in a chunk's min or max, so only such chunks are masked. With no
    finite value the range is [0, 1].
    """
    low, high, all_finite = math.inf, -math.inf, True
    for chunk in _chunks(flat):
        chunk_low, chunk_high = float(chunk.min()), float(chunk.max())
        if not (math.isfinite(chunk_low) and math.isfinite(chunk_high)):
            all_finite = False
            chunk = chunk[np.isfinite(chunk)]
            if chunk.size == 0:
                continue
            chunk_low, chunk_high = float(chunk.min()), float(chunk.max())
        low, high = min(low, chunk_low), max(high, chunk_high)
    if low > high:
        return 0.0, 1.0, all_finite
    return low, high, all_finite


def _inside(chunk: np.ndarray, low: float, high: float) -> np.ndarray:
    """Return the elements in [low, high]; NaN is never inside. Copies only when some are outside."""
    if chunk.size == 0:
        return chunk
    if float(chunk.min()) >= low and float(chunk.max()) <= high:
        return chunk
    keep = (chunk >= np.float64(low)) & (chunk <= np.float64(high))
    return chunk[keep]


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
