"""The compiled summary and histogram kernels agree with the numpy loops they replace.

The kernels take only arrays of at least ``_kernels.MIN_SIZE`` elements. These tests lower that
threshold so that small arrays go through them. Each result is compared with the same call
with the kernels turned off.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from quantlens import _kernels, stats

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba is not installed")


@pytest.fixture
def kernels_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernels, "MIN_SIZE", 1000)


def numpy_only(call, *args, **kwargs):
    saved = _kernels.MIN_SIZE
    _kernels.MIN_SIZE = 1 << 62
    try:
        return call(*args, **kwargs)
    finally:
        _kernels.MIN_SIZE = saved


def normal(size: int, dtype: type = np.float32, *, loc: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 1.0, size).astype(dtype)


def assert_same_summary(kernel: stats.Summary, reference: stats.Summary) -> None:
    for field in ("count", "finite_count", "nan_count", "inf_count", "zero_count", "min", "max"):
        assert getattr(kernel, field) == getattr(reference, field), field
    assert kernel.mean == pytest.approx(reference.mean, rel=1e-12, abs=1e-15)
    assert kernel.std == pytest.approx(reference.std, rel=1e-10)


def assert_same_histogram(kernel: stats.Histogram, reference: stats.Histogram) -> None:
    np.testing.assert_array_equal(kernel.edges, reference.edges)
    np.testing.assert_array_equal(kernel.counts, reference.counts)
    assert (kernel.total, kernel.excluded) == (reference.total, reference.excluded)


def test_usable_only_for_large_dense_floats(kernels_on):
    assert _kernels.usable(np.zeros(2000, np.float32))
    assert _kernels.usable(np.zeros(2000, np.float64))
    assert not _kernels.usable(np.zeros(500, np.float32))
    assert not _kernels.usable(np.zeros(2000, np.int8))
    assert not _kernels.usable(np.zeros(2000, np.float16))
    assert not _kernels.usable(np.zeros(4000, np.float32)[::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_summary_matches_numpy_loops(kernels_on, dtype):
    values = normal(50_001, dtype)
    values[::97] = 0
    assert_same_summary(stats.summarize(values), numpy_only(stats.summarize, values))


def test_summary_against_float64_numpy(kernels_on):
    values = normal(20_000, loc=3.0)
    result = stats.summarize(values)
    wide = values.astype(np.float64)
    assert result.mean == pytest.approx(wide.mean(), rel=1e-12)
    assert result.std == pytest.approx(wide.std(), rel=1e-10)
    assert (result.min, result.max) == (float(values.min()), float(values.max()))


def test_summary_with_large_mean_keeps_std(kernels_on):
    # A mean 1e5 times the spread: unshifted float64 sums of squares would lose the variance.
    values = (1e5 + normal(20_000, np.float64)).astype(np.float64)
    assert stats.summarize(values).std == pytest.approx(values.std(), rel=1e-9)


def test_summary_of_negative_values_orders_keys(kernels_on):
    values = -np.abs(normal(5000)) - 1.0
    result = stats.summarize(values)
    assert (result.min, result.max) == (float(values.min()), float(values.max()))


def test_summary_with_nan_and_inf_falls_back(kernels_on):
    values = normal(10_000)
    values[[3, 4000]] = np.nan
    values[[10, 9000, 9001]] = [np.inf, -np.inf, np.inf]
    result = stats.summarize(values)
    assert (result.nan_count, result.inf_count, result.finite_count) == (2, 3, 9995)
    assert_same_summary(result, numpy_only(stats.summarize, values))


def test_streaming_merges_kernel_batches(kernels_on):
    first, second = normal(8000, seed=1), normal(3000, loc=2.0, seed=2)
    merged = stats.StreamingSummary()
    merged.update(first)
    merged.update(second)
    assert_same_summary(merged.result(), numpy_only(stats.summarize, np.concatenate([first, second])))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bins", [1, 7, 50, 200])
def test_histogram_matches_numpy_loops(kernels_on, dtype, bins):
    values = normal(30_000, dtype, seed=bins)
    assert_same_histogram(stats.histogram(values, bins), numpy_only(stats.histogram, values, bins))


def test_histogram_of_codes_exactly_on_edges(kernels_on):
    # Dequantized int8 codes with a power-of-two scale: 255 bins over [-128, 127] * scale put
    # every value exactly on an edge, so each code has its own bin (the last two share one).
    codes = np.random.default_rng(3).integers(-128, 128, 40_000)
    codes[:2] = [-128, 127]
    values = (codes * 2.0**-7).astype(np.float32)
    kernel = stats.histogram(values, 255)
    expected = np.bincount(codes + 128, minlength=256)
    np.testing.assert_array_equal(kernel.counts[:-1], expected[:-2])
    assert kernel.counts[-1] == expected[-2] + expected[-1]


def test_histogram_of_values_within_rounding_of_edges(kernels_on):
    # Codes times 0.1 and edges from linspace differ by a rounding step or none, so the bin
    # arithmetic alone would put some values on the wrong side of their edge.
    codes = np.random.default_rng(4).integers(-128, 128, 40_000)
    codes[:2] = [-128, 127]
    values = codes * 0.1
    kernel = stats.histogram(values, 255)
    assert_same_histogram(kernel, numpy_only(stats.histogram, values, 255))
    edges = kernel.edges
    truth = np.minimum(np.searchsorted(edges, values, side="right") - 1, 254)
    np.testing.assert_array_equal(kernel.counts, np.bincount(truth, minlength=255))


def test_histogram_explicit_range_excludes_outside_and_nan(kernels_on):
    values = normal(12_000)
    values[::1000] = np.nan
    values[5] = np.inf
    kernel = stats.histogram(values, 20, value_range=(-1.0, 1.5))
    reference = numpy_only(stats.histogram, values, 20, value_range=(-1.0, 1.5))
    assert_same_histogram(kernel, reference)
    finite = values[np.isfinite(values)]
    assert kernel.total == int(np.count_nonzero((finite >= -1.0) & (finite <= 1.5)))


def test_histogram_with_nan_and_default_range(kernels_on):
    values = normal(12_000)
    values[::7] = np.nan
    kernel = stats.histogram(values, 30)
    assert_same_histogram(kernel, numpy_only(stats.histogram, values, 30))
    assert kernel.excluded == int(np.count_nonzero(np.isnan(values)))


def test_histogram_of_constant_array(kernels_on):
    kernel = stats.histogram(np.full(5000, 2.5, np.float32), 50)
    assert kernel.counts[25] == 5000
    assert kernel.edges[0] == 2.0
    assert kernel.edges[-1] == 3.0


def test_histogram_maximum_lands_in_last_bin(kernels_on):
    values = np.linspace(-1, 1, 4001, dtype=np.float64)
    kernel = stats.histogram(values, 4)
    np.testing.assert_array_equal(kernel.counts, np.histogram(values, 4)[0])


def exact_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts by comparing each value with the float64 edges, as ``np.histogram`` defines them."""
    wide = values.astype(np.float64)
    wide = wide[(wide >= edges[0]) & (wide <= edges[-1])]
    index = np.minimum(np.searchsorted(edges, wide, side="right") - 1, edges.size - 2)
    return np.bincount(index, minlength=edges.size - 1)


