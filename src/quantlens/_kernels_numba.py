"""numba kernels behind ``quantlens._kernels``; importing this module imports numba."""

from __future__ import annotations

import numba
import numpy as np

# Elements per step of the histogram pass: the bin indices of one step stay in L1 cache.
STEP = 4096

_FAST = {"fastmath": True, "cache": True, "nogil": True}


@numba.njit(**_FAST)
def _moments_block(values, bits, shift, exponent, flip):
    # fastmath lets LLVM reorder the sums into vector lanes. The caller discards the float
    # results of a block whose bits show NaN or infinity.
    total = 0.0
    squares = 0.0
    zeros = 0
    non_finite = 0
    sign = bits.itemsize * 8 - 1
    low_key = bits[0] ^ ((bits[0] >> sign) & flip)
    high_key = low_key
    for i in range(values.size):
        d = np.float64(values[i]) - shift
        total += d
        squares += d * d
        zeros += np.int64(values[i] == 0)
        b = bits[i]
        non_finite += np.int64((b & exponent) == exponent)
        key = b ^ ((b >> sign) & flip)
        low_key = min(low_key, key)
        high_key = max(high_key, key)
    return total, squares, zeros, non_finite, low_key, high_key


@numba.njit(parallel=True, cache=True)
def moments_parts(values, bits, shift, exponent, flip, parts):
    step = (values.size + parts - 1) // parts
    sums = np.zeros((parts, 2))
    zeros = np.zeros(parts, np.int64)
    non_finite = np.zeros(parts, np.int64)
    low_keys = np.empty(parts, bits.dtype)
    high_keys = np.empty(parts, bits.dtype)
    # MIN_SIZE is far above the number of parts, so no part is empty.
    for p in numba.prange(parts):
        start = p * step
        stop = min(start + step, values.size)
        result = _moments_block(values[start:stop], bits[start:stop], shift, exponent, flip)
        sums[p, 0] = result[0]
        sums[p, 1] = result[1]
        zeros[p] = result[2]
        non_finite[p] = result[3]
        low_keys[p] = result[4]
        high_keys[p] = result[5]
    return sums, zeros, non_finite, low_keys, high_keys


# No fastmath here: NaN must compare as outside the range, which fastmath lets LLVM assume away.
@numba.njit(cache=True, nogil=True)
def _positions(values, low, high, scale, bins, tolerance, index):
    # Bin index per value (``bins`` for values left out) and how many positions lie within
    # ``tolerance`` of an inner or outer edge, where rounding may have chosen the wrong bin.
    last = bins - 1
    near = 0
    for i in range(values.size):
        w = np.float64(values[i])
        position = (w - low) * scale
        inside = (w >= low) & (w <= high)
        j = min(np.int64(position if inside else 0.0), last)
        fraction = position - j
        near += np.int64(inside & ((fraction < tolerance) | (fraction > 1.0 - tolerance)))
        index[i] = j if inside else bins
    return near


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _snap(values, bounds, bins, index):
    for i in range(values.size):
        j = index[i]
        if j < bins:
            w = np.float64(values[i])
            if w < bounds[j]:
                j -= 1
            elif w >= bounds[j + 1]:
                j += 1
            index[i] = j


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scatter(index, counts, stride):
    # Four interleaved count arrays, so consecutive values in one bin do not wait on each
    # other's store.
    n = index.size
    whole = n - n % 4
    for i in range(0, whole, 4):
        counts[index[i]] += 1
        counts[stride + index[i + 1]] += 1
        counts[2 * stride + index[i + 2]] += 1
        counts[3 * stride + index[i + 3]] += 1
    for i in range(whole, n):
        counts[index[i]] += 1


@numba.njit(cache=True, nogil=True)
def _histogram_block(values, low, high, scale, bins, bounds, tolerance, counts):
    index = np.empty(STEP, np.int64)
    stride = bins + 1
    for start in range(0, values.size, STEP):
        chunk = values[start : start + STEP]
        step_index = index[: chunk.size]
        if _positions(chunk, low, high, scale, bins, tolerance, step_index):
            _snap(chunk, bounds, bins, step_index)
        _scatter(step_index, counts, stride)


