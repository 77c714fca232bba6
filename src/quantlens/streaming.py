"""Histograms built batch by batch, in memory independent of the number of batches.

Pure numpy, no framework import. NaN and infinite values are counted in ``excluded`` and never
binned, as in :func:`quantlens.stats.histogram`.
"""

from __future__ import annotations

import math

import numpy as np

from quantlens.errors import InputError
from quantlens.stats import CHUNK, BinCounter, Histogram, finite_chunks, flat_view

DEFAULT_BINS = 64


class StreamingHistogram:
    """A histogram with a fixed number of equal-width bins whose range grows to fit new values.

    The first batch with two distinct finite values sets the range to its [min, max]. When a later
    value falls outside the range, the range doubles towards it: each pair of neighbouring bins
    merges into one bin and the freed half of the bins covers the new side. Merging keeps every
    old bin edge on a new edge, so no count is ever split or guessed. Example: 4 bins over [0, 4)
    with counts ``[1, 2, 3, 4]`` and a new value 6 become 4 bins over [0, 8) with counts
    ``[3, 7, 0, 1]``.

    Memory is ``bins`` counters. Each doubling halves the resolution, so a first batch with a
    narrow range followed by much wider values ends with coarse bins.
    """

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 2 or bins % 2:
            raise InputError(f"streaming histogram bins must be an even integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.low: float | None = None
        self.width = 0.0
        self.excluded = 0
        # Values seen while every finite value so far was equal, so that no range exists yet.
        self._constant: float | None = None
        self._constant_count = 0

    @property
    def high(self) -> float | None:
        """Upper end of the range; None until two distinct values have been seen."""
        return None if self.low is None else self.low + self.width * self.bins

    @property
    def total(self) -> int:
        """Number of finite values added so far."""
        return int(self.counts.sum()) + self._constant_count

    def update(self, values: np.ndarray) -> None:
        """Add the finite elements of ``values`` (any shape, any real dtype).

        The values are read twice, chunk by chunk: once for their range and once to count them,
        so an update allocates only chunk-sized scratch arrays, whatever the size of ``values``.
        """
        flat = flat_view(values)
        count, low, high = 0, math.inf, -math.inf
        for chunk in finite_chunks(flat):
            if chunk.size:
                count += chunk.size
                low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        self.excluded += flat.size - count
        if count == 0:
            return
        if self.low is None and not self._start_range(low, high):
            self._constant = low
            self._constant_count += count
            return
        self._grow_to(low, high)
        counter = BinCounter(self._edges(), size=min(flat.size, CHUNK))
        for chunk in finite_chunks(flat):
            self.counts += counter.count(chunk)

    def _start_range(self, low: float, high: float) -> bool:
        """Set the range from the first spread of values; return False while all values are equal."""
        if self._constant is not None:
            low, high = min(low, self._constant), max(high, self._constant)
        if low == high:
            return False
        self.low = low
        self.width = (high - low) / self.bins
        if self._constant_count:
            # The range is closed at the top, like numpy.histogram, so the maximum lands in the last bin.
            self.counts += BinCounter(self._edges(), size=1).count(np.full(1, self._constant)) * self._constant_count
            self._constant_count = 0
        return True

    def _grow_to(self, low: float, high: float) -> None:
        assert self.low is not None
        while low < self.low:
            self._double(extend_low=True)
        while high > self.low + self.width * self.bins:
            self._double(extend_low=False)

    def _double(self, *, extend_low: bool) -> None:
        assert self.low is not None
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        half = self.bins // 2
        counts = np.zeros(self.bins, dtype=np.int64)
        if extend_low:
            counts[half:] = merged
            self.low -= self.width * self.bins
        else:
            counts[:half] = merged
        self.counts = counts
        self.width *= 2.0
        if not math.isfinite(self.width) or not math.isfinite(self.low):
            raise InputError("streaming histogram range overflowed float64; the values are too large")

    def _edges(self) -> np.ndarray:
        assert self.low is not None
        return self.low + self.width * np.arange(self.bins + 1, dtype=np.float64)

    def result(self) -> Histogram:
        """Return the counts so far as a Histogram.

        Before two distinct values have been seen, the histogram spans [v - 0.5, v + 0.5] around
        the single value v, which sits in the middle bin, as :func:`quantlens.stats.histogram`
        bins a constant array. With no finite value at all it spans [0, 1] with zero counts.
        """
        if self.low is not None:
            edges = self._edges()
            return Histogram(edges=edges, counts=self.counts.copy(), total=self.total, excluded=self.excluded)
        counts = np.zeros(self.bins, dtype=np.int64)
        if self._constant is None:
            return Histogram(edges=np.linspace(0.0, 1.0, self.bins + 1), counts=counts, total=0, excluded=self.excluded)
        counts[self.bins // 2] = self._constant_count
        edges = np.linspace(self._constant - 0.5, self._constant + 0.5, self.bins + 1)
        return Histogram(edges=edges, counts=counts, total=self._constant_count, excluded=self.excluded)


class StreamingCodeHistogram:
    """Counts of each integer code from ``qmin`` to ``qmax``, merged batch by batch.

    One bin per code with edges at +-0.5, as :func:`quantlens.stats.integer_histogram` builds
    them. Codes outside [qmin, qmax] are counted in ``excluded``.
    """

    MAX_WIDTH = 1 << 16

    def __init__(self, qmin: int, qmax: int) -> None:
        width = qmax - qmin + 1
        if width < 1 or width > self.MAX_WIDTH:
            raise InputError(
                f"code histogram needs 1 to {self.MAX_WIDTH} codes, got qmin {qmin} and qmax {qmax}"
            )
        self.qmin = qmin
        self.qmax = qmax
        self.counts = np.zeros(width, dtype=np.int64)
        self.excluded = 0

    def update(self, codes: np.ndarray) -> None:
        """Add the integer codes in ``codes`` (any shape)."""
        flat = np.asarray(codes).reshape(-1).astype(np.int64, copy=False)
        inside = (flat >= self.qmin) & (flat <= self.qmax)
        self.counts += np.bincount(flat[inside] - self.qmin, minlength=self.counts.size)
        self.excluded += int(flat.size - np.count_nonzero(inside))

    def result(self) -> Histogram:
        """Return the counts so far as a Histogram with one bin per code."""
        edges = np.arange(self.qmin, self.qmax + 2, dtype=np.float64) - 0.5
        return Histogram(edges=edges, counts=self.counts.copy(), total=int(self.counts.sum()), excluded=self.excluded)
