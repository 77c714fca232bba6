"""Write the benchmark's model files once into a cache folder and reuse them on later runs.

From one seeded random network (see ``network.py``) this writes:

- ``net.pt``: the plain ``state_dict`` saved with ``torch.save``;
- ``net.onnx``: float ONNX (opset 17, dynamic batch; the exporter folds BatchNorm into Conv);
- ``net_external.onnx`` and ``net_external.onnx.data``: the same graph with every initializer of
  1 KB or more in one external data file;
- ``net_int8.onnx``: QDQ int8 from ``onnxruntime.quantization.quantize_static`` (MinMax
  calibration on two random batches, int8 weights per channel, int8 activations);
- ``net_int8.pt``: TorchScript int8 from FX graph mode quantization (``prepare_fx`` and
  ``convert_fx`` with ``get_default_qconfig_mapping("x86")``, calibrated on the same random
  batches), then ``torch.jit.trace`` and ``torch.jit.save``.

A ``manifest.json`` records the settings; files whose manifest differs are written again.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Bump when the files written here change, so that older caches are rebuilt.
GENERATION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Variant:
    """Network size and input resolution of one benchmark mode."""

    name: str
    base_width: int
    image_size: int
    calibration_batches: int = 2
    calibration_batch_size: int = 2

    @property
    def input_spec(self) -> dict[str, object]:
        """The quantlens input description: NCHW, ImageNet-standardized pixels."""
        return {
            "layout": "NCHW",
            "shape": [None, 3, self.image_size, self.image_size],
            "dtype": "float32",
            "scaling": "standardize",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }


FULL = Variant(name="resnet50", base_width=64, image_size=224)
QUICK = Variant(name="resnet50-quarter", base_width=16, image_size=112)
VARIANTS = {variant.name: variant for variant in (FULL, QUICK)}


@dataclass(frozen=True)
class Artifacts:
    """Paths of the generated model files."""

    folder: Path
    state_dict: Path
    onnx_float: Path
    onnx_external: Path
    onnx_qdq: Path
    torchscript_int8: Path
    parameters: int

    def by_format(self) -> dict[str, Path]:
        """Return the files keyed by the format label used in the result table."""
        return {
            "PyTorch state_dict": self.state_dict,
            "ONNX float": self.onnx_float,
            "ONNX external data": self.onnx_external,
            "ONNX QDQ int8": self.onnx_qdq,
            "TorchScript int8": self.torchscript_int8,
        }


def prepare(variant: Variant, cache: Path, *, rebuild: bool = False) -> Artifacts:
    """Return the model files of ``variant`` in ``cache/<name>``, writing them when needed."""
    folder = cache / variant.name
    artifacts = _paths(folder)
    manifest_path = folder / "manifest.json"
    expected = {"generation": GENERATION, **asdict(variant)}
    if not rebuild and manifest_path.is_file() and _all_present(artifacts):
        manifest = json.loads(manifest_path.read_text())
        if {key: manifest.get(key) for key in expected} == expected:
            return _paths(folder, parameters=int(manifest["parameters"]))
    folder.mkdir(parents=True, exist_ok=True)
    parameters = _write_all(variant, artifacts)
    manifest_path.write_text(json.dumps({**expected, "parameters": parameters}, indent=2))
    return _paths(folder, parameters=parameters)


def prepare_files(variant: str, cache: str, rebuild: bool) -> dict[str, object]:
    """Worker task: run ``prepare`` in its own process, so that the benchmark's parent process
    never imports torch or keeps the models in memory."""
    return {"parameters": prepare(VARIANTS[variant], Path(cache), rebuild=rebuild).parameters}


def _paths(folder: Path, *, parameters: int = 0) -> Artifacts:
    return Artifacts(
        folder=folder,
        state_dict=folder / "net.pt",
        onnx_float=folder / "net.onnx",
        onnx_external=folder / "net_external.onnx",
        onnx_qdq=folder / "net_int8.onnx",
        torchscript_int8=folder / "net_int8.pt",
        parameters=parameters,
    )


def _all_present(artifacts: Artifacts) -> bool:
    external_data = artifacts.onnx_external.with_name(artifacts.onnx_external.name + ".data")
    return external_data.is_file() and all(path.is_file() for path in artifacts.by_format().values())


def calibration_inputs(variant: Variant, *, seed: int = 1) -> list[np.ndarray]:
    """Return random standardized NCHW batches for calibration."""
    rng = np.random.default_rng(seed)
    shape = (variant.calibration_batch_size, 3, variant.image_size, variant.image_size)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(variant.calibration_batches)]


def _write_all(variant: Variant, artifacts: Artifacts) -> int:
    import torch

    from quantlens_bench.network import build_network, parameter_count

    network = build_network(base_width=variant.base_width)
    batches = calibration_inputs(variant)
    logger.info("writing %s model files into %s", variant.name, artifacts.folder)
    torch.save(network.state_dict(), artifacts.state_dict)
    _export_onnx(network, variant, artifacts.onnx_float)
    _save_external(artifacts.onnx_float, artifacts.onnx_external)
    _quantize_onnx(artifacts.onnx_float, artifacts.onnx_qdq, batches)
    _quantize_torchscript(network, variant, artifacts.torchscript_int8, batches)
    return parameter_count(network)


def _export_onnx(network: object, variant: Variant, path: Path) -> None:
    import torch

    example = torch.zeros(1, 3, variant.image_size, variant.image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network, (example,), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def _save_external(source: Path, target: Path) -> None:
    import onnx

    model = onnx.load(str(source))
    onnx.save_model(
        model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
        location=target.name + ".data", size_threshold=1024,
    )


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{"input": batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _quantize_onnx(source: Path, target: Path, batches: list[np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # quantize_static writes its augmented calibration model beside the input, so work on a copy.
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / source.name
        copy.write_bytes(source.read_bytes())
        quantize_static(
            str(copy), str(target), _CalibrationReader(batches),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax,
        )


def _quantize_torchscript(network: object, variant: Variant, path: Path, batches: list[np.ndarray]) -> None:
    import copy

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    example = torch.from_numpy(batches[0][:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(network), get_default_qconfig_mapping("x86"), example_inputs=(example,))
        with torch.no_grad():
            for batch in batches:
                prepared(torch.from_numpy(batch))
        quantized = convert_fx(prepared)
        traced = torch.jit.trace(quantized, example)
    from quantlens.records import INPUT_METADATA_KEY

    extra = {f"{INPUT_METADATA_KEY}.json": json.dumps(variant.input_spec)}
    torch.jit.save(traced, str(path), _extra_files=extra)
