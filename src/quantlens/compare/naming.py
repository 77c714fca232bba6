"""Name normalization, so that one layer or value of two models meets under one key.

Quantizers and exporters spell one scope differently: ONNX node ``/stack1/conv1/Conv``, its
QOperator twin ``/stack1/conv1/Conv_quant``, the value ``/stack1/conv1/Conv_output_0`` and its
QDQ copies ``..._QuantizeLinear_Output`` / ``..._DequantizeLinear_Output``, and the PyTorch
module ``stack1.conv1``. All of them normalize to ``stack1.conv1``.
"""

from __future__ import annotations

import re

# Suffixes that onnxruntime's quantizer (QDQ and QOperator) and the ONNX reader append to names.
QUANTIZER_SUFFIXES = (
    "_DequantizeLinear_Output",
    "_QuantizeLinear_Output",
    "_QuantizeLinear_Input",
    "_DequantizeLinear",
    "_QuantizeLinear",
    "_dequantized",
    "_quantized",
    "_quant",
)
_OUTPUT_SUFFIX = re.compile(r"_output_\d+$")


def strip_quantizer_suffixes(name: str) -> str:
    """Remove quantizer suffixes from the end of ``name``, repeatedly.

    Example: ``/conv/Conv_output_0_quantized`` gives ``/conv/Conv_output_0``.
    """
    stripped = True
    while stripped:
        stripped = False
        for suffix in QUANTIZER_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                stripped = True
    return name


def normalize_name(name: str) -> str:
    """Return the scope of a layer or value name: module path, lowercase, dot-separated.

    Quantizer suffixes and ONNX ``_output_N`` are removed. A ``/``-separated ONNX name loses
    its last part when that part starts with an uppercase letter, because the PyTorch exporter
    ends node names with the op type (``Conv``, ``Add_1``) while module names are lowercase.
    Examples: ``/stack1/conv1/Conv_quant`` and ``stack1.conv1`` give ``stack1.conv1``;
    ``/pool/GlobalAveragePool_output_0`` gives ``pool``.
    """
    base = _OUTPUT_SUFFIX.sub("", strip_quantizer_suffixes(name))
    base = strip_quantizer_suffixes(base)
    if "/" in base:
        parts = [part for part in base.split("/") if part]
        if len(parts) > 1 and parts[-1][:1].isupper():
            parts = parts[:-1]
        base = ".".join(parts)
    return base.lower()
