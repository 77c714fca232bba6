"""Case: summary statistics and a histogram of one large float32 array.

quantlens: ``stats.summarize`` plus ``stats.histogram`` (50 bins), as ``report_tensor`` computes
them. The floor: the faster of ``np.sum`` and ``arr.max()`` over the same array, one pass that
reads every byte once, so its time is set by memory bandwidth.

The lower bound for any numpy histogram is its counting step: ``np.bincount`` over precomputed
bin indices. It is timed on one cache-resident chunk of the array's own indices, called as many
times as the array has chunks, which is faster than counting the indices of the whole array.
"""

from __future__ import annotations

import statistics
import time

from quantlens_bench.measure import Quantity, Row, format_count, format_quantity, run_worker

TARGET_RATIO = 4.0
BINS = 50
CHUNK = 1 << 16


def _median_time(function: object, repeats: int) -> float:
    """Return the median seconds of ``repeats`` calls, after one warm-up call."""
    function()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_statistics(size: int, repeats: int, seed: int = 0) -> dict[str, object]:
    """Worker task: time the floor, quantlens and the bincount bound on ``size`` normal float32 values."""
    import numpy as np

    from quantlens import stats

    values = np.random.default_rng(seed).standard_normal(size, dtype=np.float32)
    floor_sum = _median_time(lambda: np.sum(values), repeats)
    floor_max = _median_time(values.max, repeats)
    quantlens = _median_time(lambda: (stats.summarize(values), stats.histogram(values, BINS)), repeats)
    summarize = _median_time(lambda: stats.summarize(values), repeats)

    low, high = float(values.min()), float(values.max())
    chunk = values[:CHUNK].astype(np.float64)
    indices = np.minimum(((chunk - low) * (BINS / (high - low))).astype(np.intp), BINS - 1)
    calls = size // CHUNK

    def count_only() -> None:
        for _ in range(calls):
            np.bincount(indices, minlength=BINS)

    bincount = _median_time(count_only, repeats) * size / (calls * CHUNK)
    return {
        "floor_sum": floor_sum,
        "floor_max": floor_max,
        "quantlens": quantlens,
        "summarize": summarize,
        "bincount": bincount,
    }


def rows(*, size: int, repeats: int) -> list[Row]:
    result = run_worker("large-stats", {"size": size, "repeats": repeats})
    floor = min(result.number("floor_sum"), result.number("floor_max"))
    ours = result.number("quantlens")
    bincount = result.number("bincount")
    met = ours <= TARGET_RATIO * floor
    notes = (
        f"median of {repeats}; np.sum {format_quantity(result.number('floor_sum'), 's')}, "
        f"arr.max() {format_quantity(result.number('floor_max'), 's')}; "
        f"summarize alone {format_quantity(result.number('summarize'), 's')}"
    )
    if not met:
        notes += (
            f"; bound: np.bincount over precomputed bin indices alone takes {format_quantity(bincount, 's')} = "
            f"{bincount / floor:.1f}x the pass, so a numpy histogram cannot reach {TARGET_RATIO:g}x"
            if bincount > TARGET_RATIO * floor
            else f"; np.bincount over precomputed bin indices alone takes {format_quantity(bincount, 's')}"
        )
    return [
        Row(
            case=f"summary + histogram of {format_count(size)} float32 values",
            quantlens=Quantity(ours, "s"),
            compared=Quantity(floor, "s"),
            compared_label="one numpy reduction pass",
            target=f"<= {TARGET_RATIO:g}x",
            met=met,
            notes=notes,
        )
    ]
