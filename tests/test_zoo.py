"""The bundled ResNet8 family: architecture, files, cross-format agreement, training and build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quantlens.cli.main import main
from quantlens.datasets.cifar10 import CLASS_NAMES, load_split
from quantlens.readers import open_model
from quantlens.runtime import open_session
from quantlens.zoo.bundled import DESCRIPTIONS
from quantlens.zoo.resnet8 import ResNet8, count_parameters

FLOAT_MODELS = ("resnet8.pt", "resnet8.onnx")
MAX_BUNDLED_BYTES = 400 * 1024


def test_resnet8_parameter_count():
    assert count_parameters(ResNet8()) == 77_946


def test_resnet8_takes_raw_nhwc_input():
    output = ResNet8().eval()(torch.zeros(2, 32, 32, 3))
    assert tuple(output.shape) == (2, 10)


def test_every_bundled_file_is_present(bundled):
    assert sorted(bundled) == sorted(DESCRIPTIONS)


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_bundled_file_under_size_limit(bundled, name):
    assert bundled[name].stat().st_size < MAX_BUNDLED_BYTES


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_bundled_file_opens_with_readers(bundled, name):
    model = open_model(bundled[name])
    conv_layers = [layer for layer in model.layers if "conv" in layer.op_type.lower()]
    assert len(conv_layers) == 9  # stem, 2 per stack, 2 shortcuts
    assert model.parameter_count > 70_000


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_bundled_file_records_input_interface(bundled, name):
    adapter = open_session(bundled[name]).adapter
    assert adapter.layout == "NHWC"
    assert adapter.scaling == "raw"
    assert adapter.source == "metadata"


def test_float_formats_predict_identically(bundled, cifar_dir):
    images = load_split(cifar_dir, "test").images[:16]
    logits = [open_session(bundled[name]).run(images.astype(np.float32))[0] for name in FLOAT_MODELS]
    assert np.array_equal(logits[0].argmax(1), logits[1].argmax(1))
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-4)


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_eval_cli_runs_on_200_images(bundled, cifar_dir, capsys, name):
    code = main(["eval", name, "--data-dir", str(cifar_dir), "--limit", "200", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["count"] == 200
    assert 0.0 <= result["accuracy"] <= 100.0
    assert set(result["per_class_accuracy"]) == set(CLASS_NAMES)


def test_stats_cli_lists_integer_codes(bundled, capsys):
    layer = "/stack1/conv1/Conv"
    assert main(["stats", "resnet8_int8.onnx", "--layer", layer, "--int"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("code ")]
    codes = open_model(bundled["resnet8_int8.onnx"]).layer(layer).tensor("weight").view(integer=True)
    values, counts = np.unique(codes, return_counts=True)
    assert [int(row[1]) for row in rows] == values.tolist()
    assert [int(row[2]) for row in rows] == counts.tolist()


def _write_tiny_class_folders(root: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                # Each class gets its own mean colour so a model can learn something quickly.
                pixels = rng.normal(25 * label, 20, size=(32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_cifar")
    _write_tiny_class_folders(root, per_class=10)
    return root


def test_eval_limit_above_test_set_warns(tiny_dataset, capsys, caplog):
    with caplog.at_level("WARNING", logger="quantlens"):
        assert main(["eval", "resnet8.onnx", "--data-dir", str(tiny_dataset), "--limit", "20000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 100
    assert "limit 20000 is more than the 100 test images" in caplog.text


def test_train_writes_metrics_and_resumes(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    arguments = ["zoo", "train", "--data-dir", str(tiny_dataset), "--out", str(out), "--batch-size", "32"]
    assert main([*arguments, "--epochs", "1"]) == 0
    # A second run with the same settings resumes after the last epoch instead of retraining.
    assert main([*arguments, "--epochs", "1"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]
    assert (out / "resnet8_trained.pt").is_file()
    assert main([*arguments, "--epochs", "3"]) == 2


def test_build_writes_every_bundled_file(tiny_dataset, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save(ResNet8().state_dict(), weights)
    out = tmp_path / "models"
    assert main(["zoo", "build", "--weights", str(weights), "--data-dir", str(tiny_dataset), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(DESCRIPTIONS)
    images = load_split(tiny_dataset, "test").images[:4].astype(np.float32)
    reference = open_session(out / "resnet8.pt").run(images)[0]
    np.testing.assert_allclose(open_session(out / "resnet8.onnx").run(images)[0], reference, atol=1e-4)
