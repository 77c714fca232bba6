"""Streaming histograms against hand-computed counts and numpy, and batch statistics capture."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens import stats
from quantlens.capture import capture, capture_statistics, split_batch
from quantlens.errors import InputError
from quantlens.inputs import InputBatch
from quantlens.runtime import open_session
from quantlens.streaming import StreamingCodeHistogram, StreamingHistogram


def test_histogram_first_batch_matches_numpy():
    values = np.random.default_rng(0).normal(size=1000)
    streaming = StreamingHistogram(16)
    streaming.update(values)
    expected, edges = np.histogram(values, bins=16)
    result = streaming.result()
    assert np.array_equal(result.counts, expected)
    assert np.allclose(result.edges, edges)


def test_histogram_doubles_to_the_right():
    streaming = StreamingHistogram(4)
    streaming.update(np.array([0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0]))
    streaming.update(np.array([6.0]))
    result = streaming.result()
    assert result.counts.tolist() == [3, 7, 0, 1]
    assert result.edges.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_histogram_doubles_to_the_left():
    streaming = StreamingHistogram(4)
    streaming.update(np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    streaming.update(np.array([-3.0]))
    result = streaming.result()
    assert result.edges.tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert result.counts.tolist() == [1, 0, 2, 3]


def test_histogram_grows_both_ways_in_one_batch():
    streaming = StreamingHistogram(8)
    streaming.update(np.array([0.0, 1.0]))
    streaming.update(np.array([-100.0, 100.0]))
    result = streaming.result()
    assert result.edges[0] <= -100.0
    assert result.edges[-1] >= 100.0
    assert result.total == 4


def test_histogram_total_equals_values_added():
    rng = np.random.default_rng(1)
    streaming = StreamingHistogram(32)
    for scale in (0.1, 1.0, 10.0, 100.0):
        streaming.update(rng.normal(scale=scale, size=500))
    assert streaming.result().total == 2000
    assert int(streaming.result().counts.sum()) == 2000


def test_histogram_memory_is_fixed():
    streaming = StreamingHistogram(16)
    for seed in range(20):
        streaming.update(np.random.default_rng(seed).normal(scale=seed + 1, size=100))
    assert streaming.counts.shape == (16,)


def test_histogram_excludes_nan_and_inf():
    streaming = StreamingHistogram(4)
    streaming.update(np.array([0.0, np.nan, 1.0, np.inf, -np.inf]))
    result = streaming.result()
    assert result.total == 2
    assert result.excluded == 3


def test_histogram_constant_values_sit_in_middle_bin():
    streaming = StreamingHistogram(4)
    streaming.update(np.full(5, 2.0))
    result = streaming.result()
    assert result.counts.tolist() == [0, 0, 5, 0]
    assert result.edges[0] == 1.5
    assert result.edges[-1] == 2.5


def test_histogram_constant_then_spread_keeps_counts():
    streaming = StreamingHistogram(4)
    streaming.update(np.full(5, 2.0))
    streaming.update(np.array([0.0, 4.0]))
    result = streaming.result()
    assert result.total == 7
    assert result.counts.tolist() == [1, 0, 5, 1]


def test_histogram_empty():
    streaming = StreamingHistogram(4)
    streaming.update(np.zeros(0, dtype=np.float32))
    result = streaming.result()
    assert result.total == 0
    assert result.counts.tolist() == [0, 0, 0, 0]


def test_histogram_integer_input():
    streaming = StreamingHistogram(2)
    streaming.update(np.array([0, 1, 2], dtype=np.int8))
    assert streaming.result().counts.tolist() == [1, 2]


@pytest.mark.parametrize("bins", [0, 3, -2, True, 2.0])
def test_histogram_rejects_invalid_bins(bins):
    with pytest.raises(InputError, match="even integer"):
        StreamingHistogram(bins)


def test_code_histogram_matches_integer_histogram():
    codes = np.random.default_rng(2).integers(-128, 128, size=300).astype(np.int8)
    streaming = StreamingCodeHistogram(-128, 127)
    streaming.update(codes[:100])
    streaming.update(codes[100:])
    expected = stats.integer_histogram(codes, -128, 127)
    assert np.array_equal(streaming.result().counts, expected.counts)
    assert np.array_equal(streaming.result().edges, expected.edges)


def test_code_histogram_counts_out_of_range():
    streaming = StreamingCodeHistogram(0, 3)
    streaming.update(np.array([0, 3, 4, -1]))
    assert streaming.result().excluded == 2


def test_split_batch_sizes():
    batch = InputBatch(images=np.zeros((5, 2, 2, 3), np.uint8), labels=(0, 1, 2, 3, 4), descriptions=tuple("abcde"))
    sizes = [len(part) for part in split_batch(batch, 2)]
    assert sizes == [2, 2, 1]


def test_split_batch_rejects_zero():
    batch = InputBatch(images=np.zeros((1, 2, 2, 3), np.uint8), labels=(None,), descriptions=("a",))
    with pytest.raises(InputError, match="batch size"):
        list(split_batch(batch, 0))


@pytest.fixture(scope="module")
def float_onnx(bundled):
    return open_session(bundled["resnet8.onnx"])


def test_statistics_match_one_capture(float_onnx, cifar_dir):
    from quantlens.inputs import cifar10_samples

    batch = cifar10_samples(list(range(6)), data_dir=cifar_dir)
    result = capture_statistics(float_onnx, split_batch(batch, 4), layers=["/stack1/conv2/Conv"], progress=False)
    whole = capture(float_onnx, batch, layers=["/stack1/conv2/Conv"]).activations[0].tensor.values
    expected = stats.summarize(whole)
    summary = result.activations[0].summary
    assert result.samples == 6
    assert summary.count == expected.count
    assert summary.min == pytest.approx(expected.min)
    assert summary.max == pytest.approx(expected.max)
    assert summary.mean == pytest.approx(expected.mean, rel=1e-6)
    assert summary.std == pytest.approx(expected.std, rel=1e-6)
    assert result.activations[0].histogram.total == expected.finite_count


def test_statistics_count_top1_hits(float_onnx, cifar_dir):
    from quantlens.inputs import cifar10_samples

    batch = cifar10_samples([0, 1, 2], data_dir=cifar_dir)
    result = capture_statistics(float_onnx, split_batch(batch, 2), layers=["logits"], progress=False)
    predictions = float_onnx.predict(batch).argmax(axis=1)
    assert result.labelled == 3
    assert result.correct == int((predictions == np.array(batch.labels)).sum())


def test_statistics_code_histogram_for_quantized(bundled):
    session = open_session(bundled["resnet8_int8.onnx"])
    from quantlens.inputs import random_input

    name = "/stack1/conv2/Conv_output_0_QuantizeLinear_Output"
    result = capture_statistics(session, [random_input(0), random_input(1)], layers=[name], progress=False)
    item = result.activations[0]
    assert item.code_histogram is not None
    assert item.code_histogram.total == item.summary.count
    assert item.saturation is not None


def test_statistics_without_batches(float_onnx):
    with pytest.raises(InputError, match="no input batches"):
        capture_statistics(float_onnx, [], progress=False)