@pytest.fixture
def float64_binning_off(kernels_on, monkeypatch: pytest.MonkeyPatch) -> None:
    # The float32 histogram of up to PAIR_BINS bins must not reach the float64 kernel.
    from quantlens import _kernels_numba

    def reject(*args):
        raise AssertionError("float32 values reached the float64 binning kernel")

    monkeypatch.setattr(_kernels_numba, "histogram_parts", reject)


@pytest.mark.parametrize("size", [4096 * 3 + 5, 20_000, 20_001])
def test_float32_codes_on_edges(float64_binning_off, size):
    # Codes times 2**-3 over 63 bins: every value lies exactly on an edge.
    codes = np.random.default_rng(size).integers(-32, 32, size)
    codes[:2] = [-32, 31]
    values = (codes * 0.125).astype(np.float32)
    result = stats.histogram(values, 63)
    np.testing.assert_array_equal(result.counts, exact_counts(values, result.edges))
    assert result.total == size


def test_float32_values_beside_edges(float64_binning_off):
    # Codes times 0.1 in float32 lie a rounding step beside the float64 edges, on either side.
    codes = np.random.default_rng(6).integers(-30, 31, 30_000)
    values = (codes * 0.1).astype(np.float32)
    for bins in (10, 60, 64):
        result = stats.histogram(values, bins, value_range=(-3.0, 3.0))
        np.testing.assert_array_equal(result.counts, exact_counts(values, result.edges))


