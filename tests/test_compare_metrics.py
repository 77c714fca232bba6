"""Comparison metrics against hand-computed values, edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlens.compare import metrics
from quantlens.compare.metrics import EPSILON, TensorComparison
from quantlens.errors import ComparisonError

X = np.array([3.0, 4.0])
Y = np.array([3.0, 3.9])


def test_sqnr_worked_example():
    # ||x|| = 5, ||x - y|| = 0.1: 20 * log10(50) = 33.9794 dB
    assert metrics.sqnr_db(X, Y) == pytest.approx(33.979400, abs=1e-6)


def test_sqnr_identical_is_inf():
    assert metrics.sqnr_db(X, X) == math.inf


def test_sqnr_zero_vectors_are_identical():
    assert metrics.sqnr_db(np.zeros(3), np.zeros(3)) == math.inf


def test_sqnr_zero_signal_floors_norm():
    # ||x|| floored at float32 eps, ||x - y|| = 1
    assert metrics.sqnr_db(np.zeros(2), np.array([1.0, 0.0])) == pytest.approx(20 * math.log10(EPSILON))


def test_sqnr_tiny_noise_floors_norm():
    expected = 20 * math.log10(1.0 / EPSILON)
    assert metrics.sqnr_db(np.array([1.0]), np.array([1.0 + 1e-12])) == pytest.approx(expected)


def test_sqnr_nan_input_gives_nan():
    assert math.isnan(metrics.sqnr_db(np.array([1.0, np.nan]), np.array([1.0, 1.0])))


def test_mse_worked_example():
    assert metrics.mse(X, Y) == pytest.approx(0.005)


def test_max_abs_error_worked_example():
    assert metrics.max_abs_error(X, Y) == pytest.approx(0.1)


def test_cosine_worked_example():
    assert metrics.cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))


def test_cosine_two_zero_vectors():
    assert metrics.cosine_similarity(np.zeros(4), np.zeros(4)) == 1.0


def test_cosine_one_zero_vector():
    assert metrics.cosine_similarity(np.zeros(2), np.array([1.0, 2.0])) == 0.0


def test_rmse_over_scale_worked_example():
    value = metrics.rmse_over_scale(np.array([0.1, 0.2]), np.array([0.125, 0.175]), 0.05)
    assert value == pytest.approx(0.5)


def test_rmse_over_scale_ideal_rounding():
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, 200_000)
    rounded = np.round(values / 0.01) * 0.01
    assert metrics.rmse_over_scale(values, rounded, 0.01) == pytest.approx(metrics.IDEAL_RMSE_OVER_SCALE, rel=0.01)


def test_rmse_over_scale_per_channel_scales():
    x = np.array([[0.0, 0.0], [0.0, 0.0]])
    y = np.array([[0.5, 0.5], [0.5, 0.5]])
    # channel 0 scale 1 gives 0.5 steps, channel 1 scale 0.5 gives 1 step: sqrt((0.25 + 1) / 2)
    value = metrics.rmse_over_scale(x, y, np.array([1.0, 0.5]), axis=0)
    assert value == pytest.approx(math.sqrt(0.625))


def test_rmse_over_scale_rejects_zero_scale():
    with pytest.raises(ComparisonError, match="finite and positive"):
        metrics.rmse_over_scale(X, Y, 0.0)


def test_per_channel_sqnr():
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    y = np.array([[3.0, 3.9], [1.0, 0.0]])
    result = metrics.sqnr_db_per_channel(x, y, axis=0)
    assert result[0] == pytest.approx(33.9794, abs=1e-4)
    assert result[1] == math.inf


def test_per_channel_other_axis():
    x = np.array([[3.0, 1.0], [4.0, 0.0]])
    y = np.array([[3.0, 1.0], [3.9, 0.0]])
    assert metrics.mse_per_channel(x, y, axis=1).tolist() == pytest.approx([0.005, 0.0])


def test_per_channel_max_abs_and_cosine():
    x = np.array([[1.0, 0.0], [0.0, 0.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert metrics.max_abs_error_per_channel(x, y).tolist() == [1.0, 0.0]
    assert metrics.cosine_similarity_per_channel(x, y).tolist() == pytest.approx([1 / math.sqrt(2), 1.0])


def test_per_channel_rmse_over_scale():
    x = np.zeros((2, 2))
    y = np.full((2, 2), 0.5)
    result = metrics.rmse_over_scale_per_channel(x, y, np.array([1.0, 0.5]))
    assert result.tolist() == pytest.approx([0.5, 1.0])


def test_shape_mismatch_raises():
    with pytest.raises(ComparisonError, match="shapes"):
        metrics.sqnr_db(np.zeros(3), np.zeros(4))


def test_empty_raises():
    with pytest.raises(ComparisonError, match="empty"):
        metrics.mse(np.zeros(0), np.zeros(0))


def test_kl_divergence_worked_example():
    value = metrics.softmax_kl_divergence(np.array([[0.0, 0.0]]), np.array([[0.0, math.log(3.0)]]))
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)
    assert value[0] == pytest.approx(expected)


def test_kl_divergence_identical_is_zero():
    logits = np.array([[1.0, 2.0, 3.0]])
    assert metrics.softmax_kl_divergence(logits, logits)[0] == pytest.approx(0.0, abs=1e-12)


def test_top1_agreement():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert metrics.top1_agreement(a, b) == 0.75


def test_comparison_matches_functions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5))
    y = x + rng.normal(scale=0.01, size=x.shape)
    comparison = TensorComparison.from_arrays(x, y, scale=0.02)
    assert comparison.sqnr_db == pytest.approx(metrics.sqnr_db(x, y))
    assert comparison.mse == pytest.approx(metrics.mse(x, y))
    assert comparison.cosine_similarity == pytest.approx(metrics.cosine_similarity(x, y))
    assert comparison.max_abs_error == pytest.approx(metrics.max_abs_error(x, y))
    assert comparison.rmse_over_scale == pytest.approx(metrics.rmse_over_scale(x, y, 0.02))


def test_comparison_merge_equals_concatenation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3))
    y = x + rng.normal(scale=0.1, size=x.shape)
    merged = TensorComparison.from_arrays(x[:2], y[:2]).merge(TensorComparison.from_arrays(x[2:], y[2:]))
    whole = TensorComparison.from_arrays(x, y)
    assert merged.count == whole.count
    assert merged.sqnr_db == pytest.approx(whole.sqnr_db)
    assert merged.cosine_similarity == pytest.approx(whole.cosine_similarity)
    assert merged.max_abs_error == whole.max_abs_error


def test_comparison_counts_nonfinite():
    comparison = TensorComparison.from_arrays(np.array([3.0, 4.0, np.nan]), np.array([3.0, 3.9, 1.0]))
    assert comparison.nonfinite == 1
    assert comparison.count == 2
    assert comparison.sqnr_db == pytest.approx(33.9794, abs=1e-4)


def test_comparison_empty_has_no_metrics():
    comparison = TensorComparison.from_arrays(np.zeros(0), np.zeros(0))
    assert comparison.sqnr_db is None
    assert comparison.mse is None
    assert comparison.cosine_similarity is None


def test_comparison_identical_is_inf():
    assert TensorComparison.from_arrays(X, X).sqnr_db == math.inf


def test_comparison_without_scale_has_no_rmse_over_scale():
    assert TensorComparison.from_arrays(X, Y).rmse_over_scale is None


def test_comparison_rejects_negative_energy():
    with pytest.raises(ComparisonError, match=">= 0"):
        TensorComparison(count=1, signal_energy=-1.0, quant_energy=0.0, noise_energy=0.0, dot=0.0, max_abs_error=0.0)


def test_comparison_repr_has_no_values():
    text = repr(TensorComparison.from_arrays(np.arange(1000.0), np.arange(1000.0) + 0.5))
    assert "sqnr=" in text
    assert "999" not in text
