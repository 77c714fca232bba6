"""The public API as the README shows it."""

from __future__ import annotations

import sys

import numpy as np

import quantlens


def test_import_loads_no_framework():
    # A fresh interpreter, because other tests in this process import torch.
    import subprocess

    code = "import sys, quantlens; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False False"


def test_readme_example_runs(cifar_dir):
    model = quantlens.open_model("resnet8_int8.onnx")
    layer = model.layer("/stack1/conv1/Conv")
    weight = layer.weight
    assert weight.codes.dtype == np.int8
    assert np.array_equal(weight.values, weight.quantization.dequantize(weight.codes))

    session = quantlens.open_session("resnet8_int8.onnx")
    result = quantlens.capture_activations(session, quantlens.parse_input("cifar10:3", data_dir=cifar_dir))
    assert len(result.activations) > 20
    assert len(result.top_k(3)) == 3

    report = quantlens.compare_models("resnet8.onnx", "resnet8_int8.onnx")
    matched_ops = [m.float_layer.op_type for m in report.matching.matches]
    assert matched_ops.count("Conv") == 9
    assert matched_ops.count("Gemm") == 1
    assert report.matching.unmatched_float == ()