@numba.njit(parallel=True, cache=True)
def histogram_parts(values, low, high, scale, bins, bounds, tolerance, parts):
    step = (values.size + parts - 1) // parts
    stride = bins + 1
    counts = np.zeros((parts, 4 * stride), np.int64)
    for p in numba.prange(parts):
        start = p * step
        stop = min(start + step, values.size)
        _histogram_block(values[start:stop], low, high, scale, bins, bounds, tolerance, counts[p])
    return counts.sum(axis=0).reshape(4, stride).sum(axis=0)



# The float32 histogram for up to PAIR_BINS bins. One byte per value contains its bin (``bins`` for
# values left out) and, in the top bit, whether float32 rounding may have chosen the wrong bin.
# The counting step then adds one per pair of values to a (bins + 1) x (bins + 1) table, which
# halves the scattered increments, the slowest part of binning.
PAIR_BINS = 64
_NEAR = np.uint8(0x80)


# No fastmath: NaN must compare as outside the range.
@numba.njit(cache=True, nogil=True, boundscheck=False)
def _codes32(values, low, high, scale, offset, bins, tolerance, codes):
    last = np.float32(bins - 1)
    outside = np.float32(bins)
    near_any = False
    for i in range(values.size):
        x = values[i]
        position = x * scale + offset
        inside = (x >= low) & (x <= high)
        clamped = min(max(position, np.float32(0.0)), last) if inside else outside
        near = inside & (np.abs(position - np.rint(position)) < tolerance)
        codes[i] = np.uint8(np.int32(clamped)) | (np.uint8(near) << 7)
        near_any |= near
    return near_any


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _place_near(values, bounds, codes, start, stop):
    # Values flagged near an edge: move from the rounded bin to the one the edges give.
    for i in range(start, stop):
        if codes[i] & _NEAR:
            x = np.float64(values[i])
            j = np.int64(codes[i] & 0x7F)
            while x < bounds[j]:
                j -= 1
            while x >= bounds[j + 1]:
                j += 1
            codes[i] = np.uint8(j)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _resolve32(values, bounds, codes):
    # Flags are rare: test eight codes at a time and look closer only where one is set.
    whole = codes.size - codes.size % 8
    words = codes[:whole].view(np.uint64)
    for w in range(words.size):
        if words[w] & np.uint64(0x8080808080808080):
            _place_near(values, bounds, codes, 8 * w, 8 * w + 8)
    _place_near(values, bounds, codes, whole, codes.size)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _count_pairs(codes, keys, table, stride, single):
    # Pair value i with value i + half; an odd last value is counted alone.
    half = codes.size // 2
    for i in range(half):
        keys[i] = np.uint16(codes[i]) * np.uint16(stride) + np.uint16(codes[i + half])
    for i in range(half):
        table[keys[i]] += 1
    if codes.size % 2:
        single[codes[codes.size - 1]] += 1


@numba.njit(cache=True, nogil=True)
def _histogram_block32(values, low, high, scale, offset, bins, tolerance, bounds, table, single):
    codes = np.empty(STEP, np.uint8)
    keys = np.empty(STEP // 2, np.uint16)
    stride = bins + 1
    for start in range(0, values.size, STEP):
        chunk = values[start : start + STEP]
        step_codes = codes[: chunk.size]
        if _codes32(chunk, low, high, scale, offset, bins, tolerance, step_codes):
            _resolve32(chunk, bounds, step_codes)
        _count_pairs(step_codes, keys, table, stride, single)


@numba.njit(parallel=True, cache=True)
def histogram_parts32(values, low, high, scale, offset, bins, tolerance, bounds, parts):
    step = (values.size + parts - 1) // parts
    stride = bins + 1
    # uint32 cells: a part's pairs number at most 2**31 (its size is checked by the caller).
    tables = np.zeros((parts, stride * stride), np.uint32)
    singles = np.zeros((parts, stride), np.int64)
    for p in numba.prange(parts):
        start = p * step
        stop = min(start + step, values.size)
        _histogram_block32(
            values[start:stop], low, high, scale, offset, bins, tolerance, bounds, tables[p], singles[p]
        )
    pairs = tables.astype(np.int64).sum(axis=0).reshape(stride, stride)
    return pairs.sum(axis=1) + pairs.sum(axis=0) + singles.sum(axis=0)
