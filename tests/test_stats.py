"""Statistics against hand-computed values, edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlens import stats
from quantlens.errors import InputError


def test_summarize_small_array():
    result = stats.summarize(np.array([1.0, 2.0, 3.0, 0.0], dtype=np.float32))
    assert result.count == 4
    assert result.min == 0.0
    assert result.max == 3.0
    assert result.mean == pytest.approx(1.5)
    assert result.std == pytest.approx(math.sqrt(1.25))
    assert result.zero_count == 1
    assert result.zero_fraction == 0.25


def test_summarize_counts_nan_and_inf():
    result = stats.summarize(np.array([1.0, np.nan, np.inf, -np.inf, 3.0]))
    assert result.count == 5
    assert result.nan_count == 1
    assert result.inf_count == 2
    assert result.finite_count == 2
    assert result.mean == pytest.approx(2.0)
    assert result.max == 3.0


def test_summarize_empty_array():
    result = stats.summarize(np.zeros((0, 3), dtype=np.float32))
    assert result.count == 0
    assert result.min is None
    assert result.std is None
    assert result.zero_fraction is None


def test_summarize_all_nan():
    result = stats.summarize(np.full(4, np.nan))
    assert result.nan_count == 4
    assert result.mean is None
    assert result.max is None


def test_summarize_constant_array():
    result = stats.summarize(np.full(10, 7, dtype=np.int8))
    assert result.min == 7.0
    assert result.max == 7.0
    assert result.std == 0.0


def test_summarize_scalar():
    result = stats.summarize(np.float32(2.5))
    assert result.count == 1
    assert result.mean == 2.5


def test_summarize_large_mean_keeps_std_precise():
    values = np.float64(1e8) + np.array([-1.0, 1.0] * 1000)
    assert stats.summarize(values).std == pytest.approx(1.0, rel=1e-9)


def test_summarize_chunks_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=3 * stats.CHUNK + 17).astype(np.float32)
    result = stats.summarize(values)
    assert result.mean == pytest.approx(float(values.astype(np.float64).mean()), rel=1e-12)
    assert result.std == pytest.approx(float(values.astype(np.float64).std()), rel=1e-9)
    assert result.min == float(values.min())


def test_streaming_summary_equals_one_pass():
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=n) for n in (5, 0, 100, 1)]
    accumulator = stats.StreamingSummary()
    for batch in batches:
        accumulator.update(batch)
    merged = accumulator.result()
    whole = stats.summarize(np.concatenate(batches))
    assert merged.count == whole.count
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.std == pytest.approx(whole.std, rel=1e-12)


def test_histogram_counts_and_edges():
    result = stats.histogram(np.array([0.0, 0.1, 0.5, 0.9, 1.0]), bins=2)
    assert result.edges.tolist() == [0.0, 0.5, 1.0]
    assert result.counts.tolist() == [2, 3]
    assert result.total == 5
    assert result.percent.tolist() == [40.0, 60.0]


def test_histogram_excludes_nan_and_out_of_range():
    result = stats.histogram(np.array([np.nan, -5.0, 0.2, 0.7]), bins=4, value_range=(0.0, 1.0))
    assert result.total == 2
    assert result.excluded == 2


def test_histogram_constant_array_centers_value():
    result = stats.histogram(np.full(6, 3.0), bins=5)
    assert result.edges[0] == 2.5
    assert result.edges[-1] == 3.5
    assert result.counts.tolist() == [0, 0, 6, 0, 0]


@pytest.mark.parametrize("value", [1e20, -3e38])
def test_histogram_large_constant_array(value):
    # v +- 0.5 equals v this far from zero: the range widens to distinct edges.
    result = stats.histogram(np.full(6, value, dtype=np.float32), bins=5)
    assert np.unique(result.edges).size == 6
    assert result.counts.tolist() == [0, 0, 6, 0, 0]


def test_histogram_empty_array():
    result = stats.histogram(np.array([], dtype=np.float32), bins=3)
    assert result.counts.tolist() == [0, 0, 0]
    assert result.percent.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_histogram_rejects_bad_bins(bins):
    with pytest.raises(InputError, match="bins must be a positive integer"):
        stats.histogram(np.arange(4.0), bins=bins)


def test_integer_histogram_one_bin_per_code():
    codes = np.array([-128, -128, 0, 127], dtype=np.int8)
    result = stats.integer_histogram(codes, -128, 127)
    assert result.bins == 256
    assert result.edges[0] == -128.5
    assert result.edges[-1] == 127.5
    assert result.counts[0] == 2
    assert result.counts[128] == 1
    assert result.counts[255] == 1


def test_integer_histogram_counts_codes_outside_range():
    result = stats.integer_histogram(np.array([-128, -127, 5], dtype=np.int8), -127, 127)
    assert result.excluded == 1
    assert result.total == 2


def test_integer_histogram_rejects_int32_range():
    with pytest.raises(InputError, match="billions|bins"):
        stats.integer_histogram(np.zeros(3, dtype=np.int32), -(2**31), 2**31 - 1)


def test_saturation_counts_both_ends():
    result = stats.saturation(np.array([0, 0, 255, 10], dtype=np.uint8), 0, 255)
    assert result.at_qmin == 2
    assert result.at_qmax == 1
    assert result.percent_at_qmin == 50.0
    assert result.percent_at_qmax == 25.0


def test_count_in_range_closed_interval():
    result = stats.count_in_range(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]), -1.0, 1.0)
    assert result.inside == 3
    assert result.total == 6
    assert result.percent == pytest.approx(50.0)


def test_count_in_range_rejects_inverted_range():
    with pytest.raises(InputError, match="greater than maximum"):
        stats.count_in_range(np.arange(3.0), 2.0, 1.0)


@pytest.mark.parametrize("bound", ["1.0", float("nan"), None])
def test_count_in_range_rejects_non_numbers(bound):
    with pytest.raises(InputError, match="must be a number"):
        stats.count_in_range(np.arange(3.0), bound, 1.0)


def test_count_in_range_empty_array():
    assert stats.count_in_range(np.array([]), 0.0, 1.0).percent == 0.0


def test_channel_ranges_per_output_channel():
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    low, high = stats.channel_ranges(weight, axis=0)
    assert low.tolist() == [0.0, 12.0]
    assert high.tolist() == [11.0, 23.0]


def test_channel_ranges_rejects_zero_dimension():
    with pytest.raises(InputError, match="non-empty axis"):
        stats.channel_ranges(np.zeros((0, 3)), axis=0)
