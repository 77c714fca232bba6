"""A corpus of bad inputs run against the library and the CLI.

Every case must end in the exact error class with a message naming the offending file, tensor or
value; no input file may change; the process must keep working afterwards.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from quantlens import stats
from quantlens.cli.main import main
from quantlens.errors import (
    DatasetError,
    DatasetNotFoundError,
    InputError,
    LayerNotFoundError,
    ModelFormatError,
    UntrustedPickleError,
)
from quantlens.inputs import cifar10_samples, load_images, parse_indices, parse_input, random_input
from quantlens.inspect import overview, report_tensor
from quantlens.readers import open_model
from quantlens.runtime import open_session


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _conv_onnx(path: Path, *, opset: int = 17, op_domain: str = "", op_type: str = "Conv") -> Path:
    weight = numpy_helper.from_array(np.ones((2, 3, 3, 3), dtype=np.float32), "conv.weight")
    node = helper.make_node(op_type, ["input", "conv.weight"], ["output"], name="/conv/Conv", domain=op_domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [weight],
    )
    imports = [helper.make_opsetid("", opset)]
    if op_domain:
        imports.append(helper.make_opsetid(op_domain, 1))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _torchscript(path: Path) -> Path:
    module = torch.jit.trace(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval(), torch.zeros(1, 3, 8, 8))
    torch.jit.save(module, str(path))
    return path


class _CreatesFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@dataclass(frozen=True)
class BadFile:
    """A corrupt model file, the error class it must raise and a text the message must contain."""

    name: str
    make: Callable[[Path], Path]
    error: type[Exception]
    names: str


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def _truncated(name: str, build: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        whole = build(folder / f"whole_{name}")
        path = folder / name
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return make


def _torch_zip(path: Path) -> Path:
    torch.save({"w": torch.ones(100, 100)}, str(path))
    return path


def _onnx_named_pt(folder: Path) -> Path:
    return _conv_onnx(folder / "actually_onnx.pt")


RANDOM = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
BAD_FILES = [
    BadFile("empty", _write("empty.onnx", b""), ModelFormatError, "empty.onnx"),
    BadFile("empty_pt", _write("empty.pt", b""), ModelFormatError, "empty.pt"),
    BadFile("truncated_onnx", _truncated("cut.onnx", lambda p: _conv_onnx(p)), ModelFormatError, "cut.onnx"),
    BadFile("truncated_torchscript", _truncated("cut_script.pt", _torchscript), ModelFormatError, "cut_script.pt"),
    BadFile("truncated_zip", _truncated("cut_zip.pt", _torch_zip), ModelFormatError, "cut_zip.pt"),
    BadFile("random_onnx", _write("noise.onnx", RANDOM), ModelFormatError, "noise.onnx"),
    BadFile("random_pt", _write("noise.pt", RANDOM), ModelFormatError, "noise.pt"),
    BadFile("random_safetensors", _write("noise.safetensors", RANDOM), ModelFormatError, "noise.safetensors"),
    BadFile("random_tflite", _write("noise.tflite", RANDOM), ModelFormatError, "noise.tflite"),
    BadFile("random_h5", _write("noise.h5", RANDOM), ModelFormatError, "noise.h5"),
    BadFile("text_pt", _write("notes.pt", b"hello, this is not a model\n"), ModelFormatError, "notes.pt"),
    BadFile("json_pt", _write("config.pt", b'{"a": 1}\n'), ModelFormatError, "config.pt"),
]
# Files that fail as models, which running them must report the same way (the .h5 file fails
# earlier, because running Keras models is not supported).
RUN_CASES = [case for case in BAD_FILES if not case.name.endswith("_h5")]


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda case: case.name)
def test_bad_file_raises_named_error(case, tmp_path):
    path = case.make(tmp_path)
    before = sha256(path)
    with pytest.raises(case.error) as caught:
        open_model(path)
    assert case.names in str(caught.value)
    assert sha256(path) == before


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda case: case.name)
def test_bad_file_cli_one_line_exit_2(case, tmp_path, capsys):
    path = case.make(tmp_path)
    code = main(["layers", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert case.names in err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda case: case.name)
def test_bad_file_session_raises_named_error(case, tmp_path):
    path = case.make(tmp_path)
    with pytest.raises(case.error) as caught:
        open_session(path)
    assert case.names in str(caught.value)
    assert "trust" not in str(caught.value)


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda case: case.name)
def test_bad_file_activations_cli_one_line_exit_2(case, tmp_path, capsys):
    path = case.make(tmp_path)
    code = main(["activations", str(path), "--input", "random"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert case.names in err
    assert "layers`/`stats" not in err


def test_process_keeps_working_after_errors(tmp_path, capsys):
    for case in BAD_FILES:
        main(["layers", str(case.make(tmp_path))])
    capsys.readouterr()
    assert main(["layers", str(_conv_onnx(tmp_path / "good.onnx"))]) == 0
    assert "/conv/Conv" in capsys.readouterr().out


def test_valid_file_with_wrong_extension_opens(tmp_path):
    model = open_model(_onnx_named_pt(tmp_path))
    assert model.format == "onnx"
    assert model.layer_names == ["/conv/Conv"]


def test_missing_external_data_names_file(tmp_path):
    path = tmp_path / "external.onnx"
    model = onnx.load(str(_conv_onnx(tmp_path / "inline.onnx")))
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelFormatError, match="weights.bin"):
        open_model(path)


@pytest.mark.parametrize(
    ("name", "options"),
    [("custom_op.onnx", {"op_domain": "com.example", "op_type": "MysteryConv"}), ("future_opset.onnx", {"opset": 99})],
)
def test_unrunnable_onnx_opens_but_session_names_file(tmp_path, name, options):
    path = _conv_onnx(tmp_path / name, **options)
    assert len(open_model(path).layers) == 1
    with pytest.raises(ModelFormatError, match=name):
        open_session(path)


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"weight": _CreatesFile(marker)}, handle)
    before = sha256(path)
    with pytest.raises(UntrustedPickleError, match="evil.pt") as caught:
        open_model(path)
    assert "--trust" in str(caught.value)
    assert not marker.exists()
    assert sha256(path) == before


def test_malicious_pickle_cli_does_not_execute(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _CreatesFile(marker)}, str(path))
    assert main(["stats", str(path)]) == 2
    assert "--trust" in capsys.readouterr().err
    assert not marker.exists()


def test_odd_tensors_have_statistics(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save(
        {
            "nan.weight": torch.tensor([[1.0, float("nan")], [float("inf"), 2.0]]),
            "empty.weight": torch.zeros(0, 3),
            "scalar.weight": torch.tensor(3.5),
        },
        str(path),
    )
    rows = {row.layer: row.summary for row in overview(open_model(path))}
    assert rows["nan"].nan_count == 1
    assert rows["nan"].inf_count == 1
    assert rows["empty"].count == 0
    assert rows["empty"].mean is None
    assert rows["scalar"].mean == 3.5


def test_odd_tensors_cli_stats(tmp_path, capsys):
    path = tmp_path / "odd.pt"
    torch.save({"empty.weight": torch.zeros(0, 3), "nan.weight": torch.full((2, 2), float("nan"))}, str(path))
    assert main(["stats", str(path)]) == 0
    assert main(["stats", str(path), "--layer", "nan"]) == 0
    assert "NaN 4" in capsys.readouterr().out


def _qdq_with_scale(path: Path, scale: float) -> Path:
    codes = numpy_helper.from_array(np.array([[1, -2], [3, 4]], dtype=np.int8), "w_quantized")
    scale_init = numpy_helper.from_array(np.array(scale, dtype=np.float32), "w_scale")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int8), "w_zero_point")
    nodes = [
        helper.make_node("DequantizeLinear", ["w_quantized", "w_scale", "w_zero_point"], ["w"], name="dq"),
        helper.make_node("MatMul", ["input", "w"], ["output"], name="/fc/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])],
        [codes, scale_init, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_invalid_scale_is_reported_by_tensor(tmp_path, scale):
    model = open_model(_qdq_with_scale(tmp_path / "bad_scale.onnx", scale))
    report = report_tensor(model, "/fc/MatMul", "weight", integer=True)
    assert any("w_quantized" in warning and "scale" in warning for warning in report.warnings)


def test_invalid_scale_cli_warns(tmp_path, capsys):
    path = _qdq_with_scale(tmp_path / "bad_scale.onnx", 0.0)
    assert main(["stats", str(path), "--layer", "/fc/MatMul"]) == 0
    assert "w_quantized" in capsys.readouterr().err


def test_duplicate_layer_names_stay_distinct(tmp_path):
    nodes = [
        helper.make_node("Mul", ["input", "a"], ["x"], name="same"),
        helper.make_node("Mul", ["x", "b"], ["output"], name="same"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("a", "b")],
    )
    path = tmp_path / "dupes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    names = open_model(path).layer_names
    assert len(names) == 2
    assert len(set(names)) == 2


def _relu_only(path: Path, shape: list[int]) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"], name="relu")],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_model_without_weights_lists_nothing(tmp_path, capsys):
    path = _relu_only(tmp_path / "no_weights.onnx", [1, 3, 8, 8])
    assert open_model(path).layers == ()
    assert main(["layers", str(path)]) == 0
    assert "0 layers" in capsys.readouterr().out


def test_non_image_model_takes_only_random(tmp_path, cifar_dir):
    session = open_session(_relu_only(tmp_path / "vector.onnx", [1, 7]))
    assert session.predict(random_input(3)).shape == (1, 7)
    with pytest.raises(InputError, match="not image-shaped"):
        session.predict(cifar10_samples([0], data_dir=cifar_dir))


def _batch_file(folder: Path, payload: object) -> Path:
    folder.mkdir()
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(payload, handle)
    return folder


@pytest.mark.parametrize(
    ("name", "make", "error"),
    [
        ("missing", lambda tmp: tmp / "missing", DatasetNotFoundError),
        ("empty", lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", DatasetNotFoundError),
        ("corrupt", lambda tmp: _corrupt_batch(tmp / "corrupt"), DatasetError),
        (
            "wrong_shape",
            lambda tmp: _batch_file(tmp / "wrong_shape", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}),
            DatasetError,
        ),
    ],
)
def test_bad_cifar_dir_names_folder(tmp_path, name, make, error):
    folder = make(tmp_path)
    with pytest.raises(error) as caught:
        cifar10_samples([0], data_dir=folder)
    assert folder.name in str(caught.value)


def test_missing_cifar_dir_says_how_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="quantlens data cifar10"):
        cifar10_samples([0], data_dir=tmp_path / "nowhere")


def _corrupt_batch(folder: Path) -> Path:
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    return folder


def _image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_image_that_is_not_an_image(tmp_path):
    path = tmp_path / "photo.png"
    path.write_text("not an image")
    with pytest.raises(InputError, match="photo.png"):
        load_images([path])


@pytest.mark.parametrize(
    ("name", "array", "note"),
    [
        ("gray.png", np.full((32, 32), 7, np.uint8), "mode L converted to RGB"),
        ("rgba.png", np.full((32, 32, 4), 9, np.uint8), "mode RGBA converted to RGB"),
        ("deep.png", np.full((32, 32), 65535, np.uint16), "16-bit converted to 8-bit"),
        ("big.png", np.zeros((64, 48, 3), np.uint8), "resized from 48x64 to 32x32"),
    ],
)
def test_odd_images_are_converted_with_notice(tmp_path, name, array, note):
    batch = load_images([_image(tmp_path / name, array)], size=(32, 32))
    assert batch.images.shape == (1, 32, 32, 3)
    assert note in batch.notices[0]


def test_sixteen_bit_image_keeps_top_bits(tmp_path):
    batch = load_images([_image(tmp_path / "deep.png", np.full((4, 4), 65535, np.uint16))])
    assert int(batch.images.max()) == 255


def test_huge_image_is_rejected_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (10000, 6000)).save(path)
    with pytest.raises(InputError, match="huge.png"):
        load_images([path])


@pytest.mark.parametrize(("text", "offending"), [("10000", "10000"), ("-1", "-1"), ("abc", "abc"), ("5-2", "5-2")])
def test_bad_indices_name_the_value(text, offending):
    with pytest.raises(InputError, match=offending):
        parse_indices(text)


def test_bad_index_cli_exit_2(capsys):
    assert main(["eval", "resnet8.onnx", "--limit", "0"]) == 2
    assert "limit" in capsys.readouterr().err


@pytest.mark.parametrize(("low", "high", "message"), [(2.0, 1.0, "greater than maximum"), ("a", 1.0, "'a'")])
def test_bad_range_names_the_value(low, high, message):
    with pytest.raises(InputError, match=message):
        stats.count_in_range(np.arange(5.0), low, high)


def test_unknown_layer_suggests_close_name(tmp_path):
    model = open_model(_conv_onnx(tmp_path / "m.onnx"))
    with pytest.raises(LayerNotFoundError, match="/conv/Conv"):
        model.layer("/conv/Cnv")


def test_unknown_layer_cli_exit_2(tmp_path, capsys):
    path = _conv_onnx(tmp_path / "m.onnx")
    assert main(["stats", str(path), "--layer", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_random_input_spec_rejects_bad_seed():
    with pytest.raises(InputError, match="random:x"):
        parse_input("random:x")


def test_zip_without_model_is_rejected(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelFormatError, match="archive.pt"):
        open_model(path)


def test_debug_after_subcommand_shows_traceback():
    with pytest.raises(FileNotFoundError, match="nosuch.onnx"):
        main(["layers", "nosuch.onnx", "--debug"])


def test_compare_rejects_missing_output_folder_first(tmp_path, capsys):
    target = tmp_path / "missing" / "report.html"
    assert main(["compare", "resnet8.onnx", "resnet8_int8.onnx", "--html", str(target)]) == 2
    err = capsys.readouterr().err
    assert "folder does not exist" in err
    assert "report.html" in err


def test_closed_stdout_pipe_exits_quietly(monkeypatch, bundled):
    # `quantlens layers ... | head -1`: the reader has gone when the command writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        code = main(["layers", str(bundled["resnet8_int8.onnx"])])
    finally:
        monkeypatch.undo()
        stdout.close()
    assert code == 141
