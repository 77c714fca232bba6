"""Case: open a model in a fresh process and show its largest weight's histogram and statistics.

quantlens: ``open_model`` plus ``report_tensor`` on the weight with the most elements. The usual
approach: load the file with its framework, convert every tensor to numpy, then compute
``np.histogram`` (50 bins), min, max, mean and std of the largest one. Each side runs in its own
new interpreter and the time is the wall time of that whole process, imports included, so the
page cache is warm but no module is imported beforehand.

The floor is the part of quantlens's work that its reader cannot skip, given the library it
reads the format with: ``import onnx`` (the reader parses the protobuf itself, leaving weight
bytes in the file) or ``import torch`` (the TorchScript reader then calls ``torch.jit.load``).
When the floor alone exceeds half of the usual approach's time, no reader built on that
library meets the 0.5x target, and the notes show it.
"""

from __future__ import annotations

import time

from quantlens_bench.measure import Quantity, Row, format_quantity, median, repeat_worker

TARGET_RATIO = 0.5
BINS = 50

# Format label (as in Artifacts.by_format) -> how the worker loads it.
LOADERS = {
    "PyTorch state_dict": "state_dict",
    "ONNX float": "onnx",
    "ONNX external data": "onnx",
    "ONNX QDQ int8": "onnx",
    "TorchScript int8": "torchscript",
}


def open_with_quantlens(path: str) -> dict[str, object]:
    """Worker task: open the file with quantlens and report its largest weight."""
    start = time.perf_counter()
    from quantlens.inspect import report_tensor
    from quantlens.readers import open_model
    from quantlens.records import Role

    imported = time.perf_counter()
    model = open_model(path)
    opened = time.perf_counter()
    layer, tensor = max(
        ((layer, tensor) for layer, tensor in model.tensors() if tensor.role is Role.WEIGHT),
        key=lambda pair: pair[1].size,
    )
    report = report_tensor(model, layer.name, tensor.name, bins=BINS)
    done = time.perf_counter()
    return {
        "import": imported - start,
        "open": opened - imported,
        "report": done - opened,
        "tensor": tensor.name,
        "elements": tensor.size,
        "mean": report.summary.mean,
    }


def open_with_framework(path: str, loader: str) -> dict[str, object]:
    """Worker task: load every tensor as numpy with the format's framework, then describe the largest."""
    start = time.perf_counter()
    arrays = _framework_arrays(path, loader)
    loaded = time.perf_counter()
    import numpy as np

    name, values = max(arrays.items(), key=lambda item: item[1].size)
    np.histogram(values, bins=BINS)
    summary = [float(values.min()), float(values.max()), float(values.mean()), float(values.std())]
    done = time.perf_counter()
    return {"load": loaded - start, "describe": done - loaded, "tensor": name, "elements": int(values.size), "mean": summary[2]}


def _framework_arrays(path: str, loader: str) -> dict[str, object]:
    if loader == "state_dict":
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return {key: value.numpy() for key, value in state.items()}
    if loader == "onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(path)
        return {initializer.name: numpy_helper.to_array(initializer) for initializer in model.graph.initializer}
    if loader == "torchscript":
        return _torchscript_arrays(path)
    raise ValueError(f"unknown loader {loader!r}")


def _torchscript_arrays(path: str) -> dict[str, object]:
    import torch

    module = torch.jit.load(path, map_location="cpu")
    arrays: dict[str, object] = {}
    for name, submodule in module.named_modules():
        for key, tensor in [*submodule.named_parameters(recurse=False), *submodule.named_buffers(recurse=False)]:
            arrays[f"{name}.{key}"] = _dequantized(tensor).numpy()
        packed = getattr(submodule, "_packed_params", None)
        if isinstance(packed, torch.ScriptObject):
            is_linear = "Linear" in packed._type().qualified_name()
            unpack = torch.ops.quantized.linear_unpack if is_linear else torch.ops.quantized.conv2d_unpack
            weight, bias = unpack(packed)
            arrays[f"{name}.weight"] = _dequantized(weight).numpy()
            if bias is not None:
                arrays[f"{name}.bias"] = bias.detach().numpy()
    return arrays


def _dequantized(tensor: object) -> object:
    tensor = tensor.detach()  # type: ignore[attr-defined]
    return tensor.dequantize() if tensor.is_quantized else tensor


def open_floor(path: str, loader: str) -> dict[str, object]:
    """Worker task: only the import (and for a state_dict the mapped load) that the reader needs."""
    start = time.perf_counter()
    if loader == "onnx":
        import onnx  # noqa: F401
    elif loader == "torchscript":
        import torch  # noqa: F401
    elif loader == "state_dict":
        import torch

        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    else:
        raise ValueError(f"unknown loader {loader!r}")
    return {"floor": time.perf_counter() - start}


def rows(files: dict[str, object], *, repeats: int, size_note: str) -> list[Row]:
    """Time both sides ``repeats`` times per format (median of the process wall times)."""
    table = []
    for label, path in files.items():
        loader = LOADERS[label]
        ours = repeat_worker("open-quantlens", {"path": str(path)}, repeats)
        theirs = repeat_worker("open-baseline", {"path": str(path), "loader": loader}, repeats)
        ours_wall = median([result.wall for result in ours])
        theirs_wall = median([result.wall for result in theirs])
        met = ours_wall <= TARGET_RATIO * theirs_wall
        first = ours[0].data
        notes = (
            f"{size_note}; largest weight {first['tensor']} ({first['elements']:,} values); "
            f"quantlens import {format_quantity(median([r.number('import') for r in ours]), 's')}, "
            f"open {format_quantity(median([r.number('open') for r in ours]), 's')}, "
            f"report {format_quantity(median([r.number('report') for r in ours]), 's')}"
        )
        if not met:
            floor = median([result.wall for result in repeat_worker("open-floor", {"path": str(path), "loader": loader}, repeats)])
            notes += (
                f"; floor ({_floor_text(loader)}) {format_quantity(floor, 's')} = "
                f"{floor / theirs_wall:.2f}x the usual approach"
            )
        table.append(
            Row(
                case=f"cold open + largest histogram, {label}",
                quantlens=Quantity(ours_wall, "s"),
                compared=Quantity(theirs_wall, "s"),
                compared_label="framework load, all tensors to numpy",
                target=f"<= {TARGET_RATIO}x",
                met=met,
                notes=notes,
            )
        )
    return table


def _floor_text(loader: str) -> str:
    return {
        "onnx": "fresh process that only imports onnx",
        "torchscript": "fresh process that only imports torch",
        "state_dict": "fresh process: import torch + torch.load(mmap=True)",
    }[loader]
