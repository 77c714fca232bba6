"""Case: summary statistics and a histogram of one large float32 array.

quantlens: ``stats.summarize_with_histogram`` (50 bins), what ``report_tensor`` computes. The
floor: the faster of ``np.sum`` and ``arr.max()`` over the same array, one pass that reads every
byte once, so its time is set by memory bandwidth.

quantlens needs two passes: the summary (which gives the histogram's range) and the binning.
The notes time each pass alone.
"""

from __future__ import annotations

import statistics
import time

from quantlens_bench.measure import Quantity, Row, format_count, format_quantity, run_worker

TARGET_RATIO = 4.0
BINS = 50


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
    """Worker task: time the floor, quantlens, its two passes and the counting step alone."""
    import numpy as np

    from quantlens import _kernels, stats

    values = np.random.default_rng(seed).standard_normal(size, dtype=np.float32)
    floor_sum = _median_time(lambda: np.sum(values), repeats)
    floor_max = _median_time(values.max, repeats)
    quantlens = _median_time(lambda: stats.summarize_with_histogram(values, BINS), repeats)
    summarize = _median_time(lambda: stats.summarize(values), repeats)
    low, high = float(values.min()), float(values.max())
    binning = _median_time(lambda: stats.histogram(values, BINS, value_range=(low, high)), repeats)

    result: dict[str, object] = {
        "floor_sum": floor_sum,
        "floor_max": floor_max,
        "quantlens": quantlens,
        "summarize": summarize,
        "binning": binning,
        "compiled": _kernels.usable(values),
    }
    if result["compiled"]:
        from quantlens import _kernels_numba

        result["cores"] = _kernels_numba.numba.get_num_threads()
    return result


def rows(*, size: int, repeats: int) -> list[Row]:
    result = run_worker("large-stats", {"size": size, "repeats": repeats})
    floor = min(result.number("floor_sum"), result.number("floor_max"))
    ours = result.number("quantlens")
    met = ours <= TARGET_RATIO * floor
    summary, binning = result.number("summarize"), result.number("binning")
    notes = (
        f"median of {repeats}; np.sum {format_quantity(result.number('floor_sum'), 's')}, "
        f"arr.max() {format_quantity(result.number('floor_max'), 's')}; "
        f"summary pass {format_quantity(summary, 's')} = {summary / floor:.1f}x, "
        f"binning pass {format_quantity(binning, 's')} = {binning / floor:.1f}x; "
    )
    if result.data.get("compiled"):
        notes += f"compiled kernels on {result.number('cores'):.0f} cores"
    else:
        notes += "numba is not installed, so numpy loops ran"
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
