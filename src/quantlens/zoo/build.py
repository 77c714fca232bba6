"""Rebuild every bundled model file from trained ResNet8 weights.

From one float state_dict this writes, into ``--out``:

- ``resnet8.pt``: ``{"architecture": "resnet8", "state_dict": ..., "quantlens.input": ...}``;
- ``resnet8.onnx``: float ONNX (BatchNorm folded into the convolutions by the exporter);
- ``resnet8_int8.onnx``, ``resnet8_uint8.onnx``, ``resnet8_int8_qop.onnx``: static PTQ with
  onnxruntime (MinMax calibration) on 1000 training images, 100 per class;
- ``resnet8_int8.pt``: PyTorch FX graph mode int8 (x86 backend, per-channel weights), traced and
  saved as TorchScript, calibrated on the same images.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from quantlens.datasets.cifar10 import CLASS_NAMES, load_split
from quantlens.records import INPUT_METADATA_KEY
from quantlens.zoo.resnet8 import ARCHITECTURE, INPUT_SPEC, ResNet8

logger = logging.getLogger(__name__)

CALIBRATION_PER_CLASS = 100
OPSET = 17


def calibration_images(data_dir: str | Path | None, per_class: int = CALIBRATION_PER_CLASS) -> np.ndarray:
    """Return the first ``per_class`` training images of each class, float32 NHWC 0-255."""
    split = load_split(data_dir, "train")
    chosen = [np.flatnonzero(split.labels == label)[:per_class] for label in range(len(CLASS_NAMES))]
    return split.images[np.concatenate(chosen)].astype(np.float32)


def load_trained(weights: str | Path) -> ResNet8:
    """Load a plain ResNet8 state_dict (as ``quantlens zoo train`` writes it) in eval mode."""
    model = ResNet8()
    model.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    return model.eval()


def save_float_checkpoint(model: ResNet8, path: Path) -> None:
    """Write the quantlens checkpoint: architecture name, state_dict and input interface."""
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"architecture": ARCHITECTURE, "state_dict": state, INPUT_METADATA_KEY: INPUT_SPEC}, path)


def export_onnx(model: ResNet8, path: Path) -> None:
    """Export float ONNX with a dynamic batch, readable initializer names and input metadata."""
    example = torch.zeros(1, 32, 32, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load(str(path))
    _inline_identity_initializers(proto)
    _rename_initializers(proto)
    _set_metadata(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _inline_identity_initializers(proto: onnx.ModelProto) -> None:
    # The exporter (torch 2.13) deduplicates equal constants and feeds the copies through
    # Identity nodes. quantize_static expects each Conv bias to be an initializer itself.
    originals = {init.name: init for init in proto.graph.initializer}
    identities = [n for n in proto.graph.node if n.op_type == "Identity" and n.input[0] in originals]
    for node in identities:
        copy = onnx.TensorProto()
        copy.CopyFrom(originals[node.input[0]])
        copy.name = node.output[0]
        proto.graph.initializer.append(copy)
        proto.graph.node.remove(node)


def _rename_initializers(proto: onnx.ModelProto) -> None:
    # The exporter names folded Conv weights "onnx::Conv_123" and may share one initializer
    # between layers whose values are equal. Give each layer its own copy named after the
    # module ("stack1.conv1.weight"), the way the PyTorch state_dict does.
    originals = {init.name: init for init in proto.graph.initializer}
    renamed: list[onnx.TensorProto] = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        for slot, role in ((1, "weight"), (2, "bias")):
            if len(node.input) > slot and node.input[slot] in originals:
                copy = onnx.TensorProto()
                copy.CopyFrom(originals[node.input[slot]])
                copy.name = f"{module}.{role}"
                renamed.append(copy)
                node.input[slot] = copy.name
    still_used = {name for node in proto.graph.node for name in node.input}
    new_names = {init.name for init in renamed}
    kept = [
        init for init in proto.graph.initializer if init.name in still_used and init.name not in new_names
    ]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept + renamed)


def _set_metadata(proto: onnx.ModelProto) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key = INPUT_METADATA_KEY
    entry.value = json.dumps(INPUT_SPEC)


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over an in-memory array, in batches of 50."""

    def __init__(self, images: np.ndarray, batch: int = 50) -> None:
        self._batches = iter([{"input": images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # not needed by MinMax calibration
        raise NotImplementedError


def quantize_onnx(float_path: Path, out_path: Path, images: np.ndarray, *, variant: str) -> None:
    """Static PTQ of ``float_path``; ``variant`` is ``int8`` (QDQ, per-channel), ``uint8`` (QDQ,
    per-tensor) or ``int8_qop`` (QOperator, per-channel)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = {
        "int8": (QuantFormat.QDQ, QuantType.QInt8, QuantType.QInt8, True),
        "uint8": (QuantFormat.QDQ, QuantType.QUInt8, QuantType.QUInt8, False),
        "int8_qop": (QuantFormat.QOperator, QuantType.QInt8, QuantType.QInt8, True),
    }
    quant_format, activation_type, weight_type, per_channel = settings[variant]
    quantize_static(
        str(float_path), str(out_path), _CalibrationReader(images),
        quant_format=quant_format, activation_type=activation_type, weight_type=weight_type,
        per_channel=per_channel, calibrate_method=CalibrationMethod.MinMax,
    )
    proto = onnx.load(str(out_path))
    _set_metadata(proto)
    onnx.save(proto, str(out_path))


def quantize_torch(model: ResNet8, path: Path, images: np.ndarray) -> None:
    """FX graph mode int8 (x86, per-channel weights), traced and saved as TorchScript.

    The preprocess module stays float, so the int8 model takes the same raw NHWC input.
    """
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    example = torch.from_numpy(images[:1])
    qconfig_mapping = get_default_qconfig_mapping("x86").set_module_name("preprocess", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), qconfig_mapping, example_inputs=(example,))
        with torch.no_grad():
            for start in range(0, len(images), 50):
                prepared(torch.from_numpy(images[start : start + 50]))
        quantized = convert_fx(prepared)
        traced = torch.jit.trace(quantized, example)
    torch.jit.save(traced, str(path), _extra_files={f"{INPUT_METADATA_KEY}.json": json.dumps(INPUT_SPEC)})


def build(*, weights: str | Path, data_dir: str | Path | None, out_dir: str | Path) -> list[Path]:
    """Write every bundled file into ``out_dir`` and return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = load_trained(weights)
    images = calibration_images(data_dir)
    logger.info("calibrating on %d training images", len(images))

    written = [out / "resnet8.pt", out / "resnet8.onnx"]
    save_float_checkpoint(model, written[0])
    export_onnx(model, written[1])
    with tempfile.TemporaryDirectory() as scratch:
        for variant in ("int8", "uint8", "int8_qop"):
            target = out / f"resnet8_{variant}.onnx"
            # quantize_static writes augmented models beside its input; keep those in scratch.
            source = Path(scratch) / "resnet8.onnx"
            source.write_bytes(written[1].read_bytes())
            quantize_onnx(source, target, images, variant=variant)
            written.append(target)
    quantize_torch(model, out / "resnet8_int8.pt", images)
    written.append(out / "resnet8_int8.pt")
    for path in written:
        logger.info("wrote %s (%.0f KB)", path, path.stat().st_size / 1024)
    return written


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the build options to ``parser`` (a new one when None)."""
    parser = parser or argparse.ArgumentParser(prog="quantlens zoo build", description=__doc__)
    parser.add_argument("--weights", required=True, help="trained float state_dict (resnet8_trained.pt)")
    parser.add_argument("--data-dir", help="CIFAR-10 folder with the train split (class folders or pickles)")
    parser.add_argument(
        "--out", default="src/quantlens/models", help="output folder (default: %(default)s)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Build from parsed command-line options."""
    for path in build(weights=args.weights, data_dir=args.data_dir, out_dir=args.out):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
    return 0
