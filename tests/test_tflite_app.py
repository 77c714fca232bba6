"""The app's library calls on a TFLite int8 model and a Keras .h5 model, without a browser.

The calls are the ones the notebook's cells make: the model list, layer and tensor selectors,
statistics, histograms and channel ranges of the chosen tensor, and a capture of a random input.
Captured values are checked against a reference-kernel LiteRT interpreter fed the same input.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from quantlens import stats  # noqa: E402
from quantlens.app import charts, choices, session, views  # noqa: E402
from quantlens.app.catalog import ModelCatalog, build_catalog  # noqa: E402
from quantlens.app.overview import overview_rows  # noqa: E402
from quantlens.datasets.cifar10 import CLASS_NAMES  # noqa: E402
from tests.fixtures.app_views import render_subject  # noqa: E402
from tests.fixtures.tflite_twins import (  # noqa: E402
    CONVS,
    FC_INT8_OUTPUT_NAME,
    MEAN_NAME,
    OUTPUT_NAME,
    QUANTIZE_NAME,
    TwinModels,
    keras_twin_arrays,
    write_keras_twin,
    write_twins,
)

INT8_LABEL, KERAS_LABEL = "twin_int8.tflite", "twin_float.h5"
SEED = 4


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> TwinModels:
    folder = tmp_path_factory.mktemp("app_models")
    built = write_twins(folder)
    write_keras_twin(folder, built.weights)
    return built


@pytest.fixture(scope="module")
def catalog(twins: TwinModels) -> ModelCatalog:
    return build_catalog([twins.float_path.parent], include_bundled=False)


def statistics(subject: views.Subject, *, integer: bool) -> dict[str, str]:
    rows = views.statistics_rows(subject, views.summarize_view(subject.tensor, integer), integer=integer)
    return {row["statistic"]: row["value"] for row in rows}


# --- model list ---


def test_catalog_lists_tflite_and_keras(catalog):
    assert sorted(catalog.labels) == ["twin_float.h5", "twin_float.tflite", "twin_int8.tflite"]
    assert catalog.problems == ()
    for label in catalog.labels:
        assert session.attempt(session.load_choice, catalog, label, trust=False).ok, label


# --- TFLite int8 weights ---


def test_int8_layer_and_tensor_options(catalog):
    model = session.load_choice(catalog, INT8_LABEL, trust=False).model
    options = choices.layer_options(model)
    # QUANTIZE and DEQUANTIZE have no constant tensors, so they are not offered.
    assert list(options.values()) == [*(conv.output_name for conv in CONVS), MEAN_NAME, FC_INT8_OUTPUT_NAME]
    default = choices.default_layer_label(model)
    assert default == f"{CONVS[0].output_name} (CONV_2D)"
    tensors = choices.tensor_options(model.layer(options[default]))
    assert list(tensors) == [f"weight: {CONVS[0].filter_name}", f"bias: {CONVS[0].bias_name}"]


def test_int8_filter_views(catalog, twins):
    model = session.load_choice(catalog, INT8_LABEL, trust=False).model
    conv = CONVS[1]
    picked = choices.pick_subject(
        model, mode=choices.Mode.WEIGHTS, layer_name=conv.output_name, tensor_name=conv.filter_name,
        result=None, activation_name=None,
    )
    subject = picked.subject
    codes = twins.int8.arrays[conv.filter_name]
    scales = np.float32(twins.int8.quantization[conv.filter_name].scale)
    assert subject.kind is charts.Kind.WEIGHT
    assert subject.title(integer=True) == f"Weight {conv.filter_name} of {conv.output_name} (CONV_2D): integer codes"

    assert statistics(subject, integer=True)["quantization"] == "int8 per-channel(axis=0)"
    assert statistics(subject, integer=True)["min"] == str(int(codes.min()))
    rows = views.channel_rows(subject.tensor)
    assert [row["scale"] for row in rows] == [views.format_value(float(s)) for s in scales]

    view = views.code_view(subject.tensor)
    np.testing.assert_array_equal(view.histogram.counts, np.bincount(codes.astype(np.int64).ravel() + 128, minlength=256))
    assert view.saturation.at_qmin == 0
    assert view.saturation.at_qmax == int(np.sum(codes == 127))

    histogram = render_subject(subject, integer=False)
    assert int(histogram.counts.sum()) == codes.size
    assert views.output_channel_axis(subject.op_type, subject.tensor) == 0
    low, high = stats.channel_ranges(views.view_values(subject.tensor, integer=False), 0)
    dequantized = codes.astype(np.float32) * scales.reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(low, dequantized.reshape(len(codes), -1).min(axis=1))
    np.testing.assert_array_equal(high, dequantized.reshape(len(codes), -1).max(axis=1))


def test_every_int8_tensor_renders(catalog):
    model = session.load_choice(catalog, INT8_LABEL, trust=False).model
    count = 0
    for layer, tensor in model.tensors():
        for integer in (False, True):
            render_subject(views.Subject.of_layer(layer, tensor), integer=integer and tensor.is_quantized)
        count += 1
    assert count == len(overview_rows(model)) == 9


# --- TFLite capture of a random input ---


def test_random_capture_matches_interpreter(catalog, twins):
    choice = catalog.choice(INT8_LABEL)
    result = session.run_capture(
        choice, source=session.SOURCE_RANDOM, index=None, seed=SEED, upload=None, data_dir=None, trust=False
    )
    assert result.names == [QUANTIZE_NAME, *(conv.output_name for conv in CONVS), MEAN_NAME, FC_INT8_OUTPUT_NAME, OUTPUT_NAME]

    interpreter = Interpreter(
        model_path=str(twins.int8_path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], result.adapter.random(SEED))
    interpreter.invoke()
    indices = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    for activation in result.activations:
        expected = interpreter.get_tensor(indices[activation.name])
        np.testing.assert_array_equal(activation.tensor.view(integer=True), expected, err_msg=activation.name)

    predictions = session.top_predictions(result, 3)
    assert len(predictions) == 3
    assert all(prediction.name in CLASS_NAMES for prediction in predictions)
    assert session.preview_png(result.inputs) is None


def test_captured_activations_find_their_layer(catalog):
    choice = catalog.choice(INT8_LABEL)
    result = session.run_capture(
        choice, source=session.SOURCE_RANDOM, index=None, seed=SEED, upload=None, data_dir=None, trust=False
    )
    model = session.load_model(choice.path)
    options = choices.activation_options(result)
    assert choices.default_activation_label(result, model, CONVS[2].output_name) == f"3. {CONVS[2].output_name} (CONV_2D)"
    for name in options.values():
        picked = choices.pick_subject(
            model, mode=choices.Mode.ACTIVATIONS, layer_name=None, tensor_name=None, result=result, activation_name=name,
        )
        assert picked.subject.kind is charts.Kind.ACTIVATION
        render_subject(picked.subject, integer=picked.subject.tensor.is_quantized)
        if name in (conv.output_name for conv in CONVS):
            assert choices.weight_note(picked.match).startswith(f"Matched to layer {name} (CONV_2D) by exact name")
            assert choices.matching_weight(picked.match).tensor.role.value == "weight"
    quantized = choices.pick_subject(
        model, mode=choices.Mode.ACTIVATIONS, layer_name=None, tensor_name=None, result=result, activation_name=MEAN_NAME,
    ).subject
    rows = statistics(quantized, integer=False)
    assert rows["quantization"] == "int8 per-tensor"
    assert rows["zero_point"] == str(int(quantized.tensor.quantization.zero_point))


# --- Keras .h5, weights only ---


def test_keras_weight_views(catalog, twins):
    model = session.load_choice(catalog, KERAS_LABEL, trust=False).model
    assert list(choices.layer_options(model).values()) == ["conv1", "conv2", "conv3", "dense"]
    assert choices.default_layer_label(model) == "conv1 (Conv2D)"
    expected = keras_twin_arrays(twins.weights)
    for layer_name in ("conv1", "dense"):
        layer = model.layer(layer_name)
        for label, tensor_name in choices.tensor_options(layer).items():
            picked = choices.pick_subject(
                model, mode=choices.Mode.WEIGHTS, layer_name=layer_name, tensor_name=tensor_name,
                result=None, activation_name=None,
            )
            values = expected[layer_name][tensor_name]
            np.testing.assert_array_equal(picked.subject.tensor.values, values)
            histogram = render_subject(picked.subject, integer=False)
            assert int(histogram.counts.sum()) == values.size
            rows = statistics(picked.subject, integer=False)
            assert "quantization" not in rows
            assert rows["shape"] == " x ".join(map(str, values.shape))
    assert len(overview_rows(model)) == 8


def test_keras_capture_is_a_message(catalog):
    outcome = session.attempt(
        session.run_capture, catalog.choice(KERAS_LABEL), source=session.SOURCE_RANDOM, index=None, seed=0,
        upload=None, data_dir=None, trust=False,
    )
    assert not outcome.ok
    assert "twin_float.h5" in outcome.error
    assert "needs TensorFlow" in outcome.error


def test_keras_kernel_channel_axis(catalog):
    model = session.load_choice(catalog, KERAS_LABEL, trust=False).model
    kernel = model.layer("conv1").weight
    assert views.output_channel_axis("Conv2D", kernel) == 3
    low, high = stats.channel_ranges(kernel.values, axis=views.output_channel_axis("Conv2D", kernel))
    assert low.shape == (kernel.shape[3],)



def test_keras_dense_channel_axis(catalog):
    model = session.load_choice(catalog, KERAS_LABEL, trust=False).model
    kernel = model.layer("dense").weight
    assert views.output_channel_axis("Dense", kernel) == 1
