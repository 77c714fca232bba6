"""Input parsing and the input adapter: index syntax, image conversion and error messages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from quantlens.adapter import CIFAR10_MEAN_UNIT, IMAGENET_MEAN_UNIT, InputAdapter, adapter_from_spec, infer_scaling
from quantlens.errors import DatasetNotFoundError, InputError
from quantlens.inputs import InputBatch, cifar10_samples, load_images, parse_indices, parse_input
from quantlens.records import InputSpec


@pytest.mark.parametrize(
    "text, expected",
    [("3", [3]), ("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), ("2-3,7", [2, 3, 7]), ("9999", [9999])],
)
def test_parse_indices_valid(text, expected):
    assert parse_indices(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("abc", "invalid CIFAR-10 index 'abc'"),
        ("-1", "invalid CIFAR-10 index '-1'"),
        ("5-2", "invalid CIFAR-10 range '5-2'"),
        ("10000", "CIFAR-10 index 10000 is out of range"),
        ("0-10000", "CIFAR-10 index 10000 is out of range"),
        ("1,,2", "invalid CIFAR-10 index ''"),
    ],
)
def test_parse_indices_invalid(text, message):
    with pytest.raises(InputError, match=message):
        parse_indices(text)


def test_parse_random_seed():
    assert parse_input("random:7").random_seed == 7


def test_parse_random_default_seed():
    assert parse_input("random").random_seed == 0


def test_parse_random_invalid_seed():
    with pytest.raises(InputError, match="invalid random input 'random:x'"):
        parse_input("random:x")


def test_parse_random_alone():
    with pytest.raises(InputError, match="cannot be combined"):
        parse_input(["random", "cat.png"])


@pytest.mark.parametrize("specs", [[], "", ["  "]])
def test_parse_empty(specs):
    with pytest.raises(InputError, match="empty input: use cifar10:INDEX"):
        parse_input(specs)


def test_parse_unknown_form_lists_forms():
    with pytest.raises(InputError, match=r"image file not found: 'foo:3'; use cifar10:INDEX, cifar10:A-B, random"):
        parse_input("foo:3")


def test_cifar_samples_labels(cifar_dir):
    batch = cifar10_samples([0, 1], data_dir=cifar_dir)
    assert batch.images.shape == (2, 32, 32, 3)
    assert batch.images.dtype == np.uint8
    assert len(batch.labels) == 2


def test_missing_data_dir_mentions_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="quantlens data cifar10"):
        cifar10_samples([0], data_dir=tmp_path / "absent")


def test_data_dir_without_cifar(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no CIFAR-10 test split"):
        cifar10_samples([0], data_dir=tmp_path)


def save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


def test_image_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(InputError, match="not a readable image"):
        load_images([path])


def test_image_missing_file(tmp_path):
    with pytest.raises(InputError, match="image file not found"):
        load_images([tmp_path / "absent.png"])


def test_grayscale_image_becomes_rgb(tmp_path):
    path = save(tmp_path, "gray.png", Image.fromarray(np.full((4, 4), 200, np.uint8), mode="L"))
    batch = load_images([path])
    assert batch.images.shape == (1, 4, 4, 3)
    assert batch.images[0, 0, 0].tolist() == [200, 200, 200]
    assert "mode L converted to RGB" in batch.notices[0]


def test_rgba_image_becomes_rgb(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., 0] = 10
    pixels[..., 3] = 255
    batch = load_images([save(tmp_path, "rgba.png", Image.fromarray(pixels, mode="RGBA"))])
    assert batch.images[0, 0, 0].tolist() == [10, 0, 0]
    assert "mode RGBA converted to RGB" in batch.notices[0]


def test_16_bit_image_keeps_top_bits(tmp_path):
    wide = Image.fromarray(np.full((2, 2), 0xAB00, np.uint16))
    batch = load_images([save(tmp_path, "deep.png", wide)])
    assert batch.images[0, 0, 0].tolist() == [0xAB, 0xAB, 0xAB]
    assert "16-bit converted to 8-bit" in batch.notices[0]


def test_resize_notice(tmp_path):
    path = save(tmp_path, "big.png", Image.fromarray(np.zeros((64, 48, 3), np.uint8)))
    batch = load_images([path], size=(32, 32))
    assert batch.images.shape == (1, 32, 32, 3)
    assert batch.notices == ("big.png: resized from 48x64 to 32x32",)


def test_images_of_different_sizes(tmp_path):
    first = save(tmp_path, "a.png", Image.fromarray(np.zeros((4, 4, 3), np.uint8)))
    second = save(tmp_path, "b.png", Image.fromarray(np.zeros((5, 5, 3), np.uint8)))
    with pytest.raises(InputError, match="different sizes"):
        load_images([first, second])


NHWC = InputAdapter(name="x", shape=(None, 2, 2, 3), dtype="float32", layout="NHWC", scaling="raw")


def pixels(value: int) -> InputBatch:
    return InputBatch(images=np.full((1, 2, 2, 3), value, np.uint8), labels=(None,), descriptions=("p",))


def test_adapter_raw_nhwc():
    assert NHWC.prepare(pixels(51)).tolist() == np.full((1, 2, 2, 3), 51.0).tolist()


def test_adapter_unit_nchw():
    adapter = NHWC.with_options(layout="NCHW", scaling="unit")
    prepared = adapter.prepare(pixels(51))
    assert prepared.shape == (1, 3, 2, 2)
    assert prepared[0, 0, 0, 0] == pytest.approx(0.2)


def test_adapter_wrong_image_size():
    adapter = InputAdapter(name="x", shape=(None, 4, 4, 3), dtype="float32", layout="NHWC", scaling="raw")
    with pytest.raises(InputError, match="model expects 4x4"):
        adapter.prepare(pixels(0))


def test_adapter_not_image_shaped():
    adapter = InputAdapter(name="x", shape=(1, 10), dtype="float32", layout=None, scaling="raw")
    with pytest.raises(InputError, match="not image-shaped"):
        adapter.prepare(pixels(0))


def test_adapter_random_for_vector_input():
    adapter = InputAdapter(name="x", shape=(1, 10), dtype="float32", layout=None, scaling="raw")
    assert adapter.random(0).shape == (1, 10)


def test_adapter_invalid_scaling():
    with pytest.raises(InputError, match="invalid scaling 'percent'"):
        NHWC.with_options(scaling="percent")


def test_adapter_int8_without_scale_shifts_pixels():
    adapter = InputAdapter(name="x", shape=(None, 2, 2, 3), dtype="int8", layout="NHWC", scaling="raw")
    assert int(adapter.prepare(pixels(200))[0, 0, 0, 0]) == 72


# Scaling inferred from an integer input's quantization


@pytest.mark.parametrize(
    ("dtype", "scale", "zero_point", "scaling", "mean", "low", "high"),
    [
        ("int8", 1 / 255, -128, "unit", None, 0.0, 1.0),
        ("uint8", 1 / 255, 0, "unit", None, 0.0, 1.0),
        ("int8", 1.0, -128, "raw", None, 0.0, 255.0),
        ("uint8", 1.0, 0, "raw", None, 0.0, 255.0),
        ("int8", 1 / 127.5, 0, "standardize", (0.5, 0.5, 0.5), -1.0039, 0.9961),
        ("uint8", 1 / 127.5, 128, "standardize", (0.5, 0.5, 0.5), -1.0039, 0.9961),
        ("int8", 0.016141, -5, "standardize", CIFAR10_MEAN_UNIT, -1.9853, 2.1306),
        ("int8", 0.018676, -14, "standardize", IMAGENET_MEAN_UNIT, -2.1291, 2.6333),
    ],
)
def test_infer_scaling_from_input_range(dtype, scale, zero_point, scaling, mean, low, high):
    inferred = infer_scaling(dtype, scale, zero_point)
    assert inferred is not None
    assert inferred.scaling == scaling
    if mean is not None:
        assert inferred.mean == mean
    assert inferred.low == pytest.approx(low, abs=1e-4)
    assert inferred.high == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(
    ("dtype", "scale", "zero_point"),
    [("int8", 0.1, 0), ("int8", 1 / 255, 0), ("uint8", 0.5, 0), ("int8", 0.0, 0), ("int8", float("nan"), 0), ("float32", 1 / 255, 0)],
)
def test_infer_scaling_no_match(dtype, scale, zero_point):
    assert infer_scaling(dtype, scale, zero_point) is None


def int8_spec(scale: float, zero_point: int, **fields: object) -> InputSpec:
    return InputSpec(
        name="input", layout="NHWC", shape=(1, 32, 32, 3), dtype="int8", input_scale=scale,
        input_zero_point=zero_point, **fields,
    )


def test_adapter_unit_from_input_quantization():
    adapter = adapter_from_spec(int8_spec(np.float32(1 / 255), -128))
    assert adapter.scaling == "unit"
    assert adapter.describe() == (
        "NHWC 32x32x3 int8, pixels scaled to 0-1 (from input quantization: scale 0.00392157 and "
        "zero_point -128 cover 0 to 1)"
    )
    images = (np.arange(32 * 32 * 3) % 256).astype(np.uint8).reshape(1, 32, 32, 3)
    codes = adapter.from_pixels(images)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, images.astype(np.int16) - 128)


def test_metadata_scaling_wins_over_quantization():
    adapter = adapter_from_spec(int8_spec(np.float32(1 / 255), -128, scaling="raw", source="metadata"))
    assert adapter.scaling == "raw"
    assert adapter.source == "metadata"


def test_scaling_option_wins_over_quantization():
    adapter = adapter_from_spec(int8_spec(np.float32(1 / 255), -128)).with_options(scaling="standardize")
    assert adapter.scaling == "standardize"
    assert adapter.source == "option"


def test_unmatched_quantization_keeps_default(caplog):
    with caplog.at_level("WARNING", logger="quantlens.adapter"):
        adapter = adapter_from_spec(int8_spec(0.1, 0))
    assert adapter.scaling == "standardize"
    assert adapter.mean == CIFAR10_MEAN_UNIT
    assert adapter.source == "signature"
    assert "scale 0.1 and zero_point 0 match no known pixel scaling" in caplog.text
    assert "--scaling" in caplog.text
