"""Compiled single-pass kernels for summaries and histograms of large float arrays (numba).

numpy needs one pass over memory per operation (min, max, sum, a copy to float64, the bin
arithmetic, ``np.bincount``), so ``stats`` on 1e8 values reads them about ten times. These
kernels read them twice: once for count, zero count, non-finite count, min, max, sum and sum of
squares, and once to bin them. Both passes split the array over the CPU cores.

They are used only for float32 and float64 arrays of at least ``MIN_SIZE`` elements, so that
numba's compilation (a few seconds, once per machine: the code is cached on disk) never delays
the small tensors of an interactive session. Without numba, ``available()`` is False and
``stats`` keeps its numpy loops; results agree with those loops (the counts exactly).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass

import numpy as np

# Below this many elements the numpy loops take well under a second and need no compilation.
MIN_SIZE = 1 << 22

# One parallel kernel at a time. Without an OpenMP or TBB runtime numba falls back to its
# workqueue threading layer, which aborts the process when two threads launch kernels at once.
# The app runs each browser session in its own thread.
_LAUNCH = threading.Lock()


@functools.cache
def available() -> bool:
    """Return whether numba is installed, without importing it (the import takes 0.2 s)."""
    return importlib.util.find_spec("numba") is not None


def usable(flat: np.ndarray) -> bool:
    """Return whether the kernels take this 1-d array: float32 or float64, contiguous, large enough."""
    return (
        flat.size >= MIN_SIZE
        and flat.dtype in (np.float32, np.float64)
        and flat.flags.c_contiguous
        and available()
    )


@dataclass(frozen=True)
class Moments:
    """Result of the summary pass over an array without NaN or infinity."""

    count: int
    zero_count: int
    min: float
    max: float
    mean: float
    m2: float  # sum of squared deviations from the mean


def _bit_layout(dtype: np.dtype) -> tuple[type, int, int]:
    """Integer type of the same width, exponent mask, and the mask that flips negative keys."""
    if dtype == np.float32:
        return np.int32, 0x7F800000, 0x7FFFFFFF
    return np.int64, 0x7FF0000000000000, 0x7FFFFFFFFFFFFFFF


def moments(flat: np.ndarray) -> Moments | None:
    """Summarize ``flat`` in one parallel pass; None when it contains NaN or infinity.

    Sums run in float64, shifted by the first element so that a large mean does not cancel the
    variance. min and max are taken on the integer order of the float bits, which the compiler
    vectorizes where a float comparison with NaN rules would not. That order equals the float
    order once the pass has shown that no value is NaN.
    """
    int_type, exponent, flip = _bit_layout(flat.dtype)
    bits = flat.view(int_type)
    compiled = _compiled()
    parts = compiled.numba.get_num_threads()
    shift = float(flat[0])
    with _LAUNCH:
        sums, zeros, non_finite, low_keys, high_keys = compiled.moments_parts(
            flat, bits, shift, int_type(exponent), int_type(flip), parts
        )
    if int(non_finite.sum()) > 0:
        return None
    count = flat.size
    total = float(sums[:, 0].sum())
    squares = float(sums[:, 1].sum())
    mean_offset = total / count
    m2 = max(squares - total * mean_offset, 0.0)
    keys = np.array([low_keys.min(), high_keys.max()], dtype=int_type)
    low, high = (keys ^ ((keys >> (8 * keys.itemsize - 1)) & int_type(flip))).view(flat.dtype)
    return Moments(
        count=count,
        zero_count=int(zeros.sum()),
        min=float(low),
        max=float(high),
        mean=shift + mean_offset,
        m2=m2,
    )


def bin_counts(flat: np.ndarray, edges: np.ndarray, tolerance: float) -> tuple[np.ndarray, int]:
    """Return the counts of ``flat`` in the equal-width bins ``edges``, and the number left out.

    Bin i contains ``edges[i] <= v < edges[i + 1]`` and the last bin also contains ``edges[-1]``, as
    in ``np.histogram``. NaN, infinity and values outside the edges are left out. A value's bin
    comes from float64 arithmetic (float32 for float32 values in up to ``PAIR_BINS`` bins).
    Where that position lies within ``tolerance`` bins of an edge (a bound of float32's error
    in the float32 case), the value is compared with the edges themselves, so the result
    follows them exactly.
    """
    bins = edges.size - 1
    low, high = float(edges[0]), float(edges[-1])
    bounds = np.append(np.asarray(edges, dtype=np.float64), np.inf)
    bounds[bins] = np.inf  # the last bin includes its upper edge
    compiled = _compiled()
    parts = compiled.numba.get_num_threads()
    counts = None
    if flat.dtype == np.float32 and bins <= compiled.PAIR_BINS and flat.size // parts < 1 << 32:
        counts = _bin_counts32(compiled, flat, low, high, bounds, parts)
    if counts is None:
        with _LAUNCH:
            counts = compiled.histogram_parts(flat, low, high, bins / (high - low), bins, bounds, tolerance, parts)
    return counts[:bins].copy(), int(counts[bins])


def _bin_counts32(compiled, flat: np.ndarray, low: float, high: float, bounds: np.ndarray, parts: int) -> np.ndarray | None:
    """Bin float32 values with float32 arithmetic: counts per bin, then the number left out.

    None when float32 cannot express the bin arithmetic for this range (the caller then bins
    in float64): a scale beyond float32, or rounding errors of a quarter bin.

    A value's position ``x * scale + offset`` takes four float32 roundings (scale, offset, the
    product, the sum), each at most 2**-24 of a magnitude below ``max(|low|, |high|) / width``
    or ``bins + 1`` bins. Positions within twice their sum of a whole number are flagged and
    placed by comparing the value with the float64 edges, so the counts follow the edges exactly.
    The range test compares with the float32 values closest to ``low`` and ``high`` inside the
    range, which for float32 values is the same as comparing with ``low`` and ``high``.
    """
    bins = bounds.size - 2
    scale = bins / (high - low)
    width = (high - low) / bins
    tolerance = 2.0**-22 * (2 * max(abs(low), abs(high)) / width + bins + 1)
    largest = float(np.finfo(np.float32).max)
    if not (tolerance < 0.25 and scale < largest and abs(low * scale) < largest):
        return None
    low32, high32 = np.float32(low), np.float32(high)
    if low32 < low:
        low32 = np.nextafter(low32, np.float32(np.inf))
    if high32 > high:
        high32 = np.nextafter(high32, np.float32(-np.inf))
    with _LAUNCH:
        return compiled.histogram_parts32(
            flat, low32, high32, np.float32(scale), np.float32(-low * scale), bins, np.float32(tolerance), bounds, parts
        )


def _compiled():
    """Import the numba kernels on first use (compiled then, or loaded from numba's disk cache)."""
    from quantlens import _kernels_numba

    return _kernels_numba