def test_float32_range_between_floats(float64_binning_off):
    # Range bounds that float32 cannot hold: the float32 values beside them fall on either side.
    low, high = 0.1, 0.7
    beside = [np.nextafter(np.float32(bound), np.float32(direction)) for bound in (low, high) for direction in (-1, 1)]
    values = np.concatenate([np.float32(beside * 1000), normal(10_000) * np.float32(0.3) + np.float32(0.4)])
    values[::501] = np.nan
    result = stats.histogram(values, 40, value_range=(low, high))
    np.testing.assert_array_equal(result.counts, exact_counts(values, result.edges))
    assert result.excluded == values.size - int(exact_counts(values, result.edges).sum())


@pytest.mark.parametrize(("spread", "kernel"), [(1e-4, "histogram_parts32"), (1e-6, "histogram_parts")])
def test_float32_far_from_zero(kernels_on, monkeypatch, spread, kernel):
    # A range narrow for its distance from zero makes float32 positions coarse: many values are
    # placed by the edge check (1e-4), or, beyond a quarter bin of error, the float64 kernel bins
    # them (1e-6).
    from quantlens import _kernels_numba

    called = []
    original = getattr(_kernels_numba, kernel)
    monkeypatch.setattr(_kernels_numba, kernel, lambda *args: called.append(kernel) or original(*args))
    values = (1e3 + normal(20_000, np.float64) * 1e3 * spread).astype(np.float32)
    result = stats.histogram(values, 50)
    assert called == [kernel]
    np.testing.assert_array_equal(result.counts, exact_counts(values, result.edges))
    assert_same_histogram(result, numpy_only(stats.histogram, values, 50))


@pytest.mark.parametrize("fill", [None, np.nan, np.inf])
def test_summarize_with_histogram_equals_separate_calls(kernels_on, fill):
    values = normal(9000, seed=5)
    if fill is not None:
        values[::11] = fill
    for call in (lambda f, *a: f(*a), numpy_only):
        summary, histogram = call(stats.summarize_with_histogram, values, 40)
        assert_same_summary(summary, call(stats.summarize, values))
        assert_same_histogram(histogram, call(stats.histogram, values, 40))


THREADS_SCRIPT = """
import threading
import numpy as np
from quantlens import _kernels, stats

_kernels.MIN_SIZE = 1000
values = np.random.default_rng(9).normal(0, 1, 40_000).astype(np.float32)
expected = stats.summarize_with_histogram(values, 30)
results = []

def work():
    for _ in range(5):
        results.append(stats.summarize_with_histogram(values, 30))

threads = [threading.Thread(target=work) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
same = all(
    summary == expected[0] and np.array_equal(histogram.counts, expected[1].counts)
    for summary, histogram in results
)
print(len(results), same)
"""


def test_kernels_from_several_threads():
    # The app computes statistics in one thread per browser session. numba's workqueue layer,
    # its fallback without an OpenMP runtime, aborts on concurrent launches unless they wait.
    environment = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    result = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT], capture_output=True, text=True, env=environment, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["15", "True"]
